r"""Neurons :math:`\theta = (a, b, w)`,
:math:`\sigma_*(x;\theta) = a\,\mathrm{relu}(\langle w, x\rangle + b)`, on the anisotropic-Gaussian
problem, in reduced coordinates (Example III of Misiakiewicz's 2021 lectures).

For :class:`~mflib.problems.AnisotropicGaussians` the data are invariant under rotations of
:math:`V` (the first :math:`s_0` coordinates) and of :math:`V^\perp`, so a law of :math:`\theta` that
is uniform over the directions of :math:`P_Vw` and :math:`P_V^\perp w` stays so, and the
distributional dynamics becomes a dynamics of the law :math:`\bar\rho_t` of
:math:`\bar\theta = (a, b, r_1, r_2)`, :math:`r_1 = |P_Vw|`, :math:`r_2 = |P_V^\perp w|`
(:math:`(a, b, r)`, :math:`r = |w|`, when :math:`s_0 = d`), with velocity
:math:`-\nabla_{\bar\theta}\bar\Psi`. Unlike :math:`\theta = w` (where ReLU makes :math:`\bar V`
linear and :math:`\bar U` bilinear in :math:`r` when :math:`s_0 = d`, so that the law of :math:`r`
only rescales), here the bias and the output weight make the dynamics genuinely nonlinear.

With :math:`s_\pm = (1\pm\Delta)r` (isotropic case) the standard deviation of
:math:`\langle w, x\rangle` in class :math:`\pm` and
:math:`h_n(s, b) = E[\mathrm{relu}(sz + b)He_n(z)]/\sqrt{n!}` (closed form below,
:func:`mflib.quadrature.relu_hermite`), Mehler's
formula and the cosine moments :math:`\mu_n = E[t^n]` of two uniform directions give

.. math::

    \begin{aligned}
    \bar V &= -\frac a2\big(h_0(s_+, b) - h_0(s_-, b)\big),\\
    \bar U(\bar\theta, \bar\theta') &= \frac{a a'}2\sum_\pm\sum_{n\ \rm even}\mu_n\,
    h_n(s_\pm, b)\,h_n(s'_\pm, b'),
    \end{aligned}

a sum of separable terms: the interaction of :math:`M` particles costs :math:`O(M n_{\max})`; for
:math:`s_0 < d` the binomial expansion of the correlation's powers in the two cosines keeps it
separable (:class:`ReducedABW`).
With :math:`\zeta = b/s`, :math:`h_0 = s\varphi(\zeta) + b\Phi(\zeta)`, :math:`h_1 = s\Phi(\zeta)`,
:math:`h_n = s\,He_{n-2}(-\zeta)\varphi(\zeta)/\sqrt{n!}` for :math:`n\ge2`, and with
:math:`e_0 = \Phi(\zeta)`, :math:`e_n = He_{n-1}(-\zeta)\varphi(\zeta)`,
:math:`\sqrt{n!}\,\partial_b h_n = e_n` and :math:`\sqrt{n!}\,\partial_s h_n = e_{n+1} + n e_{n-1}`.

Contents: :class:`ReducedABW` (potentials, gradients, risk, Heun particle dynamics),
:func:`sgd_abw` (one-pass SGD on :math:`(a, b, w)` with the same conventions as
:func:`mflib.sgd.run`), :func:`risk_abw` (exact population risk of an :math:`(a, b, w)` network).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from math import comb

import numpy as np
from numba import njit
from scipy import special

from . import problems as _problems
from . import quadrature as _quad
from . import runs as _runs
from . import sgd as _sgd
from .validation import as_array, check_int, check_real, check_rng

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


@dataclass
class ABWSolution:
    r"""Output of :meth:`ReducedABW.run`: record times ``t`` (K,), risks (K,), final particles
    ``P`` (M, 3) as columns (a, b, r) (or (M, 4), (a, b, r1, r2), when s0 < d), weights (M,),
    snapshots (K, M, 3 or 4) or None."""

    t: np.ndarray
    risk: np.ndarray
    P: np.ndarray
    weights: np.ndarray
    snapshots: np.ndarray | None


class ReducedABW:
    r"""Reduced potentials and particle dynamics for :math:`\theta = (a, b, w)` on
    :class:`~mflib.problems.AnisotropicGaussians` (ReLU).

    A reduced particle is :math:`(a, b, r)` when :math:`s_0 = d` (arrays of shape (M, 3)) and
    :math:`(a, b, r_1, r_2)`, :math:`r_1 = |P_Vw|`, :math:`r_2 = |P_V^\perp w|`, when :math:`s_0 < d`
    (shape (M, 4)). With :math:`c_\pm = 1\pm\Delta`, :math:`s_\pm = (c_\pm^2r_1^2 + r_2^2)^{1/2}`,
    :math:`u = r_1/s_\pm`, :math:`v = r_2/s_\pm`, two neurons whose directions have cosines
    :math:`t_1` (in :math:`V`) and :math:`t_2` (in :math:`V^\perp`) have correlation
    :math:`\varrho_\pm = c_\pm^2uu't_1 + vv't_2` in class :math:`\pm`; Mehler's formula and the
    binomial expansion of :math:`\varrho^n` give

    .. math::

        \begin{aligned}
        \bar U = \frac{aa'}2\sum_\pm\sum_{n,k\ \rm even}\binom nk\mu^{(s_0)}_k\mu^{(d-s_0)}_{n-k}\,
        &\big[h_n(s_\pm,b)(c_\pm u)^kv^{n-k}\big]\\
        &\times\big[h_n(s'_\pm,b')(c_\pm u')^kv'^{n-k}\big],
        \end{aligned}

    with :math:`\mu^{(m)}_k = E[t^k]` the cosine moments of :func:`mflib.quadrature.cosine_moments`.
    The average over :math:`(t_1, t_2)` is thus the Gauss-Jacobi quadrature of
    :func:`mflib.quadrature.cosine_rule`
    done exactly (a rule with :math:`n_{\max}/2 + 1` nodes per cosine integrates these polynomials
    exactly), and the interaction stays a sum of separable terms: :math:`M` particles cost
    :math:`O(M n_{\max}^2)`. :math:`\bar V = -\frac a2(h_0(s_+,b) - h_0(s_-,b))`. The velocities
    :math:`-\nabla_{(a,b,r_1,r_2)}\bar\Psi` are the exact population gradients (for a law uniform
    over the directions, :math:`\dot r_1 = \langle P_Vw/r_1, \dot w\rangle = -\partial_{r_1}\bar\Psi`).
    :math:`\bar\Psi` is even in :math:`r_1` and :math:`r_2`, so a radius never crosses 0.

    Parameters
    ----------
    problem : AnisotropicGaussians with ReLU activation
    n_max : int
        Truncation of Mehler's series (even terms up to ``n_max``); the terms decay like
        :math:`E\varrho^n\lesssim (n/(e\min(s_0, d-s_0)))^{n/2}`, so 30 is ample for
        :math:`\min(s_0, d - s_0)\ge 20` (the tests measure the error).
    limit : bool
        :math:`d\to\infty`: only the :math:`n = 0` term.
    """

    def __init__(self, problem, n_max: int = 30, limit: bool = False):
        if not isinstance(problem, _problems.AnisotropicGaussians):
            raise ValueError(f"problem must be an AnisotropicGaussians, got {type(problem).__name__}")
        if problem.activation.name != "relu":
            raise ValueError("ReducedABW needs the ReLU activation")
        self.problem = problem
        self.n_max = check_int(n_max, "n_max", minimum=0)
        self.isotropic = problem.s0 == problem.d
        self.ncol = 3 if self.isotropic else 4
        mu1 = _quad.cosine_moments(0 if limit else problem.s0, self.n_max)
        mu2 = _quad.cosine_moments(0 if limit else problem.d - problem.s0, self.n_max)
        self.mu = mu1
        pairs = [(n, k, comb(n, k) * mu1[k] * mu2[n - k]) for n in range(0, self.n_max + 1, 2)
                 for k in range(0, n + 1, 2) if mu1[k] * mu2[n - k] > 0]
        self._n = np.array([q[0] for q in pairs])
        self._k = np.array([q[1] for q in pairs])
        self.D = np.array([q[2] for q in pairs])
        self.c = np.array([1.0 + problem.delta, 1.0 - problem.delta])

    def _parts(self, P, name="P"):
        P = as_array(P, name, ndim=2)
        if P.shape[1] != self.ncol:
            cols = "(a, b, r)" if self.isotropic else "(a, b, r1, r2)"
            raise ValueError(f"{name} must have shape (M, {self.ncol}) with columns {cols}, got {P.shape}")
        R = P[:, 2:]
        if np.any(R < 0) or np.any(R.max(axis=1) <= 0):
            raise ValueError(f"the radii {name}[:, 2:] must be >= 0 and not all 0 (r > 0 when s0 = d)")
        return P

    def _features(self, P):
        """F (M, 2, K), dF/d(a, b, r1, r2) (4, M, 2, K); P (M, ncol), unvalidated."""
        a, b, r1 = P[:, 0], P[:, 1], P[:, 2]
        r2 = P[:, 3] if P.shape[1] == 4 else np.zeros_like(r1)
        c = self.c
        s = np.sqrt((c * r1[:, None]) ** 2 + r2[:, None] ** 2)       # (M, 2)
        h, hs, hb = _quad.relu_hermite(s, b[:, None], self.n_max)
        cu, v = (c * r1[:, None]) / s, r2[:, None] / s
        p = np.arange(self.n_max + 3)
        cup, vp = cu[..., None] ** p, v[..., None] ** p              # (M, 2, n_max + 3)
        n, k = self._n, self._k
        nk = n - k
        g = cup[..., k] * vp[..., nk]
        inv_s = (1.0 / s)[..., None]
        dg1 = c[:, None] * inv_s * (k * cup[..., np.maximum(k - 1, 0)] * vp[..., nk + 2]
                                    - nk * cup[..., k + 1] * vp[..., nk])
        dg2 = inv_s * (-k * cup[..., k] * vp[..., nk + 1]
                       + nk * cup[..., k + 2] * vp[..., np.maximum(nk - 1, 0)])
        hn, hsn, hbn = h[..., n], hs[..., n], hb[..., n]
        A = a[:, None, None]
        F = A * hn * g
        dF = np.stack([hn * g, A * hbn * g,
                       A * (hsn * (c * cu)[..., None] * g + hn * dg1),
                       A * (hsn * v[..., None] * g + hn * dg2)])
        return F, dF

    def _grad_cols(self, grad):
        return grad[:, :3] if self.isotropic else grad

    def V(self, P) -> np.ndarray:
        r""":math:`\bar V`, shape (M,)."""
        F, _ = self._features(self._parts(P))
        return -0.5 * (F[:, 0, 0] - F[:, 1, 0])

    def grad_V(self, P) -> np.ndarray:
        r""":math:`\nabla\bar V`, shape (M, ncol)."""
        _, dF = self._features(self._parts(P))
        return self._grad_cols((-0.5 * (dF[:, :, 0, 0] - dF[:, :, 1, 0])).T)

    def U(self, P1, P2) -> np.ndarray:
        r""":math:`\bar U`, shape (M1, M2)."""
        F1, _ = self._features(self._parts(P1, "P1"))
        F2, _ = self._features(self._parts(P2, "P2"))
        return np.einsum("icn,jcn,n->ij", F1, F2, 0.5 * self.D)

    def _potential(self, P, weights):
        F, dF = self._features(P)
        Mf = np.einsum("i,icn->cn", weights, F) * (0.5 * self.D)       # (2, K)
        psi = -0.5 * (F[:, 0, 0] - F[:, 1, 0]) + np.einsum("icn,cn->i", F, Mf)
        gV = -0.5 * (dF[:, :, 0, 0] - dF[:, :, 1, 0])                  # (4, M)
        grad = gV + np.einsum("kicn,cn->ki", dF, Mf)
        return psi, self._grad_cols(grad.T)

    def potential(self, P, weights):
        r""":math:`\bar\Psi(\bar\theta_i;\bar\rho)` (M,) and its gradient (M, ncol) for the weighted
        particles ``P`` themselves (``weights`` (M,): nonnegative, summing to 1)."""
        P = self._parts(P)
        return self._potential(P, _prob_weights(weights, P.shape[0]))

    def _risk(self, P, w):
        F, _ = self._features(P)
        Mf = np.einsum("i,icn->cn", w, F)
        V = -0.5 * (F[:, 0, 0] - F[:, 1, 0])
        return float(self.problem.Ey2 + 2.0 * w @ V + np.sum(0.5 * self.D * Mf**2))

    def risk(self, P, weights) -> float:
        r""":math:`R(\bar\rho) = E y^2 + 2\int\bar V + \iint\bar U` for weighted particles."""
        P = self._parts(P)
        return self._risk(P, _prob_weights(weights, P.shape[0]))

    def reduce(self, a, b, W) -> np.ndarray:
        r"""Reduced particles of an :math:`(a, b, w)` network: (N, ncol) columns
        :math:`(a, b, |w|)` or :math:`(a, b, |P_Vw|, |P_V^\perp w|)`."""
        R = self.problem.radii(W)
        N = R.shape[0]
        a = as_array(a, "a", shape=(N,))
        b = as_array(b, "b", shape=(N,))
        R = R[:, :1] if self.isotropic else R
        return np.concatenate([a[:, None], b[:, None], R], axis=1)

    def run(self, P0, weights, T: float, dt: float, n_records: int = 50,
            snapshots: bool = False, progress: bool | None = None) -> ABWSolution:
        """Heun steps of the weighted particles from 0 to ``T``: ``ceil(T / dt)`` equal steps,
        records on ``n_records`` uniform steps (:func:`mflib.runs.record_grid`);
        ``progress``: bar (:mod:`mflib.progress`).

        Raises :class:`mflib.runs.DivergenceError` (naming the step) if the particles become
        non-finite or exceed :data:`mflib.sgd.BLOWUP` times their initial scale."""
        P = self._parts(P0, "P0").copy()
        w = _prob_weights(weights, P.shape[0])
        T = check_real(T, "T", low=0.0, low_open=True)
        dt = check_real(dt, "dt", low=0.0, low_open=True)
        n_steps = max(int(np.ceil(T / dt - 1e-9)), 1)
        tau = T / n_steps
        grid = _runs.record_grid(n_steps, n_records=n_records)
        bound = _sgd.BLOWUP * max(float(np.abs(P).max()), 1.0)   # as SGD: 1e6 times the start
        with _runs.Recorder(grid, tau, progress=progress, desc="reduced flow",
                            where="the reduced particle flow",
                            advice=f"try a smaller dt (now {dt:g}), e.g. {dt / 10:.3g}") as rec:
            for k0, k1 in rec.spans():
                for k in range(k0, k1):
                    with np.errstate(over="ignore", invalid="ignore"):
                        v1 = -self._potential(P, w)[1]
                        v2 = -self._potential(P + tau * v1, w)[1]
                        P = P + 0.5 * tau * (v1 + v2)
                    rec.check(P, step=k + 1, limit=bound)
                    rec.tick()
                rec.record(risk=self._risk(P, w),
                           P=(np.concatenate([P[:, :2], np.abs(P[:, 2:])], axis=1)
                              if snapshots else None))
        P[:, 2:] = np.abs(P[:, 2:])          # Psi is even in each radius
        return ABWSolution(t=rec.t, risk=rec.array("risk"), P=P, weights=w,
                           snapshots=rec.array("P"))


def _prob_weights(weights, M):
    w = as_array(weights, "weights", shape=(M,))
    if np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
        raise ValueError(f"weights must be nonnegative and sum to 1, got minimum {w.min(initial=0):.3g} "
                         f"and sum {w.sum():.6g}")
    return w


def _relu(u):
    return np.maximum(u, 0)


def risk_abw(problem, a, b, W, n_max: int = 40) -> float:
    r"""Exact population risk of :math:`f_N(x) = \frac1N\sum_i a_i\mathrm{relu}(\langle w_i,x\rangle+b_i)`
    on :class:`~mflib.problems.AnisotropicGaussians` (any :math:`s_0`).

    Pairs use Mehler's series with :math:`n_{\max}` terms when their correlation is at most 0.95
    (error below :math:`10^{-9}`; :func:`mflib.quadrature.mehler_gram`); the diagonal uses the closed form
    :math:`E\,\mathrm{relu}(sz+b)^2 = (s^2+b^2)\Phi(\zeta) + bs\varphi(\zeta)`, :math:`\zeta = b/s`,
    and the rare pairs with
    larger correlation a 2-D quadrature."""
    if not isinstance(problem, _problems.AnisotropicGaussians):
        raise TypeError(f"problem must be an AnisotropicGaussians, got {type(problem).__name__}")
    W = problem.check_weights(W)
    N = W.shape[0]
    if N == 0:
        raise ValueError("W must have at least one row (N >= 1 neurons)")
    a = as_array(a, "a", shape=(N,))
    b = as_array(b, "b", shape=(N,))
    n_max = check_int(n_max, "n_max", minimum=1)
    V = np.zeros(N)
    Usum = 0.0
    for (p, cov), sgn in zip(problem.components, (1.0, -1.0), strict=True):
        A = np.einsum("ij,ij->i", W * cov, W)
        s = np.sqrt(A)
        # A zero row w_i = 0 is a constant neuron a_i relu(b_i): Hermite coefficients (relu(b_i), 0, ...).
        live = s > 0
        h = np.zeros((N, n_max + 1))
        h[~live, 0] = np.maximum(b[~live], 0.0)
        if live.any():
            h[live] = _quad.relu_hermite(s[live], b[live], n_max)[0]
        V -= 0.5 * sgn * a * h[:, 0]
        C = (W * cov) @ W.T
        with np.errstate(divide="ignore", invalid="ignore"):
            zeta = np.where(live, b / np.where(live, s, 1.0), np.where(b > 0, np.inf, -np.inf))
        diag = (A + b**2) * special.ndtr(zeta) + b * s * np.exp(-0.5 * zeta**2) * _INV_SQRT_2PI
        K = _quad.mehler_gram(_relu, (0.0,), h, A, C, m=b, diag=diag)
        Usum += p * (a @ K @ a)
    return float(problem.Ey2 + 2.0 * V.sum() / N + Usum / N**2)


@njit(cache=True)
def _abw_steps(a, b, W, X, y, eps):
    """One-pass SGD steps on (a, b, W) in place, one per row of X (compiled, no temporaries)."""
    N, d = W.shape
    act = np.empty(N)
    for k in range(X.shape[0]):
        x = X[k]
        f = 0.0
        for i in range(N):
            h = b[i]
            for j in range(d):
                h += W[i, j] * x[j]
            act[i] = h if h > 0.0 else 0.0
            f += a[i] * act[i]
        g = eps * (y[k] - f / N)
        for i in range(N):
            if act[i] > 0.0:
                on = g * a[i]
                a[i] += g * act[i]
                b[i] += on
                for j in range(d):
                    W[i, j] += on * x[j]


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
    time :math:`t = k\varepsilon`. Records (on ``n_records`` uniform steps,
    :func:`mflib.runs.record_grid`) the radii :math:`(|P_Vw_i|, |P_V^\perp w_i|)`, the pairs
    :math:`(a_i, b_i)` and, if ``record_risk``, the exact risk (:func:`risk_abw`).

    Random stream: as in :func:`mflib.sgd.run`, ``rng`` is split once (``rng.spawn(2)``) and
    the data are drawn from the first child in chunks of :data:`mflib.sgd.CHUNK` samples, so the
    same ``rng`` gives :func:`mflib.sgd.run` and this function the same samples
    :math:`(x_k, y_k)`. The steps run in a compiled loop.

    Raises :class:`mflib.runs.DivergenceError` (naming the step) if the parameters become
    non-finite (checked at every record and every :data:`mflib.sgd.CHUNK` steps)."""
    if not isinstance(problem, _problems.AnisotropicGaussians):
        raise TypeError(f"problem must be an AnisotropicGaussians, got {type(problem).__name__}")
    W = as_array(W0, "W0", ndim=2).copy()
    N, d = W.shape
    if d != problem.d:
        raise ValueError(f"W0 must have {problem.d} columns, got {d}")
    a = as_array(a0, "a0", shape=(N,)).copy()
    b = as_array(b0, "b0", shape=(N,)).copy()
    eps = check_real(eps, "eps", low=0.0, low_open=True)
    steps = check_int(steps, "steps", minimum=1)
    rng = check_rng(rng)
    grid = _runs.record_grid(steps, n_records=n_records)
    data_rng, _ = rng.spawn(2)               # the split of mflib.sgd.run (its second: noise)
    stream = _sgd._ChunkStream(problem, data_rng, np.float64, steps)
    with _runs.Recorder(grid, eps, progress=progress, desc="SGD (a,b,w)", where="SGD on (a, b, w)",
                        advice=f"try a smaller eps (now {eps:g}), e.g. {eps / 10:.3g}") as rec, \
            contextlib.closing(stream):
        for k0, k1 in rec.spans():
            k = k0
            while k < k1:
                n = min(_sgd.CHUNK, k1 - k)
                X, y = stream.take(n)
                _abw_steps(a, b, W, X, y, eps)
                k += n
                rec.check(W, a, b, step=k)
                rec.tick(n)
            rec.record(radii=problem.radii(W), ab=np.stack([a, b], axis=1),
                       risk=risk_abw(problem, a, b, W) if record_risk else None)
    return ABWTrajectory(t=rec.t, risk=rec.array("risk"), a=a, b=b, W=W,
                         radii=rec.array("radii"), ab=rec.array("ab"))
