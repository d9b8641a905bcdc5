"""Read the built book in headless Chromium the way a student would, and fail on any defect.

Usage: python tests/check_site.py _build/html [--screenshots DIR]

For every page built from _toc.yml (plus the search page), served over HTTP on localhost:
  * the page loads without JavaScript errors, without any console message of level error, without
    any failed request (HTTP status >= 400, or a request that failed outright; the page's icon is
    fetched too) and without any request leaving localhost (MathJax, require.js and the ipywidgets
    embed manager must be served from the build: no CDN);
  * its math is typeset by MathJax (mjx-container elements; no raw $$, \\[ or \\( left in the text);
  * every figure image is present, decodes (naturalWidth > 0) and its file is non-empty;
  * nothing is cut at the column's edge in a 1280-pixel-wide window: no formula (display or inline)
    wider than what its box shows (the theme clips div.math and scrolls mjx-container), no image or
    table wider than the column, no line of a code cell or code block longer than the column shows
    (a pre whose scrollWidth exceeds its clientWidth; outputs are not checked);
  * every internal link points to an existing page and, if it has one, an existing anchor;
  * no Sphinx error boxes or "undefined label"/unresolved-citation text;
  * embedded widgets render (where a page has widget state);
  * every chapter has a control that works without a kernel (mflib.widgets.precomputed): moved to two
    new values by keyboard, its figure changes each time and the caption above the figure names the
    value the slider reads out;
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


def find_chromium() -> str | None:
    """Path of Debian's chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def report(tool: str, failures: list[str]) -> int:
    """Print the failures under '<tool> FAILED:' (one per line) and return the exit status."""
    if failures:
        print(f"{tool} FAILED:")
        for f in failures:
            print("  - " + f)
        return 1
    return 0


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


# What a reader cannot see whole at 1280 px in the article (the column between the navigation and the
# page's contents): formulas, images and tables reaching past the column or past a box that clips or
# scrolls them (the theme sets overflow hidden on div.math and span.math, auto on mjx-container and on
# the table wrapper), and code whose lines are longer than its pre.
JS_CLIPPED = r"""
() => {
  const column = document.querySelector('article.bd-article, main') || document.body;
  const colBox = column.getBoundingClientRect(), colStyle = getComputedStyle(column);
  const colL = colBox.left + parseFloat(colStyle.paddingLeft);
  const colR = colBox.right - parseFloat(colStyle.paddingRight);
  const shown = el => el.getClientRects().length > 0;
  function visible(el) {            // horizontal interval in which el can be seen without scrolling
    let l = colL, r = colR;
    if (el.closest('.margin, aside, .sidebar')) { l = -Infinity; r = Infinity; }   // margin notes sit outside
    for (let a = el.parentElement; a && a !== column && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') {
        const b = a.getBoundingClientRect();
        l = Math.max(l, b.left + a.clientLeft); r = Math.min(r, b.left + a.clientLeft + a.clientWidth);
      }
    }
    return [l, r];
  }
  const cut = (box, [l, r]) => box.width > 0 && (box.right > r + 1 || box.left < l - 1);
  const out = [];
  const wideTables = [];
  for (const t of column.querySelectorAll('table')) {
    if (!shown(t)) continue;
    const b = t.getBoundingClientRect(), v = visible(t);
    if (cut(b, v)) {
      wideTables.push(t);
      out.push({kind: 'table', width: b.width, shows: v[1] - v[0],
                what: (t.querySelector('tr') || t).innerText.replace(/\s+/g, ' ').trim().slice(0, 60)});
    }
  }
  const inWideTable = el => wideTables.some(t => t.contains(el));
  const md = window.MathJax && MathJax.startup && MathJax.startup.document;
  const tex = new Map(md ? md.getMathItemsWithin(column).map(m => [m.typesetRoot, m.math]) : []);
  for (const c of column.querySelectorAll('mjx-container')) {
    const m = c.querySelector('mjx-math');
    if (!m || !shown(m) || inWideTable(c)) continue;
    const range = document.createRange();          // the glyphs' extent, even past a 100%-wide box
    range.selectNodeContents(m);
    const b = range.getBoundingClientRect(), v = visible(m);
    if (cut(b, v)) out.push({kind: c.getAttribute('display') === 'true' ? 'display math' : 'inline math',
        width: b.width, shows: v[1] - v[0], what: (tex.get(c) || c.textContent).replace(/\s+/g, ' ').trim()});
  }
  for (const img of column.querySelectorAll('img')) {
    if (!shown(img) || inWideTable(img)) continue;
    const b = img.getBoundingClientRect(), v = visible(img);
    if (cut(b, v)) {
      out.push({kind: 'image', width: b.width, shows: v[1] - v[0], what: img.getAttribute('src') || ''});
    }
  }
  const ctx = document.createElement('canvas').getContext('2d');
  for (const pre of column.querySelectorAll('pre')) {
    if (!shown(pre) || pre.closest('.cell_output, .output')) continue;
    if (pre.scrollWidth <= pre.clientWidth + 1) continue;
    const st = getComputedStyle(pre);
    ctx.font = `${st.fontStyle} ${st.fontWeight} ${st.fontSize} ${st.fontFamily}`;
    const room = pre.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
    const lines = pre.textContent.replace(/\n$/, '').split('\n');
    const long = lines.filter(t => ctx.measureText(t.replace(/\t/g, '    ')).width > room + 1);
    out.push({kind: pre.closest('.cell_input') ? 'code cell' : 'code block', width: pre.scrollWidth,
              shows: pre.clientWidth, fit: Math.floor(room / ctx.measureText('0').width),
              lines: long.length, what: (long[0] || lines[0]).trim(), len: (long[0] || lines[0]).length});
  }
  return out;
}
"""


def describe_clipped(c: dict) -> str:
    w, shows = round(c["width"]), round(c["shows"])
    what = c["what"] if len(c["what"]) <= 90 else c["what"][:87] + "..."
    if c["kind"] in ("code cell", "code block"):
        return (f"{c['kind']} wider than the column ({c['fit']} characters fit): {c['lines']} line(s)"
                f" too long, e.g. {what!r} ({c['len']} characters)")
    verb = "wider than the column, scrolls" if c["kind"] == "table" else "clipped"
    return f"{c['kind']} {verb} ({w} px, {shows} px visible): {what}"


# A browser asks for the page's icon (or /favicon.ico) on its own. Under Playwright that request is
# neither made nor shown, and a fetch of a path ending in favicon.ico fails outright, so the page
# fetches its icon with a query string (the server ignores it): a 404 reaches the response listener.
FETCH_ICON = """
() => { const l = document.querySelector('link[rel~="icon"]');
        const u = new URL(l ? l.href : '/favicon.ico', document.baseURI);
        u.searchParams.set('check', 'icon');
        return fetch(u).then(() => true, () => true); }
"""
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


CONTROL = ".mf-precomputed-control"
JS_CONTROL_STATE = r"""
(i) => {
  const ctl = document.querySelectorAll('.mf-precomputed-control')[i];
  const stack = ctl.parentElement.querySelector('.mf-precomputed');
  const shown = [...stack.children].filter(c => c.offsetParent !== null);
  const img = shown.length ? shown[0].querySelector('img') : null;
  const cap = shown.length ? shown[0].querySelector('.mf-precomputed-caption') : null;
  let sig = '';
  if (img && img.complete && img.naturalWidth > 0) {   // the pixels, not the blob URL
    const c = document.createElement('canvas'); c.width = 96; c.height = 72;
    c.getContext('2d').drawImage(img, 0, 0, 96, 72); sig = c.toDataURL();
  }
  return {readout: (ctl.querySelector('.widget-readout') || {}).innerText || '', sig: sig,
          n: stack.children.length, shown: shown.length,
          caption: cap ? cap.innerText : '', src: img ? img.src : '',
          loaded: !!(img && img.complete && img.naturalWidth > 0)};
}
"""


def check_controls(page, page_name: str, has_widgets: bool) -> tuple[list[str], int]:
    """Move every precomputed control to two new values; the figure and its caption must follow.

    Returns the problems and the number of controls. The slider is moved the way a reader does it
    with the keyboard (focus the handle, arrow keys), which goes through the widget's own events.
    """
    problems: list[str] = []
    chapter = re.match(r"book/0[1-7]_", page_name) is not None
    try:
        if not has_widgets:
            raise LookupError
        page.wait_for_selector(f"{CONTROL} .noUi-handle", timeout=10_000)   # widgets have rendered
    except Exception:
        if chapter:
            problems.append("no control that works without a kernel (mflib.widgets.precomputed)")
        return problems, 0
    n_controls = page.locator(CONTROL).count()
    for i in range(n_controls):
        handle = page.locator(f"{CONTROL} .noUi-handle").nth(i)
        state = page.evaluate(JS_CONTROL_STATE, i)
        n_values = _position(page, i, "aria-valuemax") + 1
        seen = [state]
        if n_values < 3:
            problems.append(f"control {i}: {n_values} values; at least 3 are needed to move to two new ones")
            continue
        now = _position(page, i)
        first = now + 1 if now < n_values - 1 else now - 1
        second = (n_values - 1 if first != n_values - 1 else 0) if first > now else 0
        if second in (now, first):
            second = n_values - 1
        handle.scroll_into_view_if_needed()
        handle.focus()
        for target in (first, second):
            key = "ArrowRight" if target > now else "ArrowLeft"
            for _ in range(abs(target - now)):   # one step at a time, each figure shown in turn
                src = page.evaluate(JS_CONTROL_STATE, i)["src"]
                page.keyboard.press(key)
                try:
                    page.wait_for_function(
                        "([i, src]) => { const s = (" + JS_CONTROL_STATE + ")(i);"
                        " return s.src && s.src !== src && s.loaded; }", arg=[i, src],
                        timeout=10_000)
                except Exception:
                    pass   # reported below: the figure did not change
            now = target
            seen.append(page.evaluate(JS_CONTROL_STATE, i))
        for k, st in enumerate(seen):
            label = f"control {i} at {st['readout']!r}"
            if st["shown"] != 1:
                problems.append(f"{label}: {st['shown']} figures shown (expected exactly 1)")
            if not st["loaded"]:
                problems.append(f"{label}: its figure did not load")
            if not st["readout"] or st["readout"] not in st["caption"]:
                problems.append(f"{label}: the caption {st['caption']!r} does not name the value")
            if k and st["readout"] == seen[k - 1]["readout"]:
                problems.append(f"{label}: the keyboard did not move the slider")
            elif k and st["sig"] in [s["sig"] for s in seen[:k]]:
                problems.append(f"{label}: the figure did not change")
    return problems, n_controls


def _position(page, i: int, attribute: str = "aria-valuenow") -> int:
    """The slider's index (or, with aria-valuemax, its last index), as its handle reports it."""
    return round(float(page.evaluate(
        "([i, a]) => document.querySelectorAll('.mf-precomputed-control .noUi-handle')[i]"
        ".getAttribute(a)", [i, attribute])))


def watch(page) -> dict[str, list]:
    """Record what a reader's browser console would show while the page loads and runs."""
    log: dict[str, list] = {"pageerror": [], "console": [], "status": [], "failed": []}
    page.on("pageerror", lambda e: log["pageerror"].append(str(e)[:200]))
    page.on("console", lambda m: m.type in ("error", "assert") and log["console"].append(
        (m.text[:200], m.location.get("url", ""), m.location.get("lineNumber", 0))))
    page.on("response", lambda r: r.status >= 400 and log["status"].append((r.status, r.url)))
    page.on("requestfailed", lambda r: log["failed"].append((r.failure or "failed", r.url)))
    return log


def load_problems(log: dict[str, list], external: list[str], base: str) -> list[str]:
    """One line per defect: an HTTP error or failed request is named once, not again by the console."""
    def short(url: str) -> str:
        return url.removeprefix(base) or "/"

    problems = [f"JavaScript error: {e}" for e in log["pageerror"]]
    problems += [f"request left localhost: {u}" for u in sorted(set(external))]
    named = set(external)
    for status, url in log["status"]:
        if url not in named:
            named.add(url)
            problems.append(f"HTTP {status}: {short(url)}")
    for failure, url in log["failed"]:
        if url not in named:
            named.add(url)
            problems.append(f"request failed ({failure}): {short(url)}")
    for text, url, line in log["console"]:
        if text.startswith("Failed to load resource") and url in named:
            continue
        if text.startswith("Failed to load resource") and url:
            named.add(url)   # seen by the console only (the favicon request, for one)
            problems.append(f"console error: {text} ({short(url)})")
            continue
        where = f" ({short(url)}:{line})" if url else ""
        problems.append(f"console error: {text}{where}")
    return problems


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
    chromium = find_chromium()
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
            log = watch(page)
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
            control_problems, n_controls = check_controls(page, page_name, facts["widgetViews"] > 0)
            problems += control_problems
            for img in page.evaluate(JS_PAGE_FACTS)["imgs"]:
                f = (site / page_name).parent / unquote(urlparse(img["src"] or "").path)
                if not img["ok"]:
                    problems.append(f"image {img['src']!r} did not load")
                elif (not img["src"].startswith(("data:", "blob:"))    # blob: a widget's image
                      and (not f.exists() or f.stat().st_size == 0)):
                    problems.append(f"image file {img['src']!r} missing or empty")
            page.evaluate("document.fonts.ready.then(() => true)")   # widths with the final fonts
            page.evaluate(FETCH_ICON)
            problems += [describe_clipped(c) for c in page.evaluate(JS_CLIPPED)]
            for e in facts["errors"]:
                problems.append(f"Sphinx error box: {e!r}")
            if facts["undefinedText"]:
                problems.append("text 'undefined label' / unresolved citation on the page")
            shot = args.screenshots / (page_name.replace("/", "_").removesuffix(".html") + ".png")
            page.screenshot(path=str(shot), full_page=True)
            problems += load_problems(log, external, base)
            n_img = len(facts["imgs"])
            status = "ok" if not problems else "FAIL"
            print(f"  {status:4} {page_name:32} math={facts['mjx']:4d} figures={n_img:2d} "
                  f"widgets={facts['widgetViews']:2d} controls={n_controls} -> {shot}")
            failures += [f"{page_name}: {p}" for p in problems]
            page.close()
        # Search: a student looks up the central object of chapter 5.
        page = ctx.new_page()
        log = watch(page)
        external.clear()
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
        failures += [f"search.html: {p}" for p in load_problems(log, external, base)]
        browser.close()
    httpd.shutdown()
    print(f"check_site: {len(pages)} pages in {time.time() - t0:.1f}s, screenshots in {args.screenshots}")
    return report("check_site", failures)


if __name__ == "__main__":
    sys.exit(main())
