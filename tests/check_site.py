"""Read the built book in headless Chromium the way a student would, and fail on any defect.

Usage: python tests/check_site.py _build/html [--screenshots DIR]

For every page built from _toc.yml (plus the search page), served over HTTP on localhost:
  * the page loads without JavaScript errors and without any request leaving localhost (MathJax,
    require.js and the ipywidgets embed manager must be served from the build: no CDN);
  * its math is typeset by MathJax (mjx-container elements; no raw $$, \\[ or \\( left in the text);
  * every figure image is present, decodes (naturalWidth > 0) and its file is non-empty;
  * every internal link points to an existing page and, if it has one, an existing anchor;
  * no Sphinx error boxes or "undefined label"/unresolved-citation text;
  * embedded widgets render (where a page has widget state);
  * the search page finds "Wasserstein" (once a chapter mentions it).
A full-page screenshot of each page goes to --screenshots. Exit status 1 names page and defect.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import pathlib
import re
import shutil
import sys
import threading
import time
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlparse

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def toc_pages() -> list[str]:
    files = re.findall(r"^\s*-?\s*(?:file|root):\s*(\S+)", (ROOT / "_toc.yml").read_text(), re.M)
    return [f + ".html" for f in files]


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


@functools.cache
def parse(path: pathlib.Path) -> _Anchors:
    p = _Anchors()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def check_links(site: pathlib.Path, page: str) -> list[str]:
    problems = []
    src = site / page
    for href in parse(src).links:
        url = urlparse(href)
        if url.scheme in ("http", "https", "mailto", "javascript", "data") or href.startswith("//"):
            continue
        target = src if not url.path else (src.parent / unquote(url.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            problems.append(f"broken internal link {href!r}")
            continue
        if url.fragment and target.suffix == ".html" and url.fragment not in parse(target).ids:
            problems.append(f"link {href!r}: no anchor #{url.fragment} in {target.name}")
    return problems


def serve(site: pathlib.Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


WIDGETS_RENDERED = "document.querySelectorAll('.jupyter-widgets, .widget-output, .lm-Widget').length > 0"
JS_PAGE_FACTS = r"""
() => {
  const main = document.querySelector('main') || document.body;
  const prose = main.cloneNode(true);   // raw TeX is a defect in prose, not inside code or outputs
  prose.querySelectorAll('pre, code, .highlight, .cell_output, mjx-container, script')
    .forEach(e => e.remove());
  document.body.appendChild(prose); prose.style.display = 'block';
  const text = prose.innerText;
  prose.remove();
  const imgs = [...main.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'),
      ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}));
  return {
    mathNodes: document.querySelectorAll('.math, span.math, div.math').length,
    mjx: document.querySelectorAll('mjx-container').length,
    rawMath: /\$\$|\\\[|\\\(/.test(text),
    errors: [...main.querySelectorAll('.system-message, .problematic')].map(e => e.innerText.slice(0, 120)),
    undefinedText: /undefined label|Citation .* not found|\?\?\?/.test(text),
    imgs: imgs,
    widgetState: !!document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]'),
    widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgetsRendered: document.querySelectorAll('.jupyter-widgets, .widget-output, .lm-Widget').length,
    title: document.title,
  };
}
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("site", type=pathlib.Path)
    ap.add_argument("--screenshots", type=pathlib.Path, default=pathlib.Path("_build/screenshots"))
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per page")
    args = ap.parse_args()
    site = args.site.resolve()
    if not (site / "index.html").exists():
        print(f"check_site: no built site at {site} (run the book build first)")
        return 1
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("check_site: Debian chromium is not installed (make chromium)")
        return 1
    from playwright.sync_api import sync_playwright

    pages = toc_pages()
    missing = [p for p in pages if not (site / p).exists()]
    failures: list[str] = [f"{p}: page was not built" for p in missing]
    pages = [p for p in pages if p not in missing]
    if args.screenshots.exists():
        shutil.rmtree(args.screenshots)
    args.screenshots.mkdir(parents=True)
    httpd, base = serve(site)
    t0 = time.time()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        external: list[str] = []

        def route(r):
            host = urlparse(r.request.url).hostname
            if r.request.url.startswith(("data:", "blob:", "about:")) or host in ("127.0.0.1", "localhost"):
                r.continue_()
            else:
                external.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)
        for page_name in pages:
            problems = check_links(site, page_name)
            page = ctx.new_page()
            page.set_default_timeout(args.timeout * 1000)
            js_errors: list[str] = []
            page.on("pageerror", lambda e, js_errors=js_errors: js_errors.append(str(e)[:200]))
            external.clear()
            resp = page.goto(urljoin(base, page_name), wait_until="load")
            if resp is None or resp.status != 200:
                problems.append(f"HTTP status {resp.status if resp else 'none'}")
            facts = page.evaluate(JS_PAGE_FACTS)
            if facts["mathNodes"]:
                try:
                    page.wait_for_function("document.querySelectorAll('mjx-container').length > 0",
                                           timeout=args.timeout * 1000)
                    page.wait_for_function(
                        "window.MathJax && MathJax.startup && MathJax.startup.promise"
                        " ? MathJax.startup.promise.then(() => true) : true")
                except Exception:
                    problems.append("math is not typeset (no mjx-container after waiting)")
                facts = page.evaluate(JS_PAGE_FACTS)
                if facts["rawMath"]:
                    problems.append("raw TeX delimiters ($$, \\[ or \\() left in the text")
            if facts["widgetViews"]:
                try:
                    page.wait_for_function(WIDGETS_RENDERED, timeout=args.timeout * 1000)
                except Exception:
                    problems.append(f"{facts['widgetViews']} widget view(s) did not render")
            for img in page.evaluate(JS_PAGE_FACTS)["imgs"]:
                f = (site / page_name).parent / unquote(urlparse(img["src"] or "").path)
                if not img["ok"]:
                    problems.append(f"image {img['src']!r} did not load")
                elif not img["src"].startswith("data:") and (not f.exists() or f.stat().st_size == 0):
                    problems.append(f"image file {img['src']!r} missing or empty")
            for e in facts["errors"]:
                problems.append(f"Sphinx error box: {e!r}")
            if facts["undefinedText"]:
                problems.append("text 'undefined label' / unresolved citation on the page")
            problems += [f"JavaScript error: {e}" for e in js_errors]
            problems += [f"request left localhost: {u}" for u in sorted(set(external))]
            shot = args.screenshots / (page_name.replace("/", "_").removesuffix(".html") + ".png")
            page.screenshot(path=str(shot), full_page=True)
            n_img = len(facts["imgs"])
            status = "ok" if not problems else "FAIL"
            print(f"  {status:4} {page_name:32} math={facts['mjx']:4d} figures={n_img:2d} "
                  f"widgets={facts['widgetViews']:2d} -> {shot}")
            failures += [f"{page_name}: {p}" for p in problems]
            page.close()
        # Search: a student looks up the central object of chapter 5.
        page = ctx.new_page()
        page.goto(urljoin(base, "search.html?q=Wasserstein"), wait_until="load")
        corpus = " ".join((site / p).read_text(errors="replace") for p in pages)
        try:
            page.wait_for_function("document.querySelectorAll('#search-results li, ul.search li').length > 0",
                                   timeout=args.timeout * 1000)
            hits = page.evaluate("document.querySelectorAll('#search-results li, ul.search li').length")
            print(f"  ok   search.html?q=Wasserstein: {hits} result(s)")
        except Exception:
            if "Wasserstein" in corpus:
                failures.append("search.html: no results for 'Wasserstein' although pages contain it")
            else:
                print("  --   search: no page mentions 'Wasserstein' yet")
        page.screenshot(path=str(args.screenshots / "search.png"), full_page=True)
        browser.close()
    httpd.shutdown()
    print(f"check_site: {len(pages)} pages in {time.time() - t0:.1f}s, screenshots in {args.screenshots}")
    if failures:
        print("check_site FAILED:")
        for f in failures:
            print("  - " + f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
