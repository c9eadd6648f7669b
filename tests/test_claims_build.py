"""A false claim fails the cpu build, naming it, through the path the book executes chapters.

The book runs each chapter as a notebook in a fresh kernel (``tools/run_chapter.py``,
nbclient; Jupyter Book's own execution goes through the same nbclient). A tiny MyST
notebook with one false ``check_claim`` must stop that execution with a ClaimError
that names the claim; with ``ANNOTATED_CLAIMS=warn`` the same notebook builds and
shows the warning in the cell's output, and the ledger records the claim as failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import run_chapter  # noqa: E402  (tools/run_chapter.py)

CLAIM = "the tiny model beats the big one"
NOTEBOOK = f"""---
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

# A chapter with a false claim

```{{code-cell}} ipython3
from annotated.plumbing import check_claim, get_profile

tiny, big = 12.5, 30.1
check_claim("02_translation", {CLAIM!r}, tiny > big, f"tiny {{tiny}} < big {{big}} BLEU",
            profile=get_profile())
print("after the claim")
```
"""


@pytest.fixture
def chapter(tmp_path: Path, monkeypatch) -> Path:
    source = tmp_path / "99_false_claim.md"
    source.write_text(NOTEBOOK)
    monkeypatch.setenv("ANNOTATED_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ANNOTATED_PROFILE", "cpu")
    monkeypatch.delenv("ANNOTATED_CLAIMS", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))  # this checkout's package
    return source


def _printed(notebook: Path) -> str:
    """What the notebook's cells printed (stdout/stderr streams; not tracebacks)."""
    nb = nbformat.read(notebook, as_version=4)
    return "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream")


def test_a_false_claim_fails_the_cpu_build_naming_the_claim(chapter: Path, tmp_path: Path):
    target = tmp_path / "out.ipynb"
    with pytest.raises(CellExecutionError) as failure:
        run_chapter.main(str(chapter), str(target), timeout=120)
    message = str(failure.value)
    assert "ClaimError" in message and CLAIM in message
    assert "tiny 12.5 < big 30.1 BLEU" in message  # with its evidence
    assert "ANNOTATED_CLAIMS=warn" in message  # and the way out
    assert "after the claim" not in _printed(target)  # the cell stopped there
    # the ledger records the failure (the results page shows it), not a pass
    ledger = json.loads((tmp_path / "results" / "claims" / "02_translation.cpu.json")
                        .read_text())
    assert [(c["claim"], c["holds"], c["enforced"]) for c in ledger["claims"]] == [
        (CLAIM, False, True)]


def test_annotated_claims_warn_builds_it_with_a_visible_warning(chapter: Path, tmp_path: Path,
                                                                 monkeypatch):
    monkeypatch.setenv("ANNOTATED_CLAIMS", "warn")
    target = tmp_path / "out.ipynb"
    run_chapter.main(str(chapter), str(target), timeout=120)
    shown = _printed(target)
    assert f"✗ DOES NOT HOLD in this run (cpu profile): {CLAIM}" in shown
    assert "after the claim" in shown
    ledger = json.loads((tmp_path / "results" / "claims" / "02_translation.cpu.json").read_text())
    assert [(c["claim"], c["holds"], c["enforced"]) for c in ledger["claims"]] == [
        (CLAIM, False, False)]
