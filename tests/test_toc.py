"""The table of contents drives both the book and the notebook tests: keep it honest."""

from pathlib import Path

from conftest import _is_code_notebook, toc_chapters

ROOT = Path(__file__).resolve().parent.parent


def test_every_toc_entry_exists():
    missing = [str(p.relative_to(ROOT)) for p in toc_chapters() if not p.exists()]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_every_chapter_is_in_the_toc_and_therefore_tested():
    listed = set(toc_chapters())
    notebooks = {p for p in (ROOT / "book").rglob("*.md") if _is_code_notebook(p)}
    orphans = sorted(str(p.relative_to(ROOT)) for p in notebooks - listed)
    assert not orphans, f"chapters missing from _toc.yml (so neither built nor tested): {orphans}"


def test_collector_picks_up_a_new_chapter(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: X\n    chapters:\n"
        "      - file: book/09_new\n        sections:\n          - file: book/09b_sub\n")
    assert [p.name for p in toc_chapters(tmp_path)] == ["intro.md", "09_new.md", "09b_sub.md"]
