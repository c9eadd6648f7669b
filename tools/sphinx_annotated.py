"""Sphinx extension for the annotated attention book (loaded by `_config.yml`).

It makes the rendered book work offline and wires it to the Colab twins and the
API reference:

* **offline assets**: MathJax 3 (from the ``django-static-mathjax`` wheel, which is
  only static files) and one JavaScript bundle of Vega, Vega-Lite and Vega-Embed
  (from ``vl-convert-python``) are copied into the site's ``_static/``, so no page
  loads anything from a CDN;
* **altair**: before any notebook kernel starts, points ``PYTHONSTARTUP`` at
  ``tools/book_kernel_startup.py``, so every kernel of the build switches altair
  to the renderer of ``tools/book_altair.py``, which emits HTML driven by the
  bundled Vega scripts (the package itself carries no book-build code); and sets
  ``ANNOTATED_BOOK_BUILD=1``, which keeps progress bars off the pages;
* **Colab**: the theme's Colab button points at the page's ``.md`` source, which
  Colab cannot open; here it is re-pointed at the chapter's generated twin
  ``notebooks/<name>.ipynb`` (``tools/colab_twins.py``), and removed from pages
  without a twin;
* **API links**: a chapter that exports ``annotated.<module>`` gets a line at its
  top linking to the module's API reference page ``book/api/<module>``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapters as book_chapters  # noqa: E402  (tools/chapters.py)

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
STATIC_SUBDIR = "annotated_static"  # next to the html output, added to html_static_path
VEGA_BUNDLE = "vega/vega-bundle.js"
MATHJAX_DIR = "mathjax"
DEFAULT_EXP = book_chapters.DEFAULT_EXP


def _mathjax_source() -> Path:
    """The MathJax 3 `es5` folder shipped by the django-static-mathjax wheel."""
    import mathjax  # the wheel's top-level package: static files only

    base = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"
    if not (base / "tex-svg.js").exists():
        raise RuntimeError(f"MathJax not found at {base}; reinstall django-static-mathjax (requirements.txt)")
    return base


def vega_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed in one script that defines window.vegaEmbed (offline)."""
    import vl_convert

    # The bundle declares top-level consts; in a classic <script> they would share the page's
    # global scope with the theme's scripts and clash, so it runs inside a function.
    return "(function () {\n" + vl_convert.javascript_bundle() + "\n})();\n"


def _write_assets(app: Sphinx) -> None:
    """Put MathJax and the Vega bundle into a static folder and register it."""
    target = Path(app.outdir).parent / STATIC_SUBDIR
    mathjax_dst = target / MATHJAX_DIR
    if not (mathjax_dst / "tex-svg.js").exists():
        shutil.copytree(_mathjax_source(), mathjax_dst, dirs_exist_ok=True)
    bundle = target / VEGA_BUNDLE
    import vl_convert

    stamp = target / "vega" / "VERSION"
    version = f"vl-convert {vl_convert.__version__}" if hasattr(vl_convert, "__version__") else "vl-convert"
    version += " iife" + f" vega {vl_convert.get_vega_version()} embed {vl_convert.get_vega_embed_version()}"
    if not bundle.exists() or not stamp.exists() or stamp.read_text() != version:
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_text(vega_bundle())
        stamp.write_text(version)
    if str(target) not in app.config.html_static_path:
        app.config.html_static_path.append(str(target))


KERNEL_STARTUP = Path(__file__).resolve().parent / "book_kernel_startup.py"


def _on_config_inited(app: Sphinx, config) -> None:
    # Notebook kernels inherit this environment. IPython runs PYTHONSTARTUP in each
    # kernel (plain `python script.py` ignores it); progress_bar() reads the other.
    os.environ["PYTHONSTARTUP"] = str(KERNEL_STARTUP)
    os.environ["ANNOTATED_BOOK_BUILD"] = "1"


def _on_builder_inited(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    _write_assets(app)
    app.add_js_file(VEGA_BUNDLE, priority=200)
    app.add_css_file("annotated.css")


# --------------------------------------------------------------------------- Colab
def _twin_for(pagename: str, root: Path = ROOT) -> str | None:
    """The repository path of the Colab twin of a chapter or appendix, if one exists."""
    pages = book_chapters.chapters(root)
    page = next((p for p in pages if p.docname == pagename), None)
    if page is None:
        return None
    twin = Path("notebooks") / f"{page.name}.ipynb"
    return twin.as_posix() if (root / twin).exists() else None


def _fix_launch_buttons(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Point the Colab button at the page's twin notebook; drop launch buttons without one."""
    buttons = context.get("header_buttons")
    if not buttons:
        return
    twin = _twin_for(pagename)
    options = app.config.html_theme_options
    repo = options.get("repository_url", "").rstrip("/")
    branch = options.get("repository_branch", "main")
    colab = options.get("launch_buttons", {}).get("colab_url", "https://colab.research.google.com").rstrip("/")
    for group in list(buttons):
        if group.get("label") != "launch-buttons":
            continue
        if twin is None or "github.com/" not in repo:
            buttons.remove(group)
            continue
        org_repo = repo.split("github.com/", 1)[1]
        for button in group.get("buttons", []):
            if button.get("text") == "Colab":
                button["url"] = f"{colab}/github/{org_repo}/blob/{branch}/{twin}"


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Drop repeated <script> entries (sphinx-thebe registers its inline config twice, and the
    second `const THEBE_JS_URL` is a JavaScript error on every page)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set = set()
    unique = []
    for js in scripts:
        key = (str(getattr(js, "filename", js) or ""),
               tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


# --------------------------------------------------------------------------- API links
def _module_of(docname: str, srcdir: Path) -> str | None:
    """The module a page exports (``tools/chapters.py``), or None."""
    return book_chapters.Page(docname, srcdir / f"{docname}.md").module


def _hide_default_exp_cells(app: Sphinx, doctree: nodes.document) -> None:
    """The `#| default_exp <module>` cell is for the exporter, not the reader: drop it from the page
    (the line under the title names and links the module instead)."""
    for cell in list(doctree.findall(nodes.container)):
        if "cell" not in cell.get("classes", []):
            continue
        blocks = list(cell.findall(nodes.literal_block))
        if blocks and DEFAULT_EXP.fullmatch(blocks[0].astext().strip()) and len(blocks) == 1:
            cell.parent.remove(cell)


def _add_api_link(app: Sphinx, doctree: nodes.document) -> None:
    """Under a chapter's title: 'API reference: annotated.<module>' linking to book/api/<module>."""
    docname = app.env.docname
    if docname.startswith("book/api/"):
        return
    module = _module_of(docname, Path(app.srcdir))
    if module is None or not (Path(app.srcdir) / "book" / "api" / f"{module}.md").exists():
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    ref = addnodes.pending_xref(
        "", refdomain="std", reftype="doc", reftarget=f"/book/api/{module}", refexplicit=True,
        refdoc=docname,
    )
    ref += nodes.literal("", f"annotated.{module}")
    para = nodes.paragraph("", "", classes=["annotated-api-link"])
    para += nodes.Text("API reference for the code of this chapter: ")
    para += ref
    title_index = next((i for i, child in enumerate(section.children) if isinstance(child, nodes.title)), 0)
    section.insert(title_index + 1, para)


# --------------------------------------------------------------------------- docstrings
_RST_SPECIAL = re.compile(r"([*|])|(\w)_(?=\W|$)")


def _plain_docstring(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    """Our docstrings are plain text with math-like symbols (`*_size`, `|x|`, `h_t`), not reST:
    escape the characters reST would read as markup, so autodoc shows them as written."""
    if not name.startswith("annotated."):
        return
    lines[:] = [_RST_SPECIAL.sub(lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\_", line)
                for line in lines]


ALWAYS_REREAD = ("book/results",)  # reads results/*.json, which change without its source changing


def _always_reread(app: Sphinx, env, added: set, changed: set, removed: set) -> list[str]:
    """Re-read (and so re-execute) the results page on every build, even an incremental one."""
    return [doc for doc in ALWAYS_REREAD if doc in env.found_docs and doc not in added | changed]


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.autodoc")  # its events are connected below
    app.connect("config-inited", _on_config_inited)
    app.connect("builder-inited", _on_builder_inited)
    app.connect("doctree-read", _add_api_link)
    app.connect("env-get-outdated", _always_reread)
    app.connect("doctree-read", _hide_default_exp_cells)
    app.connect("autodoc-process-docstring", _plain_docstring)
    # after sphinx-book-theme's add_launch_buttons (priority 501)
    app.connect("html-page-context", _fix_launch_buttons, priority=900)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    static = Path(__file__).resolve().parent / "book_static"
    app.connect("builder-inited", lambda a: a.config.html_static_path.append(str(static))
                if a.builder.format == "html" and str(static) not in a.config.html_static_path else None)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
