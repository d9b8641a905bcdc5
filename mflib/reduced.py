r"""Neurons :math:`\theta = (a, b, w)`,
:math:`\sigma_*(x;\theta) = a\,\mathrm{relu}(\langle w, x\rangle + b)`, on the isotropic
anisotropic-Gaussian problem, in reduced coordinates (chapter 4, the seed slides'
"Example III").

For :class:`~mflib.problems.AnisotropicGaussians` with :math:`s_0 = d` the data are invariant under
rotations, so a law of :math:`\theta` that is uniform over the direction of :math:`w` stays so, and
the distributional dynamics becomes a dynamics of the law :math:`\bar\rho_t` of
:math:`\bar\theta = (a, b, r)`, :math:`r = |w|`, with velocity :math:`-\nabla_{(a,b,r)}\bar\Psi`
(the Euclidean gradient: :math:`\nabla_w\Psi` is radial and :math:`\dot r = \langle w/r,\dot w\rangle`).
Unlike :math:`\theta = w` (where ReLU makes :math:`\bar V` linear and :math:`\bar U` bilinear in
:math:`r`, so that the law of :math:`r` only translates), here the bias and the output weight make
the dynamics genuinely nonlinear.

With :math:`s_\pm = (1\pm\Delta)r` the standard deviation of :math:`\langle w, x\rangle` in class
:math:`\pm` and :math:`h_n(s, b) = E[\mathrm{relu}(sz + b)He_n(z)]/\sqrt{n!}` (closed form below),
Mehler's formula and the cosine moments :math:`\mu_n = E[t^n]` of two uniform directions give

.. math::

    \bar V = -\frac a2\big(h_0(s_+, b) - h_0(s_-, b)\big),\qquad
    \bar U(\bar\theta, \bar\theta') = \frac{a a'}2\sum_\pm\sum_{n\ \rm even}\mu_n\,
    h_n(s_\pm, b)\,h_n(s'_\pm, b'),

a sum of separable terms: the interaction of :math:`M` particles costs :math:`O(M n_{\max})`.
With :math:`\beta = b/s`, :math:`h_0 = s\varphi(\beta) + b\Phi(\beta)`, :math:`h_1 = s\Phi(\beta)`,
:math:`h_n = s\,He_{n-2}(-\beta)\varphi(\beta)/\sqrt{n!}` for :math:`n\ge2`, and with
:math:`e_0 = \Phi(\beta)`, :math:`e_n = He_{n-1}(-\beta)\varphi(\beta)`,
:math:`\sqrt{n!}\,\partial_b h_n = e_n` and :math:`\sqrt{n!}\,\partial_s h_n = e_{n+1} + n e_{n-1}`.

Contents: :class:`ReducedABW` (potentials, gradients, risk, Heun particle dynamics),
:func:`sgd_abw` (one-pass SGD on :math:`(a, b, w)` with the same conventions as
:func:`mflib.sgd.run`), :func:`risk_abw` (exact population risk of an :math:`(a, b, w)` network).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np
from scipy import special

from . import problems as _problems
from . import progress as _progress
from .pde import cosine_moments
from .validation import as_array, check_int, check_real, check_rng

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


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
    r""":math:`h_n(s, b)`, :math:`\partial_s h_n`, :math:`\partial_b h_n` for :math:`n\le n_{\max}`,
    arrays of shape ``s.shape + (n_max + 1,)``; ``s`` > 0."""
    s = np.asarray(s, dtype=float)
    b = np.asarray(b, dtype=float)
    beta = b / s
    phi = np.exp(-0.5 * beta**2) * _INV_SQRT_2PI
    Phi = special.ndtr(beta)
    He = _hermite_norm(-beta, n_max + 1)           # He_k(-beta)/sqrt(k!), k <= n_max + 1
    n = np.arange(n_max + 2)
    sqf = np.sqrt([float(factorial(k)) for k in range(n_max + 2)])
    # e_k = E[H(sz+b) He_k(z)], k = 0..n_max+1 (unnormalised).
    e = np.empty(beta.shape + (n_max + 2,))
    e[..., 0] = Phi
    e[..., 1:] = He[..., :-1] * sqf[:-1] * phi[..., None]
    h = np.empty(beta.shape + (n_max + 1,))
    h[..., 0] = s * phi + b * Phi
    if n_max >= 1:
        h[..., 1] = s * Phi
    if n_max >= 2:
        h[..., 2:] = (s * phi)[..., None] * He[..., : n_max - 1] * sqf[: n_max - 1] / sqf[2: n_max + 1]
    db = e[..., : n_max + 1] / sqf[: n_max + 1]
    em1 = np.concatenate([np.zeros(beta.shape + (1,)), e[..., :n_max]], axis=-1)
    ds = (e[..., 1: n_max + 2] + n[: n_max + 1] * em1) / sqf[: n_max + 1]
    return h, ds, db


@dataclass
class ABWSolution:
    r"""Output of :meth:`ReducedABW.run`: record times ``t`` (K,), risks (K,), final particles
    ``P`` (M, 3) as columns (a, b, r), weights (M,), snapshots (K, M, 3) or None."""

    t: np.ndarray
    risk: np.ndarray
    P: np.ndarray
    weights: np.ndarray
    snapshots: np.ndarray | None


class ReducedABW:
    r"""Reduced potentials and particle dynamics for :math:`\theta = (a, b, w)` on the isotropic
    problem :math:`s_0 = d` (ReLU).

    Parameters
    ----------
    problem : AnisotropicGaussians with s0 = d and ReLU activation
    n_max : int
        Truncation of Mehler's series (even terms up to ``n_max``); the cosine moments decay like
        :math:`d^{-n/2}`, so 30 is ample for :math:`d\ge 20`.
    limit : bool
        :math:`d\to\infty`: only the :math:`n = 0` term.
    """

    def __init__(self, problem, n_max: int = 30, limit: bool = False):
        if not isinstance(problem, _problems.AnisotropicGaussians) or problem.s0 != problem.d:
            raise ValueError("problem must be an AnisotropicGaussians with s0 = d")
        if problem.activation.name != "relu":
            raise ValueError("ReducedABW needs the ReLU activation")
        self.problem = problem
        self.n_max = check_int(n_max, "n_max", minimum=0)
        mu = cosine_moments(0 if limit else problem.d, self.n_max)
        self.mu = mu
        self.c = np.array([1.0 + problem.delta, 1.0 - problem.delta])

    def _parts(self, P):
        P = as_array(P, "P", ndim=2)
        if P.shape[1] != 3:
            raise ValueError(f"P must have shape (M, 3) with columns (a, b, r), got {P.shape}")
        if np.any(P[:, 2] <= 0):
            raise ValueError("the radii P[:, 2] must be > 0")
        return P[:, 0], P[:, 1], P[:, 2]

    def _features(self, P):
        """F (M, 2, n+1), dF/d(a, b, r) (3, M, 2, n+1)."""
        a, b, r = self._parts(P)
        s = r[:, None] * self.c                        # (M, 2)
        h, ds, db = relu_hermite(s, b[:, None], self.n_max)
        F = a[:, None, None] * h
        dF = np.stack([h, a[:, None, None] * db, a[:, None, None] * ds * self.c[None, :, None]])
        return F, dF

    def V(self, P) -> np.ndarray:
        r""":math:`\bar V(a, b, r)`, shape (M,)."""
        F, _ = self._features(P)
        return -0.5 * (F[:, 0, 0] - F[:, 1, 0])

    def U(self, P1, P2) -> np.ndarray:
        r""":math:`\bar U`, shape (M1, M2)."""
        F1, _ = self._features(P1)
        F2, _ = self._features(P2)
        D = 0.5 * self.mu
        return np.einsum("icn,jcn,n->ij", F1, F2, D)

    def potential(self, P, weights):
        r""":math:`\bar\Psi(\bar\theta_i;\bar\rho)` (M,) and its gradient (M, 3) for the weighted
        particles ``P`` themselves."""
        F, dF = self._features(P)
        D = 0.5 * self.mu
        Mf = np.einsum("i,icn->cn", weights, F) * D       # (2, n+1)
        psi = -0.5 * (F[:, 0, 0] - F[:, 1, 0]) + np.einsum("icn,cn->i", F, Mf)
        gV = -0.5 * (dF[:, :, 0, 0] - dF[:, :, 1, 0])    # (3, M)
        grad = gV + np.einsum("kicn,cn->ki", dF, Mf)
        return psi, grad.T

    def risk(self, P, weights) -> float:
        r""":math:`R(\bar\rho) = 1 + 2\int\bar V + \iint\bar U` for weighted particles."""
        F, _ = self._features(P)
        Mf = np.einsum("i,icn->cn", weights, F)
        return float(1.0 + 2.0 * weights @ self.V(P) + np.sum(0.5 * self.mu * Mf**2))

    def run(self, P0, weights, T: float, dt: float, n_records: int = 50,
            snapshots: bool = False) -> ABWSolution:
        """Heun steps of the weighted particles (a, b, r) from 0 to ``T``."""
        P = as_array(P0, "P0", ndim=2).copy()
        self._parts(P)
        w = as_array(weights, "weights", shape=(P.shape[0],))
        if np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
            raise ValueError("weights must be nonnegative and sum to 1")
        T = check_real(T, "T", low=0.0, low_open=True)
        dt = check_real(dt, "dt", low=0.0, low_open=True)
        n_steps = int(np.ceil(T / dt - 1e-9))
        tau = T / n_steps
        rec = np.unique(np.round(np.linspace(0, n_steps, check_int(n_records, "n_records",
                                                                  minimum=2))).astype(int))
        risks, snaps, r_i = [], [], 0
        for k in range(n_steps + 1):
            if r_i < rec.size and rec[r_i] == k:
                risks.append(self.risk(P, w))
                if snapshots:
                    snaps.append(P.copy())
                r_i += 1
            if k == n_steps:
                break
            v1 = -self.potential(P, w)[1]
            v2 = -self.potential(P + tau * v1, w)[1]
            P = P + 0.5 * tau * (v1 + v2)
        return ABWSolution(t=rec * tau, risk=np.array(risks), P=P, weights=w,
                           snapshots=np.array(snaps) if snapshots else None)


def risk_abw(problem, a, b, W, n_max: int = 40) -> float:
    r"""Exact population risk of :math:`f_N(x) = \frac1N\sum_i a_i\mathrm{relu}(\langle w_i,x\rangle+b_i)`
    on :class:`~mflib.problems.AnisotropicGaussians` (any :math:`s_0`).

    Pairs use Mehler's series with :math:`n_{\max}` terms when their correlation is at most 0.95
    (error below :math:`10^{-9}`); the diagonal uses the closed form
    :math:`E\,\mathrm{relu}(sz+b)^2 = (s^2+b^2)\Phi(\beta) + bs\varphi(\beta)`, and the rare pairs with
    larger correlation a 2-D quadrature."""
    W = as_array(W, "W", ndim=2)
    N = W.shape[0]
    a = as_array(a, "a", shape=(N,))
    b = as_array(b, "b", shape=(N,))
    from . import quadrature as _quad
    V = np.zeros(N)
    Usum = 0.0
    for (p, cov), sgn in zip(problem.components, (1.0, -1.0), strict=True):
        A = np.einsum("ij,ij->i", W * cov, W)
        s = np.sqrt(A)
        h, _, _ = relu_hermite(s, b, n_max)
        V -= 0.5 * sgn * a * h[:, 0]
        C = (W * cov) @ W.T
        rho = np.clip(C / np.outer(s, s), -1.0, 1.0)
        K = np.einsum("in,jn,ijn->ij", h, h, rho[:, :, None] ** np.arange(n_max + 1))
        beta = b / s
        diag = (A + b**2) * special.ndtr(beta) + b * s * np.exp(-0.5 * beta**2) * _INV_SQRT_2PI
        np.fill_diagonal(K, diag)
        hi = np.abs(rho) > 0.95
        np.fill_diagonal(hi, False)
        if hi.any():
            i, j = np.nonzero(hi)
            K[i, j] = _quad.gauss_expect_pair(lambda u: np.maximum(u, 0), lambda u: np.maximum(u, 0),
                                              (0.0,), (0.0,), A[i], A[j], C[i, j], m1=b[i], m2=b[j])
        Usum += p * (a @ K @ a)
    return float(problem.Ey2 + 2.0 * V.sum() / N + Usum / N**2)


@dataclass
class ABWTrajectory:
    """Output of :func:`sgd_abw`: record times, risks (or None), final (a, b, W), radii snapshots."""

    t: np.ndarray
    risk: np.ndarray | None
    a: np.ndarray
    b: np.ndarray
    W: np.ndarray
    radii: np.ndarray
    ab: np.ndarray


def sgd_abw(problem, a0, b0, W0, eps: float, steps: int, rng: np.random.Generator,
            n_records: int = 20, record_risk: bool = True, progress: bool | None = None) -> ABWTrajectory:
    r"""One-pass SGD (batch 1) on :math:`\theta_i = (a_i, b_i, w_i)`:
    :math:`\theta_i \leftarrow \theta_i + \varepsilon(y_k - f_N(x_k))\nabla_\theta\sigma_*(x_k;\theta_i)`,
    time :math:`t = k\varepsilon`. Records (uniform in k) the radii :math:`(|P_Vw_i|, |P_V^\perp w_i|)`,
    the pairs :math:`(a_i, b_i)` and, if ``record_risk``, the exact risk (:func:`risk_abw`).
    Data are drawn in chunks of 4096 from ``rng``."""
    W = as_array(W0, "W0", ndim=2).copy()
    N, d = W.shape
    if d != problem.d:
        raise ValueError(f"W0 must have {problem.d} columns, got {d}")
    a = as_array(a0, "a0", shape=(N,)).copy()
    b = as_array(b0, "b0", shape=(N,)).copy()
    eps = check_real(eps, "eps", low=0.0, low_open=True)
    steps = check_int(steps, "steps", minimum=1)
    rng = check_rng(rng)
    rec = np.unique(np.round(np.linspace(0, steps, check_int(n_records, "n_records",
                                                              minimum=2))).astype(int))
    ts, risks, radii, ab = [], [], [], []
    X = y = None
    pos = 4096
    r_i = 0
    with _progress.bar(steps, progress, desc="SGD (a,b,w)") as bar:
        for k in range(steps + 1):
            if r_i < rec.size and rec[r_i] == k:
                ts.append(k * eps)
                radii.append(problem.radii(W))
                ab.append(np.stack([a, b], axis=1))
                if record_risk:
                    risks.append(risk_abw(problem, a, b, W))
                r_i += 1
            if k == steps:
                break
            if pos == 4096:
                X, y = problem.sample(4096, rng)
                pos = 0
            x, yk = X[pos], y[pos]
            pos += 1
            hpre = W @ x + b
            act = np.maximum(hpre, 0.0)
            g = eps * (yk - a @ act / N)
            on = (hpre > 0) * (g * a)
            a += g * act
            b += on
            W += on[:, None] * x[None, :]
            bar.update()
    if not np.all(np.isfinite(W)):
        raise FloatingPointError("SGD diverged: try a smaller eps")
    return ABWTrajectory(t=np.array(ts), risk=np.array(risks) if record_risk else None, a=a, b=b,
                         W=W, radii=np.array(radii), ab=np.array(ab))
