"""House rules that a reader sees, checked on every chapter and the generated package.

Code fits the page (88 characters, the width of the book's code boxes), every class is
defined whole, every function is at most 60 lines, the package never reads the profile
behind its caller's back, and the chapters keep their engineering to at most a tenth of
their code (tools/engineering_share.py says how that is measured).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import chapters as book_chapters  # noqa: E402
import engineering_share  # noqa: E402

WIDTH, LONGEST_FUNCTION, ENGINEERING_SHARE = 88, 60, 0.10
PACKAGE = sorted((ROOT / "annotated").glob("*.py"))
NOTEBOOKS = [p.path for p in book_chapters.pages(ROOT) if p.is_notebook]


def _too_long(lines: list[str]) -> list[str]:
    return [f"{i}: {line[:60]}..." for i, line in enumerate(lines, 1) if len(line) > WIDTH]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_code_fits_the_page(path: Path):
    long = []
    for n, cell in enumerate(jupytext.read(path).cells):
        if cell.cell_type == "code":
            long += [f"cell {n}, line {x}" for x in _too_long(cell.source.splitlines())]
    assert not long, f"{path.name}: code lines over {WIDTH} characters:\n" + "\n".join(long)


@pytest.mark.parametrize("path", PACKAGE, ids=lambda p: p.name)
def test_package_code_fits_the_page(path: Path):
    long = _too_long(path.read_text().splitlines())
    assert not long, f"{path.name}: lines over {WIDTH} characters:\n" + "\n".join(long)


def _module_level_attribute_assignments(tree: ast.Module) -> list[str]:
    found = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, ast.Attribute):
                    found.append(f"line {node.lineno}: {ast.unparse(t)} = ...")
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
                getattr(node.value.func, "id", None) == "setattr":
            found.append(f"line {node.lineno}: {ast.unparse(node.value)}")
    return found


@pytest.mark.parametrize("path", PACKAGE, ids=lambda p: p.name)
def test_every_class_is_defined_whole(path: Path):
    found = _module_level_attribute_assignments(ast.parse(path.read_text()))
    assert not found, f"{path.name} assigns to attributes after a definition: {found}"


def test_the_class_check_bites():
    tree = ast.parse("class A:\n    pass\n\n\ndef f(self):\n    pass\n\n\nA.f = f\n")
    assert _module_level_attribute_assignments(tree) == ["line 9: A.f = ..."]


@pytest.mark.parametrize("path", PACKAGE, ids=lambda p: p.name)
def test_functions_are_at_most_60_lines(path: Path):
    tree = ast.parse(path.read_text())
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION]
    assert not long, f"{path.name}: functions over {LONGEST_FUNCTION} lines: {long}"


def test_the_package_reads_the_profile_only_where_it_is_defined():
    """Only plumbing's get_profile/setup_notebook read ANNOTATED_PROFILE; every other
    profile-dependent function of the package is given the profile by its caller."""
    for path in PACKAGE:
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            allowed = path.stem == "plumbing" and fn.name in {"get_profile", "setup_notebook"}
            text = ast.unparse(fn)
            if not allowed:
                assert "ANNOTATED_PROFILE" not in text, f"{path.name}:{fn.name} reads the profile"
            for call in ast.walk(fn):
                name = getattr(getattr(call, "func", None), "id", None)
                if isinstance(call, ast.Call) and name in {"get_profile", "by_profile"} \
                        and not allowed and fn.name != "by_profile":
                    given = [k.arg for k in call.keywords] + ["*"] * len(call.args)
                    wanted = 1 if name == "get_profile" else 4
                    assert "profile" in given or len(call.args) >= wanted, \
                        f"{path.name}:{fn.name} calls {name} without a profile"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem[:2].isdigit()],
                         ids=lambda p: p.stem)
def test_chapters_keep_engineering_to_a_tenth_of_their_code(path: Path):
    engineering, total = engineering_share.share(path)
    assert engineering <= ENGINEERING_SHARE * total, (
        f"{path.name}: {engineering} of {total} code lines are in cells that handle "
        f"checkpoints, DDP, results files or shipped weights ({engineering / total:.1%})")
