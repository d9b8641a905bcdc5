"""The package's table of contents: mflib lists exactly the modules it has, and documents each."""

from __future__ import annotations

import pathlib

import mflib as mf

PACKAGE = pathlib.Path(mf.__file__).parent


def test_submodules_are_exactly_the_modules_that_exist():
    files = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")}
    assert set(mf.__all__) == files
    assert files <= set(dir(mf))
    for name in mf.__all__:
        assert getattr(mf, name).__name__ == f"mflib.{name}"


def test_docstring_lists_every_module():
    listed = {line.split()[0] for line in mf.__doc__.split("Modules\n-------\n")[1].splitlines()
              if line and not line.startswith(" ")}
    assert listed == set(mf.__all__)
