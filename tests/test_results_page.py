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


def ledger(chapter: str, profile: str, *claims: tuple[str, bool, str, str]) -> dict:
    return {"chapter": chapter, "profile": profile, "commit": "abc123def456",
            "date": "2026-11-23T19:00:00+00:00",
            "claims": [{"claim": c, "holds": h, "evidence": e, "source": s, "enforced": True}
                       for c, h, e, s in claims]}


@pytest.fixture
def claims_book(book: Path) -> Path:
    folder = book / "results" / "claims"
    folder.mkdir()
    (folder / "03_seq2seq.cpu.json").write_text(json.dumps(ledger(
        "03_seq2seq", "cpu",
        ("the LSTM beats the RNN", True, "LSTM 22.9 > RNN 15.1 BLEU", "this run"),
        ("attention helps most on long sentences", False, "gain 1.2 < 3.4 BLEU", "this run"))))
    (folder / "03_seq2seq.full.json").write_text(json.dumps(ledger(
        "03_seq2seq", "full",
        ("the LSTM beats the RNN", True, "LSTM 36.8 > RNN 15.1 BLEU",
         "results/03_seq2seq.full.json"))))
    (folder / "03_seq2seq.smoke.json").write_text(json.dumps(ledger(
        "03_seq2seq", "smoke", ("a smoke-only claim", False, "x 1 < 2", "this run"))))
    (folder / "06_vit.cpu.json").write_text('{"chapter": "06_vit", "claims": [')  # truncated
    (folder / "06_vit.full.json").write_text(json.dumps(
        {"chapter": "06_vit", "profile": "full", "claims": [{"claim": "no verdict"}]}))
    return book


def test_claims_files_are_not_results_files(claims_book: Path):
    """results/claims/*.json is the ledger: neither a results record nor a broken results file."""
    loaded = rp.load_results(claims_book / "results", rp.known_chapters(claims_book))
    names = {r["_file"] for r in loaded.records} | dict(loaded.problems).keys()
    assert not any(n.startswith("claims") for n in names)
    assert "03_seq2seq.cpu.json" in {r["_file"] for r in loaded.records}


def test_claims_ledger_loads_and_reports_broken_ledgers_by_name(claims_book: Path):
    ledgers = rp.load_claims(claims_book / "results", rp.known_chapters(claims_book))
    assert sorted(r["_file"] for r in ledgers.ledgers) == [
        "claims/03_seq2seq.cpu.json", "claims/03_seq2seq.full.json", "claims/03_seq2seq.smoke.json"]
    problems = dict(ledgers.problems)
    assert set(problems) == {"claims/06_vit.cpu.json", "claims/06_vit.full.json"}
    assert "not valid JSON" in problems["claims/06_vit.cpu.json"]
    assert "claim #1" in problems["claims/06_vit.full.json"]
    assert "holds" in problems["claims/06_vit.full.json"]
    page = rp.render(claims_book)
    assert "`claims/06_vit.cpu.json`: not valid JSON" in page
    assert "`claims/06_vit.full.json`: claim #1" in page
    assert rp.main(["--check"], root=claims_book) == 1


@pytest.mark.parametrize("record, why", [
    ([1, 2], "holds a list"),
    ({"chapter": "03_seq2seq", "profile": "cpu"}, "lacks the key(s) claims"),
    ({"chapter": "99_unknown", "profile": "cpu", "claims": []}, "'99_unknown'"),
    ({"chapter": "03_seq2seq", "profile": "gpu", "claims": []}, "unknown profile 'gpu'"),
    ({"chapter": "06_vit", "profile": "cpu", "claims": []}, "should be named 06_vit.cpu.json"),
    ({"chapter": "03_seq2seq", "profile": "cpu", "claims": {"a": 1}}, "not a list"),
    ({"chapter": "03_seq2seq", "profile": "cpu",
      "claims": [{"claim": "c", "holds": "yes", "evidence": "e", "source": "s"}]}, "holds"),
])
def test_each_malformed_ledger_gets_its_own_reason(book: Path, record, why):
    folder = book / "results" / "claims"
    folder.mkdir()
    (folder / "03_seq2seq.cpu.json").write_text(json.dumps(record))
    ledgers = rp.load_claims(book / "results", rp.known_chapters(book))
    assert ledgers.ledgers == []
    [(name, problem)] = ledgers.problems
    assert name == "claims/03_seq2seq.cpu.json" and why in problem, problem


def test_claims_ledger_lists_every_claim_with_verdict_evidence_and_source(claims_book: Path):
    chapters = rp.known_chapters(claims_book)
    text = rp.claims_markdown(rp.load_claims(claims_book / "results", chapters), chapters)
    assert "**03_seq2seq**: 1 of 2 claims hold in every recorded profile" in text
    beats = text.index("- the LSTM beats the RNN")
    helps = text.index("- attention helps most on long sentences")
    block = text[beats:helps]
    assert "`cpu`: ✓ holds in this run: LSTM 22.9 > RNN 15.1 BLEU" in block
    assert "`full`: ✓ holds in results/03_seq2seq.full.json: LSTM 36.8 > RNN 15.1 BLEU" in block
    assert "`cpu`: ✗ does not hold (built with ANNOTATED_CLAIMS=warn) in this run: gain 1.2" \
        in text[helps:]
    assert "smoke-only claim" not in text  # the chapter ran in cpu and full


def test_each_ledger_says_whether_its_commit_is_its_results_files(claims_book: Path):
    chapters = rp.known_chapters(claims_book)
    results = claims_book / "results"
    ledgers = rp.load_claims(results, chapters)
    same = rp.claims_markdown(ledgers, chapters, rp.load_results(results, chapters))
    assert ("`claims/03_seq2seq.cpu.json` (commit `abc123def456`): the commit of its "
            "results file") in same
    assert "not the commit" not in same
    run = json.loads((results / "03_seq2seq.cpu.json").read_text())
    run["commit"] = "0123456789ab"  # the numbers re-recorded, the claims not
    (results / "03_seq2seq.cpu.json").write_text(json.dumps(run))
    other = rp.claims_markdown(ledgers, chapters, rp.load_results(results, chapters))
    assert ("`claims/03_seq2seq.cpu.json` (commit `abc123def456`): **not the commit of its "
            "results file** (`0123456789ab`)") in other
    # the claims themselves are folded away under the chapter's line
    assert other.index("**03_seq2seq**") < other.index("::::{dropdown} 03_seq2seq: the 2 claims")


def test_claims_of_a_chapter_with_only_a_smoke_run_are_shown_as_not_enforced(book: Path):
    folder = book / "results" / "claims"
    folder.mkdir()
    (folder / "06_vit.smoke.json").write_text(json.dumps(ledger(
        "06_vit", "smoke", ("the ViT beats chance", False, "acc 0.05 < 0.1", "this run"))))
    chapters = rp.known_chapters(book)
    text = rp.claims_markdown(rp.load_claims(book / "results", chapters), chapters)
    assert "`smoke`: · does not hold (smoke: reported, not enforced)" in text
    assert "No claims ledger" in rp.claims_markdown(rp.Ledger(), chapters)


def test_the_page_opens_with_headlines_then_claims_with_the_details_folded(claims_book: Path):
    (claims_book / "results" / "03_seq2seq.cpu.json").write_text(json.dumps(record(
        "03_seq2seq", "cpu", rnn={"sacreBLEU": 5.37}, lstm_attn={"test_bleu": 18.43})))
    page = rp.render(claims_book)
    head = page.index("| chapter | measure | `cpu` run | `full` run | quoted from another source |")
    assert "| 03_seq2seq | RNN: test sacreBLEU | 5.4 | – | – |" in page[head:]
    claims = page.index("**03_seq2seq**: 1 of 2 claims")
    details = page.index("::::{dropdown} 03_seq2seq: every recorded metric")
    assert page.index(":::{warning}") < head < claims < details
    assert page.index("Profile `full`") > details  # the JSON dump sits inside the dropdown
    assert page.rstrip().endswith("::::")


def test_headline_numbers_are_read_from_the_files_beside_their_anchors(tmp_path: Path):
    (tmp_path / "_toc.yml").write_text(TOC)
    results = tmp_path / "results"
    results.mkdir()
    (results / "03_seq2seq.cpu.json").write_text(json.dumps(record(
        "03_seq2seq", "cpu", rnn={"sacreBLEU": 5.37, "val_ppl_TF": 41.05},
        **{"lstm+attn": {"tokenised_BLEU": 25.17}})))
    (results / "03_seq2seq.full.json").write_text(json.dumps(record(
        "03_seq2seq", "full", rnn={"sacreBLEU": 15.13, "val_ppl_TF": 14.62})))
    (results / "06_vit.cpu.json").write_text(json.dumps(record("06_vit", "cpu",
                                                               vit={"accuracy": 0.6199})))
    chapters = rp.known_chapters(tmp_path)
    loaded = rp.load_results(results, chapters)
    table = rp.headline_markdown(loaded, chapters)
    assert "| 03_seq2seq | RNN: test sacreBLEU | 5.4 | 15.1 | – |" in table
    assert "| 03_seq2seq | RNN: validation perplexity | 41.0 | 14.6 | 77.5 (course write-up A) |" \
        in table  # 41.05 rounds half to even
    assert "| 03_seq2seq | LSTM + attention: test BLEU on tokens | 25.2 | – | " \
           "28.1 (bentrevett/pytorch-seq2seq) |" in table
    assert "| 06_vit | ViT: CIFAR-10 test accuracy | 62.0 % | – | 91.0 % (omihub777" in table
    assert "LSTM: test sacreBLEU" not in table  # not recorded: no row, no invented number
    frame = rp.headline_frame(loaded, chapters)
    bars = {(row["measure"], row["by"]): row["value"] for row in frame}
    assert bars[("03 · RNN: test sacreBLEU", "this book, cpu run")] == pytest.approx(5.37)
    assert bars[("03 · RNN: test sacreBLEU", "this book, full run")] == pytest.approx(15.13)
    assert bars[("06 · ViT: CIFAR-10 test accuracy", "this book, cpu run")] == pytest.approx(61.99)
    assert bars[("03 · LSTM + attention: test BLEU on tokens",
                 "quoted: bentrevett/pytorch-seq2seq")] == 28.11
    assert not any("perplexity" in measure for measure, _ in bars)  # another scale: table only
    spec = rp.headline_chart(loaded, chapters).to_dict()
    assert len(spec["datasets"][next(iter(spec["datasets"]))]) == len(frame)
    assert rp.headline_chart(rp.Loaded(), chapters) is None
    assert "No headline numbers" in rp.headline_markdown(rp.Loaded(), chapters)


def test_every_headline_reads_a_recorded_number_and_names_real_anchors():
    """Each headline's path exists in the committed results (cpu), and its anchors exist."""
    chapters = rp.known_chapters(ROOT)
    loaded = rp.load_results(ROOT / "results", chapters)
    recorded = {r["chapter"] for r in loaded.records if r["profile"] == "cpu"}
    for h in rp.HEADLINES:
        assert rp.owner_chapter(h.results, chapters), h
        assert len(rp.headline_anchors(h)) >= len(h.anchors), h  # every (model, metric) matches
        if h.results in recorded:
            assert rp.headline_value(loaded, h, "cpu") is not None, h


def test_full_is_not_called_a_gpu_run_the_device_is_read_from_the_files(book: Path):
    loaded = rp.load_results(book / "results", rp.known_chapters(book))
    text = rp.full_runs_markdown(loaded)
    assert "`03_seq2seq` on cpu (x86_64, 2 threads)" in text
    assert "GPU" not in text
    assert "No `full` run" in rp.full_runs_markdown(rp.Loaded())
    page = (ROOT / "book" / "results.md").read_text()
    assert "GPU run" not in page and "no number is typed by hand" not in page.lower()
    assert "quoted" in page and "ANCHORS" in page
