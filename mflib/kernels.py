r"""Closed-form Gaussian expectations of ReLU features: arc-cosine kernels and the limiting Gram
matrices of the neural tangent kernel (chapter 6).

For :math:`w \sim \mathcal N(0, I_d)` and inputs :math:`x, x'` at angle :math:`\vartheta`
(:math:`\cos\vartheta = \langle x, x'\rangle / (|x||x'|)`), the two expectations behind a two-layer
ReLU network are (Cho and Saul 2009, who write :math:`k_n = \frac1\pi |x|^n|x'|^n J_n(\vartheta)`;
the functions below are the expectations themselves, i.e. **half** of Cho and Saul's
:math:`k_n`)

.. math::

    \kappa_0(x, x') &= E\big[\mathbf 1\{\langle w,x\rangle>0\}\,\mathbf 1\{\langle w,x'\rangle>0\}\big]
        = \frac{\pi - \vartheta}{2\pi},\\
    \kappa_1(x, x') &= E\big[\mathrm{relu}(\langle w,x\rangle)\,\mathrm{relu}(\langle w,x'\rangle)\big]
        = \frac{|x||x'|}{2\pi}\big(\sin\vartheta + (\pi - \vartheta)\cos\vartheta\big).

With them, the Gram matrices of H. Yang's lecture (lecture 13, 2022) for
:math:`h(x;\theta) = \sum_k a_k\,\mathrm{relu}(\langle w_k, x\rangle)`, :math:`a_k = \gamma\bar a_k`,
:math:`\bar a_k \sim \mathcal N(0,1)`, are

.. math::

    k^{(a)}(x,x') = \kappa_1(x,x'),\qquad
    k^{(w)}(x,x') = E[\bar a^2]\,\kappa_0(x,x')\,\langle x,x'\rangle,

the second-layer (:func:`relu_kernel`) and first-layer (:func:`relu_grad_kernel`) parts, and the
two-layer ReLU NTK is :math:`k^{(a)} + k^{(w)}` (:func:`ntk_kernel`).

Positive definiteness. If no two rows of ``X`` are parallel or antiparallel, both Gram matrices are
positive definite: for :math:`k^{(w)}` this is Du et al. (2019), Theorem 3.1; for :math:`k^{(a)}`
the functions :math:`w \mapsto \mathrm{relu}(\langle w, x_i\rangle)` are linearly independent (each
has its own kink hyperplane :math:`x_i^\perp`), see chapter 6. With more antiparallel pairs than
dimensions :math:`k^{(a)}` is singular, since :math:`\mathrm{relu}(t) - \mathrm{relu}(-t) = t`.

Conventions. A zero row gives exactly 0 in every kernel (for :math:`\kappa_0` this follows the
convention :math:`\mathrm{relu}'(0) = 0` of :mod:`mflib.activations`). Angles are computed with
Kahan's formula :math:`\vartheta = 2\arctan(|\hat x - \hat x'| / |\hat x + \hat x'|)` wherever
:math:`\arccos` is ill-conditioned (nearly parallel or antiparallel rows), so identical rows give
:math:`\vartheta = 0` exactly (e.g. :math:`\kappa_0(x, x) = 1/2` exactly). With ``Y`` omitted the
Gram matrix of ``X`` with itself is returned exactly symmetric; it is positive semi-definite up to
round-off.

References
----------
Y. Cho and L. K. Saul, Kernel methods for deep learning, NeurIPS 2009.
A. Jacot, F. Gabriel and C. Hongler, Neural tangent kernel, NeurIPS 2018.
"""

from __future__ import annotations

import numpy as np

from .quadrature import arccos1
from .validation import as_array

# |cos(theta)| above this: recompute the angle with Kahan's formula (arccos loses ~sqrt(eps) there).
_NEAR_PARALLEL = 1.0 - 1e-3


def _pair(X, Y):
    X = as_array(X, "X", ndim=2)
    if Y is None:
        return X, X, True
    Y = as_array(Y, "Y", ndim=2)
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"Y must have d = {X.shape[1]} columns to match X, got shape {Y.shape}")
    return X, Y, False


def _unit_rows(X):
    nrm = np.linalg.norm(X, axis=1)
    return X / np.where(nrm > 0, nrm, 1.0)[:, None], nrm


def angles(X, Y=None) -> np.ndarray:
    r"""Angles :math:`\vartheta_{ij} \in [0, \pi]` between rows ``X[i]`` and ``Y[j]``.

    Parameters
    ----------
    X : array, shape (n, d)
    Y : array, shape (m, d), optional
        Defaults to ``X``.

    Returns
    -------
    theta : array, shape (n, m)
        A zero row is given angle :math:`\pi/2` (every kernel multiplies it by zero).
    """
    X, Y, _ = _pair(X, Y)
    return _angles(X, Y)[0]


def _angles(X, Y):
    Xu, nx = _unit_rows(X)
    Yu, ny = _unit_rows(Y)
    C = np.clip(Xu @ Yu.T, -1.0, 1.0)
    theta = np.arccos(C)
    i, j = np.nonzero(np.abs(C) > _NEAR_PARALLEL)
    if i.size:
        dif = np.linalg.norm(Xu[i] - Yu[j], axis=1)
        tot = np.linalg.norm(Xu[i] + Yu[j], axis=1)
        theta[i, j] = 2.0 * np.arctan2(dif, tot)
    return theta, nx, ny


def _finish(K, sym):
    return 0.5 * (K + K.T) if sym else K


def arccos_kernel(X, Y=None, degree: int = 1) -> np.ndarray:
    r"""Arc-cosine kernel :math:`E_w[\Theta(\langle w,x\rangle)\Theta(\langle w,x'\rangle)
    \langle w,x\rangle^n\langle w,x'\rangle^n]`, :math:`w\sim\mathcal N(0,I_d)`, degree
    :math:`n \in \{0, 1\}`.

    .. math::

        \kappa_0 = \frac{\pi-\vartheta}{2\pi}, \qquad
        \kappa_1 = \frac{|x||x'|}{2\pi}\big(\sin\vartheta + (\pi-\vartheta)\cos\vartheta\big)

    (half of Cho and Saul's :math:`\frac1\pi J_n` normalisation). A zero row gives 0.

    Parameters
    ----------
    X : array, shape (n, d)
    Y : array, shape (m, d), optional
        Defaults to ``X`` (then the result is exactly symmetric).
    degree : {0, 1}

    Returns
    -------
    K : array, shape (n, m)

    Raises
    ------
    ValueError
        If ``degree`` is not 0 or 1, or the shapes do not match.
    """
    if degree not in (0, 1) or isinstance(degree, bool):
        raise ValueError(f"degree must be 0 or 1, got {degree!r}")
    X, Y, sym = _pair(X, Y)
    theta, nx, ny = _angles(X, Y)
    r = arccos1(np.outer(nx * nx, ny * ny), None, theta=theta)
    if degree == 0:
        K = r.kappa0 * np.outer(nx > 0, ny > 0)
    else:
        K = r.k
    return _finish(K, sym)


def relu_kernel(X, Y=None) -> np.ndarray:
    r"""Second-layer NTK :math:`k^{(a)}(x,x') = E_w[\mathrm{relu}(\langle w,x\rangle)
    \mathrm{relu}(\langle w,x'\rangle)]`, :math:`w\sim\mathcal N(0,I_d)` (arc-cosine, degree 1).

    .. math::

        k^{(a)}(x,x') = \frac{|x||x'|}{2\pi}\big(\sin\vartheta + (\pi-\vartheta)\cos\vartheta\big),
        \qquad k^{(a)}(x,x) = \tfrac12 |x|^2.

    Parameters
    ----------
    X : array, shape (n, d)
    Y : array, shape (m, d), optional
        Defaults to ``X``.

    Returns
    -------
    K : array, shape (n, m)
        Symmetric positive semi-definite (to round-off) when ``Y`` is omitted.
    """
    return arccos_kernel(X, Y, degree=1)


def relu_grad_kernel(X, Y=None) -> np.ndarray:
    r"""First-layer NTK :math:`k^{(w)}(x,x') = E_w[\mathrm{relu}'(\langle w,x\rangle)
    \mathrm{relu}'(\langle w,x'\rangle)]\,\langle x, x'\rangle = \frac{\pi-\vartheta}{2\pi}
    \langle x,x'\rangle`, :math:`w\sim\mathcal N(0,I_d)`.

    This is :math:`E_{(\bar a, w)}[\bar a^2\,\mathrm{relu}'\,\mathrm{relu}']\langle x,x'\rangle` for
    :math:`\bar a \sim \mathcal N(0,1)` independent of :math:`w`, the lecture's :math:`k^{(w)}`.
    At :math:`x = x'` it equals :math:`|x|^2/2`.

    Parameters
    ----------
    X : array, shape (n, d)
    Y : array, shape (m, d), optional
        Defaults to ``X``.

    Returns
    -------
    K : array, shape (n, m)
        Symmetric positive semi-definite (Schur product of two PSD matrices) when ``Y`` is omitted.
    """
    X, Y, sym = _pair(X, Y)
    return _finish(arccos_kernel(X, Y, degree=0) * (X @ Y.T), sym)


def ntk_kernel(X, Y=None) -> np.ndarray:
    r"""Infinite-width NTK of the two-layer ReLU network with both layers trained on the same
    footing: :math:`k(x,x') = k^{(a)}(x,x') + k^{(w)}(x,x')` (:func:`relu_kernel` +
    :func:`relu_grad_kernel`). On the unit sphere its diagonal is 1.

    It is the limit, as :math:`N\to\infty`, of the empirical kernel of
    :func:`mflib.ntk.empirical_ntk` with ``trained="a_bar"`` (either scaling). For
    ``trained="a"`` (the lecture's flow) the limit is :func:`relu_kernel` alone; see
    :func:`mflib.ntk.limit_kernel`.

    Parameters
    ----------
    X : array, shape (n, d)
    Y : array, shape (m, d), optional

    Returns
    -------
    K : array, shape (n, m)
    """
    X, Y, sym = _pair(X, Y)
    theta, nx, ny = _angles(X, Y)
    k0 = (np.pi - theta) / (2.0 * np.pi)
    K = np.sin(theta) * (np.outer(nx, ny) / (2.0 * np.pi)) + 2.0 * k0 * (X @ Y.T)
    return _finish(K, sym)
