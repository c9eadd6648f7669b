"""The browser check (tools/check_html.py) on a tiny site: a good page passes, each broken one fails.

The site is built here from the same parts the book uses: MathJax from the
django-static-mathjax wheel, the Vega bundle of tools/sphinx_annotated.py, two
altair charts rendered by tools/book_altair.py's book_vega_renderer, a PNG figure.
Each bad page differs from the good one by exactly one defect.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import altair as alt
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_html  # noqa: E402
import sphinx_annotated  # noqa: E402
from book_altair import book_vega_renderer  # noqa: E402

needs_chromium = pytest.mark.skipif(check_html.find_chromium() is None,
                                    reason="Chromium is not installed (make chromium installs it)")


def chart_html(title: str) -> str:
    frame = pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.5]})
    chart = alt.Chart(frame, title=title).mark_line().encode(x="step:Q", y="loss:Q", tooltip=["loss"])
    return book_vega_renderer(chart.to_dict())["text/html"]


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
{vega}
{mathjax}
</head><body><main><article class="bd-article">
<h1 id="top">{title}</h1>
<p>Inline math <span class="math notranslate nohighlight">\\(a^2 + b^2 = c^2\\)</span> and display:</p>
<div class="math notranslate nohighlight">\\[\\sigma(x)_i = \\frac{{e^{{x_i}}}}{{\\sum_j e^{{x_j}}}}\\]</div>
<div class="cell_output"><img src="{image}" alt="a figure"></div>
<div class="cell_output">{chart1}</div>
<div class="cell_output">{chart2}</div>
<p><a href="{link}">the next page</a> <a href="https://example.org/paper">a paper</a></p>
{extra}
</article></main></body></html>
"""
MATHJAX = '<script defer src="_static/mathjax/tex-svg.js"></script>'
VEGA = '<script src="_static/vega/vega-bundle.js"></script>'


def page(title: str, **changes: str) -> str:
    parts = dict(title=title, mathjax=MATHJAX, vega=VEGA, image="fig.png", link="target.html#section-2",
                 chart1=chart_html("first chart"), chart2=chart_html("second chart"), extra="")
    parts.update(changes)
    return PAGE.format(**parts)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = tmp_path_factory.mktemp("site")
    (root / "_static" / "vega").mkdir(parents=True)
    (root / "_static" / "vega" / "vega-bundle.js").write_text(sphinx_annotated.vega_bundle())
    os.symlink(sphinx_annotated._mathjax_source(), root / "_static" / "mathjax")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("x")
    fig.savefig(root / "fig.png")
    plt.close(fig)
    (root / "target.html").write_text('<!doctype html><html><body><h2 id="section-2">Two</h2></body></html>')
    pages = {
        "index.html": page("good page"),
        "broken_image.html": page("broken image", image="missing.png"),
        "offline_image.html": page("image from the network", image="https://example.org/fig.png"),
        "no_mathjax.html": page("math never typeset", mathjax=""),
        "no_vega.html": page("charts without Vega", vega=""),
        "js_error.html": page("script error", extra="<script>notDefinedAnywhere();</script>"),
        "chart_as_text.html": page("chart as text", chart2="<pre>alt.Chart(...)</pre>"),
        "broken_anchor.html": page("broken anchor", link="target.html#no-such-section"),
        "broken_link.html": page("broken link", link="no_such_page.html"),
        "output_wall.html": page("progress bars left on", extra='<div class="cell_output">' + "".join(
            f'<div class="output stderr"><pre>train: {i}/500 steps\n</pre></div>' for i in range(500))
            + "</div>"),
    }
    for name, html in pages.items():
        (root / name).write_text(html)
    return root


@pytest.fixture(scope="module")
def reports(site: Path, tmp_path_factory) -> dict[str, check_html.PageReport]:
    if check_html.find_chromium() is None:
        pytest.skip("Chromium is not installed (make chromium installs it)")
    shots = tmp_path_factory.mktemp("shots")
    return {r.page: r for r in check_html.check_site(site, shots)}


@needs_chromium
def test_good_page_passes_with_math_charts_and_image(reports):
    good = reports["index.html"]
    assert good.problems == []
    assert good.stats == {"charts": 2, "math": 2, "images": 1}
    assert Path(good.screenshot).stat().st_size > 10_000


@needs_chromium
@pytest.mark.parametrize("name, expected", [
    ("broken_image.html", "broken image: missing.png"),
    ("offline_image.html", "failed request: https://example.org/fig.png"),
    ("no_mathjax.html", "unrendered math"),
    ("js_error.html", "notDefinedAnywhere"),
    ("no_vega.html", "altair chart did not render"),
    ("chart_as_text.html", "altair chart shown as text"),
    ("broken_anchor.html", "no anchor #no-such-section"),
    ("broken_link.html", "no file no_such_page.html"),
    ("output_wall.html", "cell output of 500 lines (progress bars or logs left on?): 'train: 0/500 steps'"),
])
def test_each_defect_fails_its_page(reports, name: str, expected: str):
    problems = reports[name].problems
    assert any(expected in p for p in problems), problems


@needs_chromium
def test_cli_exit_code(site: Path, tmp_path: Path):
    pages = ["index.html", "broken_image.html"]
    assert check_html.main([str(site), "--out", str(tmp_path), "--pages", *pages]) == 1
    assert (tmp_path / "index.png").exists() and (tmp_path / "broken_image.png").exists()
    report = {r["page"]: r for r in json.loads((tmp_path / "report.json").read_text())}
    assert report["index.html"]["problems"] == [] and report["broken_image.html"]["problems"]


def test_static_link_check_without_a_browser(site: Path):
    assert check_html.broken_links(site, site / "index.html") == []
    assert any("no_such_page.html" in p for p in check_html.broken_links(site, site / "broken_link.html"))


def test_colab_links_must_name_an_existing_twin(tmp_path: Path):
    good = "https://colab.research.google.com/github/o/r/blob/main/notebooks/01_attention.ipynb"
    bad = "https://colab.research.google.com/github/o/r/blob/main/notebooks/99_missing.ipynb"
    md = "https://colab.research.google.com/github/o/r/blob/main/book/01_attention.md"
    (tmp_path / "p.html").write_text(f'<a href="{good}">a</a><a href="{bad}">b</a><a href="{md}">c</a>')
    problems = check_html.colab_problems(tmp_path, tmp_path / "p.html", ROOT)
    assert len(problems) == 2
    assert "99_missing.ipynb" in problems[0] and "non-notebook" in problems[1]
