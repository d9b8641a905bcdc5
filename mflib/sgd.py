r"""One-pass SGD on a :class:`~mflib.problems.Problem`: N interacting particles (chapters 2 and 4).

Each step draws a fresh batch :math:`(x_k, y_k)` and moves every neuron (DESIGN.md conventions)

.. math::

    w_i \leftarrow w_i + \varepsilon\,\frac1B\sum_{b=1}^B \big(y_{k,b} - f_N(x_{k,b})\big)\,
    \sigma'(\langle w_i, x_{k,b}\rangle)\,x_{k,b}
    \;-\; \varepsilon\lambda w_i + \sqrt{2\varepsilon/\beta}\,g_{k,i},

whose mean drift is :math:`-\varepsilon\nabla\Psi_\lambda(w_i;\rho_N)`; time is
:math:`t = k\varepsilon`. The noise term is present only when ``beta`` is given.

Random streams. ``rng`` is split once into two independent child generators: data are drawn from
the first in fixed chunks of :data:`CHUNK` samples (so the trajectory does not depend on recording
or blocking choices), Langevin noise from the second, one ``(N, d)`` block per step. Any faster
engine must reproduce :func:`run_reference` on the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import progress as _progress
from .problems import Problem
from .validation import as_array, check_int, check_real, check_rng

CHUNK = 4096
BLOWUP = 1e6   # |w| beyond this (times the initial scale) is treated as divergence


class DivergenceError(FloatingPointError):
    """SGD produced NaN/inf or exploding weights."""


@dataclass
class Trajectory:
    r"""Output of :func:`run`.

    Attributes
    ----------
    t : array (R,)       times :math:`k\varepsilon` of the records (first 0, last ``steps * eps``)
    steps : array (R,)   step indices k of the records
    risk : array (R,)    exact population risk :math:`R_N` at those times
    W : array (N, d)     final weights
    snapshots : array (R, N, d) or None   weights at the record times (``snapshots=True``)
    """

    t: np.ndarray
    steps: np.ndarray
    risk: np.ndarray
    W: np.ndarray
    snapshots: np.ndarray | None = None


def record_grid(steps: int, record_every: int | None = None, n_log: int | None = None) -> np.ndarray:
    """Sorted unique record steps in [0, steps]: every ``record_every`` steps, or ``n_log``
    log-spaced ones, always including 0 and ``steps``."""
    steps = check_int(steps, "steps", minimum=0)
    if record_every is not None and n_log is not None:
        raise ValueError("give record_every or n_log, not both")
    if n_log is not None:
        n_log = check_int(n_log, "n_log", minimum=2)
        ks = np.unique(np.round(np.logspace(0, np.log10(max(steps, 1)), n_log)).astype(int))
    else:
        every = check_int(record_every if record_every is not None else max(steps, 1),
                          "record_every", minimum=1)
        ks = np.arange(0, steps + 1, every)
    return np.unique(np.concatenate([[0], ks[ks <= steps], [steps]]))


class _DataStream:
    """Fresh samples from the problem, drawn in fixed chunks of CHUNK."""

    def __init__(self, problem: Problem, rng: np.random.Generator):
        self.problem, self.rng = problem, rng
        self.X = np.empty((0, problem.d))
        self.y = np.empty(0)
        self.pos = 0

    def take(self, m: int):
        if self.pos + m > self.y.size:
            X, y = self.problem.sample(CHUNK, self.rng)
            self.X = np.concatenate([self.X[self.pos:], X])
            self.y = np.concatenate([self.y[self.pos:], y])
            self.pos = 0
            return self.take(m)
        sl = slice(self.pos, self.pos + m)
        self.pos += m
        return self.X[sl], self.y[sl]


def _validate(problem, W0, eps, steps, batch, lam, beta, rng):
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an mflib.problems.Problem, got {type(problem).__name__}")
    W0 = as_array(W0, "W0", ndim=2)
    if W0.shape[1] != problem.d or W0.shape[0] == 0:
        raise ValueError(f"W0 must have shape (N, {problem.d}) with N >= 1, got {W0.shape}")
    eps = check_real(eps, "eps", low=0.0, low_open=True)
    steps = check_int(steps, "steps", minimum=0)
    batch = check_int(batch, "batch", minimum=1)
    lam = check_real(lam, "lam", low=0.0)
    if beta is not None:
        beta = check_real(beta, "beta", low=0.0, low_open=True)
    rng = check_rng(rng)
    return W0, eps, steps, batch, lam, beta, rng


def _check_finite(W, k, eps, scale):
    if not np.all(np.isfinite(W)) or np.abs(W).max() > BLOWUP * scale:
        raise DivergenceError(
            f"SGD diverged at step {k} (t = {k * eps:.4g}): weights became non-finite or exceeded "
            f"{BLOWUP:.0e} times their initial scale. Try a smaller eps (now {eps:g}).")


def run_reference(problem: Problem, W0, eps: float, steps: int, batch: int = 1, lam: float = 0.0,
                  beta: float | None = None, rng: np.random.Generator | None = None,
                  record_every: int | None = None, n_log: int | None = None,
                  snapshots: bool = False, progress: bool | None = None) -> Trajectory:
    """Plain NumPy loop, one step at a time: the oracle for faster engines. Same API as :func:`run`."""
    W0, eps, steps, batch, lam, beta, rng = _validate(problem, W0, eps, steps, batch, lam, beta, rng)
    data_rng, noise_rng = rng.spawn(2)
    grid = record_grid(steps, record_every, n_log)
    W = W0.copy()
    N = W.shape[0]
    act = problem.activation
    stream = _DataStream(problem, data_rng)
    scale = max(np.abs(W0).max(), 1.0)
    risks, snaps, r_i = [], [], 0
    noise_amp = np.sqrt(2.0 * eps / beta) if beta is not None else 0.0
    with _progress.bar(steps, progress, desc="SGD") as bar:
        for k in range(steps + 1):
            if r_i < grid.size and grid[r_i] == k:
                _check_finite(W, k, eps, scale)
                risks.append(problem.risk(W))
                if snapshots:
                    snaps.append(W.copy())
                r_i += 1
            if k == steps:
                break
            X, y = stream.take(batch)
            H = X @ W.T                                   # (B, N)
            r = y - act.sigma(H).sum(axis=1) / N          # (B,)
            C = act.dsigma(H) * r[:, None]                # (B, N)
            step = (eps / batch) * (C.T @ X)
            if lam:
                step -= eps * lam * W
            if beta is not None:
                step += noise_amp * noise_rng.standard_normal(W.shape)
            W += step
            bar.update()
    _check_finite(W, steps, eps, scale)
    return Trajectory(t=grid * eps, steps=grid, risk=np.array(risks), W=W,
                      snapshots=np.array(snaps) if snapshots else None)


def run(problem: Problem, W0, eps: float, steps: int, batch: int = 1, lam: float = 0.0,
        beta: float | None = None, rng: np.random.Generator | None = None,
        record_every: int | None = None, n_log: int | None = None,
        snapshots: bool = False, progress: bool | None = None) -> Trajectory:
    r"""Run one-pass SGD from ``W0`` and record the exact population risk.

    Parameters
    ----------
    problem : Problem
        Data distribution and neuron (:mod:`mflib.problems`).
    W0 : array, shape (N, d)
        Initial neurons (not modified).
    eps : float > 0
        Step size; time is :math:`t = k\varepsilon`.
    steps : int >= 0
    batch : int >= 1
        Samples averaged per step (same ``eps``).
    lam : float >= 0
        Ridge coefficient :math:`\lambda`.
    beta : float > 0 or None
        Inverse temperature of the Langevin noise :math:`\sqrt{2\varepsilon/\beta}\,g`; ``None``
        for plain SGD.
    rng : numpy.random.Generator
    record_every, n_log : int, optional
        Record every ``record_every`` steps, or on ``n_log`` log-spaced steps; 0 and ``steps``
        are always recorded. The exact risk costs :math:`O(N^2 d)` per record.
    snapshots : bool
        Also keep the weights at the record times.
    progress : bool or None
        Progress bar (``None``: shown for long runs unless ``MFLIB_PROGRESS=0``).

    Returns
    -------
    Trajectory

    Raises
    ------
    DivergenceError
        When the weights become non-finite or explode; the message names the step.
    """
    return run_reference(problem, W0, eps, steps, batch, lam, beta, rng, record_every, n_log,
                         snapshots, progress)
