r"""The distributional dynamics :math:`\partial_t\rho = \nabla\cdot(\rho\nabla\Psi(\theta;\rho))` for
symmetric problems, solved in reduced coordinates (chapter 4).

For :class:`~mflib.problems.AnisotropicGaussians` with :math:`\theta = w` and a spherically
symmetric start, :math:`\rho_t` stays uniform given the two radii
:math:`r_1 = |P_V w|`, :math:`r_2 = |P_V^\perp w|` (Mei, Montanari and Nguyen 2018), and the PDE
becomes a PDE for the law :math:`\bar\rho_t` of :math:`r = (r_1, r_2)` on :math:`[0,\infty)^2`,

.. math::

    \partial_t\bar\rho_t = \nabla_r\cdot\big(\bar\rho_t\,\nabla_r\bar\Psi(r;\bar\rho_t)\big),\qquad
    \bar\Psi(r;\bar\rho) = \bar V(r) + \int \bar U(r, r')\,\bar\rho(dr').

:math:`\bar V(r) = V(w)` for any :math:`w` with radii :math:`r`, and :math:`\bar U(r, r')` is
:math:`U(w, w')` averaged over independent uniform directions of the four projections. Only the
cosines :math:`t_1` (between the :math:`s_0`-dimensional parts) and :math:`t_2` (between the rest)
enter, with densities proportional to :math:`(1-t^2)^{(s_0-3)/2}` and :math:`(1-t^2)^{(d-s_0-3)/2}`,
so :math:`\bar U` is a two-dimensional Gauss-Jacobi quadrature
(:func:`mflib.quadrature.cosine_rule`); it is exact
for finite :math:`d`, and :math:`d\to\infty` (all cosines zero) is available as ``limit=True``.

Contents
--------
:class:`ReducedAnisotropic`
    :math:`\bar V`, :math:`\nabla\bar V`, :math:`\bar U` and the integrand :math:`U(r, r'; t_1, t_2)`
    (mflib's one direction-averaged interaction: :mod:`mflib.statics` builds its reduced
    dictionaries with it). The Gaussian primitives it rests on (the cosine rule and moments,
    Hermite coefficients, Mehler sums) live in :mod:`mflib.quadrature`.
:class:`GridSolver`
    the reduced PDE on a grid: interaction matrix between grid nodes computed once, weighted
    particles advected by the gridded velocity, risk from the same quadrature. Its independent
    check is :func:`mflib.jko.particle_flow` with ``scheme="heun"``: :math:`N` particles in
    :math:`\mathbb R^d` moved by the exact population gradient
    :math:`-\nabla\Psi(w_i;\hat\rho_N)`, with no reduction and no grid.
:func:`gaussian_init`
    particles for the law of the radii under :math:`w\sim\mathcal N(0,\kappa^2 I_d/d)`.
:func:`risk_mehler`
    fast exact risk for non-ReLU activations (such as :data:`mflib.activations.bump`, the bounded
    non-monotone activation of chapter 4).
:class:`FokkerPlanck1D`
    the noisy dynamics :math:`\partial_t\rho = \partial_w(\rho\,\partial_w\Psi_\lambda) +
    \beta^{-1}\partial_w^2\rho` for a problem in :math:`d = 1` (finite volumes, Scharfetter-Gummel
    flux), its free energy and the Gibbs fixed point :math:`\rho\propto e^{-\beta\Psi_\lambda}`.

Why particles on a gridded velocity rather than an upwind finite-volume flux for the reduced PDE:
the initial law of the radii has width :math:`\kappa/\sqrt{2d}` (0.03 at :math:`d = 320`), and the
uninformative radius :math:`r_2` then collapses towards 0, so :math:`\bar\rho_t` concentrates on
ever thinner sets. An upwind flux smears such a density by a numerical diffusion of order
:math:`h` per unit distance travelled; Lagrangian particles carry it exactly. The grid is used for
what is smooth, the potential: with tensor cubic B-splines :math:`S_a` on nodes :math:`x_a`,
particles :math:`r_i` of weight :math:`\omega_i` deposit :math:`m_a = \sum_i \omega_i S_a(r_i)`, and

.. math::

    \begin{aligned}
    R_h &= E y^2 + 2\,m^\top \bar V_{\rm nodes} + m^\top K m,\qquad K_{ab} = \bar U(x_a, x_b),\\
    \dot r_i &= -\sum_a \nabla S_a(r_i)\,(\bar V_{\rm nodes} + K m)_a .
    \end{aligned}

The particle velocities are then exactly :math:`-\nabla_{r_i} R_h / (2\omega_i)`: the scheme is the
gradient flow of the discretised risk, so :math:`R_h` decreases (for small time steps), mass is
conserved to round-off (the weights never change) and the deposited density is nonnegative by
construction. Quasi-interpolation by cubic B-splines reproduces linear functions, so the
discretisation error is :math:`O(h^2)`; Heun's method makes the time error :math:`O(\Delta t^2)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np
from numba import njit
from scipy import stats

from . import activations as _act
from . import problems as _problems
from . import quadrature as _quad
from . import runs as _runs
from .validation import as_array, check_int, check_real, check_rng

_SQRT_2PI = np.sqrt(2.0 * np.pi)


# ----------------------------------------------------------------------------------------------
# The ReLU kernel averaged over the cosines (compiled: the grid needs it for ~10^6 node pairs).
# ----------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _relu_ubar(r1a, r2a, r1b, r2b, t1, w1, t2, w2, comp_p, comp_a, symmetric):
    na, nb = r1a.size, r1b.size
    out = np.zeros((na, nb))
    nq = t2.size
    buf = np.empty(t1.size * nq)
    wq = np.empty(t1.size * nq)
    for p in range(t1.size):
        for q in range(nq):
            wq[p * nq + q] = w1[p] * w2[q]
    for i in range(na):
        j0 = i if symmetric else 0
        for j in range(j0, nb):
            acc = 0.0
            for c in range(comp_p.size):
                a = comp_a[c]
                A = a * r1a[i] * r1a[i] + r2a[i] * r2a[i]
                B = a * r1b[j] * r1b[j] + r2b[j] * r2b[j]
                AB = A * B
                if AB <= 0.0:
                    continue
                x1 = a * r1a[i] * r1b[j]
                x2 = r2a[i] * r2b[j]
                sqAB = np.sqrt(A) * np.sqrt(B)
                for p in range(t1.size):        # a map (no reduction): vectorises
                    c1 = x1 * t1[p]
                    for q in range(nq):
                        buf[p * nq + q] = _quad.arccos1_simd(AB, c1 + x2 * t2[q], sqAB)
                s = 0.0
                for m in range(buf.size):
                    s += wq[m] * buf[m]
                acc += comp_p[c] * s
            out[i, j] = acc
            if symmetric:
                out[j, i] = acc
    return out


def _relu_k(A, B, C):
    return _quad.arccos1(A * B, C).k


def _directions(R):
    """Norms (M,), distinct unit directions (k, 2) and each row's direction index (M,) of points
    (M, 2) in the closed positive quadrant; angles that agree to 13 digits are one direction,
    represented by its first point (zero points count as direction (1, 0))."""
    norm = np.hypot(R[:, 0], R[:, 1])
    ang = np.arctan2(R[:, 1], R[:, 0])
    _, first, inv = np.unique(np.round(ang, 13), return_index=True, return_inverse=True)
    nf = norm[first]
    unit = np.where(nf[:, None] > 0, R[first] / np.where(nf > 0, nf, 1.0)[:, None], [1.0, 0.0])
    return norm, unit, inv.ravel()


# ----------------------------------------------------------------------------------------------
# Reduced potentials.
# ----------------------------------------------------------------------------------------------
class ReducedAnisotropic:
    r"""Reduced potentials :math:`\bar V(r)`, :math:`\bar U(r, r')` of
    :class:`~mflib.problems.AnisotropicGaussians` with :math:`\theta = w`.

    A point is :math:`r = (r_1, r_2)`; arrays of points have shape (M, 2). When :math:`s_0 = d`
    there is no :math:`r_2` (it is 0): arrays of shape (M,) or (M, 1) are accepted then.

    With :math:`a_\pm = (1\pm\Delta)^2`, a neuron with radii :math:`r` has
    :math:`\operatorname{Var}\langle w,x\rangle = A_\pm(r) = a_\pm r_1^2 + r_2^2` in class
    :math:`\pm`, and two neurons with cosines :math:`t_1, t_2` have covariance
    :math:`C_\pm = a_\pm r_1 r_1' t_1 + r_2 r_2' t_2`. Hence

    .. math::

        \begin{aligned}
        \bar V(r) &= -\tfrac12\big(E\sigma(\sqrt{A_+}z) - E\sigma(\sqrt{A_-}z)\big),\\
        \bar U(r, r') &= \tfrac12\sum_\pm E_{t_1,t_2}\,k(A_\pm(r), A_\pm(r'), C_\pm),
        \end{aligned}

    with :math:`k(A, B, C) = E[\sigma(u)\sigma(v)]`. For ReLU :math:`k` is the arc-cosine formula
    and :math:`\bar U` is a plain Gauss-Jacobi sum (compiled); for other activations Mehler's
    expansion :math:`k = \sum_{n\le n_{\max}} c_n(A)c_n(B)\varrho^n` turns the average into exact
    moments of the cosines (:func:`mflib.quadrature.cosine_moments`) and :math:`\bar U` into a sum
    of separable terms, or (``n_hermite=None``) :math:`\bar U` is the Gauss-Jacobi sum of the
    problem's own pair quadrature.

    Parameters
    ----------
    problem : AnisotropicGaussians
    n_cos : (int, int), optional
        Gauss-Jacobi nodes for :math:`t_1` and :math:`t_2` (ReLU path). Default: enough for
        :math:`10^{-10}` relative accuracy at the problem's :math:`s_0, d-s_0` (see the tests).
    limit : bool
        Use :math:`d\to\infty` (all cosines 0: :math:`\bar U = \tfrac12\sum_\pm k(A_\pm,B_\pm,0)`).
    n_hermite : int or None
        Truncation of Mehler's series (non-ReLU activations); ``None``: no series, the direct
        Gauss-Jacobi sum of :meth:`U_at_cosines` (exact up to the rules, for any :math:`s_0`;
        cost :math:`M_1M_2n_1n_2` two-dimensional quadratures).
    """

    def __init__(self, problem, n_cos: tuple[int, int] | None = None, limit: bool = False,
                 n_hermite: int = 40):
        if not isinstance(problem, _problems.AnisotropicGaussians):
            raise TypeError(f"problem must be an mflib.problems.AnisotropicGaussians, got "
                            f"{type(problem).__name__}")
        self.problem = problem
        self.d, self.s0, self.delta = problem.d, problem.s0, problem.delta
        self.activation = problem.activation
        self.isotropic = self.s0 == self.d
        self.ndim = 1 if self.isotropic else 2
        self.limit = bool(limit)
        self.n_hermite = None if n_hermite is None else check_int(n_hermite, "n_hermite", minimum=0)
        m1, m2 = self.s0, self.d - self.s0
        if n_cos is None:
            n_cos = (self._default_nodes(m1), self._default_nodes(m2))
        if len(n_cos) != 2:
            raise ValueError(f"n_cos must be a pair of node counts, got {n_cos!r}")
        n1 = check_int(n_cos[0], "n_cos[0]", minimum=1)
        n2 = check_int(n_cos[1], "n_cos[1]", minimum=1)
        self.n_cos = (n1, n2)
        if self.limit:
            self.t1, self.w1 = np.zeros(1), np.ones(1)
            self.t2, self.w2 = np.zeros(1), np.ones(1)
        else:
            self.t1, self.w1 = _quad.cosine_rule(m1, n1)
            self.t2, self.w2 = _quad.cosine_rule(m2, n2)
        self.comp_p = np.array([0.5, 0.5])
        self.comp_a = np.array([(1.0 + self.delta) ** 2, (1.0 - self.delta) ** 2])
        self.is_relu = self.activation is _act.relu

    @staticmethod
    def _default_nodes(m: int) -> int:
        # The cosine has standard deviation 1/sqrt(m); Gauss-Jacobi with n nodes is exact to degree
        # 2n - 1 and the arc-cosine kernel's Taylor coefficients decay like k^{-3/2}.
        if m <= 1:
            return 1
        return int(min(48, max(6, np.ceil(4 + 150.0 / m))))

    def __repr__(self) -> str:
        return (f"ReducedAnisotropic(d={self.d}, s0={self.s0}, delta={self.delta}, "
                f"activation={self.activation.name!r}, n_cos={self.n_cos}, limit={self.limit})")

    # -- inputs ----------------------------------------------------------------------------
    def radii(self, R, name: str = "R") -> np.ndarray:
        """Validate points and return them as an (M, 2) array (r2 = 0 when s0 = d)."""
        R = as_array(R, name)
        if R.ndim == 1 and self.isotropic:
            R = R[:, None]
        if R.ndim != 2 or R.shape[1] not in (1, 2):
            raise ValueError(f"{name} must have shape (M, 2) (or (M,) when s0 = d), got {R.shape}")
        if R.shape[1] == 1:
            if not self.isotropic:
                raise ValueError(f"{name} must have shape (M, 2) when s0 < d, got {R.shape}")
            R = np.concatenate([R, np.zeros_like(R)], axis=1)
        if self.isotropic and np.any(R[:, 1] != 0):
            raise ValueError(f"{name}[:, 1] (r2) must be 0 when s0 = d")
        if np.any(R < 0):
            raise ValueError(f"{name} must hold radii >= 0, got a minimum of {R.min():.3g}")
        return R

    def embed(self, R, rng: np.random.Generator | None = None) -> np.ndarray:
        r"""Weights :math:`w\in\mathbb R^d` with the given radii, shape (M, d): along
        :math:`e_1` and :math:`e_{s_0+1}`, or along independent uniform directions if ``rng``."""
        R = self.radii(R)
        M, d, s0 = R.shape[0], self.d, self.s0
        W = np.zeros((M, d))
        if rng is None:
            W[:, 0] = R[:, 0]
            if s0 < d:
                W[:, s0] = R[:, 1]
            return W
        rng = check_rng(rng)
        G = rng.standard_normal((M, d))
        W[:, :s0] = G[:, :s0] / np.linalg.norm(G[:, :s0], axis=1, keepdims=True) * R[:, :1]
        if s0 < d:
            W[:, s0:] = G[:, s0:] / np.linalg.norm(G[:, s0:], axis=1, keepdims=True) * R[:, 1:]
        return W

    def _A(self, R):
        """A_pm for rows of R, shape (2, M)."""
        return self.comp_a[:, None] * R[None, :, 0] ** 2 + R[None, :, 1] ** 2

    # -- V ---------------------------------------------------------------------------------
    def VBar(self, R) -> np.ndarray:
        r""":math:`\bar V(r)`, shape (M,); exact (it equals :math:`V(w)` for any such :math:`w`)."""
        R = self.radii(R)
        A = self._A(R)
        if self.is_relu:
            g = np.sqrt(A) / _SQRT_2PI
        else:
            act = self.activation
            g = _quad.gauss_expect(act.sigma, act.kinks, A.ravel()).reshape(A.shape)
        return -0.5 * (g[0] - g[1])

    def grad_VBar(self, R) -> np.ndarray:
        r""":math:`\nabla_r\bar V(r)`, shape (M, 2), from the exact :math:`\nabla_w V` of the
        problem at a weight with those radii (:math:`\partial_{r_1}\bar V = \langle\nabla V, e_1\rangle`)."""
        R = self.radii(R)
        if R.shape[0] == 0:
            return np.zeros((0, 2))
        g = self.problem.grad_V(self.embed(R))
        out = np.zeros((R.shape[0], 2))
        out[:, 0] = g[:, 0]
        if not self.isotropic:
            out[:, 1] = g[:, self.s0]
        return out

    # -- U ---------------------------------------------------------------------------------
    def U_at_cosines(self, R1, R2, t1, t2) -> np.ndarray:
        r"""The integrand: :math:`U(w, w')` for :math:`w, w'` with radii ``R1[i]``, ``R2[i]`` and
        cosines ``t1[i]``, ``t2[i]``; shape (M,). For ReLU the arc-cosine formula, otherwise the
        problem's own quadrature."""
        R1 = self.radii(R1, "R1")
        R2 = self.radii(R2, "R2")
        M = R1.shape[0]
        if R2.shape[0] != M:
            raise ValueError(f"R2 must have the same number of rows as R1 ({M}), got {R2.shape[0]}")
        t1 = as_array(t1, "t1", shape=(M,))
        t2 = as_array(t2, "t2", shape=(M,))
        if np.any(np.abs(t1) > 1) or np.any(np.abs(t2) > 1):
            raise ValueError("t1 and t2 must lie in [-1, 1] (cosines)")
        A, B = self._A(R1), self._A(R2)
        C = (self.comp_a[:, None] * R1[None, :, 0] * R2[None, :, 0] * t1
             + R1[None, :, 1] * R2[None, :, 1] * t2)
        if self.is_relu:
            k = _relu_k(A, B, C)
        else:
            act = self.activation
            s, kk = act.sigma, act.kinks
            k = _quad.gauss_expect_pair(s, s, kk, kk, A.ravel(), B.ravel(), C.ravel()).reshape(A.shape)
        return self.comp_p @ k

    def UBar(self, R1, R2=None) -> np.ndarray:
        r""":math:`\bar U(r_i, r'_j)`, shape (M1, M2) (``R2`` defaults to ``R1``).

        ReLU: the compiled Gauss-Jacobi sum of the arc-cosine formula, evaluated on distinct
        directions only: ReLU is positively 1-homogeneous, so
        :math:`\bar U(r, r') = |r||r'|\,\bar U(r/|r|, r'/|r'|)`, and points whose angles
        :math:`\arctan(r_2/r_1)` agree to 13 digits share one evaluation (a polar grid of
        :math:`n` atoms on :math:`k` rays costs :math:`k^2` sums instead of :math:`n^2`).
        Other activations: the separable Mehler form, or the direct sum (``n_hermite=None``)."""
        R1 = self.radii(R1, "R1")
        sym = R2 is None
        R2 = R1 if sym else self.radii(R2, "R2")
        if self.is_relu:
            n1, u1, i1 = _directions(R1)
            n2, u2, i2 = (n1, u1, i1) if sym else _directions(R2)
            K = _relu_ubar(u1[:, 0].copy(), u1[:, 1].copy(), u2[:, 0].copy(), u2[:, 1].copy(),
                           self.t1, self.w1, self.t2, self.w2, self.comp_p, self.comp_a, sym)
            return n1[:, None] * n2[None, :] * K[np.ix_(i1, i2)]
        if self.n_hermite is None:
            return self._UBar_direct(R1, R2)
        F1, D = self._features(R1)
        F2 = F1 if sym else self._features(R2)[0]
        return (F1 * D) @ F2.T

    def _UBar_direct(self, R1, R2, chunk: int = 2_000_000):
        """Gauss-Jacobi sum of :meth:`U_at_cosines` over (t1, t2), columns in chunks."""
        T1, T2 = (x.ravel() for x in np.meshgrid(self.t1, self.t2, indexing="ij"))
        Q = np.outer(self.w1, self.w2).ravel()
        nq, M1 = Q.size, R1.shape[0]
        out = np.empty((M1, R2.shape[0]))
        step = max(1, chunk // (nq * M1))
        for s in range(0, R2.shape[0], step):
            Rs = R2[s:s + step]
            m = Rs.shape[0]
            vals = self.U_at_cosines(np.repeat(R1, m * nq, axis=0),
                                     np.tile(np.repeat(Rs, nq, axis=0), (M1, 1)),
                                     np.tile(T1, M1 * m), np.tile(T2, M1 * m))
            out[:, s:s + m] = (vals.reshape(M1, m, nq) * Q).sum(axis=2)
        return out

    def _features(self, R):
        r"""Separable form of :math:`\bar U` for non-ReLU activations: features (M, F), weights (F,).

        :math:`\bar U(r, r') = \sum_f D_f F_f(r) F_f(r')` with, for each class, even :math:`n` and
        even :math:`j\le n`, :math:`F = c_n(A)\,u_1^j u_2^{n-j}`,
        :math:`u_1 = \sqrt{a}\,r_1/\sqrt A`, :math:`u_2 = r_2/\sqrt A`,
        :math:`D = \tfrac12\binom nj E[t_1^j]E[t_2^{n-j}]` (odd moments vanish)."""
        nmax = self.n_hermite
        if self.limit:
            mu1 = mu2 = _quad.cosine_moments(0, nmax)
        else:
            mu1 = _quad.cosine_moments(self.s0, nmax)
            mu2 = _quad.cosine_moments(self.d - self.s0, nmax)
        A = self._A(R)
        act = self.activation
        feats, D = [], []
        for c in range(2):
            cn = _quad.hermite_coefficients(act.sigma, act.kinks, A[c], nmax)
            sA = np.sqrt(A[c])
            with np.errstate(divide="ignore", invalid="ignore"):
                u1 = np.where(sA > 0, np.sqrt(self.comp_a[c]) * R[:, 0] / sA, 0.0)
                u2 = np.where(sA > 0, R[:, 1] / sA, 0.0)
            for n in range(0, nmax + 1, 2):
                for j in range(0, n + 1, 2):
                    coef = self.comp_p[c] * comb(n, j) * mu1[j] * mu2[n - j]
                    if coef == 0.0:
                        continue
                    feats.append(cn[:, n] * u1**j * u2 ** (n - j))
                    D.append(coef)
        return np.stack(feats, axis=1), np.array(D)

    def risk(self, R, weights) -> float:
        r""":math:`R(\bar\rho) = Ey^2 + 2\int\bar V d\bar\rho + \iint\bar U d\bar\rho d\bar\rho` for the
        weighted atoms ``R`` (M, 2), ``weights`` (M,) (direct, no grid; cost :math:`M^2`)."""
        R = self.radii(R)
        w = _weights(weights, R.shape[0])
        return float(1.0 + 2.0 * w @ self.VBar(R) + w @ self.UBar(R) @ w)


def _weights(weights, M):
    w = as_array(weights, "weights", shape=(M,))
    if np.any(w < 0):
        raise ValueError("weights must be >= 0")
    if abs(w.sum() - 1.0) > 1e-9:
        raise ValueError(f"weights must sum to 1, got {w.sum():.6g}")
    return w


# ----------------------------------------------------------------------------------------------
# Initial laws.
# ----------------------------------------------------------------------------------------------
def gaussian_init(reduced: ReducedAnisotropic, kappa: float, n: int | tuple[int, int]):
    r"""Weighted particles for the law of the radii when :math:`w\sim\mathcal N(0,\kappa^2 I_d/d)`.

    Then :math:`r_1 = \tfrac{\kappa}{\sqrt d}\chi_{s_0}` and :math:`r_2 = \tfrac{\kappa}{\sqrt d}
    \chi_{d-s_0}` are independent; each is represented by its ``n`` quantiles at levels
    :math:`(k + 1/2)/n` with equal weights (the midpoint rule in probability, error
    :math:`O(n^{-2})`), and the two are combined as a tensor product.

    Parameters
    ----------
    reduced : ReducedAnisotropic
    kappa : float > 0
    n : int or (int, int)
        Quantiles per radius.

    Returns
    -------
    R : array (M, 2), weights : array (M,)
    """
    if not isinstance(reduced, ReducedAnisotropic):
        raise TypeError("reduced must be a ReducedAnisotropic")
    kappa = check_real(kappa, "kappa", low=0.0, low_open=True)
    n1, n2 = (n, n) if np.isscalar(n) else n
    n1 = check_int(n1, "n", minimum=1)
    n2 = check_int(n2, "n", minimum=1)
    d, s0 = reduced.d, reduced.s0
    sc = kappa / np.sqrt(d)
    r1 = sc * np.sqrt(stats.chi2.ppf((np.arange(n1) + 0.5) / n1, s0))
    if reduced.isotropic:
        return np.stack([r1, np.zeros(n1)], axis=1), np.full(n1, 1.0 / n1)
    r2 = sc * np.sqrt(stats.chi2.ppf((np.arange(n2) + 0.5) / n2, d - s0))
    R = np.stack(np.meshgrid(r1, r2, indexing="ij"), axis=-1).reshape(-1, 2)
    return R, np.full(n1 * n2, 1.0 / (n1 * n2))


def _low_rank(K, tol):
    r"""Truncated eigen-decomposition :math:`K\approx Q\Lambda Q^\top` of a symmetric matrix, keeping
    eigenvalues above ``tol`` times the largest: a randomised range finder (fixed internal seed,
    so deterministic) with a posteriori check on fresh probes, falling back to ``eigh``."""
    M = K.shape[0]
    probe = np.random.default_rng(0)
    k = 32
    while 2 * k < M:
        Q, _ = np.linalg.qr(K @ probe.standard_normal((M, k)))
        lam, V = np.linalg.eigh(Q.T @ K @ Q)
        top = np.abs(lam).max(initial=0.0)
        keep = np.abs(lam) > tol * top
        Qk, Lk = Q @ V[:, keep], lam[keep]
        test = probe.standard_normal((M, 8))
        KT = K @ test
        err = np.linalg.norm(KT - Qk @ (Lk[:, None] * (Qk.T @ test))) / max(np.linalg.norm(KT), 1e-300)
        if keep.sum() < k - 8 and err < 100.0 * tol + 1e-13:
            return np.ascontiguousarray(Qk), Lk
        k *= 2
    lam, Q = np.linalg.eigh(K)
    keep = np.abs(lam) > tol * np.abs(lam).max(initial=0.0)
    return np.ascontiguousarray(Q[:, keep]), lam[keep]


# ----------------------------------------------------------------------------------------------
# Cubic B-splines on a uniform grid.
# ----------------------------------------------------------------------------------------------
def _bspline(x, lo, h, n):
    """Indices (P, 4), values (P, 4) and derivatives (P, 4) of the cubic B-splines at x."""
    s = (x - lo) / h
    i0 = np.floor(s).astype(np.int64)
    idx = i0[:, None] + np.arange(-1, 3)
    u = np.abs(s[:, None] - idx)
    sg = np.sign(s[:, None] - idx)
    inner = u < 1
    val = np.where(inner, (4.0 - 6.0 * u**2 + 3.0 * u**3) / 6.0, np.maximum(2.0 - u, 0.0) ** 3 / 6.0)
    der = np.where(inner, -2.0 * u + 1.5 * u**2, -0.5 * np.maximum(2.0 - u, 0.0) ** 2) * sg / h
    if idx.min() < 0 or idx.max() >= n:
        raise _GridExit
    return idx, val, der


class _GridExit(Exception):
    pass


class _LeftGrid(ValueError):
    """A particle outside the grid (a ValueError for the caller's input; GridSolver.run turns it
    into a DivergenceError when a step causes it)."""


@dataclass
class PDESolution:
    r"""Output of :meth:`GridSolver.run`.

    Attributes
    ----------
    t : array (K,)           record times
    risk : array (K,)        :math:`R_h(\bar\rho_t)` at those times
    R : array (M, 2)         final particle positions (radii)
    weights : array (M,)     particle weights (constant in time)
    snapshots : array (K, M, 2) or None   positions at the record times
    mass : array (K,)        total deposited mass at the record times (1 up to round-off)
    """

    t: np.ndarray
    risk: np.ndarray
    R: np.ndarray
    weights: np.ndarray
    snapshots: np.ndarray | None
    mass: np.ndarray


class GridSolver:
    r"""The reduced distributional dynamics on a grid (see the module docstring for the scheme).

    Parameters
    ----------
    reduced : ReducedAnisotropic
    h : float > 0
        Grid spacing (the same in both radii).
    r_max : float or (float, float)
        Particles must stay in :math:`[0, r_{\max}]` (per radius); the nodes cover
        :math:`[-3h, r_{\max} + 3h]` (the nodes below 0 make the potential even in each radius,
        so that the velocity vanishes on the axes as it does in the PDE).
    lam : float >= 0
        Ridge :math:`\lambda`: adds :math:`\lambda|r|^2/2` to :math:`\bar\Psi` (exactly).
    rank_tol : float or None
        :math:`\bar U` is smooth, so :math:`K` has a tiny numerical rank (about 10 at
        :math:`10^{-14}` for the anisotropic Gaussians at :math:`d = 320`). With ``rank_tol``,
        :math:`K` is replaced once by its truncated eigen-decomposition
        :math:`Q\Lambda Q^\top` (eigenvalues below ``rank_tol`` times the largest dropped), so a
        step costs :math:`O(M_g r)` instead of :math:`O(M_g^2)`; ``None`` keeps the dense matrix.

    Attributes
    ----------
    nodes : array (M_g, 2)   grid nodes
    Vn : array (M_g,)        :math:`\bar V` at the nodes
    K : array (M_g, M_g)     :math:`\bar U` between nodes (computed once)
    rank : int               rank kept (``M_g`` when dense)
    """

    def __init__(self, reduced: ReducedAnisotropic, h: float, r_max, lam: float = 0.0,
                 rank_tol: float | None = 1e-14):
        if not isinstance(reduced, ReducedAnisotropic):
            raise TypeError("reduced must be a ReducedAnisotropic")
        self.reduced = reduced
        self.h = check_real(h, "h", low=0.0, low_open=True)
        rm = as_array(r_max, "r_max")
        if rm.shape not in ((), (1,), (2,)):
            raise ValueError(f"r_max must be a float or a pair (r1_max, r2_max), got shape {rm.shape}")
        rm = np.broadcast_to(rm, (2,))
        for k in range(reduced.ndim):
            check_real(float(rm[k]), "r_max", low=4.0 * self.h, low_open=True)
        self.lam = check_real(lam, "lam", low=0.0)
        self.lo = -3.0 * self.h
        self.shape = tuple(int(np.ceil((rm[k] + 3.0 * self.h - self.lo) / self.h)) + 1
                           if k < reduced.ndim else 1
                           for k in range(2))
        axes = [self.lo + self.h * np.arange(self.shape[0]),
                self.lo + self.h * np.arange(self.shape[1]) if reduced.ndim == 2 else np.zeros(1)]
        self.axes = axes
        self.nodes = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
        if self.nodes.shape[0] > 20000:
            raise ValueError(f"the grid has {self.nodes.shape[0]} nodes (> 20000): increase h or "
                             "decrease r_max")
        self.Vn = reduced.VBar(np.abs(self.nodes))
        self.K = reduced.UBar(np.abs(self.nodes))
        if rank_tol is None:
            self._Q, self._L = None, None
            self.rank = self.K.shape[0]
        else:
            rank_tol = check_real(rank_tol, "rank_tol", low=0.0, high=1.0, low_open=True)
            self._Q, self._L = _low_rank(self.K, rank_tol)
            self.rank = self._L.size

    def _Kdot(self, m):
        if self._Q is None:
            return self.K @ m
        return self._Q @ (self._L * (self._Q.T @ m))

    def __repr__(self) -> str:
        return f"GridSolver(h={self.h}, shape={self.shape}, {self.reduced!r})"

    # -- the discrete potential ---------------------------------------------------------------
    def _basis(self, R):
        """Flat node indices (P, B), values (P, B) and gradients (P, B, 2) of the tensor splines."""
        try:
            i1, v1, d1 = _bspline(R[:, 0], self.lo, self.h, self.shape[0])
            if self.reduced.ndim == 1:
                return i1, v1, np.stack([d1, np.zeros_like(d1)], axis=-1)
            i2, v2, d2 = _bspline(R[:, 1], self.lo, self.h, self.shape[1])
        except _GridExit:
            raise _LeftGrid(f"a particle left the grid (max radii {R.max(axis=0)}): increase "
                            "r_max") from None
        n2 = self.shape[1]
        idx = (i1[:, :, None] * n2 + i2[:, None, :]).reshape(R.shape[0], -1)
        val = (v1[:, :, None] * v2[:, None, :]).reshape(R.shape[0], -1)
        g = np.stack([(d1[:, :, None] * v2[:, None, :]).reshape(R.shape[0], -1),
                      (v1[:, :, None] * d2[:, None, :]).reshape(R.shape[0], -1)], axis=-1)
        return idx, val, g

    def _checked(self, R, weights, name="R"):
        """Validated radii (M, 2) on the grid and probability weights (M,) (public methods)."""
        R = self.reduced.radii(R, name)
        w = _weights(weights, R.shape[0])
        try:
            self._basis(R)
        except _LeftGrid:
            raise ValueError(f"{name} has radii outside the grid (a particle left the grid: max radii "
                             f"{R.max(axis=0)}); build the GridSolver with a larger r_max") from None
        return R, w

    def deposit(self, R, weights) -> np.ndarray:
        r"""Node masses :math:`m_a = \sum_i\omega_i S_a(r_i)`, shape (M_g,), for radii ``R``
        (M, 2) >= 0 on the grid and probability ``weights`` (M,)."""
        return self._deposit(*self._checked(R, weights))

    def _deposit(self, R, weights) -> np.ndarray:
        idx, val, _ = self._basis(R)
        return np.bincount(idx.ravel(), weights=(val * weights[:, None]).ravel(),
                           minlength=self.nodes.shape[0])

    def density(self, R, weights) -> np.ndarray:
        r"""The deposited density on the grid, shape ``self.shape`` (mass per unit area, >= 0)."""
        m = self.deposit(R, weights)
        return m.reshape(self.shape) / self.h ** self.reduced.ndim

    def velocity(self, R, weights) -> np.ndarray:
        r""":math:`-\nabla_r\bar\Psi_h(r_i)`, shape (M, 2)."""
        return self._velocity(*self._checked(R, weights))

    def _velocity(self, R, weights) -> np.ndarray:
        idx, val, g = self._basis(R)
        m = np.bincount(idx.ravel(), weights=(val * weights[:, None]).ravel(),
                        minlength=self.nodes.shape[0])
        c = self.Vn + self._Kdot(m)
        v = -np.einsum("pb,pbk->pk", c[idx], g)
        if self.lam:
            v -= self.lam * R
        return v

    def risk(self, R, weights) -> float:
        r""":math:`R_h = Ey^2 + 2m^\top\bar V_{\rm nodes} + m^\top K m` (plus :math:`\lambda\int|r|^2` if
        ``lam``: then this is :math:`R + \lambda\int|r|^2`, twice the ridge-regularised energy)."""
        return self._risk(*self._checked(R, weights))

    def _risk(self, R, weights) -> float:
        m = self._deposit(R, weights)
        out = 1.0 + 2.0 * m @ self.Vn + m @ self._Kdot(m)
        if self.lam:
            out += self.lam * weights @ np.sum(R**2, axis=1)
        return float(out)

    # -- time stepping ------------------------------------------------------------------------
    def run(self, R0, weights, T: float, dt: float, n_records: int = 50, log_times: bool = False,
            snapshots: bool = False, progress: bool | None = None) -> PDESolution:
        r"""Advance the particles by Heun's method from time 0 to ``T``.

        Parameters
        ----------
        R0 : array (M, 2)
            Initial radii (e.g. from :func:`gaussian_init`).
        weights : array (M,)
            Nonnegative, summing to 1.
        T : float > 0
        dt : float > 0
            Time step (the last one is shortened to land on ``T``).
        n_records : int >= 2
            Number of record steps, uniform in :math:`[0, n_{\rm steps}]` or, with
            ``log_times``, log-spaced from the first step (:func:`mflib.runs.record_grid`),
            always including 0 and ``T``.
        snapshots : bool
            Keep the positions at the record times.
        progress : bool or None
            Progress bar (:mod:`mflib.progress`).

        Returns
        -------
        PDESolution

        Raises
        ------
        mflib.runs.DivergenceError
            If a step sends a particle off the grid or to a non-finite position (``dt`` too
            large, or ``r_max`` too small for the flow); the message names the step and time.
        ValueError
            For bad arguments, or initial radii ``R0`` outside the grid.
        """
        R, w = self._checked(R0, weights, "R0")
        R = R.copy()
        T = check_real(T, "T", low=0.0, low_open=True)
        dt = check_real(dt, "dt", low=0.0, low_open=True)
        n_records = check_int(n_records, "n_records", minimum=2)
        n_steps = int(np.ceil(T / dt - 1e-9))
        times = np.concatenate([[0.0], np.minimum(np.arange(1, n_steps + 1) * dt, T)])
        if log_times:
            grid = _runs.record_grid(n_steps, n_log=max(n_records - 1, 2))
        else:
            grid = _runs.record_grid(n_steps, n_records=n_records)
        with _runs.Recorder(grid, times=times, progress=progress, desc="PDE",
                            where="the grid PDE solver",
                            advice=f"try a smaller dt (now {dt:g}), e.g. {dt / 10:.3g}, or a larger "
                                   f"r_max if the flow itself leaves the grid") as rec:
            for k0, k1 in rec.spans():
                for k in range(k0, k1):
                    tau = times[k + 1] - times[k]
                    v1, Rp = np.zeros_like(R), R
                    try:
                        v1 = self._velocity(R, w)
                        Rp = R + tau * v1
                        R = R + 0.5 * tau * (v1 + self._velocity(Rp, w))
                    except _LeftGrid:
                        # The cause: a step that jumps cells (dt) or a flow that leaves (r_max).
                        jump = float(np.nanmax(np.abs(tau * v1))) if np.all(np.isfinite(v1)) else np.inf
                        if not jump <= self.h:
                            dt_ok = 0.5 * dt * self.h / jump if np.isfinite(jump) and jump > 0 else dt / 10
                            raise rec.diverged(k + 1, f"a particle jumped {jump:.3g} (> the cell size "
                                               f"h = {self.h:g}) in one step and left the grid",
                                               advice=f"try a smaller dt (now {dt:g}), e.g. dt = "
                                                      f"{dt_ok:.2g}") from None
                        raise rec.diverged(k + 1, "the flow carried a particle off the grid",
                                           advice=f"build the GridSolver with a larger r_max (the "
                                                  f"radii reached {np.max(Rp, axis=0)})") from None
                    # The potential is even in each radius: a particle that overshoots an axis is
                    # its own mirror image.
                    R = np.abs(R)
                    rec.check(R, step=k + 1)
                    rec.tick()
                rec.record(risk=self._risk(R, w), mass=self._deposit(R, w).sum(),
                           R=R if snapshots else None)
        return PDESolution(t=rec.t, risk=rec.array("risk"), R=R, weights=w,
                           snapshots=rec.array("R"), mass=rec.array("mass"))


# ----------------------------------------------------------------------------------------------
# Noisy dynamics in one dimension: Fokker-Planck, free energy, Gibbs fixed point.
# ----------------------------------------------------------------------------------------------
@dataclass
class FokkerPlanckSolution:
    r"""Output of :meth:`FokkerPlanck1D.run`.

    Attributes
    ----------
    t : array (K,)             uniform record times in :math:`[0, T]`
    m : array (K, n)           cell masses at those times
    free_energy : array (K,)   :math:`F_\beta` (:meth:`FokkerPlanck1D.free_energy`)
    risk : array (K,)          :math:`R(\rho_t)` (:meth:`FokkerPlanck1D.risk`)
    """

    t: np.ndarray
    m: np.ndarray
    free_energy: np.ndarray
    risk: np.ndarray


class FokkerPlanck1D:
    r"""Noisy mean-field dynamics of a problem with :math:`d = 1` on a uniform grid of cells.

    .. math::

        \begin{aligned}
        \partial_t\rho &= \partial_w\big(\rho\,\partial_w\Psi_\lambda(w;\rho)\big)
        + \beta^{-1}\partial_w^2\rho,\\
        \Psi_\lambda &= V + \int U(w, w')\rho(dw') + \tfrac\lambda2 w^2,
        \end{aligned}

    the Wasserstein gradient flow of
    :math:`F_\beta(\rho) = \tfrac12R(\rho) + \tfrac\lambda2\int w^2 d\rho + \beta^{-1}\int\rho\log\rho`.
    Cells of width :math:`h` hold masses :math:`m_i`; the flux between neighbouring cells is the
    Scharfetter-Gummel flux, which is exact for the discrete Gibbs state
    :math:`m_i\propto e^{-\beta\Psi_i}` (so the scheme's stationary points are exactly the fixed
    points of :meth:`gibbs`), conserves mass to round-off (zero flux through the outer walls) and
    keeps masses nonnegative under the explicit step limit
    :math:`\Delta t\le 0.9\,\beta h^2/(2 + 2\max|z|)` that :meth:`run` enforces.

    Parameters
    ----------
    problem : Problem with d = 1
    w_max : float > 0
        Cells cover :math:`[-w_{\max}, w_{\max}]`.
    n_cells : int >= 8
    beta : float > 0
    lam : float >= 0
    """

    def __init__(self, problem, w_max: float, n_cells: int, beta: float, lam: float = 0.0):
        if not isinstance(problem, _problems.Problem) or problem.d != 1:
            raise ValueError("problem must be an mflib.problems.Problem with d = 1")
        self.problem = problem
        w_max = check_real(w_max, "w_max", low=0.0, low_open=True)
        n = check_int(n_cells, "n_cells", minimum=8)
        self.beta = check_real(beta, "beta", low=0.0, low_open=True)
        self.lam = check_real(lam, "lam", low=0.0)
        self.h = 2.0 * w_max / n
        self.x = -w_max + self.h * (np.arange(n) + 0.5)
        X = self.x[:, None]
        self.Vx = problem.V(X) + 0.5 * self.lam * self.x**2
        self.Ux = _U_1d(problem, self.x)

    def _masses(self, m, name="m"):
        """Nonnegative cell masses (n,) summing to 1 (the public methods' check)."""
        m = as_array(m, name, shape=self.x.shape)
        if np.any(m < 0) or abs(m.sum() - 1) > 1e-9:
            raise ValueError(f"{name} must be nonnegative cell masses summing to 1, got shape "
                             f"{m.shape}, minimum {m.min():.3g} and sum {m.sum():.6g}")
        return m

    def Psi(self, m) -> np.ndarray:
        r""":math:`\Psi_\lambda(x_i;\rho)` at the cell centres for cell masses ``m`` (n,)."""
        return self._Psi(self._masses(m))

    def _Psi(self, m) -> np.ndarray:
        return self.Vx + self.Ux @ m

    def free_energy(self, m) -> float:
        r""":math:`F_\beta = \tfrac12R + \tfrac\lambda2\int w^2 + \beta^{-1}\int\rho\log\rho` with
        :math:`\rho = m/h` piecewise constant."""
        m = self._masses(m)
        p = self.problem
        V = self.Vx - 0.5 * self.lam * self.x**2
        R = p.Ey2 + 2.0 * m @ V + m @ self.Ux @ m
        pos = m > 0
        ent = np.sum(m[pos] * np.log(m[pos] / self.h))
        return float(0.5 * R + 0.5 * self.lam * m @ self.x**2 + ent / self.beta)

    def risk(self, m) -> float:
        """:math:`R(\\rho)` for cell masses m."""
        m = self._masses(m)
        V = self.Vx - 0.5 * self.lam * self.x**2
        return float(self.problem.Ey2 + 2.0 * m @ V + m @ self.Ux @ m)

    def _flux(self, m):
        r"""Scharfetter-Gummel mass fluxes through the interior walls, shape (n - 1,).

        :math:`J_{i+1/2} = \big(B(z)m_i - B(-z)m_{i+1}\big)/(\beta h^2)`,
        :math:`z = \beta(\Psi_{i+1}-\Psi_i)`,
        :math:`B(z) = z/(e^z-1)`; it vanishes exactly when :math:`m_{i+1}/m_i = e^{-z}`."""
        z = self.beta * np.diff(self._Psi(m))
        return (_bernoulli(z) * m[:-1] - _bernoulli(-z) * m[1:]) / (self.beta * self.h**2), z

    def _dt_max(self, z):
        # Positivity of explicit Euler: dt (B(z_right) + B(-z_left)) <= beta h^2, and B(z) <= 1 + |z|.
        return 0.9 * self.beta * self.h**2 / (2.0 + 2.0 * np.abs(z).max(initial=0.0))

    def step(self, m, dt_max: float = np.inf):
        """One explicit Euler step (at most ``dt_max``, within the positivity limit); returns
        the new masses and the step taken."""
        m = self._masses(m)
        dt_max = check_real(dt_max, "dt_max", low=0.0, low_open=True) if dt_max != np.inf else dt_max
        return self._step(m, dt_max)

    def _step(self, m, dt_max):
        F, z = self._flux(m)
        dt = min(dt_max, self._dt_max(z))
        out = m.copy()
        out[:-1] -= dt * F
        out[1:] += dt * F
        return out, dt

    def run(self, m0, T: float, n_records: int = 50,
            progress: bool | None = None) -> FokkerPlanckSolution:
        r"""Explicit Euler with adaptive steps (positivity limit) from cell masses ``m0`` to ``T``.

        The steps are as long as the positivity limit allows and end exactly on the
        ``n_records`` uniform record times; the progress bar counts records.

        Returns
        -------
        FokkerPlanckSolution
            ``t`` (K,), ``m`` (K, n), ``free_energy`` (K,), ``risk`` (K,).

        Raises
        ------
        mflib.runs.DivergenceError
            If the masses become non-finite (the message names the record and its time).
        """
        m = self._masses(m0, "m0").copy()
        T = check_real(T, "T", low=0.0, low_open=True)
        n_records = check_int(n_records, "n_records", minimum=2)
        tr = np.linspace(0.0, T, n_records)
        t = 0.0
        # the recorder's "steps" are the records here: the time steps between them are adaptive
        with _runs.Recorder(np.arange(n_records), times=tr, progress=progress,
                            desc="Fokker-Planck", where="the Fokker-Planck solver",
                            advice="check the potential (the steps are already at the "
                                   "positivity limit)") as rec:
            for _, j in rec.spans():
                while t < tr[j] - 1e-14:
                    m, dt = self._step(m, tr[j] - t)
                    t += dt
                rec.check(m)
                rec.record(m=m)
        ms = rec.array("m")
        return FokkerPlanckSolution(t=tr, m=ms,
                                    free_energy=np.array([self.free_energy(q) for q in ms]),
                                    risk=np.array([self.risk(q) for q in ms]))

    def gibbs(self, damping: float = 0.5, tol: float = 1e-12, max_iter: int = 10000, m0=None):
        r"""Fixed point :math:`m_i\propto e^{-\beta\Psi_\lambda(x_i;m)}` by damped iteration
        :math:`m\leftarrow(1-\alpha)m + \alpha\,e^{-\beta\Psi(m)}/Z`.

        Returns
        -------
        m : array (n,), n_iter : int (raises RuntimeError when it does not converge)
        """
        damping = check_real(damping, "damping", low=0.0, high=1.0, low_open=True)
        tol = check_real(tol, "tol", low=0.0, low_open=True)
        m = np.full(self.x.size, 1.0 / self.x.size) if m0 is None else self._masses(m0, "m0").copy()
        for it in range(1, check_int(max_iter, "max_iter", minimum=1) + 1):
            e = -self.beta * self._Psi(m)
            g = np.exp(e - e.max())
            g /= g.sum()
            new = (1 - damping) * m + damping * g
            if np.abs(new - m).max() < tol:
                return new, it
            m = new
        raise RuntimeError(f"Gibbs iteration did not converge in {max_iter} iterations; try a "
                           "smaller damping")


def _U_1d(problem, x):
    """U(x_i, x_j) for a problem in d = 1: both pre-activations are multiples of the same Gaussian,
    so U is a one-dimensional expectation (split at both neurons' kinks)."""
    act = problem.activation
    if act is _act.relu:
        return problem.U(x[:, None])
    n = x.size
    out = np.zeros((n, n))
    kinks = np.asarray(act.kinks, dtype=float)
    for p, cov in problem.components:
        s = np.sqrt(cov[0]) * x
        si, sj = np.repeat(s, n), np.tile(s, n)
        z, wz = _quad.gauss_nodes(kinks, np.stack([si, sj], axis=1), 0.0, 16)
        vals = act.sigma(si[:, None] * z) * act.sigma(sj[:, None] * z) * wz * np.exp(-0.5 * z * z)
        out += p * (vals.sum(axis=1) / _SQRT_2PI).reshape(n, n)
    return out


def _bernoulli(z):
    """B(z) = z / (e^z - 1), stable near 0."""
    small = np.abs(z) < 1e-6
    zz = np.where(small, 1.0, z)
    return np.where(small, 1.0 - 0.5 * z, zz / np.expm1(zz))


def risk_mehler(problem, W, n_max: int = 60) -> float:
    r"""Exact population risk :math:`R_N` of :class:`~mflib.problems.AnisotropicGaussians` for any
    activation, fast: the pairs use Mehler's series
    :math:`E\sigma(u)\sigma(v) = \sum_{n\le n_{\max}} c_n(A)c_n(B)\varrho^n`
    (:func:`mflib.quadrature.mehler_gram`) when :math:`|\varrho|\le 0.95`, the 2-D quadrature
    otherwise, and :math:`E\sigma(u)^2` on the diagonal.
    Costs :math:`O(N^2 n_{\max})` instead of :math:`N^2` two-dimensional quadratures.

    Parameters
    ----------
    problem : AnisotropicGaussians
    W : array (N, d)
    n_max : int
    """
    if not isinstance(problem, _problems.AnisotropicGaussians):
        raise TypeError("problem must be an mflib.problems.AnisotropicGaussians")
    W = problem.check_weights(W)
    n_max = check_int(n_max, "n_max", minimum=1)
    N = W.shape[0]
    act = problem.activation
    s, kk = act.sigma, act.kinks
    total = problem.Ey2 + 2.0 * problem.V(W).sum() / N
    for p, cov in problem.components:
        A = np.einsum("ij,ij->i", W * cov, W)
        C = (W * cov) @ W.T
        c = _quad.hermite_coefficients(s, kk, A, n_max)
        total += p * _quad.mehler_gram(s, kk, c, A, C).sum() / N**2
    return float(total)
