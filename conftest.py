"""Notebook tests: every chapter listed in _toc.yml is re-executed by nbval.

nbval only collects ``.ipynb`` files; our chapters are Jupytext MyST markdown.
This collector hands each notebook named in ``_toc.yml`` (``tools/chapters.py``)
to nbval, reading it with ``jupytext.read``, so a new chapter is tested as soon
as it is in the table of contents. Run with
``pytest --nbval-lax --nbval-current-env`` (``make test``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
import chapters as book_chapters  # noqa: E402  (tools/chapters.py: the pages)

CHAPTER_BUDGET_S = 60.0  # each chapter's smoke run (issue: ≤ 60 s)

# Set before any kernel starts: kernels inherit the environment.
os.environ.setdefault("ANNOTATED_PROFILE", "smoke")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("ANNOTATED_RESULTS", tempfile.mkdtemp(prefix="annotated-results-"))
os.environ.setdefault("ANNOTATED_CHECKPOINTS", tempfile.mkdtemp(prefix="annotated-ckpt-"))


def pytest_collect_file(file_path: Path, parent):
    opt = parent.config.option
    if not (getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False)):
        return None
    if file_path.suffix != ".md":
        return None
    if file_path.resolve() not in {page.path for page in book_chapters.notebooks(ROOT)}:
        return None  # not in _toc.yml, or a plain page with nothing to run
    return MarkdownNotebook.from_parent(parent, path=file_path)


from nbval import plugin as _nbval  # noqa: E402


class MarkdownNotebook(_nbval.IPyNbFile):
    """nbval's notebook collector, reading a Jupytext markdown chapter instead of .ipynb."""

    def collect(self):
        real_read = _nbval.nbformat.read
        _nbval.nbformat.read = lambda fp, as_version=4: jupytext.read(fp)
        try:
            items = list(super().collect())
        finally:
            _nbval.nbformat.read = real_read
        return items


_chapter_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".md"):
        _chapter_seconds[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _chapter_seconds:
        return
    tr = terminalreporter
    tr.section("chapter times (smoke profile, kernel start included)")
    for path, seconds in sorted(_chapter_seconds.items(), key=lambda kv: -kv[1]):
        flag = "  OVER BUDGET" if seconds > CHAPTER_BUDGET_S else ""
        tr.write_line(f"{seconds:7.1f} s  {path}{flag}")
    tr.write_line(f"{sum(_chapter_seconds.values()):7.1f} s  all chapters "
                  f"(budget {CHAPTER_BUDGET_S:.0f} s each)")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


