"""Style of the chapters' code: every line of a code cell fits the page.

The notebooks listed in _toc.yml are read as JSON (no kernel, a few milliseconds). A code line longer
than MAX_LINE characters is reported with its cell and line number. The browser check
(tests/check_site.py) measures the same thing in pixels on the built page; this test names the line.
"""

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_LINE = 88
FILES = re.findall(r"^\s*-?\s*(?:file|root):\s*(\S+)", (ROOT / "_toc.yml").read_text(), re.M)
NOTEBOOKS = [ROOT / (f + ".ipynb") for f in FILES if (ROOT / (f + ".ipynb")).exists()]


def long_code_lines(path: pathlib.Path, limit: int = MAX_LINE) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        for j, line in enumerate("".join(cell["source"]).splitlines(), start=1):
            n = len(line.expandtabs(4))
            if n > limit:
                found.append(f"cell {i}, line {j}: {n} characters: {line.strip()[:70]}")
    return found


def test_toc_has_notebooks():
    assert NOTEBOOKS, "no notebook found from _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit(path):
    found = long_code_lines(path)
    assert not found, (f"{path.name}: {len(found)} code line(s) longer than {MAX_LINE} characters:\n  "
                       + "\n  ".join(found))
