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

import numpy as np

L_DEFAULT = 9.5
# Fixed break points: Gauss-Legendre on shorter pieces copes with activations (tanh, sigmoid) whose
# poles in the complex plane sit close to the real axis when the scale sqrt(A) is large.
_FIXED = np.array([-6.0, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0])
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


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
    q = np.sqrt(np.maximum(1.0 - rho * rho, 0.0))
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
