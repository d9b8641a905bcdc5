"""Sphinx extension: keep the built book self-contained and its pages free of JavaScript errors.

* Drops sphinx-thebe's scripts (jupyter-book registers them twice, which raises "Identifier
  'THEBE_JS_URL' has already been declared" on every page, and they point at a CDN; live code runs
  through the launch buttons and `make lab` instead).
* Gives the ipywidgets embed manager (written for MathJax 2, it calls ``MathJax.Hub.Queue``) a small
  adapter onto MathJax 3's ``typesetPromise``, before and after MathJax starts.
* Tells the embed manager where its font files are. Its bundled CSS (Font Awesome) names them
  relative to the AMD module's URL, and require.js gives the inline module
  ``@jupyter-widgets/html-manager/dist/libembed-amd`` a URL relative to the page, so every widget
  page requested six fonts from ``book/@jupyter-widgets/html-manager/dist/`` (404). The manager reads
  ``window.__jupyter_widgets_assets_path__`` first: it is set to ``_static/widgets/``, where
  .ci/vendor_js.sh puts those fonts.
"""

from __future__ import annotations

MATHJAX2_ADAPTER = """
(function () {
  var queue = function (job) {
    var el = job && job[2];
    var mj = window.MathJax;
    if (mj && mj.typesetPromise) { mj.typesetPromise(el ? [el] : undefined).catch(function () {}); }
    else if (mj && mj.startup && mj.startup.promise) {
      mj.startup.promise.then(function () { queue(job); });
    }
  };
  var mj = window.MathJax = window.MathJax || {};
  mj.startup = mj.startup || {};
  var ready = mj.startup.ready;
  mj.startup.ready = function () {
    if (ready) { ready(); } else { MathJax.startup.defaultReady(); }
    MathJax.Hub = {Queue: queue};
  };
  mj.Hub = {Queue: queue};
})();
"""


WIDGETS_DIR = "_static/widgets/"
WIDGET_ASSETS_PATH = (
    "window.__jupyter_widgets_assets_path__ = new URL({rel!r}, document.baseURI).href;"
)


def _clean_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    kept, seen = [], set()
    for js in scripts:
        body = getattr(js, "attributes", {}).get("body", "") or ""
        name = getattr(js, "filename", None) or ""
        if "THEBE_JS_URL" in body or "sphinx-thebe" in str(name) or "thebe@" in str(name):
            continue
        key = (str(name), body)
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept
    if any(str(getattr(js, "filename", "")).endswith("widgets/embed-amd.js") for js in kept):
        rel = context["pathto"](WIDGETS_DIR, 1)
        app.add_js_file(None, body=WIDGET_ASSETS_PATH.format(rel=rel), priority=490)


def setup(app):
    app.add_js_file(None, body=MATHJAX2_ADAPTER, priority=510)
    app.connect("html-page-context", _clean_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
