"""Generate the Colab twins of the chapters: ``notebooks/<chapter>.ipynb`` (and check them).

Colab opens ``.ipynb`` files only, and the chapters are Jupytext MyST markdown
(``book/*.md``). Every chapter and appendix of the book (``tools/chapters.py``:
the numbered chapters and ``book/appendix_*`` notebooks that ``_toc.yml`` lists;
not the results page, which reads the repository's ``results/``) gets an
output-free twin here, written from the chapter by jupytext with deterministic
cell ids, so the twin changes only when the chapter does. The book's Colab
button opens the twin (``tools/sphinx_annotated.py``); ``tools/export.py`` runs
this too. The twin asks Colab for a GPU runtime; the chapter's first (hidden in
the book) cell installs the package and picks the ``full`` profile on a GPU,
``cpu`` otherwise.

Usage::

    python tools/colab_twins.py            # write notebooks/
    python tools/colab_twins.py --check    # exit 1 if a twin is stale, missing or orphaned
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import sys
from pathlib import Path

import jupytext
import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapters as book_chapters  # noqa: E402  (tools/chapters.py)

ROOT = Path(__file__).resolve().parent.parent
OUT = "notebooks"
BOOTSTRAP_MARKERS = ("pip", "install", "setup_notebook()")


def chapters(root: Path = ROOT) -> list[Path]:
    """The pages that get a twin: chapters and appendices (``tools/chapters.py``)."""
    return [page.path for page in book_chapters.chapters(root)]


def twin_name(chapter: Path) -> str:
    return f"{OUT}/{chapter.stem}.ipynb"


def render_twin(chapter: Path, root: Path = ROOT) -> str:
    """The text of the chapter's output-free .ipynb twin."""
    nb = jupytext.read(chapter)
    rel = chapter.relative_to(root).as_posix()
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["accelerator"] = "GPU"  # Colab: ask for a GPU runtime (the full profile)
    nb.metadata["colab"] = {"name": chapter.stem + ".ipynb", "provenance": []}
    nb.metadata["annotated"] = {"generated_from": rel, "by": "tools/colab_twins.py; do not edit"}
    for number, cell in enumerate(nb.cells):
        digest = hashlib.sha1(f"{rel}:{number}:{cell.source}".encode()).hexdigest()[:8]
        cell["id"] = f"c{number:03d}-{digest}"
        if cell.cell_type == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nbformat.writes(nb) + "\n"


def bootstrap_problem(chapter: Path) -> str | None:
    """Why the chapter's first code cell is not the install-and-setup bootstrap (None if it is)."""
    nb = jupytext.read(chapter)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code:
        return f"{chapter.name}: no code cell"
    first = code[0]
    missing = [m for m in BOOTSTRAP_MARKERS if m not in first.source]
    if missing:
        return f"{chapter.name}: the first code cell is not the bootstrap cell (lacks {missing})"
    if "remove-cell" not in first.metadata.get("tags", []):
        return f"{chapter.name}: the bootstrap cell is not tagged remove-cell"
    return None


def build(root: Path = ROOT) -> dict[str, str]:
    return {twin_name(ch): render_twin(ch, root) for ch in chapters(root)}


def check(files: dict[str, str], root: Path = ROOT) -> list[str]:
    """Problems: stale or missing twins (with a diff) and orphans no chapter produces."""
    problems: list[str] = []
    for name, text in files.items():
        path = root / name
        old = path.read_text() if path.exists() else ""
        if old != text:
            diff = list(difflib.unified_diff(old.splitlines(keepends=True), text.splitlines(keepends=True),
                                             f"{name} (on disk)", f"{name} (from book/)", n=1))
            problems.append(f"{name} is {'stale' if old else 'missing'}\n" + "".join(diff[:40]))
    present = {p.relative_to(root).as_posix() for p in (root / OUT).glob("*.ipynb")}
    problems += [f"orphan: {name} is produced by no chapter in _toc.yml"
                 for name in sorted(present - set(files))]
    return problems


def write(files: dict[str, str], root: Path = ROOT) -> list[str]:
    (root / OUT).mkdir(exist_ok=True)
    changed = []
    for name, text in files.items():
        path = root / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(f"wrote {name}")
    for path in (root / OUT).glob("*.ipynb"):
        if path.relative_to(root).as_posix() not in files:
            path.unlink()
            changed.append(f"removed orphan {path.relative_to(root).as_posix()}")
    return changed


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if notebooks/ is out of sync")
    args = parser.parse_args(argv)
    files = build(root)
    if args.check:
        problems = check(files, root)
        problems += [p for ch in chapters(root) if (p := bootstrap_problem(ch))]
        if problems:
            print("\n".join(problems))
            print("notebooks/ is out of sync with book/: run `make export`", file=sys.stderr)
            return 1
        print(f"notebooks/ is in sync with book/ ({len(files)} Colab twins)")
        return 0
    for line in write(files, root) or ["notebooks/ already up to date"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
