r"""Gaussian expectations of piecewise-smooth functions by kink-aware quadrature.

Used by :mod:`mflib.problems` for activations without a closed form. For :math:`u \sim
\mathcal N(m_1, A)` and the pair :math:`(u, v)` with :math:`\operatorname{Var} u = A`,
:math:`\operatorname{Var} v = B`, :math:`\operatorname{Cov}(u, v) = C`, means :math:`m_1, m_2`,

.. math::

    \begin{aligned}
    E[f(u)] &= \int f(m_1 + \sqrt A z)\,\varphi(z)\,dz,\\
    E[f(u) g(v)] &= \iint f(m_1+\sqrt A z_1)\, g\big(m_2 + \sqrt B(\rho z_1 + \sqrt{1-\rho^2} z_2)\big)\\
    &\qquad \varphi(z_1)\varphi(z_2)\,dz_1 dz_2,
    \end{aligned}

with :math:`\rho = C/\sqrt{AB}`. The integrals are truncated to :math:`|z| \le L` (the Gaussian mass
outside is below :math:`10^{-19}` for the default :math:`L = 9.5`) and split at the points where
:math:`f` or :math:`g` has a kink, so that Gauss-Legendre on each piece converges exponentially
even for ReLU-like functions (:func:`gauss_nodes` gives the nodes). Everything is vectorised over
the leading axis of the parameters.

The other Gaussian primitives of mflib live here too, once each: the arc-cosine pair expectation
(:func:`arccos1`), normalised Hermite coefficients (:func:`hermite_coefficients` by quadrature,
:func:`relu_hermite` in closed form for :math:`\mathrm{relu}(sz + b)`), Gram matrices by Mehler's
formula (:func:`mehler_gram`), and the law of the cosine of two uniform directions
(:func:`cosine_rule`, :func:`cosine_moments`).
"""

from __future__ import annotations

from functools import lru_cache
from math import atan2 as _atan2
from math import cos as _cos
from math import factorial
from math import pi as _PI
from math import sin as _sin
from math import sqrt as _sqrt
from typing import NamedTuple

import numpy as np
from numba import njit
from scipy import special

from .validation import as_array, check_int, check_real


def _fn(f, name: str):
    if not callable(f):
        raise TypeError(f"{name} must be a callable acting elementwise on arrays, got {type(f).__name__}")
    return f


def _kinks(kinks, name: str = "kinks") -> np.ndarray:
    return as_array(kinks, name, ndim=1)


def _variances(A, name: str) -> np.ndarray:
    A = np.atleast_1d(as_array(A, name, max_abs=None))     # variances: squares, up to the float max
    if np.any(A < 0):
        raise ValueError(f"{name} must be >= 0 (variances)")
    return A


def _rule(n, L):
    return check_int(n, "n", minimum=1), check_real(L, "L", low=0.0, low_open=True)

L_DEFAULT = 9.5
# Fixed break points: Gauss-Legendre on shorter pieces copes with activations (tanh, sigmoid) whose
# poles in the complex plane sit close to the real axis when the scale sqrt(A) is large.
_FIXED = np.array([-6.0, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0])
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_SQRT_2PI = np.sqrt(2.0 * np.pi)
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

        \begin{aligned}
        k &= E[\mathrm{relu}(u)\,\mathrm{relu}(v)] = \frac{\sqrt{AB-C^2} + (\pi-\vartheta)\,C}{2\pi},\\
        \vartheta &= \operatorname{atan2}\big(\sqrt{AB-C^2},\, C\big).
        \end{aligned}

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
    AB = as_array(AB, "AB", max_abs=None)       # products of variances: up to the float max
    if np.any(AB < 0):
        raise ValueError("AB must be >= 0 (a product of variances)")
    if theta is None:
        C = as_array(C, "C", max_abs=None)
        try:
            np.broadcast_shapes(AB.shape, C.shape)
        except ValueError:
            raise ValueError(f"AB and C must broadcast together, got shapes {AB.shape} and {C.shape}") \
                from None
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


# -- arccos1_scalar for SIMD loops over many pairs ----------------------------------------------
# Cephes' atan (S. L. Moshier): atan(v) = v + v z P(z)/Q(z), z = v^2, for |v| <= 0.66; peak
# relative error 1.8e-16 there. MOREBITS is the low part of pi/2.
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)
_MOREBITS = 6.123233995736765886130e-17
_PIO4 = 0.78539816339744830962
_PIO2 = 1.57079632679489661923


@njit(cache=True, inline="always", error_model="numpy")
def _atan2_simd(y, x):
    r"""``atan2(y, x)`` for :math:`y \ge 0` (and ``x`` of any sign) without branches or library
    calls, so that numba loops calling it vectorise: one division to reduce the argument to
    :math:`|v| \le 0.66` (:math:`v = \min/\max` of :math:`y, |x|`, or
    :math:`(\min - \max)/(\min + \max)` shifted by :math:`\pi/4`), Cephes' rational approximation,
    then reflections by :math:`\pi/2` and :math:`\pi` written as selects. Within 2 ulp of
    ``math.atan2`` (1 ulp for all but 2 of 2 million random arguments; tests/test_risk_kernel.py);
    ``(0, -0.0)`` gives 0, not pi."""
    ax = abs(x)
    lo = min(y, ax)
    hi = max(y, ax)
    big = lo > 0.66 * hi
    num = lo - hi if big else lo
    den = lo + hi if big else hi
    v = num / den if den > 0.0 else 0.0
    z = v * v
    p = (((_ATAN_P[0] * z + _ATAN_P[1]) * z + _ATAN_P[2]) * z + _ATAN_P[3]) * z + _ATAN_P[4]
    q = ((((z + _ATAN_Q[0]) * z + _ATAN_Q[1]) * z + _ATAN_Q[2]) * z + _ATAN_Q[3]) * z + _ATAN_Q[4]
    a = v * (z * p / q) + v
    a = (a + 0.5 * _MOREBITS) + _PIO4 if big else a
    a = (_PIO2 - a) + _MOREBITS if y > ax else a
    return (_PI - a) + 2.0 * _MOREBITS if x < 0.0 else a


@njit(cache=True, inline="always", error_model="numpy")
def arccos1_simd(AB, C, sqAB):
    r""":func:`arccos1_scalar`'s ``k`` written without branches or library calls (selects only),
    for numba loops over many pairs that must vectorise (the ReLU risk's pair sum,
    :mod:`mflib.problems`). ``sqAB`` is :math:`\sqrt{AB}` (precomputed per neuron as
    :math:`\sqrt A\sqrt B`). The same formula and the same safeguards as :func:`arccos1_scalar`
    (:math:`AB - C^2` by Dekker's product, the angle from ``atan2`` of the same root, the Taylor
    series of :math:`\sin\varphi - \varphi\cos\varphi` for obtuse pairs with
    :math:`\varphi = \pi - \vartheta \le 1/2`), with two differences: ``atan2`` is
    :func:`_atan2_simd` (2 ulp), and obtuse pairs with :math:`\varphi > 1/2` use
    :math:`\mathrm{root} + \varphi C` itself, which equals
    :math:`\sqrt{AB}(\sin\varphi - \varphi\cos\varphi)` and loses at most a factor 12 of
    cancellation there (at :math:`\varphi = 1/2`) instead of calling ``sin`` and ``cos``. Within
    :math:`10^{-14}` relative of :func:`arccos1_scalar` (tests/test_risk_kernel.py)."""
    r = _ab_minus_c2(AB, C)
    root = _sqrt(r) if r > 0.0 else 0.0
    phi = _atan2_simd(root, -C)
    x2 = phi * phi
    ser = _SMC[7]
    ser = ser * x2 + _SMC[6]
    ser = ser * x2 + _SMC[5]
    ser = ser * x2 + _SMC[4]
    ser = ser * x2 + _SMC[3]
    ser = ser * x2 + _SMC[2]
    ser = ser * x2 + _SMC[1]
    ser = ser * x2 + _SMC[0]
    k = sqAB * ser * phi * x2 if (C < 0.0 and phi <= 0.5) else root + phi * C
    return k * _INV_2PI


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
    kinks = _kinks(kinks)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (kinks[None, :] - shift[:, None]) / scale[:, None]
    return np.where(np.isfinite(z), z, 1e300)


def gauss_nodes(kinks, scale, shift=0.0, n: int = 20, L: float = L_DEFAULT, extra=None):
    r"""Kink-aware Gauss-Legendre nodes for :math:`E[f(\mathrm{shift} + \mathrm{scale}\,z)]`,
    :math:`z\sim\mathcal N(0, 1)`: the rule of :func:`gauss_expect`, for callers that reuse the nodes
    (several functions of the same :math:`z`, Hermite moments).

    :math:`[-L, L]` is split at the points :math:`z` where ``shift + scale * z`` hits a kink, at
    the fixed points :math:`0, \pm1.5, \pm3, \pm6` and at ``extra``, and each piece gets ``n``
    Gauss-Legendre nodes; then

    .. math::

        E[f(\mathrm{shift} + \mathrm{scale}\,z)] \approx
        \sum_q \mathrm{weights}_q\, f(\mathrm{shift} + \mathrm{scale}\, z_q)\,
        \frac{e^{-z_q^2/2}}{\sqrt{2\pi}}

    (the Gaussian density is left to the caller; the weights are Legendre weights times the
    half-lengths of the pieces).

    Parameters
    ----------
    kinks : sequence of float
        Points where the integrand is not smooth, in the variable ``shift + scale * z``.
    scale : array (P,) or (P, S)
        Standard deviations; with S columns, the kinks are placed for each of S functions of the
        same :math:`z` (e.g. :math:`f(s_1 z)\,g(s_2 z)`). A zero scale contributes no kink point.
    shift : float or array (P,)
        Means (shared by the S columns).
    n : int
        Nodes per piece.
    L : float
        Truncation :math:`|z|\le L`.
    extra : array (P, E), optional
        Further break points in :math:`z`.

    Returns
    -------
    z, weights : arrays (P, Q)
    """
    scale = as_array(scale, "scale")
    if scale.ndim not in (1, 2) or scale.shape[0] == 0:
        raise ValueError(f"scale must be a non-empty array (P,) or (P, S), got shape {scale.shape}")
    n, L = _rule(n, L)
    _kinks(kinks)
    P = scale.shape[0]
    cols = scale.reshape(P, -1)
    shift = _broadcast(shift, "shift", (P,))
    br = [_breaks(kinks, cols[:, k], shift) for k in range(cols.shape[1])]
    if extra is not None:
        br.append(extra)
    br.append(np.broadcast_to(_FIXED, (P, _FIXED.size)))
    return _segments(np.concatenate(br, axis=1), L, n)


def _broadcast(x, name, shape):
    x = as_array(x, name)
    try:
        return np.broadcast_to(x, shape)
    except ValueError:
        raise ValueError(f"{name} must broadcast to shape {shape}, got {x.shape}") from None


def gauss_expect(f, kinks, A, m=0.0, n: int = 20, L: float = L_DEFAULT) -> np.ndarray:
    r""":math:`E[f(u)]`, :math:`u \sim \mathcal N(m, A)`, for arrays ``A`` (P,) and ``m``."""
    f = _fn(f, "f")
    A = _variances(A, "A")
    if A.ndim != 1 or A.size == 0:
        raise ValueError(f"A must be a non-empty 1-D array of variances, got shape {A.shape}")
    m = _broadcast(m, "m", A.shape)
    s = np.sqrt(A)
    z, wz = gauss_nodes(kinks, s, m, n, L)
    vals = f(m[:, None] + s[:, None] * z)
    return np.sum(vals * wz * np.exp(-0.5 * z * z), axis=1) * _INV_SQRT_2PI


def gauss_expect_pair(f, g, kinks_f, kinks_g, A, B, C, m1=0.0, m2=0.0, n: int = 12,
                      L: float = L_DEFAULT, chunk: int = 512) -> np.ndarray:
    r""":math:`E[f(u) g(v)]` for a bivariate Gaussian pair; parameters are arrays of shape (P,).

    Cost: :math:`O(P\,(2K+2)(K+1)\,n^2)` evaluations for :math:`K` kinks; processed in chunks of
    ``chunk`` pairs to bound memory.
    """
    f, g = _fn(f, "f"), _fn(g, "g")
    kinks_f, kinks_g = _kinks(kinks_f, "kinks_f"), _kinks(kinks_g, "kinks_g")
    A, B = _variances(A, "A"), _variances(B, "B")
    C = np.atleast_1d(as_array(C, "C", max_abs=None))
    try:
        A, B, C = np.broadcast_arrays(A, B, C)
    except ValueError:
        raise ValueError(f"A, B and C must broadcast together, got shapes {A.shape}, {B.shape}, "
                         f"{C.shape}") from None
    if np.any(C * C > A * B * (1 + 1e-9) + 1e-300):
        raise ValueError("C must satisfy C^2 <= A B (a covariance of variances A and B)")
    n, L = _rule(n, L)
    chunk = check_int(chunk, "chunk", minimum=1)
    m1 = _broadcast(m1, "m1", A.shape)
    m2 = _broadcast(m2, "m2", A.shape)
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
    z1, w1 = gauss_nodes(kf, su, m1, n, L, extra=np.concatenate([zg, near], axis=1))   # (P, n1)
    fu = f(m1[:, None] + su[:, None] * z1) * w1 * np.exp(-0.5 * z1 * z1)   # (P, n1)
    # Inner variable z2 given z1: kinks of g at z2 = (k - m2 - sv rho z1) / (sv q).
    P1 = z1.shape[1]
    shift = (m2[:, None] + (sv * rho)[:, None] * z1).reshape(-1)
    scale = np.repeat(sv * q, P1)
    z2, w2 = gauss_nodes(kg, scale, shift, n, L)                      # (P*n1, n2)
    gv = g(shift[:, None] + scale[:, None] * z2) * w2 * np.exp(-0.5 * z2 * z2)
    inner = gv.sum(axis=1).reshape(P, P1)
    return np.sum(fu * inner, axis=1) / (2.0 * np.pi)


# -- Hermite coefficients and Mehler's formula ------------------------------------------------------
def hermite_coefficients(f, kinks, A, n_max: int, n_quad: int = 40) -> np.ndarray:
    r"""Normalised Hermite coefficients :math:`c_n(A) = E[f(\sqrt A z)\,He_n(z)]/\sqrt{n!}`,
    :math:`n = 0..n_{\max}`, by kink-aware Gauss-Legendre quadrature (:func:`gauss_nodes`).

    With them, for a centred Gaussian pair of variances :math:`A, B` and correlation :math:`\varrho`,
    Mehler's formula gives :math:`E[f(u)f(v)] = \sum_n c_n(A)c_n(B)\varrho^n` (:func:`mehler_gram`).

    Parameters
    ----------
    f : callable
        Vectorised function (e.g. an activation's ``sigma``).
    kinks : sequence of float
        Its kinks.
    A : array, shape (P,)
        Variances, >= 0.
    n_max : int >= 0
    n_quad : int
        Gauss-Legendre nodes per piece.

    Returns
    -------
    c : array, shape (P, n_max + 1)
    """
    f = _fn(f, "f")
    _kinks(kinks)
    A = as_array(A, "A", ndim=1, max_abs=None)
    if np.any(A < 0):
        raise ValueError("A must be >= 0 (variances)")
    n_max = check_int(n_max, "n_max", minimum=0)
    n_quad = check_int(n_quad, "n_quad", minimum=1)
    out = np.zeros((A.size, n_max + 1))
    s = np.sqrt(A)
    pos = s > 0
    out[~pos, 0] = float(f(np.zeros(1))[0])
    if not pos.any():
        return out
    sp = s[pos]
    z, wz = gauss_nodes(kinks, sp, 0.0, n_quad)
    vals = f(sp[:, None] * z) * wz * np.exp(-0.5 * z * z) / _SQRT_2PI
    h_prev, h = np.ones_like(z), z.copy()
    res = np.empty((sp.size, n_max + 1))
    res[:, 0] = vals.sum(axis=1)
    for n in range(1, n_max + 1):
        res[:, n] = np.sum(vals * h, axis=1)
        h_prev, h = h, (z * h - np.sqrt(n) * h_prev) / np.sqrt(n + 1)
    out[pos] = res
    return out


def _hermite_norm(x, n_max):
    """He_n(x)/sqrt(n!) for n = 0..n_max, shape x.shape + (n_max + 1,)."""
    out = np.empty(x.shape + (n_max + 1,))
    out[..., 0] = 1.0
    if n_max >= 1:
        out[..., 1] = x
    for n in range(1, n_max):
        out[..., n + 1] = (x * out[..., n] - np.sqrt(n) * out[..., n - 1]) / np.sqrt(n + 1)
    return out


def relu_hermite(s, b, n_max: int):
    r"""Closed-form Hermite coefficients of a ReLU with bias,
    :math:`h_n(s, b) = E[\mathrm{relu}(sz + b)He_n(z)]/\sqrt{n!}`, and their derivatives
    :math:`\partial_s h_n`, :math:`\partial_b h_n`, for :math:`n\le n_{\max}`.

    With :math:`\zeta = b/s`, :math:`h_0 = s\varphi(\zeta) + b\Phi(\zeta)`,
    :math:`h_1 = s\Phi(\zeta)`, :math:`h_n = s\,He_{n-2}(-\zeta)\varphi(\zeta)/\sqrt{n!}` for
    :math:`n\ge2`; with :math:`e_0 = \Phi(\zeta)`, :math:`e_n = He_{n-1}(-\zeta)\varphi(\zeta)`,
    :math:`\sqrt{n!}\,\partial_b h_n = e_n` and
    :math:`\sqrt{n!}\,\partial_s h_n = e_{n+1} + n e_{n-1}`. For :math:`b = 0` these are the
    :func:`hermite_coefficients` of ReLU at :math:`A = s^2`.

    Returns three arrays of shape ``s.shape + (n_max + 1,)``; ``s`` > 0.
    """
    s = as_array(s, "s")
    b = as_array(b, "b")
    n_max = check_int(n_max, "n_max", minimum=0)
    if np.any(s <= 0):
        raise ValueError("s must be > 0 (standard deviations)")
    try:
        np.broadcast_shapes(s.shape, b.shape)
    except ValueError:
        raise ValueError(f"s and b must broadcast together, got shapes {s.shape} and {b.shape}") from None
    zeta = b / s
    phi = np.exp(-0.5 * zeta**2) * _INV_SQRT_2PI
    Phi = special.ndtr(zeta)
    He = _hermite_norm(-zeta, n_max + 1)           # He_k(-zeta)/sqrt(k!), k <= n_max + 1
    n = np.arange(n_max + 2)
    sqf = np.sqrt([float(factorial(k)) for k in range(n_max + 2)])
    # e_k = E[H(sz+b) He_k(z)], k = 0..n_max+1 (unnormalised).
    e = np.empty(zeta.shape + (n_max + 2,))
    e[..., 0] = Phi
    # phi underflows to 0 for |zeta| > 38.6 while He_k(-zeta) may overflow: the product is 0 there
    live = (phi > 0)[..., None]
    with np.errstate(over="ignore", invalid="ignore"):
        e[..., 1:] = np.where(live, He[..., :-1] * sqf[:-1] * phi[..., None], 0.0)
    h = np.empty(zeta.shape + (n_max + 1,))
    h[..., 0] = s * phi + b * Phi
    if n_max >= 1:
        h[..., 1] = s * Phi
    if n_max >= 2:
        with np.errstate(over="ignore", invalid="ignore"):
            h[..., 2:] = np.where(live, (s * phi)[..., None] * He[..., : n_max - 1] * sqf[: n_max - 1]
                                  / sqf[2: n_max + 1], 0.0)
    db = e[..., : n_max + 1] / sqf[: n_max + 1]
    em1 = np.concatenate([np.zeros(zeta.shape + (1,)), e[..., :n_max]], axis=-1)
    ds = (e[..., 1: n_max + 2] + n[: n_max + 1] * em1) / sqf[: n_max + 1]
    return h, ds, db


MEHLER_RHO_MAX = 0.95
"""Correlations above this (in absolute value) leave Mehler's series for the 2-D quadrature."""


def mehler_gram(f, kinks, c, A, C, m=0.0, diag=None) -> np.ndarray:
    r"""Gram matrix :math:`K_{ij} = E[f(u_i + m_i)\,f(u_j + m_j)]` for a centred Gaussian vector
    :math:`u` with :math:`\operatorname{Var}u_i = A_i`, :math:`\operatorname{Cov}(u_i, u_j) = C_{ij}`.

    Off the diagonal, Mehler's formula truncated at :math:`n_{\max}`,

    .. math::

        K_{ij} = \sum_{n\le n_{\max}} c_{in}\,c_{jn}\,\varrho_{ij}^n,\qquad
        \varrho_{ij} = C_{ij}/\sqrt{A_iA_j},

    summed by Horner's rule in :math:`\varrho` (no (N, N, n) array), where :math:`c_{i\cdot}` are
    the normalised Hermite coefficients of :math:`z\mapsto f(\sqrt{A_i}z + m_i)`
    (:func:`hermite_coefficients`, or :func:`relu_hermite` for a ReLU with bias). The pairs with
    :math:`|\varrho| >` :data:`MEHLER_RHO_MAX` (0.95), where the truncated series converges slowly,
    use the 2-D quadrature :func:`gauss_expect_pair`; the diagonal is ``diag`` (default
    :math:`E[f(u_i + m_i)^2]` by :func:`gauss_expect`). Cost :math:`O(N^2 n_{\max})`.

    Parameters
    ----------
    f, kinks : callable, sequence of float
        The function and its kinks.
    c : array (N, n_max + 1)
    A : array (N,)
    C : array (N, N)
    m : float or array (N,)
        Means.
    diag : array (N,), optional
    """
    f = _fn(f, "f")
    _kinks(kinks)
    c = as_array(c, "c", ndim=2)
    N, n_max = c.shape[0], c.shape[1] - 1
    if N == 0 or n_max < 0:
        raise ValueError(f"c must be a non-empty (N, n_max + 1) array, got shape {c.shape}")
    A = as_array(A, "A", shape=(N,), max_abs=None)
    if np.any(A < 0):
        raise ValueError("A must be >= 0 (variances)")
    C = as_array(C, "C", shape=(N, N), max_abs=None)
    m = _broadcast(m, "m", (N,))
    s = np.sqrt(A)
    sq = np.outer(s, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip(np.where(sq > 0, C / sq, 0.0), -1.0, 1.0)
    K = np.outer(c[:, n_max], c[:, n_max])
    for n in range(n_max - 1, -1, -1):
        K *= rho
        K += np.outer(c[:, n], c[:, n])
    if diag is None:
        diag = gauss_expect(lambda u: f(u) ** 2, kinks, A, m)
    np.fill_diagonal(K, diag)
    hi = np.abs(rho) > MEHLER_RHO_MAX
    np.fill_diagonal(hi, False)
    if hi.any():
        i, j = np.nonzero(hi)
        K[i, j] = gauss_expect_pair(f, f, kinks, kinks, A[i], A[j], C[i, j], m1=m[i], m2=m[j])
    return K


# -- the cosine of two independent uniform directions ------------------------------------------------
def cosine_rule(m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Gauss-Jacobi rule for the cosine :math:`t = \langle u, u'\rangle` of two independent uniform
    unit vectors of :math:`\mathbb R^m`.

    For :math:`m\ge 2`, :math:`t` has density :math:`\propto (1-t^2)^{(m-3)/2}` on :math:`[-1, 1]`
    and the rule with ``n`` nodes integrates polynomials of degree :math:`2n-1` exactly. For
    :math:`m = 1` the cosine is :math:`\pm1` with probability 1/2; for :math:`m = 0` (no such part)
    the rule is the single node 0.

    Parameters
    ----------
    m : int >= 0
        Dimension of the subspace.
    n : int >= 1
        Number of nodes (ignored for m <= 1).

    Returns
    -------
    t, weights : arrays, shape (n,)
        Nodes in :math:`[-1, 1]`, exactly symmetric, and positive weights summing to 1.
    """
    m = check_int(m, "m", minimum=0)
    n = check_int(n, "n", minimum=1)
    if m == 0:
        return np.zeros(1), np.ones(1)
    if m == 1:
        return np.array([-1.0, 1.0]), np.array([0.5, 0.5])
    a = 0.5 * (m - 3)
    t, w = special.roots_jacobi(n, a, a)
    t = 0.5 * (t - t[::-1])          # exact symmetry t_k = -t_{n-1-k}
    w = 0.5 * (w + w[::-1])
    return t, w / w.sum()


def cosine_moments(m: int, k_max: int) -> np.ndarray:
    r""":math:`E[t^k]`, :math:`k = 0..k_{\max}`, for the cosine of :func:`cosine_rule`, in closed
    form: odd moments vanish and :math:`E[t^{2k}] = \prod_{j<k}(2j+1)/(m+2j)`."""
    m = check_int(m, "m", minimum=0)
    k_max = check_int(k_max, "k_max", minimum=0)
    out = np.zeros(k_max + 1)
    out[0] = 1.0
    if m == 0:
        return out
    for k in range(2, k_max + 1, 2):
        out[k] = out[k - 2] * (k - 1) / (m + k - 2)
    return out
