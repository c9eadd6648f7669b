"""The table of contents is the one list of chapters: every tool reads it the same way.

``tools/chapters.py`` reads ``_toc.yml``; the exporter, the Colab twins, the
results page, the sphinx extension, the notebook collector (``conftest.py``) and
the Makefile all ask it. These tests keep the toc honest and check that they
agree, on the real book and on a fixture book with a new appendix.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import chapters as book_chapters  # noqa: E402
import colab_twins  # noqa: E402
import export  # noqa: E402
import results_page  # noqa: E402
import sphinx_annotated  # noqa: E402

FRONT = ("---\njupytext:\n  text_representation:\n    extension: .md\n"
         "    format_name: myst\nkernelspec:\n  display_name: Python 3\n"
         "  language: python\n  name: python3\n---\n\n")


def test_every_toc_entry_exists():
    missing = [p.docname for p in book_chapters.pages(ROOT) if not p.path.exists()]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_every_chapter_is_in_the_toc_and_therefore_tested():
    listed = {p.path for p in book_chapters.pages(ROOT)}
    notebooks = {p for p in (ROOT / "book").rglob("*.md")
                 if book_chapters.Page(p.stem, p).is_notebook}
    orphans = sorted(str(p.relative_to(ROOT)) for p in notebooks - listed)
    assert not orphans, f"not in _toc.yml (so neither built nor tested): {orphans}"
    assert book_chapters.problems(ROOT) == []


def test_collector_picks_up_a_new_chapter(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: X\n    chapters:\n"
        "      - file: book/09_new\n        sections:\n          - file: book/09b_sub\n")
    assert [p.path.name for p in book_chapters.pages(tmp_path)] == [
        "intro.md", "09_new.md", "09b_sub.md"]


def test_kinds_follow_the_names():
    kinds = {p.docname: p.kind for p in book_chapters.pages(ROOT)}
    assert kinds["book/01_attention"] == "chapter"
    assert kinds["book/appendix_plumbing"] == "appendix"
    for page in ("book/results", "book/intro", "book/api/attention"):
        assert kinds[page] == "page", page
    assert book_chapters.Page("book/api/01_x", ROOT / "book/api/01_x.md").kind == "page"
    with pytest.raises(ValueError, match="unknown page kind"):
        book_chapters.pages(ROOT, ("chapters",))


def test_data_parallel_chapters_are_chapters():
    names = [p.name for p in book_chapters.chapters(ROOT) if p.kind == "chapter"]
    assert set(book_chapters.DATA_PARALLEL) <= set(names), book_chapters.DATA_PARALLEL


def _tools_agree(root: Path) -> list[str]:
    """Every tool's idea of the chapters and appendices, checked against chapters.py."""
    expected = [p.path for p in book_chapters.chapters(root)]
    assert expected, "no chapters at all"
    assert colab_twins.chapters(root) == expected
    assert results_page.known_chapters(root) == [p.stem for p in expected]
    exported = [p for p in export.chapters(root) if p in expected]
    assert exported == expected
    modules = book_chapters.modules(root)
    assert set(export.build(root)) == {f"{m}.py" for m in modules} | {"__init__.py"}
    for module, page in book_chapters.modules(root).items():
        assert sphinx_annotated._module_of(page.docname, root) == module
    return [p.stem for p in expected]


def test_every_tool_agrees_on_the_real_book():
    names = _tools_agree(ROOT)
    assert names[0] == "01_attention" and "appendix_plumbing" in names
    assert "results" not in names and "intro" not in names
    pages = book_chapters.chapters(ROOT)
    twins = {sphinx_annotated._twin_for(p.docname) for p in pages}
    assert twins == {f"notebooks/{n}.ipynb" for n in names}
    assert sphinx_annotated._twin_for("book/results") is None


def test_a_new_appendix_in_the_toc_reaches_every_tool(tmp_path):
    """An appendix listed in _toc.yml needs no code change: every tool picks it up."""
    for name in ("_toc.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book")
    new = tmp_path / "book" / "appendix_extra.md"
    new.write_text(FRONT + "# Appendix: extra\n\n```{code-cell} ipython3\n"
                   "#| default_exp extra\n```\n\n```{code-cell} ipython3\n#| export\n"
                   "X = 1\n```\n")
    assert "book/appendix_extra.md is not in _toc.yml" in "\n".join(
        book_chapters.problems(tmp_path))
    with pytest.raises(export.ExportError, match="appendix_extra.md is not in _toc"):
        export.build(tmp_path)
    toc = (tmp_path / "_toc.yml").read_text()
    anchor = "      - file: book/appendix_plumbing\n"
    assert anchor in toc
    toc = toc.replace(anchor, anchor + "      - file: book/appendix_extra\n")
    (tmp_path / "_toc.yml").write_text(toc)
    assert book_chapters.problems(tmp_path) == []
    names = _tools_agree(tmp_path)
    assert names[-2:] == ["appendix_plumbing", "appendix_extra"]
    assert "extra.py" in export.build(tmp_path)
    assert [p.stem for p in colab_twins.chapters(tmp_path)][-1] == "appendix_extra"


def test_makefile_lists_come_from_chapters_py():
    def listed(what: str) -> list[str]:
        command = [sys.executable, "tools/chapters.py", "--list", what]
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                             check=True)
        out = run.stdout
        return out.split()

    assert listed("chapters") == [
        p.name for p in book_chapters.chapters(ROOT) if p.kind == "chapter"]
    assert listed("appendices") == [
        p.name for p in book_chapters.chapters(ROOT) if p.kind == "appendix"]
    assert "appendix_plumbing" in listed("appendices")
    assert listed("data-parallel") == list(book_chapters.DATA_PARALLEL)
    makefile = (ROOT / "Makefile").read_text()
    assert "tools/chapters.py --list chapters" in makefile
    assert "tools/chapters.py --list data-parallel" in makefile
    assert "wildcard book/" not in makefile, "the Makefile must not glob the chapters"
