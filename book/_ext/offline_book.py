"""Sphinx extension: keep the built book self-contained and its pages free of JavaScript errors.

* Hides the repository, Binder and Colab buttons while ``repository: url`` in _config.yml is empty
  (the book is not published yet: a button to a placeholder address cannot work). The publisher sets
  that one address (README, "Publishing") and the buttons appear.

* Drops sphinx-thebe's scripts (jupyter-book registers them twice, which raises "Identifier
  'THEBE_JS_URL' has already been declared" on every page, and they point at a CDN; live code runs
  through the launch buttons and `make lab` instead).
* Gives the ipywidgets embed manager (written for MathJax 2, it calls ``MathJax.Hub.Queue``) a small
  adapter onto MathJax 3's ``typesetPromise``, before and after MathJax starts.
* Tells require.js where the embed manager lives. ``embed-amd.js`` defines its AMD modules inline,
  so require.js gives ``@jupyter-widgets/html-manager/dist/libembed-amd`` the URL
  ``<page dir>/@jupyter-widgets/html-manager/dist/libembed-amd.js``; the module derives webpack's
  public path from that URL, and its bundled CSS (Font Awesome) then asked for six font files under
  ``book/@jupyter-widgets/html-manager/dist/`` on every widget page (404). A ``paths`` entry, set
  between require.js and embed-amd.js, maps that prefix to ``_static/widgets/``, where
  .ci/vendor_js.sh puts those fonts. (The manager's ``window.__jupyter_widgets_assets_path__`` hook
  is read only after the CSS has been injected, so it does not help.) A second entry maps the bare
  ``@jupyter-widgets`` prefix there too: pages whose widgets include a SelectionSlider or a Stack
  (mflib.widgets.precomputed) otherwise asked for the same fonts under ``book/@jupyter-widgets/``.
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


WIDGETS_DIR = "_static/widgets"
WIDGETS_REQUIRE_PATHS = (
    "require.config({{paths: {{'@jupyter-widgets/html-manager/dist':"
    " new URL({rel!r}, document.baseURI).href,"
    " '@jupyter-widgets': new URL({rel!r}, document.baseURI).href}}}});"
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
    embed = [i for i, js in enumerate(scripts)
             if str(getattr(js, "filename", "")).endswith("widgets/embed-amd.js")]
    if embed:
        # Added for this page only (html-page-context), then moved just before embed-amd.js with
        # the same priority, so that Sphinx's stable sort keeps it after require.js.
        i = embed[0]
        rel = context["pathto"](WIDGETS_DIR, 1)
        body = WIDGETS_REQUIRE_PATHS.format(rel=rel)
        app.add_js_file(None, body=body, priority=scripts[i].priority)
        scripts.insert(i, scripts.pop())


def _launch_buttons(app, config):
    opts = dict(config.html_theme_options or {})
    if (opts.get("repository_url") or "").strip():
        # jupyter-book refuses use_repository_button without an address, so _config.yml leaves it
        # off and it is switched on here, with the address.
        opts["use_repository_button"] = True
        config.html_theme_options = opts
        return
    launch = dict(opts.get("launch_buttons") or {})
    for key in ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url"):
        launch[key] = ""
    opts.update(launch_buttons=launch, use_repository_button=False, use_edit_page_button=False,
                use_issues_button=False, use_source_button=False)
    config.html_theme_options = opts


def setup(app):
    app.connect("config-inited", _launch_buttons)
    app.add_js_file(None, body=MATHJAX2_ADAPTER, priority=510)
    app.connect("html-page-context", _clean_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
