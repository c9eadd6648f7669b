"""Generate the Colab twins of the chapters: ``notebooks/<chapter>.ipynb`` (and check them).

Colab opens ``.ipynb`` files only, and the chapters are Jupytext MyST markdown
(``book/*.md``). Every chapter and appendix of the book (``tools/chapters.py``:
the numbered chapters and ``book/appendix_*`` notebooks that ``_toc.yml`` lists;
not the results page, which reads the repository's ``results/``) gets an
output-free twin here, written from the chapter by jupytext with deterministic
cell ids, so the twin changes only when the chapter does. The book's Colab
button opens the twin (``tools/sphinx_annotated.py``); ``tools/export.py`` runs
this too. The twin asks Colab for a GPU runtime.

Every chapter's first code cell (hidden in the book) is the bootstrap, and it is
written here, from one template and ``_config.yml``'s ``repository`` (its ``url``
and ``branch``, the same ones the Colab button opens): it installs the package
from that branch when this distribution (``annotated-attention-book``, not any
module called ``annotated``) is missing, says in one sentence what to do when the
install fails, then calls ``setup_notebook("<chapter>")`` (the plumbing appendix:
profile, run time on this device, where the work goes, shipped files). Writing
the twins rewrites the bootstrap cells of ``book/*.md`` that differ; ``--check``
reports them.

Usage::

    python tools/colab_twins.py            # write notebooks/
    python tools/colab_twins.py --check    # exit 1 if a twin is stale, missing or orphaned
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import re
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapters as book_chapters  # noqa: E402  (tools/chapters.py)

ROOT = Path(__file__).resolve().parent.parent
OUT = "notebooks"
BOOTSTRAP_MARKERS = ("pip", "install", "setup_notebook(")
DIST = "annotated-attention-book"
BOOTSTRAP = """\
# Bootstrap (hidden in the book; written by tools/colab_twins.py from _config.yml):
# install this book's package from the branch the Colab link opened unless it is
# here; then choose the profile, say its run time here and where work goes.
import importlib, importlib.metadata, subprocess, sys
# the repository and, after the @, the branch that the Colab link opens
SOURCE = "git+{url}@{branch}"
try:  # this book's distribution, not just any module called `annotated`
    importlib.metadata.version("{dist}")
    import annotated.plumbing
except (importlib.metadata.PackageNotFoundError, ImportError):
    pip = [sys.executable, "-m", "pip", "install", "-q", SOURCE]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise SystemExit(
            f"Could not install the book's package from {{SOURCE}}: {{why}}. Check "
            "that this runtime is online and that the repository and branch (after "
            "the @) exist, then run this cell again.")
    importlib.invalidate_caches()
    sys.modules.pop("annotated", None)
from annotated.plumbing import setup_notebook
setup_notebook("{chapter}")"""
# The first code cell of a chapter, when it is a hidden one: its body is group 2.
FIRST_HIDDEN = re.compile(r"(```\{code-cell\} ipython3\n:tags: \[remove-cell\]\n\n)(.*?)(\n```\n)",
                          re.DOTALL)


def repository(root: Path = ROOT) -> tuple[str, str]:
    """The repository's address and branch, from _config.yml (its one source)."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    repo = config["repository"]
    return repo["url"].rstrip("/"), str(repo.get("branch", "main"))


def bootstrap_source(chapter: Path, root: Path = ROOT) -> str:
    """The text of the chapter's bootstrap cell."""
    url, branch = repository(root)
    return BOOTSTRAP.format(url=url, branch=branch, dist=DIST, chapter=chapter.stem)


def with_bootstrap(chapter: Path, root: Path = ROOT) -> str | None:
    """The chapter's text with its bootstrap cell as generated (None: it has none)."""
    text = chapter.read_text()
    match = FIRST_HIDDEN.search(text)
    if match is None or "```{code-cell}" in text[:match.start()]:
        return None
    return text[:match.start(2)] + bootstrap_source(chapter, root) + text[match.end(2):]


def sync_bootstraps(root: Path = ROOT, write: bool = True) -> list[str]:
    """Rewrite (or, with write=False, list) the chapters whose bootstrap is stale."""
    stale = []
    for chapter in chapters(root):
        text = with_bootstrap(chapter, root)
        if text is not None and text != chapter.read_text():
            stale.append(chapter.relative_to(root).as_posix())
            if write:
                chapter.write_text(text)
    verb = "rewrote the bootstrap cell of" if write else "stale bootstrap cell in"
    return [f"{verb} {name}" for name in stale]


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


def bootstrap_problem(chapter: Path, root: Path | None = None) -> str | None:
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
    root = root or chapter.parent.parent
    if (root / "_config.yml").exists() and first.source != bootstrap_source(chapter, root):
        return f"{chapter.name}: the bootstrap cell is not the generated one (run `make export`)"
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
    if args.check:
        files = build(root)
        problems = sync_bootstraps(root, write=False) + check(files, root)
        problems += [p for ch in chapters(root) if (p := bootstrap_problem(ch, root))]
        if problems:
            print("\n".join(problems))
            print("notebooks/ is out of sync with book/: run `make export`", file=sys.stderr)
            return 1
        print(f"notebooks/ is in sync with book/ ({len(files)} Colab twins)")
        return 0
    changed = sync_bootstraps(root)
    for line in changed + write(build(root), root) or ["notebooks/ already up to date"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
