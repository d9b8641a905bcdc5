r"""Gaussian expectations of piecewise-smooth functions by kink-aware quadrature.

Used by :mod:`mflib.problems` for activations without a closed form. For :math:`u \sim
\mathcal N(m_1, A)` and the pair :math:`(u, v)` with :math:`\operatorname{Var} u = A`,
:math:`\operatorname{Var} v = B`, :math:`\operatorname{Cov}(u, v) = C`, means :math:`m_1, m_2`,

.. math::

    E[f(u)] = \int f(m_1 + \sqrt A z)\,\varphi(z)\,dz, \qquad
    E[f(u) g(v)] = \iint f(m_1+\sqrt A z_1)\, g\big(m_2 + \sqrt B(\rho z_1 + \sqrt{1-\rho^2} z_2)\big)
    \varphi(z_1)\varphi(z_2)\,dz_1 dz_2,

with :math:`\rho = C/\sqrt{AB}`. The integrals are truncated to :math:`|z| \le L` (the Gaussian mass
outside is below :math:`10^{-19}` for the default :math:`L = 9.5`) and split at the points where
:math:`f` or :math:`g` has a kink, so that Gauss-Legendre on each piece converges exponentially
even for ReLU-like functions. Everything is vectorised over the leading axis of the parameters.
"""

from __future__ import annotations

from functools import lru_cache
from math import atan2 as _atan2
from math import cos as _cos
from math import pi as _PI
from math import sin as _sin
from math import sqrt as _sqrt
from typing import NamedTuple

import numpy as np
from numba import njit

L_DEFAULT = 9.5
# Fixed break points: Gauss-Legendre on shorter pieces copes with activations (tanh, sigmoid) whose
# poles in the complex plane sit close to the real axis when the scale sqrt(A) is large.
_FIXED = np.array([-6.0, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0])
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_INV_2PI = 1.0 / (2.0 * np.pi)


# -- the arc-cosine (ReLU) pair expectation: the one implementation in mflib ------------------------
class ArcCos(NamedTuple):
    r"""Result of :func:`arccos1`: ``k`` :math:`= E[\mathrm{relu}(u)\mathrm{relu}(v)]`,
    ``root`` :math:`=\sqrt{AB - C^2}` and ``kappa0`` :math:`= P(u>0, v>0) = (\pi-\vartheta)/(2\pi)`
    (also :math:`\partial k/\partial C`)."""
    k: np.ndarray
    root: np.ndarray
    kappa0: np.ndarray


def arccos1(AB, C, theta=None) -> ArcCos:
    r"""Arc-cosine expectation for a centred Gaussian pair with :math:`\operatorname{Var}u\,
    \operatorname{Var}v = AB` and :math:`\operatorname{Cov}(u,v) = C`:

    .. math::

        k = E[\mathrm{relu}(u)\,\mathrm{relu}(v)] = \frac{\sqrt{AB-C^2} + (\pi-\vartheta)\,C}{2\pi},
        \qquad \vartheta = \operatorname{atan2}\big(\sqrt{AB-C^2},\, C\big).

    The angle is taken by ``atan2`` from the same root that enters :math:`k`, never by
    :math:`\arccos(C/\sqrt{AB})` (which loses half the digits near :math:`\pm1` and, clipped,
    is inconsistent with the root): for nearly parallel pairs the errors of root and angle cancel in
    :math:`k` to :math:`O(\mathrm{root}^3)`; antiparallel pairs get :math:`\vartheta = \pi`, zero
    variances :math:`k = 0`. When the caller knows the angle more accurately (from the vectors, by
    Kahan's formula, :mod:`mflib.kernels`), pass ``theta``: then root :math:`=\sqrt{AB}\sin\vartheta`
    and :math:`C = \sqrt{AB}\cos\vartheta` are taken from it.

    The gradient coefficients follow: :math:`\partial k/\partial C` = ``kappa0`` and
    :math:`\partial k/\partial A` = ``root`` / (4 pi A) (used by :mod:`mflib.problems`).
    :func:`arccos1_scalar` is the same formula compiled for numba loops.

    Parameters
    ----------
    AB, C : array_like, broadcastable
        Product of the variances (>= 0) and the covariance.
    theta : array_like, optional
        The angle, if known more accurately than from ``AB`` and ``C``.
    """
    AB = np.asarray(AB, dtype=float)
    if theta is None:
        C = np.asarray(C, dtype=float)
        root = np.sqrt(np.maximum(_ab_minus_c2(AB, C), 0.0))
        phi = np.arctan2(root, -C)                     # pi - theta, accurate near antiparallel
    else:
        sq = np.sqrt(AB)
        root, C = sq * np.sin(theta), sq * np.cos(theta)
        phi = np.pi - np.asarray(theta, dtype=float)
    k = (root + phi * C) * _INV_2PI
    # C < 0: root + phi C cancels (k ~ r phi^3 / 3 as phi -> 0); use k = r (sin phi - phi cos phi)
    # / (2 pi) with the Taylor series of the bracket for small phi.
    neg = C < 0
    if np.any(neg):
        k = np.where(neg, np.hypot(root, C) * _sin_minus_phicos(phi) * _INV_2PI, k)
    return ArcCos(k, root, phi * _INV_2PI)


@njit(cache=True)
def _ab_minus_c2(AB, C):
    """AB - C^2 with C^2 exact (Dekker's product, C^2 = p + e), so that nearly (anti)parallel pairs
    lose no digits beyond those of the inputs: AB - p is exact by Sterbenz when AB ~ C^2."""
    p = C * C
    t = 134217729.0 * C
    hi = t - (t - C)
    lo = C - hi
    e = ((hi * hi - p) + 2.0 * hi * lo) + lo * lo
    return (AB - p) - e


# sin(x) - x cos(x) = sum_{n>=1} (-1)^(n+1) 2n x^(2n+1) / (2n+1)!; 8 terms: relative error < 1e-16
# for x <= 1/2 (the first omitted term is 18 x^19 / 19! ~ 1e-21 x^3 there).
_SMC = np.array([(-1.0) ** (n + 1) * 2 * n / float(np.prod(np.arange(1, 2 * n + 2))) for n in range(1, 9)])


def _sin_minus_phicos(x):
    x = np.asarray(x, dtype=float)
    x2 = x * x
    ser = np.zeros_like(x)
    for c in _SMC[::-1]:
        ser = ser * x2 + c
    return np.where(x <= 0.5, ser * x * x2, np.sin(x) - x * np.cos(x))


@njit(cache=True)
def arccos1_scalar(AB, C):
    """:func:`arccos1`'s ``k`` for scalars, compiled (for numba loops)."""
    r = _ab_minus_c2(AB, C)
    root = _sqrt(r) if r > 0.0 else 0.0
    phi = _atan2(root, -C)
    if C >= 0.0:
        return (root + phi * C) / (2.0 * _PI)
    if phi > 0.5:
        return _sqrt(root * root + C * C) * (_sin(phi) - phi * _cos(phi)) / (2.0 * _PI)
    x2 = phi * phi
    ser = 0.0
    for i in range(_SMC.size - 1, -1, -1):
        ser = ser * x2 + _SMC[i]
    return _sqrt(root * root + C * C) * ser * phi * x2 / (2.0 * _PI)


@lru_cache(maxsize=16)
def _legendre(n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w


def _segments(breaks: np.ndarray, L: float, n: int):
    """Gauss-Legendre nodes/weights on [-L, L] split at ``breaks`` (shape (P, K)).

    Returns nodes and weights of shape (P, (K + 1) * n) (weights include the Jacobian).
    """
    P = breaks.shape[0]
    ends = np.concatenate([np.full((P, 1), -L), np.clip(np.sort(breaks, axis=1), -L, L),
                           np.full((P, 1), L)], axis=1)
    lo, hi = ends[:, :-1], ends[:, 1:]
    half = 0.5 * (hi - lo)
    mid = 0.5 * (hi + lo)
    x, w = _legendre(n)
    nodes = mid[:, :, None] + half[:, :, None] * x
    weights = half[:, :, None] * w
    return nodes.reshape(P, -1), weights.reshape(P, -1)


def _breaks(kinks, scale, shift):
    """Points z with shift + scale * z = kink, for every kink; inf where scale == 0."""
    kinks = np.asarray(kinks, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (kinks[None, :] - shift[:, None]) / scale[:, None]
    return np.where(np.isfinite(z), z, 1e300)


def gauss_expect(f, kinks, A, m=0.0, n: int = 20, L: float = L_DEFAULT) -> np.ndarray:
    r""":math:`E[f(u)]`, :math:`u \sim \mathcal N(m, A)`, for arrays ``A`` (P,) and ``m``."""
    A = np.atleast_1d(np.asarray(A, dtype=float))
    m = np.broadcast_to(np.asarray(m, dtype=float), A.shape)
    s = np.sqrt(A)
    br = np.concatenate([_breaks(kinks, s, m), np.broadcast_to(_FIXED, (A.size, _FIXED.size))], axis=1)
    z, wz = _segments(br, L, n)
    vals = f(m[:, None] + s[:, None] * z)
    return np.sum(vals * wz * np.exp(-0.5 * z * z), axis=1) * _INV_SQRT_2PI


def gauss_expect_pair(f, g, kinks_f, kinks_g, A, B, C, m1=0.0, m2=0.0, n: int = 12,
                      L: float = L_DEFAULT, chunk: int = 512) -> np.ndarray:
    r""":math:`E[f(u) g(v)]` for a bivariate Gaussian pair; parameters are arrays of shape (P,).

    Cost: :math:`O(P\,(2K+2)(K+1)\,n^2)` evaluations for :math:`K` kinks; processed in chunks of
    ``chunk`` pairs to bound memory.
    """
    A, B, C = (np.atleast_1d(np.asarray(t, dtype=float)) for t in (A, B, C))
    A, B, C = np.broadcast_arrays(A, B, C)
    m1 = np.broadcast_to(np.asarray(m1, dtype=float), A.shape)
    m2 = np.broadcast_to(np.asarray(m2, dtype=float), A.shape)
    out = np.empty(A.shape, dtype=float)
    flat = [t.reshape(-1) for t in (A, B, C, m1, m2)]
    res = out.reshape(-1)
    for start in range(0, flat[0].size, chunk):
        sl = slice(start, start + chunk)
        res[sl] = _pair_chunk(f, g, kinks_f, kinks_g, *(t[sl] for t in flat), n, L)
    return out


def _pair_chunk(f, g, kf, kg, A, B, C, m1, m2, n, L):
    P = A.size
    su, sv = np.sqrt(A), np.sqrt(B)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(su * sv > 0, C / (su * sv), 0.0)
    rho = np.clip(rho, -1.0, 1.0)
    # q = sqrt(1 - rho^2) = sqrt(AB - C^2) / sqrt(AB), without the cancellation of 1 - rho^2 near +-1
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(su * sv > 0, np.sqrt(np.maximum(_ab_minus_c2(A * B, C), 0.0)) / (su * sv), 1.0)
    q = np.minimum(q, 1.0)
    # Outer variable z1: kinks of f(u) and, when v is nearly a function of z1, of g(v).
    # As a function of z1, E[g(v) | z1] is g smoothed at the scale q / |rho|: when |rho| is close
    # to 1 this is a near-kink, resolved by extra break points at distances c * q / |rho|.
    zg = _breaks(kg, sv * rho, m2)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.where(np.abs(rho) > 0, q / np.abs(rho), 1e300)[:, None, None]
    near = (zg[:, :, None] + width * np.array([-8.0, -2.0, -0.5, 0.5, 2.0, 8.0])).reshape(P, -1)
    near = np.where(np.isfinite(near), near, 1e300)
    br1 = np.concatenate([_breaks(kf, su, m1), zg, near, np.broadcast_to(_FIXED, (P, _FIXED.size))],
                         axis=1)
    z1, w1 = _segments(br1, L, n)                                     # (P, n1)
    fu = f(m1[:, None] + su[:, None] * z1) * w1 * np.exp(-0.5 * z1 * z1)   # (P, n1)
    # Inner variable z2 given z1: kinks of g at z2 = (k - m2 - sv rho z1) / (sv q).
    P1 = z1.shape[1]
    shift = (m2[:, None] + (sv * rho)[:, None] * z1).reshape(-1)
    scale = np.repeat(sv * q, P1)
    br2 = np.concatenate([_breaks(kg, scale, shift), np.broadcast_to(_FIXED, (P * P1, _FIXED.size))],
                         axis=1)
    z2, w2 = _segments(br2, L, n)                                     # (P*n1, n2)
    gv = g(shift[:, None] + scale[:, None] * z2) * w2 * np.exp(-0.5 * z2 * z2)
    inner = gv.sum(axis=1).reshape(P, P1)
    return np.sum(fu * inner, axis=1) / (2.0 * np.pi)
