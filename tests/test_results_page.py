"""The results page builder (tools/results_page.py) on tiny fixture results files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import results_page as rp  # noqa: E402

TOC = """format: jb-book
root: book/intro
parts:
  - caption: Chapters
    chapters:
      - file: book/03_seq2seq
      - file: book/06_vit
"""


def record(chapter: str, profile: str, **metrics) -> dict:
    return {"chapter": chapter, "profile": profile, "commit": "abc123def456",
            "device": "cpu (x86_64, 2 threads)",
            "date": "2026-11-23T19:00:00+00:00", "wall_time_s": 12.5, "torch": "2.14.1", "python": "3.11.7",
            "settings": {"epochs": 3}, "metrics": metrics}


@pytest.fixture
def book(tmp_path: Path) -> Path:
    (tmp_path / "_toc.yml").write_text(TOC)
    results = tmp_path / "results"
    results.mkdir()
    (results / "03_seq2seq.cpu.json").write_text(json.dumps(
        record("03_seq2seq", "cpu", lstm_attn={"test_bleu": 18.4321, "test_ppl": 21.09}, epochs_run=7)))
    (results / "03_seq2seq.full.json").write_text(json.dumps(
        record("03_seq2seq", "full", lstm_attn={"test_bleu": 31.25}, curve=[5.0, 4.0, 3.25])))
    (results / "broken.cpu.json").write_text('{"chapter": "03_seq2seq", "metrics": ')  # truncated
    (results / "99_unknown.cpu.json").write_text(json.dumps(record("99_unknown", "cpu", acc=0.5)))
    missing = record("06_vit", "cpu", acc=0.5)
    del missing["commit"]
    (results / "06_vit.cpu.json").write_text(json.dumps(missing))
    (results / "misnamed.json").write_text(json.dumps(record("06_vit", "full", acc=0.9)))
    (results / "03_seq2seq_recipe.cpu.json").write_text(json.dumps(
        record("03_seq2seq_recipe", "cpu", best_lr=0.002)))  # a side run of chapter 3
    return tmp_path


def test_known_chapters_come_from_the_toc(book: Path):
    # the chapters and appendices of tools/chapters.py; the intro page writes no results
    assert rp.known_chapters(book) == ["03_seq2seq", "06_vit"]


def test_every_broken_file_is_reported_by_name(book: Path):
    loaded = rp.load_results(book / "results", rp.known_chapters(book))
    problems = dict(loaded.problems)
    assert set(problems) == {"broken.cpu.json", "99_unknown.cpu.json", "06_vit.cpu.json", "misnamed.json"}
    assert "not valid JSON" in problems["broken.cpu.json"]
    assert "'99_unknown'" in problems["99_unknown.cpu.json"] and "_toc.yml" in problems["99_unknown.cpu.json"]
    assert "commit" in problems["06_vit.cpu.json"]
    assert "06_vit.full.json" in problems["misnamed.json"]
    assert sorted(r["_file"] for r in loaded.records) == [
        "03_seq2seq.cpu.json", "03_seq2seq.full.json", "03_seq2seq_recipe.cpu.json"]
    assert {r["_parent"] for r in loaded.records} == {"03_seq2seq"}


def test_rendered_page_shows_the_measured_numbers_and_names_the_broken_files(book: Path):
    page = rp.render(book)
    for name in ("broken.cpu.json", "99_unknown.cpu.json", "06_vit.cpu.json", "misnamed.json"):
        assert f"`{name}`" in page
    assert ":::{warning}" in page
    full, cpu = page.index("Profile `full`"), page.index("Profile `cpu`")
    assert full < cpu, "headline (full) numbers first"
    assert "*lstm_attn*:\n\n| metric | value |\n|---|---|\n| `test_bleu` | 31.25 |" in page[full:cpu]
    assert "| `test_bleu` | 18.43 |\n| `test_ppl` | 21.09 |" in page[cpu:]
    assert "| `curve` | 3.25 … 5 (3 values) |" in page[full:cpu]
    assert "| `epochs_run` | 7 |" in page[cpu:]
    side = page.index("`03_seq2seq_recipe`, Profile `cpu`")
    assert side > cpu and "| `best_lr` | 0.002 |" in page[side:]
    assert "`abc123def456`" in page and "12.5" in page
    assert "All measured with torch 2.14.1." in page  # one version: said once, not in every row
    # the anchors sit beside their chapter, with their sources
    assert "77.5293" in page and "seeds/000_275750e159278998.txt" in page
    assert "91.01" in page and "omihub777/ViT-CIFAR" in page


def test_no_results_and_no_problems(tmp_path: Path):
    (tmp_path / "_toc.yml").write_text(TOC)
    page = rp.render(tmp_path)
    assert "No results have been recorded yet" in page
    assert "All results files are well-formed" in page


def test_check_cli_fails_on_a_broken_file(book: Path, capsys):
    assert rp.main(["--check"], root=book) == 1
    assert "broken.cpu.json" in capsys.readouterr().err
    for bad in ("broken.cpu.json", "99_unknown.cpu.json", "06_vit.cpu.json", "misnamed.json"):
        (book / "results" / bad).unlink()
    assert rp.main(["--check"], root=book) == 0


def test_anchors_sit_only_beside_their_chapter():
    assert rp.chapter_anchors_markdown("02_translation") == ""
    assert rp.chapter_anchors_markdown("07_vit_inside") == ""
    seq = rp.chapter_anchors_markdown("03_seq2seq")
    assert "77.5293" in seq and "91.01" not in seq
    assert "91.01" in rp.chapter_anchors_markdown("06_vit")


def test_formatting():
    assert rp.fmt(0.123456) == "0.1235"
    assert rp.fmt(123456.7) == "123,457"
    assert rp.fmt(1200) == "1,200"
    assert rp.fmt("a|b") == "a\\|b"
    assert rp.fmt(None) == "–"
    assert rp.fmt([[1, 2, 3], [4, 5, 6]]) == "2 × 3 matrix"
    assert rp.fmt([0.5, 0.25, 0.75]) == "0.25 … 0.75 (3 values)"
    assert rp.fmt([float(i) for i in range(30)]) == "29 (last of 30)"


def test_metrics_tables_are_as_wide_as_the_models_not_the_metrics():
    """A chapter with nested metrics (chapter 5's shape) gives narrow tables, one per kind of metric."""
    metrics = {"models": {"encoder-only": {"params": 2, "bleu": 17.5, "ppl": 52.6},
                          "Transformer": {"params": 3, "bleu": 35.0, "ppl": 5.6}},
               "speed": {"ours_step_s": 0.27, "ratio": 0.89},
               "by_size": [{"model": "ViT", "n": 1000, "acc": 0.32},
                           {"model": "CNN", "n": 1000, "acc": 0.39}],
               "runs": [{"name": f"run {i}", **{f"k{j}": j for j in range(10)}} for i in range(3)],
               "signature": "nrefs:1|tok:13a"}
    blocks = rp.metrics_markdown(metrics)
    page = "\n\n".join(blocks)
    widths = [b.split("\n", 1)[0].count("|") - 1 for b in blocks if b.startswith("|")]
    assert max(widths) <= 4, widths  # 3 models, 3 runs, 3 record columns: never 1 column per metric
    assert "*models*:\n\n|  | **encoder-only** | **Transformer** |" in page
    assert "| `bleu` | 17.5 | 35 |" in page
    assert "*speed*:\n\n| metric | value |\n|---|---|\n| `ours_step_s` | 0.27 |" in page
    assert "| `model` | `n` | `acc` |\n|---|---|---|\n| ViT | 1,000 | 0.32 |" in page
    assert "|  | run 0 | run 1 | run 2 |" in page and "| `k9` | 9 | 9 | 9 |" in page  # wide: transposed
    assert page.index("encoder-only") < page.index("ours_step_s") < page.index("| ViT |")  # chapter's order
    assert page.endswith("| `signature` | nrefs:1\\|tok:13a |")


def test_smoke_numbers_are_shown_only_where_nothing_larger_ran(book: Path):
    results = book / "results"
    (results / "03_seq2seq.smoke.json").write_text(json.dumps(record("03_seq2seq", "smoke", x=1.0)))
    (results / "03_seq2seq_recipe.smoke.json").write_text(json.dumps(
        record("03_seq2seq_recipe", "smoke", y=2.0)))
    (results / "03_seq2seq_recipe.cpu.json").unlink()
    page = rp.chapter_markdown(rp.load_results(results, rp.known_chapters(book)), "03_seq2seq")
    assert "Profile `smoke`" in page and "`03_seq2seq_recipe`, Profile `smoke`" in page
    assert page.count("Profile `smoke`") == 1  # chapter 3 itself ran in cpu and full


def test_anchors_have_sources_and_topics():
    assert {a.topic for a in rp.ANCHORS} == {"seq2seq", "transformer", "vit"}
    for anchor in rp.ANCHORS:
        assert anchor.source and anchor.comparable, anchor
        if "seeds/" in anchor.source:  # a course write-up: the figure must be in the file cited
            seed = anchor.source.split("seeds/")[1].split(",")[0].rstrip(")")
            text = (ROOT.parent / "shared" / "seeds" / seed)
            if text.exists():
                assert f"{anchor.value:.4f}".rstrip("0").rstrip(".") in text.read_text() \
                    or f"{anchor.value / 100:.4f}" in text.read_text(), anchor


def test_every_results_name_the_code_writes_belongs_to_a_chapter():
    """A benchmark or chapter writing results/<name>.json with a name the page cannot place would be
    listed as 'unknown chapter': every literal save_results name must be a chapter or <chapter>_<part>."""
    import re

    chapters = rp.known_chapters(ROOT)
    sources = [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("book/*.md")]
    pattern = re.compile(r'save_results\(\s*"([^"]+)"')
    names = {m.group(1) for path in sources for m in pattern.finditer(path.read_text())}
    assert {"01_attention_benchmark", "06_vit_benchmark", "05_transformer_recipe"} <= names
    assert {n: rp.owner_chapter(n, chapters) for n in names if rp.owner_chapter(n, chapters) is None} == {}
