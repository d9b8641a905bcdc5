r"""Measuring SGD against the distributional dynamics (chapter 4).

The PDE solvers (:mod:`mflib.pde`, :mod:`mflib.reduced`) compute :math:`R(\rho_t)`; SGD
(:mod:`mflib.sgd`) computes :math:`R_N(\theta^k)`. This module holds the few measurements that
put the two side by side.

:func:`sgd_gap`
    :math:`\sup_k|R_N(\theta^k) - R(\rho_{k\varepsilon})|` over a window, for one SGD run from
    i.i.d. Gaussian neurons (its rates in :math:`N` and :math:`\varepsilon` are fitted with
    :func:`mflib.fitting.loglog_fit`).
:func:`self_term`
    the :math:`1/N` self-interaction that separates the risk :math:`R_N` of :math:`N` neurons
    from the risk of the symmetrised measure of their radii (the PDE started from the same
    neurons). For :math:`N` atoms :math:`w_i` with radii :math:`r_i`,

    .. math::

        \begin{aligned}
        R_N(w) - R\Big(\frac1N\sum_i\delta_{r_i}\Big)
        &= \frac1{N^2}\sum_i\big(U(w_i, w_i) - \bar U(r_i, r_i)\big)\\
        &\quad{}+ \frac1{N^2}\sum_{i\ne j}\big(U(w_i, w_j) - \bar U(r_i, r_j)\big);
        \end{aligned}

    the second sum has mean zero over uniform directions, the first is this function.
"""

from __future__ import annotations

import numpy as np

from . import pde as _pde
from . import problems as _problems
from .validation import as_array, check_int, check_real


def sgd_gap(problem, t_pde, risk_pde, N: int, eps: float, T: float, kappa: float,
            rng: np.random.Generator, n_records: int = 21) -> float:
    r""":math:`\sup_k |R_N(\theta^k) - R(\rho_{k\varepsilon})|` over ``n_records`` uniform record
    times in :math:`[0, T]`, for one run of one-pass SGD (:func:`mflib.sgd.run`) from
    :math:`w_i\sim\mathcal N(0,\kappa^2 I_d/d)`; :math:`R(\rho_t)` is interpolated linearly from a
    finely recorded PDE curve ``(t_pde, risk_pde)``."""
    from . import sgd as _sgd
    if not isinstance(problem, _problems.Problem):
        raise TypeError(f"problem must be an mflib.problems.Problem, got {type(problem).__name__}")
    t_pde = as_array(t_pde, "t_pde", ndim=1)
    risk_pde = as_array(risk_pde, "risk_pde", shape=t_pde.shape)
    if t_pde.size < 2 or np.any(np.diff(t_pde) <= 0):
        raise ValueError(f"t_pde must hold at least 2 increasing times, got shape {t_pde.shape}")
    N = check_int(N, "N", minimum=1)
    eps = check_real(eps, "eps", low=0.0, low_open=True)
    T = check_real(T, "T", low=0.0, low_open=True)
    kappa = check_real(kappa, "kappa", low=0.0, low_open=True)
    n_records = check_int(n_records, "n_records", minimum=2)
    steps = int(round(T / eps))
    every = max(1, steps // (n_records - 1))
    W0 = problem.init_weights(N, kappa, rng)
    tr = _sgd.run(problem, W0, eps=eps, steps=steps, rng=rng, record_every=every, progress=False)
    return float(np.max(np.abs(tr.risk - np.interp(tr.t, t_pde, risk_pde))))


def self_term(reduced, R) -> float:
    r"""The self-interaction :math:`\frac1{N^2}\sum_i\big(U(w_i,w_i) - \bar U(r_i,r_i)\big)` of
    :math:`N` equally weighted atoms with radii ``R`` (module docstring).

    :math:`U(w, w) = E\,\sigma(\langle w, x\rangle)^2` is :math:`U` at cosines 1, and
    :math:`\bar U(r, r)` averages it over the cosines of two independent directions
    (:meth:`mflib.pde.ReducedAnisotropic.U_at_cosines` on the Gauss-Jacobi rule of ``reduced``).
    Add it to the risk of the PDE started from the radii of the same :math:`N` neurons to compare
    with :math:`R_N`.

    Parameters
    ----------
    reduced : mflib.pde.ReducedAnisotropic
    R : array (N, 2), or (N,) when :math:`s_0 = d`
        Radii of the atoms.

    Returns
    -------
    float
    """
    if not isinstance(reduced, _pde.ReducedAnisotropic):
        raise TypeError(f"reduced must be an mflib.pde.ReducedAnisotropic, got "
                        f"{type(reduced).__name__}")
    R = reduced.radii(R)
    N = R.shape[0]
    if N == 0:
        raise ValueError("R must hold at least one atom, got an empty array")
    diag = reduced.U_at_cosines(R, R, np.ones(N), np.ones(N))
    T1, T2 = (x.ravel() for x in np.meshgrid(reduced.t1, reduced.t2, indexing="ij"))
    Q = np.outer(reduced.w1, reduced.w2).ravel()
    nq = Q.size
    Rq = np.repeat(R, nq, axis=0)
    ubar = (reduced.U_at_cosines(Rq, Rq, np.tile(T1, N), np.tile(T2, N)).reshape(N, nq) * Q).sum(1)
    return float((diag - ubar).sum() / N**2)
