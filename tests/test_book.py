"""The reader's book: Colab twins in sync, launch links, bootstrap cells, API pages, book config."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import chapters as book_chapters  # noqa: E402
import colab_twins  # noqa: E402
import sphinx_annotated  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]


def exported_module(chapter: Path) -> str | None:
    match = sphinx_annotated.DEFAULT_EXP.search(chapter.read_text())
    return match.group(1) if match else None


# --------------------------------------------------------------------------- Colab twins
def test_every_chapter_has_an_up_to_date_twin():
    problems = colab_twins.check(colab_twins.build(ROOT), ROOT)
    assert not problems, "\n".join(problems) + "\nrun `make export`"


def test_twins_cover_the_toc_chapters_and_are_output_free():
    chapters = colab_twins.chapters(ROOT)
    assert ROOT / "book/01_attention.md" in chapters
    assert ROOT / "book/results.md" not in chapters
    for chapter in chapters:
        twin = json.loads((ROOT / colab_twins.twin_name(chapter)).read_text())
        code = [c for c in twin["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), chapter.name
        assert twin["metadata"]["accelerator"] == "GPU"
        assert twin["metadata"]["annotated"]["generated_from"] == f"book/{chapter.name}"
        sources = ["".join(c["source"]) for c in code]
        assert sources == [c.source for c in jupytext.read(chapter).cells if c.cell_type == "code"]


@pytest.mark.parametrize("chapter", colab_twins.chapters(ROOT), ids=lambda p: p.stem)
def test_bootstrap_cell_installs_from_the_configured_repository(chapter: Path):
    assert colab_twins.bootstrap_problem(chapter) is None
    first = next(c for c in jupytext.read(chapter).cells if c.cell_type == "code")
    assert f"git+{REPO_URL}" in first.source, f"{chapter.name}: bootstrap does not install from {REPO_URL}"
    assert f'setup_notebook("{chapter.stem}")' in first.source


def test_twin_check_bites(tmp_path: Path):
    """A changed chapter, a missing twin and an orphan twin are each reported."""
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book")
    assert colab_twins.main([], root=tmp_path) == 0
    assert colab_twins.main(["--check"], root=tmp_path) == 0
    chapter = tmp_path / "book/01_attention.md"
    chapter.write_text(chapter.read_text() + "\n```{code-cell} ipython3\nprint('new cell')\n```\n")
    problems = colab_twins.check(colab_twins.build(tmp_path), tmp_path)
    assert any("notebooks/01_attention.ipynb is stale" in p for p in problems)
    (tmp_path / "notebooks/01_attention.ipynb").unlink()
    (tmp_path / "notebooks/old_chapter.ipynb").write_text("{}")
    problems = colab_twins.check(colab_twins.build(tmp_path), tmp_path)
    assert any("01_attention.ipynb is missing" in p for p in problems)
    assert any("orphan: notebooks/old_chapter.ipynb" in p for p in problems)
    assert colab_twins.main(["--check"], root=tmp_path) == 1
    assert colab_twins.main([], root=tmp_path) == 0
    assert not (tmp_path / "notebooks/old_chapter.ipynb").exists()


def test_bootstrap_problem_names_a_chapter_without_bootstrap(tmp_path: Path):
    bad = tmp_path / "bad.md"
    bad.write_text((ROOT / "book/01_attention.md").read_text().replace(
        'setup_notebook("01_attention")', "pass", 1))
    assert "lacks" in colab_twins.bootstrap_problem(bad)


# --------------------------------------------------------------------------- launch buttons
class _App:
    def __init__(self):
        self.config = type("C", (), {})()
        self.config.html_theme_options = {
            "repository_url": REPO_URL, "repository_branch": "main",
            "launch_buttons": {"colab_url": "https://colab.research.google.com"}}


def _context() -> dict:
    colab = {"type": "link", "text": "Colab", "url": "https://colab.research.google.com/github/x/y/blob/main/z.md"}
    return {"header_buttons": [{"label": "download-buttons", "buttons": []},
                               {"label": "launch-buttons", "buttons": [colab]}]}


def test_colab_button_opens_the_twin():
    context = _context()
    sphinx_annotated._fix_launch_buttons(_App(), "book/01_attention", "page.html", context, None)
    url = context["header_buttons"][1]["buttons"][0]["url"]
    org_repo = REPO_URL.split("github.com/")[1]
    assert url == f"https://colab.research.google.com/github/{org_repo}/blob/main/notebooks/01_attention.ipynb"
    assert (ROOT / "notebooks/01_attention.ipynb").exists()


def test_launch_buttons_removed_where_there_is_no_twin():
    for page in ("book/results", "book/api/attention", "book/no_such_chapter"):
        context = _context()
        sphinx_annotated._fix_launch_buttons(_App(), page, "page.html", context, None)
        assert [g["label"] for g in context["header_buttons"]] == ["download-buttons"], page


# --------------------------------------------------------------------------- API reference
def toc_files() -> list[str]:
    return book_chapters.toc_docnames(ROOT)


def test_every_exported_module_has_an_api_page_in_the_toc():
    toc = toc_files()
    for chapter in colab_twins.chapters(ROOT):
        module = exported_module(chapter)
        if module is None:
            continue
        page = ROOT / "book" / "api" / f"{module}.md"
        assert page.exists(), f"{chapter.name} exports annotated.{module} but book/api/{module}.md is missing"
        assert f"book/api/{module}" in toc, f"book/api/{module} is not in _toc.yml"


API_PAGES = sorted(p for p in (ROOT / "book/api").glob("*.md") if p.stem != "index")
PY_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", API_PAGES, ids=lambda p: p.stem)
def test_api_page_documents_and_runs_its_example(page: Path, tmp_path: Path, monkeypatch):
    text = page.read_text()
    assert f".. automodule:: annotated.{page.stem}" in text
    assert (ROOT / "annotated" / f"{page.stem}.py").exists()
    blocks = PY_BLOCK.findall(text)
    assert blocks, "an API page needs a usage example"
    code = "\n".join(blocks)
    assert f"annotated.{page.stem}" in code, "the example must import the module"
    assert "assert" in code, "the example must check a value"
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    exec(compile(code, f"{page.relative_to(ROOT)} (usage example)", "exec"), {"__name__": "__example__"})


def test_chapter_pages_link_to_their_api_page():
    assert sphinx_annotated._module_of("book/01_attention", ROOT) == "attention"
    assert sphinx_annotated._module_of("book/results", ROOT) is None


# --------------------------------------------------------------------------- config
def test_book_config_serves_everything_locally():
    sphinx_config = CONFIG["sphinx"]["config"]
    assert "://" not in sphinx_config["mathjax_path"]
    assert (Path(sphinx_annotated._mathjax_source()) / Path(sphinx_config["mathjax_path"]).name).exists()
    assert "sphinx_annotated" in CONFIG["sphinx"]["local_extensions"]
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    toc = toc_files()
    assert toc[-1] == "book/bibliography", "the bibliography is the last page"
    assert "book/results" in toc


def test_results_page_always_reexecutes():
    meta = jupytext.read(ROOT / "book/results.md").metadata
    assert meta["mystnb"]["execution_mode"] == "force"


def test_results_page_is_reread_on_every_build():
    env = type("Env", (), {"found_docs": {"book/results", "book/01_attention"}})()
    assert sphinx_annotated._always_reread(None, env, set(), set(), set()) == ["book/results"]
    assert sphinx_annotated._always_reread(None, env, set(), {"book/results"}, set()) == []


def test_execution_cache_is_cleared_when_a_dependency_changes(tmp_path: Path, monkeypatch):
    import book_cache

    root = tmp_path / "repo"
    (root / "annotated").mkdir(parents=True)
    (root / "annotated" / "attention.py").write_text("x = 1\n")
    (root / "requirements.txt").write_text("torch==2.14.1\n")
    cache = tmp_path / "_build" / ".jupyter_cache"
    monkeypatch.setenv("ANNOTATED_PROFILE", "cpu")
    monkeypatch.delenv("ANNOTATED_DATA", raising=False)
    assert "started" in book_cache.guard(cache, root)
    (cache / "executed.db").write_text("outputs")
    assert "kept" in book_cache.guard(cache, root) and (cache / "executed.db").exists()
    (root / "annotated" / "attention.py").write_text("x = 2\n")  # the package changed
    assert "cleared" in book_cache.guard(cache, root) and not (cache / "executed.db").exists()
    (cache / "executed.db").write_text("outputs")
    monkeypatch.setenv("ANNOTATED_PROFILE", "full")  # another profile, other numbers
    assert "cleared" in book_cache.guard(cache, root) and not (cache / "executed.db").exists()


# --------------------------------------------------------------------------- charts
def test_book_kernels_draw_altair_charts_with_the_bundled_vega(monkeypatch):
    """The build's kernels (and only they) render charts for the site's own Vega."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("PYTHONSTARTUP", raising=False)  # restored after the test
    monkeypatch.delenv("ANNOTATED_BOOK_BUILD", raising=False)
    sphinx_annotated._on_config_inited(None, None)  # what the build does before kernels
    startup = Path(os.environ["PYTHONSTARTUP"])
    assert startup == ROOT / "tools" / "book_kernel_startup.py"
    cells = [
        "import altair as alt, pandas as pd\n"
        "alt.Chart(pd.DataFrame({'x': [1, 2]})).mark_point().encode(x='x:Q')",
        "import sys\nprint(sorted(n for n in dir() if 'book' in n),"
        f" {str(ROOT / 'tools')!r} in sys.path, alt.renderers.active)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    chart = next(o for o in nb.cells[0].outputs if "data" in o)["data"]
    html = chart["text/html"]
    assert 'class="annotated-vega"' in html and "vegaEmbed(" in html
    assert nb.cells[1].outputs[0]["text"].strip() == "[] False annotated-book"


def test_the_package_carries_no_book_build_code():
    import altair as alt

    from annotated import plumbing

    before = alt.renderers.active
    plumbing.setup_notebook()
    assert alt.renderers.active == before, "setup_notebook leaves the renderer alone"
    assert not hasattr(plumbing, "book_vega_renderer")
    generated = "".join(p.read_text() for p in (ROOT / "annotated").glob("*.py"))
    assert "vegaEmbed" not in generated and "book_altair" not in generated


# --------------------------------------------------------------------------- full-profile runs
def test_make_full_refuses_an_unknown_chapter_by_name():
    import subprocess

    run = subprocess.run(["make", "-s", "check-chapter", "CHAPTER=05_transformr"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert "got '05_transformr'; chapters are: 01_attention" in run.stderr and "05_transformer" in run.stderr
    ok = subprocess.run(["make", "-s", "check-chapter", "CHAPTER=05_transformer"], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    vit = subprocess.run(["make", "-s", "check-chapter", "CHAPTER=06_vit", "NPROC=2"], cwd=ROOT,
                         capture_output=True, text=True)
    assert vit.returncode == 2 and "NPROC=2: 06_vit trains in one process" in vit.stderr


def test_run_chapter_writes_one_notebook_per_torchrun_process():
    import run_chapter

    assert run_chapter.output_path("_build/full/05.ipynb", 0) == Path("_build/full/05.ipynb")
    assert run_chapter.output_path("_build/full/05.ipynb", 3) == Path("_build/full/05.rank3.ipynb")
