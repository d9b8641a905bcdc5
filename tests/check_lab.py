"""Open a chapter in JupyterLab the way `make lab` serves it, in headless Chromium, and fail on any
defect a reader would see before running a cell.

Usage: python tests/check_lab.py [book/03_statics.ipynb] [--screenshots DIR] [--timeout S]

JupyterLab is started as `make lab` starts it: the chapters trusted first (`jupyter trust`, which
records signatures and leaves the files alone), `--allow-root` when run as root, MFLIB_PROGRESS=1,
serving book/. For the check it also gets no browser, 127.0.0.1 on a free port, a random token,
`timeout`, and Jupyter config/data/runtime folders of its own (a reader's settings or saved
workspaces cannot change the result; the trust database lives there too; autosave is off, so the
check never writes book/). Then, with no cell run:
  * MyST renders (jupyterlab-myst): every ```{prf:...}``` directive of the chapter is a MyST proof
    block, every exercise/solution a MyST exercise block, {cite} roles are citation groups, and no
    markdown cell shows a raw directive fence or role text such as {prf:ref};
  * the saved widgets render as widget views (not the text `interactive(children=...`, which is
    what an untrusted notebook shows);
  * no uncaught JavaScript error and no request leaving localhost.
Screenshots (viewport, scrolled to the first theorem and to the first widget) go to
DIR/lab_<chapter>_theorem.png and DIR/lab_<chapter>_widget.png. Exit status 1 names each defect.
--untrusted and --without-myst reproduce the two defects this check exists for (it must fail).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from urllib.parse import urlparse

from check_site import CHROMIUM_ARGS, find_chromium, report

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCAL = ("127.0.0.1", "localhost")
FENCE = re.compile(r"^(?:`{3,}|:{3,})\{([\w:-]+)\}", re.M)

JS_FACTS = r"""
() => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-MarkdownCell')];
  let raw = [];
  for (const c of cells) {
    const r = c.querySelector('.jp-Cell-inputWrapper').cloneNode(true);
    r.querySelectorAll('.jp-InputArea-editor').forEach(e => e.remove());   // the hidden source
    const text = r.textContent;
    const m = text.match(/\{(prf:[a-z]+|exercise|solution|cite[a-z]*|ref|numref|eq)\}|^:label:/m);
    if (m) raw.push(m[0] + ' in: ' + text.trim().slice(0, 60));
    r.querySelectorAll('code[class*="language-{"]').forEach(e => raw.push(
        'raw fence ' + e.className));
  }
  const outs = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')];
  return {
    cells: document.querySelectorAll('.jp-Notebook .jp-Cell').length,
    markdown: cells.length,
    raw: raw,
    proof: [...document.querySelectorAll('.jp-Notebook .myst-proof')].map(
        e => (e.querySelector('.myst-proof-title, [class*="-header"]') || e).textContent.trim().slice(0, 60)),
    exercise: document.querySelectorAll('.jp-Notebook .myst-exercise').length,
    cite: document.querySelectorAll('.jp-Notebook cite').length,   // resolved citations
    citeNotFound: document.querySelectorAll('.jp-Notebook [title="Citation Not Found"]').length,
    widgets: outs.filter(e => e.querySelector('.jupyter-widgets')).length,
    widgetText: outs.filter(e => e.textContent.includes('interactive(children=')).length,
    loading: outs.filter(e => /Loading widget|Error displaying widget/.test(e.textContent))
        .map(e => e.textContent.trim().slice(0, 80)),
    kernel: ((document.querySelector('#jp-main-statusbar') || document.body).innerText
             .split('\n').find(t => t.includes(' | ')) || '').trim(),
  };
}
"""


def source_facts(nb_path: pathlib.Path) -> dict:
    """What the chapter's source promises: directives, citation roles, saved widget views."""
    nb = json.loads(nb_path.read_text())
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    fences = FENCE.findall(md)
    views = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    return {"prf": sum(f.startswith("prf:") for f in fences),
            "theorem": fences.count("prf:theorem"),
            "exercise": sum(f in ("exercise", "solution") for f in fences),
            "cite": sum(len(k.split(",")) for k in re.findall(r"\{cite[a-z:]*\}`([^`]*)`", md)),
            "views": views}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(tmp: pathlib.Path, port: int, token: str, args) -> subprocess.Popen:
    """`make lab`'s two steps, with the check's own Jupyter folders, port and token."""
    bin_dir = pathlib.Path(sys.executable).parent
    env = dict(os.environ, MFLIB_PROGRESS="1", JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    env.pop("JUPYTER_PATH", None)
    # Opening a chapter marks it modified (the kernel's display name enters its metadata): never
    # let autosave write book/ while the check runs.
    docmanager = tmp / "config" / "lab" / "user-settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    if args.without_myst:
        labconfig = tmp / "config" / "labconfig"
        labconfig.mkdir(parents=True)
        (labconfig / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"jupyterlab-myst": True}}))
    if not args.untrusted:
        chapters = sorted(str(p) for p in (ROOT / "book").glob("*.ipynb"))
        subprocess.run([str(bin_dir / "jupyter"), "trust", *chapters], env=env, check=True, timeout=60,
                       capture_output=True)
    root = ["--allow-root"] if os.geteuid() == 0 else []
    cmd = ["timeout", str(int(args.server_timeout)), str(bin_dir / "jupyter"), "lab", *root,
           "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "book/"]
    log = open(tmp / "lab.log", "w")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def stop(proc: subprocess.Popen) -> None:
    """End the server we started (its process group: timeout, jupyter and the kernel)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def check(page, facts_src: dict, timeout: float) -> tuple[list[str], dict]:
    problems = []
    page.wait_for_function("document.querySelectorAll('.jp-Notebook .jp-Cell').length > 0",
                           timeout=timeout * 1000)
    try:   # jupyterlab-myst renders cell by cell, asynchronously; a raw fence never becomes a block
        page.wait_for_function(
            "([p, e]) => document.querySelectorAll('.jp-Notebook .myst-proof').length >= p"
            " && document.querySelectorAll('.jp-Notebook .myst-exercise').length >= e",
            arg=[facts_src["prf"], facts_src["exercise"]], timeout=timeout * 1000)
    except Exception:
        pass
    if facts_src["views"]:
        try:   # the saved state is restored once the kernel is up (no cell is run)
            page.wait_for_function(
                "document.querySelector('.jp-Notebook .jp-OutputArea-output .jupyter-widgets')"
                " || [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')]"
                ".some(e => e.textContent.includes('interactive(children='))", timeout=timeout * 1000)
        except Exception:
            pass
    f = page.evaluate(JS_FACTS)
    if len(f["proof"]) < facts_src["prf"]:
        problems.append(f"{facts_src['prf']} prf directive(s) in the source, {len(f['proof'])} "
                        "rendered as MyST blocks (jupyterlab-myst missing or failing?)")
    if sum("Theorem" in t for t in f["proof"]) < facts_src["theorem"]:
        problems.append(f"{facts_src['theorem']} theorem(s) in the source, rendered titles: {f['proof']}")
    if f["exercise"] < facts_src["exercise"]:
        problems.append(f"{facts_src['exercise']} exercise/solution directive(s), {f['exercise']} rendered")
    if f["cite"] + f["citeNotFound"] < facts_src["cite"]:   # unresolved keys still render as keys
        problems.append(f"{facts_src['cite']} citation key(s) in {{cite}} roles, "
                        f"{f['cite'] + f['citeNotFound']} rendered as citations")
    problems += [f"raw MyST in a markdown cell: {r!r}" for r in f["raw"][:5]]
    if f["widgetText"]:
        problems.append(f"{f['widgetText']} widget output(s) shown as the text 'interactive(children=...' "
                        "(notebook not trusted?)")
    if f["widgets"] < facts_src["views"]:
        problems.append(f"{facts_src['views']} saved widget view(s), {f['widgets']} rendered "
                        f"(outputs say {f['loading'] or 'nothing'}; kernel: {f['kernel']!r})")
    return problems, f


def browse(chromium: str, url: str, nb: pathlib.Path, src: dict, args) -> tuple[list[str], dict, list[str]]:
    """Open the chapter in headless Chromium, check it, take the screenshots."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        external: list[str] = []

        def route(r):
            u = r.request.url
            if u.startswith(("data:", "blob:", "about:")) or urlparse(u).hostname in LOCAL:
                r.continue_()
            else:
                external.append(u)
                r.abort()

        ctx.route("**/*", route)
        page = ctx.new_page()
        page.set_default_timeout(args.timeout * 1000)
        js_errors: list[str] = []
        page.on("pageerror", lambda e: js_errors.append(str(e)[:200]))
        page.goto(url, wait_until="load")
        problems, facts = check(page, src, args.timeout)
        problems += [f"JavaScript error: {e}" for e in js_errors]
        problems += [f"request left localhost: {u}" for u in sorted(set(external))]
        try:   # JupyterLab's first-run "news?" toast would cover part of the screenshots
            page.locator(".jp-toast-button", has_text="No").click(timeout=2000)
        except Exception:
            pass
        shots = []
        for what, sel, fallback in (
                ("theorem", ".jp-Notebook .myst-proof", ".jp-Notebook .jp-MarkdownCell pre"),
                ("widget", ".jp-Notebook .jp-OutputArea-output .jupyter-widgets",
                 ".jp-Notebook .jp-OutputArea-output >> text=interactive(children=")):
            target = sel if page.query_selector(sel) else fallback   # else show what the reader sees
            try:
                page.locator(target).first.evaluate("e => e.scrollIntoView({block: 'center'})",
                                                    timeout=5000)
                page.wait_for_timeout(500)
            except Exception:
                pass
            shot = args.screenshots / f"lab_{nb.stem}_{what}.png"
            page.screenshot(path=str(shot))
            shots.append(str(shot))
        browser.close()
    return problems, facts, shots


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("notebook", nargs="?", type=pathlib.Path, default=ROOT / "book" / "03_statics.ipynb")
    ap.add_argument("--screenshots", type=pathlib.Path, default=ROOT / "_build" / "screenshots")
    ap.add_argument("--timeout", type=float, default=45.0, help="seconds allowed for each wait")
    ap.add_argument("--server-timeout", type=float, default=150.0, help="`timeout` for JupyterLab")
    ap.add_argument("--untrusted", action="store_true", help="skip `jupyter trust` (must fail)")
    ap.add_argument("--without-myst", action="store_true", help="disable jupyterlab-myst (must fail)")
    args = ap.parse_args()
    nb = args.notebook.resolve()
    book = (ROOT / "book").resolve()
    if nb.parent != book or not nb.exists():
        print(f"check_lab: {args.notebook} is not a notebook in {book}")
        return 1
    chromium = find_chromium()
    if chromium is None:
        print("check_lab: Debian chromium is not installed (make chromium)")
        return 1
    src = source_facts(nb)
    args.screenshots.mkdir(parents=True, exist_ok=True)
    for old in args.screenshots.glob(f"lab_{nb.stem}_*.png"):
        old.unlink()
    t0 = time.time()
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="check_lab_") as tmpdir:
        tmp = pathlib.Path(tmpdir)
        proc = start_lab(tmp, port, token, args)
        try:
            if not wait_ready(proc, f"{base}/api/status?token={token}", args.timeout):
                print((tmp / "lab.log").read_text()[-3000:])
                print(f"check_lab FAILED: JupyterLab did not answer on port {port} "
                      f"within {args.timeout:.0f} s (exit status {proc.poll()})")
                return 1
            t_up = time.time() - t0
            problems, f, shots = browse(chromium, f"{base}/lab/tree/{nb.name}?token={token}", nb, src, args)
        finally:
            stop(proc)
    n_cite = f["cite"] + f["citeNotFound"]
    print(f"  {'ok' if not problems else 'FAIL':4} {nb.name}: MyST proof blocks "
          f"{len(f['proof'])}/{src['prf']} {f['proof']}, exercise blocks {f['exercise']}/{src['exercise']}, "
          f"citation keys {n_cite}/{src['cite']} ({f['citeNotFound']} of them unresolved: no bibliography "
          f"in JupyterLab), widget views {f['widgets']}/{src['views']}, kernel {f['kernel']!r}")
    print(f"check_lab: JupyterLab up in {t_up:.1f}s, all done in {time.time() - t0:.1f}s; "
          f"screenshots {', '.join(shots)}")
    return report("check_lab", problems)


if __name__ == "__main__":
    sys.exit(main())
