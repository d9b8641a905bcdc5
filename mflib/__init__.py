"""mflib: the computational core of *Mean-Field Lectures*.

One concept per module; the book's chapters call these functions and the tests check them against
closed forms. Submodules are imported lazily, so ``import mflib as mf; mf.problems`` works without
importing every dependency up front.

Modules
-------
activations   scalar activations sigma and their derivatives (chapter 1)
network       two-layer networks in the mean-field and NTK scalings (chapters 1, 6)
problems      data distributions with exact potentials V, U and population risk (chapters 2-4)
approximation Maurey sampling and Barron-type rates (chapter 1)
fitting       the log-log rate fit with confidence intervals (chapters 1, 3-7)
sgd           one-pass SGD as N interacting particles (chapters 2, 4)
statics       the convex problem over measures on a dictionary (chapter 3)
pde           the distributional-dynamics PDE in reduced coordinates (chapter 4)
reduced       theta = (a, b, w) in reduced coordinates (chapter 4)
compare       SGD against the PDE: the sup-gap over a window, the 1/N self-term (chapter 4)
transport     Wasserstein distances (chapters 3, 5, 7)
jko           backward Euler, proximal steps and the JKO scheme (chapter 5)
kernels       arc-cosine kernels in closed form (chapter 6)
ntk           empirical NTK, lazy vs mean-field training (chapter 6)
chaos         propagation of chaos, De Bortoli et al. 2020 (chapter 7)
experiments   parameter sweeps at paper scale on Dask, ``python -m mflib.experiments`` (chapter 7)
quadrature    Gaussian expectations by kink-aware quadrature, the arc-cosine formula (chapters 1-4, 6)
datasets      synthetic inputs and the handwritten digits (chapters 6, 7)
losses        squared and cross-entropy losses and their derivatives, accuracy (chapter 7)
plotting      the figures' house style: rate plots, particle histograms, neuron clouds; opt-in
              (no numerical module imports it; it and widgets alone import matplotlib)
widgets       controls that switch between figures drawn in advance, so that the static book's
              widgets work without a kernel (chapters 1-7)
progress      progress bars for long runs, silenced by MFLIB_PROGRESS=0
runs          the run skeleton of every time-stepping loop: record grid, recorder,
              DivergenceError, BLAS thread limit
validation    the input checks every public function shares
"""

from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"

_SUBMODULES = {
    "activations",
    "approximation",
    "chaos",
    "compare",
    "datasets",
    "experiments",
    "fitting",
    "jko",
    "kernels",
    "losses",
    "network",
    "ntk",
    "pde",
    "plotting",
    "problems",
    "progress",
    "quadrature",
    "reduced",
    "runs",
    "sgd",
    "statics",
    "transport",
    "validation",
    "widgets",
}

__all__ = sorted(_SUBMODULES)


def __getattr__(name: str):
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mflib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
