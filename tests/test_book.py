"""Structure of the book: every chapter in _toc.yml is committed executed, small and complete."""

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOC = (ROOT / "_toc.yml").read_text()
FILES = re.findall(r"^\s*-?\s*(?:file|root):\s*(\S+)", TOC, re.M)
NOTEBOOKS = [ROOT / (f + ".ipynb") for f in FILES if (ROOT / (f + ".ipynb")).exists()]
CHAPTERS = [p for p in NOTEBOOKS if re.match(r"\d\d_", p.name)]


def test_every_toc_entry_exists():
    for f in FILES:
        exists = any((ROOT / (f + ext)).exists() for ext in (".ipynb", ".md"))
        assert exists, f"{f} listed in _toc.yml is missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_executed_in_order(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{path.name}: some code cells were never executed; run `make notebooks`"
    assert counts == sorted(counts), f"{path.name}: cells executed out of order"
    assert any(c.get("outputs") for c in code), f"{path.name}: no outputs committed"
    assert path.stat().st_size < 3_000_000, f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, keep < 3 MB"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: committed with an error output"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_exercises_widget_and_captions(path):
    nb = json.loads(path.read_text())
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    n_ex = len(re.findall(r"```\{exercise\}", md))
    assert 2 <= n_ex <= 4, f"{path.name}: {n_ex} exercises (want 2 to 4)"
    assert len(re.findall(r"`{3,4}\{solution\}", md)) == n_ex, f"{path.name}: an exercise lacks a solution"
    assert "**Figure" in md, f"{path.name}: figures need captions"
    tagged = [c for c in nb["cells"] if "nbval-ignore-output" in c.get("metadata", {}).get("tags", [])]
    assert tagged, f"{path.name}: no widget cell (tagged nbval-ignore-output)"
    assert md.lstrip().startswith("# "), f"{path.name}: must open with a '# N. Title' cell"


def _buttons(url):
    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location("offline_book", ROOT / "book/_ext/offline_book.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    config = types.SimpleNamespace(html_theme_options={
        "repository_url": url, "use_repository_button": False,
        "launch_buttons": {"binderhub_url": "https://mybinder.org",
                           "colab_url": "https://colab.research.google.com"}})
    ext._launch_buttons(None, config)
    return config.html_theme_options


def test_launch_buttons_hidden_until_the_repository_address_is_set():
    hidden = _buttons("")
    assert not hidden["use_repository_button"]
    assert not hidden["launch_buttons"]["binderhub_url"] and not hidden["launch_buttons"]["colab_url"]
    shown = _buttons("https://github.com/owner/mean-field-lectures")
    assert shown["use_repository_button"] and shown["launch_buttons"]["binderhub_url"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_widget_works_without_a_kernel(path):
    """Issue 18: the book's widget switches between figures drawn in advance (mflib.widgets);
    the live one, for any value, is kept for JupyterLab and removed from the book."""
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tags = [c.get("metadata", {}).get("tags", []) for c in code]
    static = [c for c, t in zip(code, tags, strict=True) if "precomputed(" in "".join(c["source"])
              and "remove-cell" not in t]
    assert static, f"{path.name}: no mflib.widgets.precomputed widget in the book"
    assert all("nbval-ignore-output" in c["metadata"].get("tags", []) for c in static)
    views = [o for c in static for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, f"{path.name}: the precomputed widget's view is not saved"
    live = [c for c, t in zip(code, tags, strict=True) if "interact(" in "".join(c["source"])]
    assert all("remove-cell" in c["metadata"].get("tags", []) for c in live), \
        f"{path.name}: a live widgets.interact cell shows in the book (tag it remove-cell)"
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "shows the default output" not in md
