"""The one definition of the book's chapters, read from ``_toc.yml``.

Every tool that needs to know "the chapters" asks this module: the exporter
(``tools/export.py``), the Colab twins (``tools/colab_twins.py``), the results
page (``tools/results_page.py``), the sphinx extension
(``tools/sphinx_annotated.py``), the notebook tests (``conftest.py``) and the
Makefile (``python tools/chapters.py --list chapters``).

A page of the book is a file named in ``_toc.yml`` (its root first, then every
``file:`` in order). Its kind follows from its name:

* a **chapter** is a numbered page directly under ``book/``: ``book/01_attention``;
* an **appendix** is ``book/appendix_<name>``;
* everything else is a plain **page** (the introduction, the results page,
  the bibliography, the API reference under ``book/api/``).

A page is a **notebook** when its front matter names a kernel; a notebook
**exports** ``annotated.<module>`` when it holds a ``#| default_exp <module>``
cell. A new chapter or appendix needs no code change here: listing it in
``_toc.yml`` is enough. A ``.md`` file under ``book/`` that the table of
contents does not name is neither built nor tested: :func:`problems` reports it.

Usage::

    python tools/chapters.py                  # every page: kind, notebook, module
    python tools/chapters.py --list chapters  # names, one per line (for the Makefile)
    python tools/chapters.py --check          # exit 1 if the toc and book/ disagree
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TOC = "_toc.yml"
BOOK = "book"
NUMBERED = re.compile(r"^\d+_")
APPENDIX = re.compile(r"^appendix_")
DEFAULT_EXP = re.compile(r"^#\|\s*default_exp\s+(\S+)\s*$", re.MULTILINE)
KINDS = ("chapter", "appendix", "page")
# Chapters whose training runs data-parallel under torchrun (`make full NPROC=N`).
DATA_PARALLEL = ("02_translation", "03_seq2seq", "05_transformer")


@dataclass(frozen=True)
class Page:
    """One page of the book, as the table of contents names it."""

    docname: str  # repository path without suffix, as in _toc.yml: "book/01_attention"
    path: Path  # the absolute path of its .md file

    @property
    def name(self) -> str:
        """The file's stem: "01_attention" (results files and Colab twins use it)."""
        return self.path.stem

    @property
    def kind(self) -> str:
        """'chapter', 'appendix' or 'page' (see the module docstring)."""
        if self.docname.count("/") == 1 and self.docname.startswith(BOOK + "/"):
            if NUMBERED.match(self.name):
                return "chapter"
            if APPENDIX.match(self.name):
                return "appendix"
        return "page"

    @property
    def is_notebook(self) -> bool:
        """True when the page exists and its front matter names a kernel."""
        if not self.path.exists():
            return False
        text = self.path.read_text()
        return text.startswith("---") and "kernelspec:" in text.split("\n---", 1)[0]

    @property
    def module(self) -> str | None:
        """The module the page exports to (its `#| default_exp`), or None."""
        if not self.path.exists():
            return None
        match = DEFAULT_EXP.search(self.path.read_text())
        return match.group(1) if match else None


def toc_docnames(root: Path = ROOT) -> list[str]:
    """Every file named in _toc.yml, root first, in order, without the .md suffix."""
    toc = yaml.safe_load((root / TOC).read_text())
    found = [toc["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for key, value in node.items():
                if key != "file":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [name[: -len(".md")] if name.endswith(".md") else name for name in found]


def pages(root: Path = ROOT, kinds: tuple[str, ...] = KINDS) -> list[Page]:
    """The pages of the book of the given kinds, in table-of-contents order."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown page kind(s) {sorted(unknown)}; kinds are {KINDS}")
    found = [Page(name, root / f"{name}.md") for name in toc_docnames(root)]
    return [page for page in found if page.kind in kinds]


def chapters(root: Path = ROOT) -> list[Page]:
    """The numbered chapters and the appendices: the notebooks that teach and export."""
    return [p for p in pages(root, ("chapter", "appendix")) if p.is_notebook]


def notebooks(root: Path = ROOT) -> list[Page]:
    """Every page that is a notebook (the notebook tests execute each one)."""
    return [page for page in pages(root) if page.is_notebook]


def modules(root: Path = ROOT) -> dict[str, Page]:
    """Each exported module name and the page that exports it, in toc order."""
    return {page.module: page for page in notebooks(root) if page.module is not None}


def problems(root: Path = ROOT) -> list[str]:
    """Disagreements between _toc.yml and book/, one sentence each (empty when none)."""
    listed = pages(root)
    out = [f"_toc.yml names {p.docname}, but {p.path.relative_to(root)} does not exist"
           for p in listed if not p.path.exists()]
    known = {p.path.resolve() for p in listed}
    for path in sorted((root / BOOK).rglob("*.md")):
        if path.resolve() not in known and ".ipynb_checkpoints" not in path.parts:
            rel = path.relative_to(root).as_posix()
            out.append(f"{rel} is not in _toc.yml, so it is neither built, tested nor "
                       f"exported: add `- file: {rel[: -len('.md')]}` to _toc.yml")
    for page in listed:
        if page.module is not None and page.kind == "page":
            out.append(f"{page.docname} exports annotated.{page.module} but is "
                       "neither a numbered chapter (book/NN_name) nor an appendix "
                       "(book/appendix_name)")
    return out


LISTS = {
    "chapters": lambda root: [p.name for p in chapters(root) if p.kind == "chapter"],
    "appendices": lambda root: [p.name for p in chapters(root) if p.kind == "appendix"],
    "notebooks": lambda root: [p.docname for p in notebooks(root)],
    "modules": lambda root: list(modules(root)),
    "data-parallel": lambda root: list(DATA_PARALLEL),
}


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--list", choices=sorted(LISTS), help="print one list")
    parser.add_argument("--check", action="store_true", help="exit 1 on a toc problem")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(LISTS[args.list](root)))
        return 0
    if args.check:
        found = problems(root)
        agree = f"_toc.yml and {BOOK}/ agree ({len(pages(root))} pages)"
        print("\n".join(found) or agree)
        return 1 if found else 0
    for page in pages(root):
        notebook = "notebook" if page.is_notebook else "-"
        module = f"annotated.{page.module}" if page.module else "-"
        print(f"{page.docname:<28} {page.kind:<9} {notebook:<9} {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
