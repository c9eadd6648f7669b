"""Export the book's chapters to the `annotated` package (and check it is in sync).

Rules (see DESIGN.md, "The literate loop"):

* the chapters are the notebooks ``_toc.yml`` lists (``tools/chapters.py``); a
  ``.md`` file under ``book/`` that it does not list is an error;
* a chapter declares its module once, in a code cell whose first line is
  ``#| default_exp <module>``;
* every code cell whose first line is ``#| export`` is appended, in notebook
  order, to ``annotated/<module>.py``, preceded by a marker comment naming the
  chapter, the cell number and the section it sits in;
* each generated file starts with a banner saying it is generated and from where;
* ``annotated/__init__.py`` is generated too (version from ``pyproject.toml``);
* a ``.py`` file in ``annotated/`` that no chapter produces is an orphan and is
  removed (``--check`` reports it);
* exporting without a ``#| default_exp`` or exporting a cell that holds an
  IPython magic (``%...``, ``!...``) is an error naming the chapter and cell.

Usage::

    python tools/export.py            # write annotated/
    python tools/export.py --check    # exit 1 and print a diff if annotated/ is stale

Both also write / check the chapters' Colab twins ``notebooks/*.ipynb``
(``tools/colab_twins.py``).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jupytext

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapters as book_chapters  # noqa: E402  (tools/chapters.py)
import colab_twins  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "annotated"

DEFAULT_EXP = re.compile(r"^#\|\s*default_exp\s+(\S+)\s*$")
EXPORT = re.compile(r"^#\|\s*export\s*$")
MODULE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
MAGIC = re.compile(r"^\s*(%|!)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.MULTILINE)

MARKER_WIDTH = 88  # the book's code width: the package reads like the chapters
BANNER = (
    "# GENERATED FILE, DO NOT EDIT. It is exported from {source}\n"
    "# by tools/export.py; change the chapter and run `make export` instead.\n"
)


class ExportError(Exception):
    """A chapter breaks one of the export rules."""


@dataclass
class Module:
    """One generated module: its name, its chapter and its exported cells."""

    name: str
    source: str  # chapter path relative to the repository root
    doc: str  # first line of the chapter's title, used as the module docstring
    blocks: list[str]


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip() if text.strip() else ""


def _body_after_directive(source: str) -> str:
    return source.split("\n", 1)[1] if "\n" in source else ""


def parse_chapter(path: Path, root: Path = ROOT) -> Module | None:
    """Read one chapter and return the module it exports (None if it exports nothing)."""
    rel = path.relative_to(root).as_posix()
    nb = jupytext.read(path)
    module_name: str | None = None
    title = ""
    section = ""
    blocks: list[tuple[int, str, str]] = []  # (code cell number, section, code)
    number = 0  # code cells are numbered from 1, markdown cells are not counted
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = HEADING.findall(cell.source)
            if headings:
                if not title:
                    title = headings[0][1]
                section = headings[-1][1]
            continue
        if cell.cell_type != "code":
            continue
        number += 1
        first = _first_line(cell.source)
        match = DEFAULT_EXP.match(first)
        if match:
            name = match.group(1)
            if module_name is not None:
                raise ExportError(
                    f"{rel}, code cell {number}: a second '#| default_exp {name}' "
                    f"(the chapter already exports to '{module_name}'); one module per chapter"
                )
            if not MODULE_NAME.match(name):
                raise ExportError(
                    f"{rel}, code cell {number}: '{name}' is not a valid module name "
                    "(lowercase letters, digits and underscores)"
                )
            module_name = name
            continue
        if not EXPORT.match(first):
            continue
        code = _body_after_directive(cell.source).strip("\n")
        for line_no, line in enumerate(code.split("\n"), start=2):
            if MAGIC.match(line):
                raise ExportError(
                    f"{rel}, code cell {number}, line {line_no}: an exported cell holds the "
                    f"IPython magic {line.strip()!r}; exported code must be plain Python"
                )
        blocks.append((number, section, code))
    if blocks and module_name is None:
        raise ExportError(
            f"{rel}: code cell {blocks[0][0]} is marked '#| export' but the chapter declares no "
            "module; add a code cell '#| default_exp <module>' before it"
        )
    if module_name is None:
        return None
    rendered = [marker(rel, number, sec) + "\n" + code + "\n" for number, sec, code in blocks]
    return Module(module_name, rel, title, rendered)


def marker(rel: str, number: int, section: str | None) -> str:
    """The comment above an exported cell: chapter, cell number and section.

    The section goes on a line of its own when one line would pass MARKER_WIDTH.
    """
    line = f"# %% {rel}, code cell {number}"
    if not section:
        return line
    if len(f"{line} ({section})") <= MARKER_WIDTH:
        return f"{line} ({section})"
    return line + "\n# (" + section + ")"


def render_module(module: Module) -> str:
    """The text of ``annotated/<module>.py``."""
    doc = module.doc.replace('"""', "'''") or module.name
    line = f'"""{doc} (from {module.source})."""'
    if len(line) > MARKER_WIDTH:  # the title on its own line, the source below it
        line = f'"""{doc}\n\nFrom {module.source}.\n"""'
    head = BANNER.format(source=module.source) + line + "\n"
    return head + "".join("\n\n" + block for block in module.blocks)


def read_version(root: Path = ROOT) -> str:
    """The package version, whose single source is ``pyproject.toml``."""
    with open(root / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def render_init(modules: list[Module], version: str,
                repository: tuple[str, str] = ("", "main")) -> str:
    """The text of ``annotated/__init__.py``: version, module list, lazy submodule access.

    It also records the repository's address and branch (``_config.yml``): a copy of the
    package outside the repository fetches the shipped weights from there.
    """
    listing = "".join(f"    {m.name:<16} {m.source}\n" for m in modules)
    names = "".join(f"    {m.name!r},\n" for m in modules)
    return (
        BANNER.format(source="book/*.md")
        + '"""The annotated attention book as a package.\n\nModules and the chapters they come from:\n\n'
        + listing
        + (f"\nAn installed package has no book/ folder: the chapters are online at\n"
           f"    {repository[0]}/tree/{repository[1]}/book\n" if repository[0] else "")
        + '"""\n\n'
        + "import importlib\n\n"
        + f'__version__ = "{version}"\n'
        + "# _config.yml: where the book lives, and the branch its Colab links open\n"
        + f'__repository__ = "{repository[0]}"\n'
        + f'__branch__ = "{repository[1]}"\n'
        + f"__all__ = [\n{names}]\n\n\n"
        + "def __getattr__(name: str):\n"
        + '    """Import a submodule on first use: `annotated.attention`."""\n'
        + "    if name in __all__:\n"
        + '        return importlib.import_module(f"{__name__}.{name}")\n'
        + '    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")\n'
    )


def chapters(root: Path = ROOT) -> list[Path]:
    """The notebooks of the book, in table-of-contents order (``tools/chapters.py``).

    A ``.md`` file under ``book/`` that ``_toc.yml`` does not name, or a name there
    without its file, is an error: the book would not build or test what we export.
    """
    found = book_chapters.problems(root)
    if found:
        raise ExportError("_toc.yml and book/ disagree:\n  " + "\n  ".join(found))
    return [page.path for page in book_chapters.notebooks(root)]


def build(root: Path = ROOT) -> dict[str, str]:
    """Map each file name under ``annotated/`` to the text it must hold."""
    modules: list[Module] = []
    owner: dict[str, str] = {}
    for path in chapters(root):
        module = parse_chapter(path, root)
        if module is None:
            continue
        if module.name in owner:
            raise ExportError(
                f"{module.source} and {owner[module.name]} both export to '{module.name}'"
            )
        if module.name == "__init__":
            raise ExportError(f"{module.source}: '__init__' is generated, not exported to")
        owner[module.name] = module.source
        modules.append(module)
    repository = colab_twins.repository(root) if (root / "_config.yml").exists() else ("", "main")
    files = {f"{m.name}.py": render_module(m) for m in modules}
    files["__init__.py"] = render_init(modules, read_version(root), repository)
    return files


def stale(files: dict[str, str], root: Path = ROOT) -> tuple[list[str], list[str]]:
    """Return (diff lines for files that differ, orphan file names)."""
    package = root / PACKAGE
    diffs: list[str] = []
    for name, text in files.items():
        path = package / name
        old = path.read_text() if path.exists() else ""
        if old != text:
            diffs.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"{PACKAGE}/{name} (on disk)",
                    tofile=f"{PACKAGE}/{name} (from book/)",
                )
            )
    present = {p.name for p in package.glob("*.py")} if package.exists() else set()
    orphans = sorted(present - set(files))
    return diffs, orphans


def write(files: dict[str, str], root: Path = ROOT) -> list[str]:
    """Write the package, remove orphans; return what changed."""
    package = root / PACKAGE
    package.mkdir(exist_ok=True)
    changed = []
    for name, text in files.items():
        path = package / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(f"wrote {PACKAGE}/{name}")
    for orphan in stale(files, root)[1]:
        (package / orphan).unlink()
        changed.append(f"removed orphan {PACKAGE}/{orphan}")
    return changed


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if annotated/ is stale")
    args = parser.parse_args(argv)
    try:
        files = build(root)
    except ExportError as err:
        print(f"export error: {err}", file=sys.stderr)
        return 2
    if args.check:
        diffs, orphans = stale(files, root)
        if diffs or orphans:
            sys.stdout.writelines(diffs)
            for orphan in orphans:
                print(f"orphan: {PACKAGE}/{orphan} is produced by no chapter")
            print("annotated/ is out of sync with book/: run `make export`", file=sys.stderr)
            return 1
        print(f"annotated/ is in sync with book/ ({len(files)} files)")
        return _colab_twins(check=True, root=root)
    for line in write(files, root) or ["annotated/ already up to date"]:
        print(line)
    return _colab_twins(check=False, root=root)


def _colab_twins(check: bool, root: Path) -> int:
    """Also write (or check) the chapters' Colab twins notebooks/*.ipynb (tools/colab_twins.py)."""
    return colab_twins.main(["--check"] if check else [], root=root)


if __name__ == "__main__":
    sys.exit(main())
