"""Open every page of the built book in headless Chromium, offline, and fail on what a reader would see.

For each ``*.html`` page under the site folder this script

* serves the site from a local HTTP server on 127.0.0.1 (or opens it with
  ``file://`` with ``--file``), with every request to any other host refused, so
  a page that needs the network fails here exactly as it would offline;
* takes a full-page screenshot (kept in ``--out``, default ``_build/screenshots``);
* fails on: a JavaScript error in the console or an uncaught exception; a failed
  request (refused, missing file, HTTP >= 400); math that MathJax did not
  typeset; an altair chart that did not draw (no SVG or canvas, or an altair
  repr printed as text); an image that did not load; a link to a page or an
  anchor of the site that does not exist.

It drives Debian's Chromium (``/usr/bin/chromium``; ``make check-html`` installs
it) through Playwright; no browser is downloaded.

Usage::

    python tools/check_html.py _build/html [--out _build/screenshots] [--file] [--pages book/intro.html ...]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
    # Offline: no name resolves except the local server's address.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
SKIP_PAGES = {"genindex.html", "py-modindex.html"}  # generated indices: links checked, not screenshotted
PAGE_TIMEOUT_MS = 60_000
SCREENSHOT_TIMEOUT_MS = 60_000


def find_chromium() -> str | None:
    """The Chromium executable: $CHROMIUM, else Debian's /usr/bin/chromium, else one on PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


# --------------------------------------------------------------------------- static link check
class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key) and (key == "id" or tag == "a"):
                self.ids.add(values[key])
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
        if tag == "meta" and (values.get("http-equiv") or "").lower() == "refresh":
            target = (values.get("content") or "").partition("url=")[2].strip()
            if target:
                self.links.append(target)


@functools.cache
def _parse(path: Path) -> _Collector:
    collector = _Collector()
    collector.feed(path.read_text(errors="replace"))
    return collector


def broken_links(site: Path, page: Path) -> list[str]:
    """Links from `page` to files or anchors of the site that do not exist."""
    problems = []
    base = "http://site/" + page.relative_to(site).as_posix()
    for href in _parse(page).links:
        url = urlsplit(urljoin(base, href))
        if url.scheme != "http" or url.netloc != "site":
            continue  # external (http(s) elsewhere, mailto, javascript:) : not ours to check offline
        target = site / unquote(url.path.lstrip("/"))
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            problems.append(f"broken link: {href} (no file {target.relative_to(site)})")
            continue
        if url.fragment and target.suffix == ".html" and unquote(url.fragment) not in _parse(target).ids:
            problems.append(f"broken link: {href} (no anchor #{url.fragment} in {target.relative_to(site)})")
    return problems


def is_redirect(page: Path) -> bool:
    """A page that only forwards to another (its link is still checked)."""
    head = page.read_text(errors="replace")[:2000].lower()
    return 'http-equiv="refresh"' in head


def colab_problems(site: Path, page: Path, repo: Path) -> list[str]:
    """Colab launch links on `page` whose notebook is not a file of the repository `repo`."""
    problems = []
    for href in _parse(page).links:
        if "colab.research.google.com/github/" not in href:
            continue
        parts = urlsplit(href).path.split("/")  # /github/<org>/<repo>/blob/<branch>/<path...>
        if len(parts) < 7 or parts[1] != "github" or parts[4] != "blob":
            problems.append(f"Colab link not of the form /github/<org>/<repo>/blob/<branch>/<path>: {href}")
            continue
        path = "/".join(parts[6:])
        if not path.endswith(".ipynb"):
            problems.append(f"Colab link to a non-notebook (Colab opens .ipynb only): {path}")
        elif not (repo / path).is_file():
            problems.append(f"Colab link to a notebook the repository does not have: {path}")
    return problems


# --------------------------------------------------------------------------- the browser part
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102 - keep the output for problems
        pass


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


# Runs in the page once it has loaded: wait for MathJax and the charts, then report.
MAX_OUTPUT_LINES = 400  # a longer cell output is a wall no reader reads (e.g. redrawn progress bars)
PAGE_PROBE = """
async () => {
  const MAX_OUTPUT_LINES = __MAX_OUTPUT_LINES__;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  document.querySelectorAll('img[loading="lazy"]').forEach((img) => { img.loading = 'eager'; });
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await MathJax.startup.promise; } catch (e) { console.error('MathJax: ' + e); }
  }
  const charts = () => Array.from(document.querySelectorAll('.annotated-vega, .vega-embed'));
  for (let i = 0; i < 100; i++) {
    const pending = charts().filter((el) => !el.querySelector('svg, canvas'));
    const imgs = Array.from(document.images).filter((img) => !img.complete);
    if (pending.length === 0 && imgs.length === 0) break;
    await sleep(100);
  }
  const mathNodes = Array.from(document.querySelectorAll('.math, span.math, div.math'));
  const unrendered = mathNodes.filter((el) => !el.querySelector('mjx-container'))
    .map((el) => el.textContent.trim().slice(0, 60));
  const raw = [];
  const walker = document.createTreeWalker(document.querySelector('main') || document.body,
                                           NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, parent = node.parentElement;
    if (!parent || parent.closest('pre, code, script, style, mjx-container, .highlight, textarea')) continue;
    const m = node.textContent.match(/\\$\\$|\\\\\\(|\\\\\\[|\\\\begin\\{|\\\\[a-zA-Z]{2,}/);
    if (m) raw.push(node.textContent.trim().slice(0, 60));
  }
  const chartProblems = charts()
    .filter((el) => el.classList.contains('annotated-vega') || !el.closest('.annotated-vega'))
    .filter((el) => {
      const g = el.querySelector('svg, canvas');
      if (!g) return true;
      const r = g.getBoundingClientRect();
      return r.width < 10 || r.height < 10;
    }).map((el) => el.id || el.className);
  const textCharts = Array.from(document.querySelectorAll('.cell_output pre, .cell_output .output'))
    .filter((el) => /alt\\.(Layer|HConcat|VConcat)?Chart\\(|<altair chart|needs the Vega scripts/
                    .test(el.innerText))
    .map((el) => el.textContent.trim().slice(0, 60));
  const badImages = Array.from(document.images)
    .filter((img) => !(img.complete && img.naturalWidth > 0))
    .map((img) => img.getAttribute('src'));
  const small = Array.from(document.querySelectorAll('.cell_output img'))
    .filter((img) => img.naturalWidth > 0 && img.getBoundingClientRect().width < 120)
    .map((img) => img.getAttribute('src'));
  const main = document.querySelector('.bd-article') || document.body;
  const overflow = Array.from(main.querySelectorAll('table, img, svg, pre'))
    .filter((el) => !el.closest('.annotated-vega, mjx-container, .highlight, [style*="overflow"]'))
    .filter((el) => el.getBoundingClientRect().right > main.getBoundingClientRect().right + 4
                    && !['auto', 'scroll'].includes(getComputedStyle(el).overflowX))
    .map((el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : ''));
  const walls = Array.from(document.querySelectorAll('.cell_output'))  // one cell's text outputs together
    .map((el) => Array.from(el.querySelectorAll('pre')).map((pre) => pre.textContent))
    .map((texts) => [texts.reduce((n, t) => n + t.split('\\n').filter((l) => l.trim()).length, 0),
                     (texts[0] || '').trim().slice(0, 60)])
    .filter(([lines]) => lines > MAX_OUTPUT_LINES);
  return {unrendered, raw, chartProblems, textCharts, badImages, small, overflow, walls,
          charts: charts().length, math: mathNodes.length, images: document.images.length};
}
""".replace("__MAX_OUTPUT_LINES__", str(MAX_OUTPUT_LINES))


@dataclass
class PageReport:
    page: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    screenshot: str = ""


def check_page(context, url: str, page_name: str, shots: Path | None) -> PageReport:
    report = PageReport(page_name)
    page = context.new_page()
    page.on("console", lambda msg: report.problems.append(f"console {msg.type}: {msg.text[:300]}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda err: report.problems.append(
        f"uncaught JavaScript exception: {str(err)[:300]}"))
    page.on("requestfailed", lambda req: report.problems.append(
        f"failed request: {req.url[:200]} ({req.failure})"))
    page.on("response", lambda res: report.problems.append(f"HTTP {res.status}: {res.url[:200]}")
            if res.status >= 400 else None)
    try:
        page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        found = page.evaluate(PAGE_PROBE)
    except Exception as err:  # noqa: BLE001 - a page that cannot even load is one problem, named
        report.problems.append(f"could not load: {type(err).__name__}: {str(err)[:300]}")
        page.close()
        return report
    report.stats = {k: found[k] for k in ("charts", "math", "images")}
    report.problems += [f"unrendered math: {t!r}" for t in found["unrendered"]]
    report.problems += [f"raw LaTeX left in the text: {t!r}" for t in found["raw"]]
    report.problems += [f"altair chart did not render: {c}" for c in found["chartProblems"]]
    report.problems += [f"altair chart shown as text: {t!r}" for t in found["textCharts"]]
    report.problems += [f"broken image: {src}" for src in found["badImages"]]
    report.problems += [f"cell output of {n} lines (progress bars or logs left on?): {t!r}"
                        for n, t in found["walls"]]
    report.notes += [f"image shown under 120 px wide: {src}" for src in found["small"]]
    report.notes += [f"wider than the text column (no scrolling): {el}" for el in found["overflow"]]
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "__", page_name.removesuffix(".html")) + ".png"
        try:
            page.screenshot(path=str(shots / name), full_page=True, timeout=SCREENSHOT_TIMEOUT_MS)
            report.screenshot = str(shots / name)
        except Exception as err:  # noqa: BLE001 - e.g. a page far too long to draw: a problem, named
            report.problems.append(f"screenshot failed (is the page far too long?): "
                                   f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
    page.close()
    return report


def check_search(context, base: str, query: str = "attention") -> PageReport:
    """The search box works offline: searching a word of every chapter finds pages."""
    report = PageReport(f"search.html?q={query}")
    page = context.new_page()
    page.on("pageerror", lambda err: report.problems.append(f"uncaught JavaScript exception: {err}"))
    page.goto(f"{base}search.html?q={query}", wait_until="load", timeout=PAGE_TIMEOUT_MS)
    found = 0
    for _ in range(100):
        found = page.evaluate("document.querySelectorAll('#search-results li').length")
        if found:
            break
        page.wait_for_timeout(100)
    report.stats = {"results": found}
    if not found:
        report.problems.append(f"searching {query!r} finds no page")
    page.close()
    return report


def pages_of(site: Path, only: list[str] | None = None) -> list[Path]:
    if only:
        return [site / p for p in only]
    return sorted(p for p in site.rglob("*.html")
                  if "_static" not in p.parts and "_sources" not in p.parts and "_images" not in p.parts)


def check_site(site: Path, shots: Path | None = None, use_file: bool = False,
               only: list[str] | None = None, repo: Path | None = None,
               on_report=None) -> list[PageReport]:
    """Check every page of the site; return one report per page (each also given to `on_report`)."""
    from playwright.sync_api import sync_playwright

    site = site.resolve()
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("Chromium not found: install Debian's chromium (make check-html does) "
                           "or set $CHROMIUM")
    reports: list[PageReport] = []

    def add(report: PageReport) -> None:
        reports.append(report)
        if on_report is not None:
            on_report(report)

    server, base = (None, site.as_uri() + "/") if use_file else serve(site)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
            context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
            allowed = "file://" if use_file else base

            def gate(route):
                if route.request.url.startswith(allowed) or route.request.url.startswith("data:") \
                        or route.request.url.startswith("blob:"):
                    return route.continue_()
                return route.abort("internetdisconnected")

            context.route("**/*", gate)
            for path in pages_of(site, only):
                rel = path.relative_to(site).as_posix()
                report = PageReport(rel)
                if rel not in SKIP_PAGES and not is_redirect(path):
                    report = check_page(context, base + rel, rel, shots)
                report.problems += broken_links(site, path)
                if repo is not None:
                    report.problems += colab_problems(site, path, repo)
                add(report)
            if (site / "search.html").exists() and not only:
                add(check_search(context, base))
            browser.close()
    finally:
        if server is not None:
            server.shutdown()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("site", type=Path, nargs="?", default=Path("_build/html"))
    parser.add_argument("--out", type=Path, default=None,
                        help="screenshots folder (default: <site>/../screenshots)")
    parser.add_argument("--file", action="store_true",
                        help="open pages with file:// instead of a local server")
    parser.add_argument("--pages", nargs="*", help="only these pages (paths relative to the site)")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="repository whose notebooks the Colab links must name (default: this one)")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").exists() and not args.pages:
        print(f"check_html: {args.site} holds no built site (no index.html); build the book first",
              file=sys.stderr)
        return 2
    shots = args.out or args.site.resolve().parent / "screenshots"
    start = time.perf_counter()

    def show(r: PageReport) -> None:  # as each page is checked, so a long run reports as it goes
        status = "FAIL" if r.problems else "ok  "
        stats = " ".join(f"{k}={v}" for k, v in r.stats.items())
        print(f"{status} {r.page}  {stats}", flush=True)
        for problem in r.problems:
            print(f"       {problem}")
        for note in r.notes:
            print(f"       note: {note}")

    reports = check_site(args.site, shots, args.file, args.pages, args.repo, on_report=show)
    failed = [r for r in reports if r.problems]
    shots.mkdir(parents=True, exist_ok=True)
    (shots / "report.json").write_text(json.dumps([r.__dict__ for r in reports], indent=1))
    seconds = time.perf_counter() - start
    print(f"{len(reports)} pages checked in {seconds:.0f} s, {len(failed)} with problems; "
          f"screenshots in {shots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
