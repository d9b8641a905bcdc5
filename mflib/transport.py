r"""Optimal transport: the 2-Wasserstein distance between empirical and Gaussian measures.

Used by chapter 5 (backward Euler and the JKO scheme) and chapter 7 (propagation of chaos). For
probability measures :math:`\mu, \nu` on :math:`\mathbb R^d` with finite second moments,

.. math::

    W_2(\mu,\nu)^2 = \min_{\gamma\in\Pi(\mu,\nu)} \int |x-y|^2\,\gamma(dx,dy),

the minimum over couplings :math:`\gamma` with marginals :math:`\mu` and :math:`\nu`
(Santambrogio 2015, ch. 1-2). ``W2`` is the distance itself; functions whose name ends in
``_squared`` return :math:`W_2^2`. Four exact routes:

:func:`w2`
    Uniform empirical measures with the same number of atoms: by Birkhoff's theorem an optimal
    coupling is a permutation, found by an assignment solver (sorting when :math:`d = 1`).
:func:`w2_1d`
    Weighted empirical measures on the line, any sizes: the quantile formula
    :math:`W_2^2 = \int_0^1 |F^{-1}(t) - G^{-1}(t)|^2\,dt`, exact on the merged breakpoints.
:func:`w2_emd`
    Weighted empirical measures in :math:`\mathbb R^d`, any sizes: the transport linear program,
    solved exactly by the network simplex of POT (Flamary et al. 2021).
:func:`w2_gaussian`
    Gaussians: the Bures-Wasserstein closed form.

Helpers: :func:`w2_coordinates` (the exact :math:`W_2` of each coordinate marginal, a lower bound
on :math:`W_2` in high dimension, chapter 7) and :func:`psd_sqrt` (symmetric square roots of
stacks of covariance matrices, for the Gaussian closed form and the noise of the chaos systems).

References
----------
F. Santambrogio, *Optimal Transport for Applied Mathematicians*, Birkhauser 2015
(``santambrogio2015optimal``). R. Flamary et al., POT: Python Optimal Transport, JMLR 22 (2021)
(``flamary2021pot``).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .validation import as_array, check_int

__all__ = [
    "w2", "w2_squared", "w2_1d", "w2_1d_squared", "w2_emd", "w2_emd_squared",
    "w2_gaussian", "w2_gaussian_squared", "w2_coordinates", "psd_sqrt",
]


# ----------------------------------------------------------------------------------------------
# Input helpers
# ----------------------------------------------------------------------------------------------
def _points(X, name: str) -> np.ndarray:
    """Rows of a (n, d) array; a 1-D array (n,) is read as n points on the line (d = 1)."""
    X = as_array(X, name)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"{name} must be an array of shape (n,) or (n, d), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one point and one coordinate, got shape {X.shape}")
    return X


def _same_dim(X: np.ndarray, Y: np.ndarray, xname: str = "X", yname: str = "Y") -> None:
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"{xname} and {yname} must live in the same dimension d, got "
                         f"{xname}.shape = {X.shape} and {yname}.shape = {Y.shape}")


def _weights(a, n: int, name: str) -> np.ndarray:
    """Probability weights (n,): uniform when ``a`` is None, else non-negative and normalised."""
    if a is None:
        return np.full(n, 1.0 / n)
    a = as_array(a, name, shape=(n,))
    if np.any(a < 0):
        raise ValueError(f"{name} must be non-negative weights, got a minimum of {a.min()}")
    total = a.sum()
    if not total > 0:
        raise ValueError(f"{name} must have a positive sum, got {total}")
    return a / total


def _sqrt_clip(x: float) -> float:
    return float(np.sqrt(max(x, 0.0)))


# ----------------------------------------------------------------------------------------------
# Uniform empirical measures with equal counts: assignment
# ----------------------------------------------------------------------------------------------
def w2_squared(X, Y) -> float:
    r"""Squared :math:`W_2` between uniform empirical measures with the same number of atoms.

    .. math::

        W_2^2\Big(\frac1n\sum_i\delta_{x_i},\ \frac1n\sum_j\delta_{y_j}\Big)
        = \min_{\pi\in S_n}\frac1n\sum_{i=1}^n |x_i - y_{\pi(i)}|^2 ,

    since the extreme points of the couplings of two uniform measures on :math:`n` atoms are the
    permutation matrices (Birkhoff; Santambrogio 2015, sec. 6.4.1). The assignment problem is
    solved exactly by :func:`scipy.optimize.linear_sum_assignment` on the cost
    :math:`C_{ij} = |x_i - y_j|^2` (:math:`O(n^3)`); for :math:`d = 1` the monotone matching
    (sort both) is optimal and costs :math:`O(n\log n)`.

    Parameters
    ----------
    X : array, shape (n, d) or (n,)
        Atoms of the first measure (a 1-D array is read as ``d = 1``).
    Y : array, shape (n, d) or (n,)
        Atoms of the second measure, same ``n`` and ``d``.

    Returns
    -------
    float
        :math:`W_2^2`, non-negative.

    Raises
    ------
    ValueError
        If X and Y have different numbers of rows or columns, or contain NaN/inf.
    """
    X = _points(X, "X")
    Y = _points(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (uniform measures on n atoms; "
                         f"use w2_emd or w2_1d otherwise), got X.shape = {X.shape}, Y.shape = {Y.shape}")
    _same_dim(X, Y)
    if X.shape[1] == 1:
        diff = np.sort(X[:, 0]) - np.sort(Y[:, 0])
        return float(np.mean(diff * diff))
    C = _sq_cost(X, Y)
    rows, cols = linear_sum_assignment(C)
    return max(float(C[rows, cols].mean()), 0.0)


def w2(X, Y) -> float:
    r"""Exact :math:`W_2` between uniform empirical measures on the rows of X and Y (same count).

    The distance (not squared): ``sqrt(w2_squared(X, Y))``; see :func:`w2_squared` for the
    formula, the solver, shapes and errors. Example: ``w2([0, 1], [1, 2]) == 1.0``.

    References
    ----------
    Santambrogio (2015), *Optimal Transport for Applied Mathematicians*, ch. 1 and 6.
    """
    return _sqrt_clip(w2_squared(X, Y))


def _sq_cost(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    r"""Cost matrix :math:`|x_i - y_j|^2`, shape (n, m), computed stably (no |x|^2+|y|^2-2xy)."""
    C = np.zeros((X.shape[0], Y.shape[0]))
    for k in range(X.shape[1]):         # loop over coordinates (d is small), not over points
        D = X[:, k, None] - Y[None, :, k]
        C += D * D
    return C


# ----------------------------------------------------------------------------------------------
# One dimension, weighted, any sizes: quantile functions
# ----------------------------------------------------------------------------------------------
def w2_1d_squared(x, y, a=None, b=None) -> float:
    r"""Squared :math:`W_2` between weighted empirical measures on the line, exactly.

    With :math:`\mu = \sum_i a_i\delta_{x_i}` and :math:`\nu = \sum_j b_j\delta_{y_j}` and their
    quantile functions :math:`F^{-1}, G^{-1}` (left-continuous, piecewise constant),

    .. math::

        \begin{aligned}
        W_2^2(\mu,\nu) &= \int_0^1 |F^{-1}(t) - G^{-1}(t)|^2\,dt\\
        &= \sum_k (t_k - t_{k-1})\,|F^{-1}(t_k) - G^{-1}(t_k)|^2 ,
        \end{aligned}

    where :math:`0 = t_0 < t_1 < \dots` are the merged cumulative weights of both measures: on
    each :math:`(t_{k-1}, t_k]` both quantile functions are constant, so the sum is the integral
    (Santambrogio 2015, sec. 2.2). Cost :math:`O((n+m)\log(n+m))`.

    Parameters
    ----------
    x : array, shape (n,)
        Atoms of :math:`\mu`.
    y : array, shape (m,)
        Atoms of :math:`\nu`; ``m`` may differ from ``n``.
    a : array, shape (n,), optional
        Non-negative weights of ``x`` (normalised to sum 1); uniform if omitted.
    b : array, shape (m,), optional
        Non-negative weights of ``y`` (normalised to sum 1); uniform if omitted.

    Returns
    -------
    float
        :math:`W_2^2`.
    """
    x = as_array(x, "x", ndim=1)
    y = as_array(y, "y", ndim=1)
    if x.size == 0 or y.size == 0:
        raise ValueError(f"x and y must each hold at least one point, got sizes {x.size} and {y.size}")
    a = _weights(a, x.size, "a")
    b = _weights(b, y.size, "b")
    ix = np.argsort(x, kind="stable")
    iy = np.argsort(y, kind="stable")
    xs, ys = x[ix], y[iy]
    Fa = np.cumsum(a[ix])
    Gb = np.cumsum(b[iy])
    Fa[-1] = Gb[-1] = 1.0
    t = np.union1d(Fa, Gb)                      # breakpoints in (0, 1], sorted
    dt = np.diff(t, prepend=0.0)
    mid = t - 0.5 * dt                          # interior point of each (t_{k-1}, t_k]
    qx = xs[np.minimum(np.searchsorted(Fa, mid, side="left"), x.size - 1)]
    qy = ys[np.minimum(np.searchsorted(Gb, mid, side="left"), y.size - 1)]
    diff = qx - qy
    return float(np.sum(dt * diff * diff))


def w2_1d(x, y, a=None, b=None) -> float:
    r"""Exact :math:`W_2` between weighted empirical measures on the line (any sizes).

    The distance ``sqrt(w2_1d_squared(x, y, a, b))``: the :math:`L^2(0,1)` distance between the
    quantile functions, :math:`\big(\int_0^1|F^{-1}-G^{-1}|^2dt\big)^{1/2}`. See
    :func:`w2_1d_squared` for shapes and the exact evaluation on merged breakpoints.
    """
    return _sqrt_clip(w2_1d_squared(x, y, a, b))


def w2_coordinates(X, Y) -> np.ndarray:
    r"""Exact :math:`W_2` between the one-dimensional coordinate marginals of two point clouds.

    Entry :math:`j` is :math:`W_2(\mu_j, \nu_j)` for the uniform measures on the columns
    ``X[:, j]`` and ``Y[:, j]`` (sizes may differ), by :func:`w2_1d`. Since projecting a coupling
    onto a coordinate gives a coupling of the marginals,
    :math:`\big(\sum_j W_2(\mu_j,\nu_j)^2\big)^{1/2} \le W_2(\mu,\nu)`.

    Parameters
    ----------
    X : array, shape (n, p)
    Y : array, shape (m, p)

    Returns
    -------
    array, shape (p,)
    """
    X = as_array(X, "X", ndim=2)
    Y = as_array(Y, "Y", ndim=2)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same number of columns, got {X.shape} and {Y.shape}")
    if X.shape[0] == 0 or Y.shape[0] == 0:
        raise ValueError(f"X and Y must each hold at least one point, got shapes {X.shape} and {Y.shape}")
    return np.array([w2_1d(X[:, j], Y[:, j]) for j in range(X.shape[1])])


# ----------------------------------------------------------------------------------------------
# General weighted empirical measures: the transport linear program (POT)
# ----------------------------------------------------------------------------------------------
def w2_emd_squared(X, Y, a=None, b=None, num_iter_max: int = 10_000_000) -> float:
    r"""Squared :math:`W_2` between weighted empirical measures in :math:`\mathbb R^d`, by linear programming.

    .. math::

        W_2^2 = \min\Big\{\sum_{ij}\gamma_{ij}|x_i-y_j|^2 :\ \gamma\ge0,\
        \gamma\mathbf 1 = a,\ \gamma^\top\mathbf 1 = b\Big\},

    solved exactly by the network simplex of POT, :func:`ot.emd2` (Flamary et al. 2021), on the
    squared Euclidean cost. A ``RuntimeError`` is raised if the solver stops before optimality.

    Parameters
    ----------
    X : array, shape (n, d) or (n,)
    Y : array, shape (m, d) or (m,)
        Same ``d``; ``m`` may differ from ``n``.
    a : array, shape (n,), optional
        Non-negative weights (normalised to sum 1); uniform if omitted.
    b : array, shape (m,), optional
        Non-negative weights (normalised to sum 1); uniform if omitted.
    num_iter_max : int
        Iteration cap of the network simplex.

    Returns
    -------
    float
        :math:`W_2^2`.
    """
    import ot

    X = _points(X, "X")
    Y = _points(Y, "Y")
    _same_dim(X, Y)
    a = _weights(a, X.shape[0], "a")
    b = _weights(b, Y.shape[0], "b")
    C = _sq_cost(X, Y)
    num_iter_max = check_int(num_iter_max, "num_iter_max", minimum=1)
    cost, log = ot.emd2(a, b, C, numItermax=num_iter_max, log=True)
    if log.get("result_code", 1) != 1:
        raise RuntimeError(f"ot.emd2 did not reach optimality: {log.get('warning')}")
    return max(float(cost), 0.0)


def w2_emd(X, Y, a=None, b=None, num_iter_max: int = 10_000_000) -> float:
    r"""Exact :math:`W_2` between weighted empirical measures in :math:`\mathbb R^d` (POT's ``ot.emd2``).

    The distance ``sqrt(w2_emd_squared(X, Y, a, b))``; see :func:`w2_emd_squared`.

    References
    ----------
    Flamary et al. (2021), POT: Python Optimal Transport, JMLR 22(78).
    """
    return _sqrt_clip(w2_emd_squared(X, Y, a, b, num_iter_max))


# ----------------------------------------------------------------------------------------------
# Gaussians: Bures-Wasserstein
# ----------------------------------------------------------------------------------------------
def _gaussian_args(m, S, mname: str, Sname: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.atleast_1d(as_array(m, mname))
    if m.ndim != 1:
        raise ValueError(f"{mname} must be a scalar or a vector (d,), got shape {m.shape}")
    S = as_array(S, Sname)
    d = m.size
    if S.ndim == 0:
        if d != 1:
            raise ValueError(f"{Sname} is a scalar variance, so {mname} must be a scalar, got d = {d}")
        S = S.reshape(1, 1)
    elif S.ndim == 1:
        if S.size != d:
            raise ValueError(f"{Sname} as a diagonal (d,) must have d = {d} entries, got {S.size}")
        S = np.diag(S)
    elif S.shape != (d, d):
        raise ValueError(f"{Sname} must have shape ({d}, {d}) to match {mname}, got {S.shape}")
    scale = max(np.abs(S).max(), 1.0)
    if not np.allclose(S, S.T, rtol=0.0, atol=1e-10 * scale):
        raise ValueError(f"{Sname} must be a symmetric covariance matrix")
    S = 0.5 * (S + S.T)
    if np.linalg.eigvalsh(S).min() < -1e-10 * scale:
        raise ValueError(f"{Sname} must be positive semi-definite")
    return m, S


def psd_sqrt(S) -> np.ndarray:
    r"""Symmetric square roots of a stack of positive semi-definite matrices, shape (..., p, p).

    Closed forms for :math:`p \le 2` (for :math:`2\times 2`,
    :math:`\sqrt S = (S + s I)/t` with :math:`s = \sqrt{\det S}`, :math:`t = \sqrt{\operatorname{tr}S + 2s}`),
    an eigendecomposition with negative round-off eigenvalues clipped to 0 otherwise.
    """
    S = as_array(S, "S")
    if S.ndim < 2 or S.shape[-1] != S.shape[-2]:
        raise ValueError(f"S must have shape (..., p, p), got {S.shape}")
    if S.size == 0:
        return S.copy()
    # Round-off scale of each matrix: negative eigenvalues beyond it mean S is not PSD.
    tol = 1e-10 * np.maximum(np.abs(S).max(axis=(-1, -2)), np.finfo(float).tiny)
    if np.any(np.abs(S - np.swapaxes(S, -1, -2)).max(axis=(-1, -2)) > tol):
        raise ValueError("S must be symmetric")
    if np.any(np.linalg.eigvalsh(S)[..., 0] < -tol):
        raise ValueError("S must be positive semi-definite, got a negative eigenvalue")
    return _psd_sqrt(S)


def _psd_sqrt(S):
    """:func:`psd_sqrt` without the checks, for covariances PSD by construction (chaos's loop)."""
    p = S.shape[-1]
    if p == 1:
        return np.sqrt(np.maximum(S, 0.0))
    if p == 2:
        det = S[..., 0, 0] * S[..., 1, 1] - S[..., 0, 1] * S[..., 1, 0]
        s = np.sqrt(np.maximum(det, 0.0))
        t = np.sqrt(np.maximum(S[..., 0, 0] + S[..., 1, 1] + 2.0 * s, 0.0))
        out = S + s[..., None, None] * np.eye(2)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(t[..., None, None] > 0, out / t[..., None, None], 0.0)
        return out
    lam, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.maximum(lam, 0.0))[..., None, :]) @ np.swapaxes(V, -1, -2)


def w2_gaussian_squared(m1, S1, m2, S2) -> float:
    r"""Squared :math:`W_2` between :math:`\mathcal N(m_1,\Sigma_1)` and :math:`\mathcal N(m_2,\Sigma_2)`.

    The Bures-Wasserstein formula (Santambrogio 2015, sec. 1.7; Givens and Shortt 1984):

    .. math::

        W_2^2 = |m_1-m_2|^2 + \operatorname{tr}\Big(\Sigma_1+\Sigma_2
        - 2\big(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}\big)^{1/2}\Big),

    which in one dimension is :math:`(m_1-m_2)^2 + (s_1-s_2)^2` with standard deviations
    :math:`s_i`. Square roots of symmetric positive semi-definite matrices by :func:`psd_sqrt`.

    Evaluated without cancellation as a sum of squares: with :math:`A = \Sigma_1^{1/2}`,
    :math:`B = \Sigma_2^{1/2}` and the SVD :math:`A^\top B = U S V^\top`, the trace term equals
    :math:`\min_{Q\ \mathrm{orthogonal}}\|A - BQ\|_F^2 = \|A - B V U^\top\|_F^2` (its cross term
    is the nuclear norm of :math:`A^\top B`, i.e. :math:`\operatorname{tr}(\Sigma_1^{1/2}\Sigma_2
    \Sigma_1^{1/2})^{1/2}`). The textbook difference of traces loses everything below
    :math:`\sim 10^{-16}\operatorname{tr}\Sigma` (a floor of :math:`10^{-8}` on :math:`W_2` for
    unit covariances); this form keeps relative accuracy down to :math:`W_2 \approx 10^{-16}`.

    Parameters
    ----------
    m1, m2 : float or array, shape (d,)
        Means.
    S1, S2 : float, array (d,) or array (d, d)
        Covariances: a scalar is a variance (then ``d = 1``), a vector is a diagonal, a matrix must
        be symmetric positive semi-definite.

    Returns
    -------
    float
        :math:`W_2^2`.
    """
    m1, S1 = _gaussian_args(m1, S1, "m1", "S1")
    m2, S2 = _gaussian_args(m2, S2, "m2", "S2")
    if m1.size != m2.size:
        raise ValueError(f"m1 and m2 must have the same dimension, got {m1.size} and {m2.size}")
    A, B = psd_sqrt(S1), psd_sqrt(S2)
    U, _, Vt = np.linalg.svd(A.T @ B)
    D = A - B @ (Vt.T @ U.T)
    dm = m1 - m2
    return float(dm @ dm + np.sum(D * D))


def w2_gaussian(m1, S1, m2, S2) -> float:
    r"""Closed-form :math:`W_2` between two Gaussians (the Bures-Wasserstein distance).

    ``sqrt(w2_gaussian_squared(m1, S1, m2, S2))``; scalar variances allowed. See
    :func:`w2_gaussian_squared` for the formula and shapes.
    """
    return _sqrt_clip(w2_gaussian_squared(m1, S1, m2, S2))
