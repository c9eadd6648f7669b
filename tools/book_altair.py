"""The HTML book's altair renderer: every chart drawn by the site's own Vega (offline).

Interactive altair charts need the Vega JavaScript libraries. Jupyter and Colab
bring their own; the rendered book must work with no network, so its build
bundles Vega, Vega-Lite and Vega-Embed into the site (``tools/sphinx_annotated.py``)
and renders each chart as a small piece of HTML that draws it with that bundled
``vegaEmbed``, with tooltips and an export menu. ``tools/check_html.py`` checks in
a browser that every chart on every page drew.

This is build code, not part of the package: the sphinx extension makes every
notebook kernel of the build run ``tools/book_kernel_startup.py``, which calls
:func:`enable`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

NAME = "annotated-book"
_chart_ids = itertools.count()


def book_vega_renderer(spec: dict, **metadata: Any) -> dict:
    """Altair renderer: a div drawn by the site's bundled vegaEmbed (no CDN)."""
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    div = f"vega-{digest}-{next(_chart_ids)}"
    payload = json.dumps(spec).replace("</", "<\\/")  # never close the <script> early
    html = (
        f'<div id="{div}" class="annotated-vega"></div>\n'
        '<script type="text/javascript">\n(function () {\n'
        f'  var el = document.getElementById("{div}");\n'
        '  if (typeof vegaEmbed === "undefined") {\n'
        '    el.textContent = '
        '"(this chart needs the Vega scripts bundled with the book)";\n'
        '    console.error("vegaEmbed is not loaded"); return;\n  }\n'
        f'  vegaEmbed(el, {payload}, {{"renderer": "svg", "actions": {{"export": true, '
        '"source": false, "compiled": false, "editor": false}})\n'
        '    .catch(function (err) { console.error(err); });\n})();\n</script>'
    )
    return {"text/html": html, "text/plain": f"<altair chart {div}>"}


def enable() -> None:
    """Register the book's renderer with altair and make it the active one."""
    import altair as alt

    alt.renderers.register(NAME, book_vega_renderer)
    alt.renderers.enable(NAME)
