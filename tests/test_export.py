"""The exporter's rules, on tiny fixture books, and the real package's sync."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import export  # noqa: E402

FRONT = textwrap.dedent("""\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
        format_version: 0.13
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---
    """)


def cell(code: str) -> str:
    return f"```{{code-cell}} ipython3\n{code}\n```\n\n"


TOC = "format: jb-book\nroot: book/intro\nchapters:\n"


@pytest.fixture
def book(tmp_path, monkeypatch):
    """A fixture book: `write` adds a chapter to book/ and to its _toc.yml."""
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nJust prose.\n")
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "annotated"\nversion = "9.8.7"\n')
    # The Colab twins are tested in test_book.py; these books have no bootstrap cell.
    monkeypatch.setattr(export, "_colab_twins", lambda check, root: 0)

    def write(name: str, *parts: str, toc: bool = True) -> Path:
        path = tmp_path / "book" / name
        path.write_text(FRONT + "".join(parts))
        if toc and name != "intro.md":
            with open(tmp_path / "_toc.yml", "a") as f:
                f.write(f"  - file: book/{Path(name).stem}\n")
        return path

    return tmp_path, write


def test_exports_cells_in_order_with_banner_and_markers(book):
    root, write = book
    write("01_a.md", "# Chapter A\n\n", cell("#| default_exp alpha"), cell("#| export\nX = 1"),
          "## Second section\n\n", cell("print('not exported')"), cell("#| export\ndef f():\n    return X"))
    assert export.main([], root=root) == 0
    text = (root / "annotated" / "alpha.py").read_text()
    assert text.startswith("# GENERATED FILE, DO NOT EDIT. It is exported from book/01_a.md")
    assert "not exported" not in text
    assert text.index("X = 1") < text.index("def f()")
    assert "# %% book/01_a.md, code cell 2 (Chapter A)" in text
    assert "# %% book/01_a.md, code cell 4 (Second section)" in text
    init = (root / "annotated" / "__init__.py").read_text()
    assert '__version__ = "9.8.7"' in init and "'alpha'" in init
    namespace: dict = {}
    exec(compile(text, "alpha.py", "exec"), namespace)
    assert namespace["f"]() == 1


def test_banner_and_markers_fit_the_book_width(book):
    """A marker that would pass 88 characters puts its section on a line of its own."""
    root, write = book
    long_section = "A section heading long enough to push the marker past the book's width"
    write("01_a.md", "# Chapter A\n\n", cell("#| default_exp alpha"),
          f"## {long_section}\n\n", cell("#| export\nX = 1"))
    assert export.main([], root=root) == 0
    text = (root / "annotated" / "alpha.py").read_text()
    assert f"# %% book/01_a.md, code cell 2\n# ({long_section})\nX = 1" in text
    assert max(len(line) for line in text.splitlines()) <= export.MARKER_WIDTH


def test_check_reports_stale_file_with_diff(book, capsys):
    root, write = book
    write("01_a.md", cell("#| default_exp alpha"), cell("#| export\nX = 1"))
    export.main([], root=root)
    assert export.main(["--check"], root=root) == 0
    (root / "annotated" / "alpha.py").write_text("X = 2  # edited by hand\n")
    assert export.main(["--check"], root=root) == 1
    out = capsys.readouterr().out
    assert "-X = 2  # edited by hand" in out and "+X = 1" in out


def test_check_reports_and_export_removes_orphans(book, capsys):
    root, write = book
    write("01_a.md", cell("#| default_exp alpha"), cell("#| export\nX = 1"))
    export.main([], root=root)
    (root / "annotated" / "old_module.py").write_text("Y = 1\n")
    assert export.main(["--check"], root=root) == 1
    assert "orphan: annotated/old_module.py" in capsys.readouterr().out
    export.main([], root=root)
    assert not (root / "annotated" / "old_module.py").exists()
    assert export.main(["--check"], root=root) == 0


def test_export_without_module_is_an_error(book, capsys):
    root, write = book
    write("02_b.md", cell("import os"), cell("#| export\nX = 1"))
    assert export.main([], root=root) == 2
    err = capsys.readouterr().err
    assert "book/02_b.md: code cell 2 is marked '#| export' but the chapter declares no module" in err
    assert not (root / "annotated").exists(), "nothing is half-written"


@pytest.mark.parametrize("magic", ["%timeit f()", "!pip install x", "  %matplotlib inline"])
def test_export_of_magic_is_an_error(book, capsys, magic):
    root, write = book
    write("03_c.md", cell("#| default_exp gamma"), cell(f"#| export\nX = 1\n{magic}"))
    assert export.main([], root=root) == 2
    err = capsys.readouterr().err
    assert "book/03_c.md, code cell 2, line 3" in err and "IPython magic" in err


def test_magic_in_non_exported_cell_is_fine(book):
    root, write = book
    write("03_c.md", cell("#| default_exp gamma"), cell("%timeit 1"), cell("#| export\nX = 1"))
    assert export.main([], root=root) == 0


def test_two_chapters_one_module_is_an_error(book, capsys):
    root, write = book
    write("01_a.md", cell("#| default_exp same"), cell("#| export\nX = 1"))
    write("02_b.md", cell("#| default_exp same"), cell("#| export\nY = 1"))
    assert export.main([], root=root) == 2
    assert "both export to 'same'" in capsys.readouterr().err


def test_chapter_without_exports_makes_no_module(book):
    root, write = book
    write("intro.md", "# Intro\n\nJust prose.\n")
    assert export.main([], root=root) == 0
    assert sorted(p.name for p in (root / "annotated").iterdir()) == ["__init__.py"]


def test_chapter_missing_from_the_toc_is_an_error(book, capsys):
    """Jupyter Book skips a file that _toc.yml does not list: so must the exporter."""
    root, write = book
    write("01_a.md", cell("#| default_exp alpha"), cell("#| export\nX = 1"))
    write("appendix_extra.md", cell("#| default_exp extra"), cell("#| export\nY = 1"),
          toc=False)
    assert export.main([], root=root) == 2
    err = capsys.readouterr().err
    assert "book/appendix_extra.md is not in _toc.yml" in err
    assert not (root / "annotated").exists(), "nothing is half-written"
    with open(root / "_toc.yml", "a") as f:
        f.write("  - file: book/appendix_extra\n")
    assert export.main([], root=root) == 0  # listed: it exports, with no code change
    assert "'extra'" in (root / "annotated" / "__init__.py").read_text()


def test_toc_entry_without_its_file_is_an_error(book, capsys):
    root, write = book
    write("01_a.md", cell("#| default_exp alpha"), cell("#| export\nX = 1"))
    (root / "book" / "01_a.md").unlink()
    assert export.main(["--check"], root=root) == 2
    err = capsys.readouterr().err
    assert "_toc.yml names book/01_a, but book/01_a.md does not exist" in err


def test_real_package_is_in_sync():
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "tools/export.py", "--check"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_version_and_lazy_modules():
    import annotated

    assert annotated.__version__ == export.read_version()
    assert "attention" in annotated.__all__ and "plumbing" in annotated.__all__
    assert annotated.attention.MultiHeadAttention is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        annotated.nope  # noqa: B018
