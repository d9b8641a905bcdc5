r"""Networks as measures and Maurey's sampling argument (chapter 1).

A target that is itself an infinite-width network, :math:`f(x) = \int \sigma(\langle w,x\rangle)\,
\rho(dw)`, is approximated by :math:`f_N(x) = \frac1N\sum_i \sigma(\langle w_i, x\rangle)` with
:math:`w_i \sim \rho` i.i.d. Since :math:`E f_N = f` pointwise,

.. math::

    E\,\|f - f_N\|_{L^2(P)}^2 = \frac{1}{N}\Big(\int U(w, w)\,\rho(dw) - \|f\|^2\Big),

the rate :math:`1/N` of Maurey (Pisier 1981) and Barron (1993), with a constant set by
:math:`\rho` and not by the dimension.

:class:`GaussianReluTarget` makes every term exact: :math:`x \sim \mathcal N(0, I_d)`,
:math:`\sigma = \mathrm{ReLU}`, :math:`\rho = \mathcal N(0, I_d/d)`. Then
:math:`f(x) = |x|/\sqrt{2\pi d}`, :math:`\|f\|^2 = 1/(2\pi)`, :math:`\int U(w,w)\,d\rho = 1/2`, and
for a neuron :math:`w`,

.. math::

    \begin{aligned}
    \langle f, \sigma(\langle w, \cdot\rangle)\rangle &= \frac{|w|\,c_d}{\sqrt{2\pi d}},\\
    c_d &= E[z_+ |x|] = \frac{d}{\sqrt{2\pi}\,E|x|},\quad
    E|x| = \sqrt2\,\frac{\Gamma((d+1)/2)}{\Gamma(d/2)},
    \end{aligned}

(write :math:`x = |x| u` with :math:`u` uniform on the sphere and independent of :math:`|x|`), so
the error of any finite network :math:`\|f - f_N\|^2 = \|f\|^2 - \frac2N\sum_i\langle f,\sigma_i\rangle
+ \frac1{N^2}\sum_{i,j}U(w_i, w_j)` is computed in closed form (:meth:`GaussianReluTarget.l2_error`).

That target is an infinite network of the very neurons sampled, so the check above is Maurey's
identity, built in. Barron's theorem proper is exercised by :class:`GaussianBumpTarget`, the bump
:math:`e^{-|x|^2/2}` given by its Fourier transform, with Barron's constant in closed form, its
representation as an average of step units with bounded outer weights, and
:func:`relaxed_greedy`, the constructive proof (Jones 1992; Barron 1993).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from .problems import TeacherStudent
from .quadrature import arccos1
from .validation import as_array, check_int, check_real, check_rng


class GaussianReluTarget:
    r"""The infinite-width ReLU network :math:`f(x) = E_{w\sim\mathcal N(0,I_d/d)}\,\mathrm{relu}(\langle
    w,x\rangle) = |x|/\sqrt{2\pi d}` under :math:`x\sim\mathcal N(0, I_d)`.

    Parameters
    ----------
    d : int >= 1
    """

    def __init__(self, d: int):
        self.d = check_int(d, "d", minimum=1)
        mean_norm = np.sqrt(2.0) * np.exp(gammaln((self.d + 1) / 2) - gammaln(self.d / 2))
        self.c_d = self.d / (np.sqrt(2.0 * np.pi) * mean_norm)
        self.norm2 = 1.0 / (2.0 * np.pi)
        self.maurey_constant = 0.5 - 1.0 / (2.0 * np.pi)

    def __repr__(self) -> str:
        return f"GaussianReluTarget(d={self.d})"

    def __call__(self, X) -> np.ndarray:
        """:math:`f(x)` for the rows of ``X`` (n, d)."""
        X = as_array(X, "X", ndim=2)
        if X.shape[1] != self.d:
            raise ValueError(f"X must have d = {self.d} columns, got shape {X.shape}")
        return np.linalg.norm(X, axis=1) / np.sqrt(2.0 * np.pi * self.d)

    def sample_neurons(self, N: int, rng: np.random.Generator) -> np.ndarray:
        r"""Draw :math:`N` neurons :math:`w_i \sim \rho = \mathcal N(0, I_d/d)`, shape (N, d)."""
        N = check_int(N, "N", minimum=1)
        rng = check_rng(rng)
        return rng.standard_normal((N, self.d)) / np.sqrt(self.d)

    def l2_error(self, W) -> float:
        r"""Exact :math:`\|f - f_N\|^2_{L^2}` for the network with neurons the rows of ``W`` (N, d)."""
        W = as_array(W, "W", ndim=2)
        if W.shape[1] != self.d or W.shape[0] == 0:
            raise ValueError(f"W must have shape (N, {self.d}) with N >= 1, got {W.shape}")
        N = W.shape[0]
        A = np.einsum("ij,ij->i", W, W)
        C = W @ W.T
        np.fill_diagonal(C, A)
        U = arccos1(np.outer(A, A), C).k
        cross = np.sqrt(A).sum() * self.c_d / np.sqrt(2.0 * np.pi * self.d)
        return float(max(self.norm2 - 2.0 * cross / N + U.sum() / N**2, 0.0))

    def expected_l2_error(self, N) -> np.ndarray:
        r""":math:`E\|f - f_N\|^2 = (1/2 - 1/(2\pi))/N` for :math:`N` i.i.d. neurons."""
        N = as_array(N, "N")
        if np.any(N < 1):
            raise ValueError("N must be >= 1")
        return self.maurey_constant / N

    def as_problem(self, M: int, rng: np.random.Generator) -> TeacherStudent:
        """A finite teacher with ``M`` neurons drawn from rho (for SGD experiments)."""
        M = check_int(M, "M", minimum=1)
        return TeacherStudent(self.sample_neurons(M, rng))


def maurey_errors(target: GaussianReluTarget, Ns, reps: int, rng: np.random.Generator) -> np.ndarray:
    r"""Exact :math:`\|f - f_N\|^2` for ``reps`` independent draws at each width in ``Ns``.

    Returns an array of shape (len(Ns), reps).
    """
    if not isinstance(target, GaussianReluTarget):
        raise TypeError(f"target must be a GaussianReluTarget, got {type(target).__name__}")
    Ns = as_array(Ns, "Ns", ndim=1, dtype=None)
    if Ns.dtype.kind not in "iu" and not (Ns.dtype.kind == "f" and np.all(Ns == np.round(Ns))):
        raise TypeError(f"Ns must be a 1-D sequence of integers, got {Ns!r}")
    Ns = [check_int(int(N), "Ns", minimum=1) for N in Ns]
    reps = check_int(reps, "reps", minimum=1)
    rng = check_rng(rng)
    out = np.array([[target.l2_error(target.sample_neurons(N, rng)) for _ in range(reps)] for N in Ns])
    return out.reshape(len(Ns), reps)


# ---------------------------------------------------------------------------------------------
# Barron's theorem on a target given by its Fourier transform.

class GaussianBumpTarget:
    r"""The Gaussian bump :math:`f(x) = e^{-|x|^2/2}` on the ball :math:`|x| \le r` of
    :math:`\mathbb R^d`, a target given by its Fourier transform (Barron 1993).

    Convention: :math:`f(x) = \int e^{i\langle x,\omega\rangle} F(\omega)\,d\omega` with
    :math:`F(\omega) = (2\pi)^{-d/2} e^{-|\omega|^2/2}`, the density of
    :math:`\mathcal N(0, I_d)`. Barron's constant and the bound's constant are

    .. math::

        C_f = \int |\omega|\,|F(\omega)|\,d\omega = \mathbb E|Z|
        = \sqrt2\,\frac{\Gamma((d+1)/2)}{\Gamma(d/2)},\qquad \Delta(f) = 2 r C_f,

    with :math:`Z \sim \mathcal N(0, I_d)`, and Barron's theorem bounds the best error of
    :math:`N` sigmoidal units (plus the constant :math:`f(0)`) by :math:`\Delta(f)^2/N` for every
    probability measure on the ball.

    The representation behind the proof (:meth:`sample_units`): writing
    :math:`\cos(\langle\omega, x\rangle) - 1` along the direction of :math:`\omega` as an integral of
    steps,

    .. math::

        \begin{aligned}
        f(x) - f(0) &= \mathbb E_{(u,\tau,a)}\big[\gamma\,\mathbf 1\{\langle u, x\rangle > \tau\}\big],\\
        \gamma &= -\Delta(f)\,\sin(a\tau),
        \end{aligned}

    with :math:`u` uniform on the unit sphere, :math:`\tau` uniform on :math:`[0, r]` and
    :math:`a \sim \chi_{d+1}` (the law of :math:`|\omega|` weighted by :math:`|\omega|`), all
    independent: :math:`f - f(0)` is an average of step units with outer weights
    :math:`|\gamma| \le \Delta(f)`.

    Parameters
    ----------
    d : int >= 1
        Input dimension.
    r : float > 0
        Radius of the ball that carries the inputs.
    """

    def __init__(self, d: int, r: float = 3.0):
        self.d = check_int(d, "d", minimum=1)
        self.r = check_real(r, "r", low=0.0, low_open=True, high=1e6)
        self.barron_constant = float(np.sqrt(2.0) * np.exp(gammaln((self.d + 1) / 2)
                                                           - gammaln(self.d / 2)))
        self.delta = 2.0 * self.r * self.barron_constant

    def __repr__(self) -> str:
        return f"GaussianBumpTarget(d={self.d}, r={self.r:g})"

    def _check_X(self, X) -> np.ndarray:
        X = as_array(X, "X", ndim=2)
        if X.shape[1] != self.d:
            raise ValueError(f"X must have d = {self.d} columns, got shape {X.shape}")
        return X

    def __call__(self, X) -> np.ndarray:
        """:math:`f(x) = e^{-|x|^2/2}` for the rows of ``X`` (n, d)."""
        X = self._check_X(X)
        return np.exp(-0.5 * np.einsum("ij,ij->i", X, X))

    def sample_inputs(self, n: int, rng: np.random.Generator) -> np.ndarray:
        r"""``n`` inputs with a uniform direction and a radius uniform on :math:`[0, r]`, (n, d).

        The law of :math:`|x|`, hence of :math:`f(x)`, is the same in every dimension.
        """
        n = check_int(n, "n", minimum=1)
        rng = check_rng(rng)
        G = rng.standard_normal((n, self.d))
        G /= np.linalg.norm(G, axis=1, keepdims=True)
        return G * (self.r * rng.random(n))[:, None]

    def sample_units(self, n: int, rng: np.random.Generator):
        r"""``n`` step units drawn from Barron's representation (class docstring).

        Returns ``(U, tau, gamma)``: unit directions (n, d), thresholds (n,) in :math:`[0, r]` and
        outer weights (n,) with :math:`|\gamma| \le \Delta(f)`; the average of
        :math:`\gamma\,\mathbf 1\{\langle u, x\rangle > \tau\}` is an unbiased estimate of
        :math:`f(x) - f(0)`.
        """
        n = check_int(n, "n", minimum=1)
        rng = check_rng(rng)
        U = rng.standard_normal((n, self.d))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        a = np.linalg.norm(rng.standard_normal((n, self.d + 1)), axis=1)
        tau = self.r * rng.random(n)
        return U, tau, -self.delta * np.sin(a * tau)

    def maurey_constant(self, X, n: int, rng: np.random.Generator) -> tuple[float, float]:
        r"""Monte Carlo estimate of Maurey's constant of Barron's representation on the empirical
        measure :math:`\mu` of the rows of ``X``, and its standard error:

        .. math::

            c = \mathbb E\,\gamma^2\,\mu(\langle u, x\rangle > \tau) - \|f - f(0)\|^2_{L^2(\mu)}
            \le \Delta(f)^2,

        so that :math:`N` units drawn i.i.d. from the representation have
        :math:`\mathbb E\|f - f_N\|^2_{L^2(\mu)} = c/N` (Maurey), and :func:`relaxed_greedy`
        does at least as well in expectation. ``n`` units are drawn.
        """
        X = self._check_X(X)
        if X.shape[0] == 0:
            raise ValueError("X must have at least one row")
        n = check_int(n, "n", minimum=2)
        U, tau, gamma = self.sample_units(n, rng)
        vals = gamma**2 * np.mean(X @ U.T > tau, axis=0)
        y = self(X) - 1.0
        return float(vals.mean() - np.mean(y**2)), float(vals.std(ddof=1) / np.sqrt(n))


def step_network(X, U, tau, gamma, bias: float = 0.0) -> np.ndarray:
    r"""The step network :math:`b + \frac1N\sum_i \gamma_i\,\mathbf 1\{\langle u_i, x\rangle > \tau_i\}`
    at the rows of ``X`` (n, d); ``U`` (N, d), ``tau`` and ``gamma`` (N,)."""
    X = as_array(X, "X", ndim=2)
    U = as_array(U, "U", ndim=2)
    if U.shape[1] != X.shape[1] or U.shape[0] == 0:
        raise ValueError(f"U must have shape (N, {X.shape[1]}) with N >= 1, got {U.shape}")
    tau = as_array(tau, "tau", shape=(U.shape[0],))
    gamma = as_array(gamma, "gamma", shape=(U.shape[0],))
    bias = check_real(bias, "bias")
    return bias + ((X @ U.T > tau) @ gamma) / U.shape[0]


@dataclass(frozen=True, eq=False)
class GreedyResult:
    r"""Result of :func:`relaxed_greedy`.

    Attributes
    ----------
    errors : array (N,)
        :math:`\|f - f_k\|^2_{L^2(\mu)}` after :math:`k = 1, \dots, N` greedy steps.
    U, tau, gamma : arrays (N, d), (N,), (N,)
        The units: :math:`f_N(x) = f(0) + \frac1N\sum_i\gamma_i\,\mathbf 1\{\langle u_i,x\rangle >
        \tau_i\}`, :math:`|\gamma_i| \le \Delta(f)`.
    refit_widths, refit_errors : arrays (K,)
        Widths :math:`n` and the error of the best network on the first :math:`n` greedy units
        (outer weights and constant refitted by least squares, no bound on the weights).
    """

    errors: np.ndarray
    U: np.ndarray
    tau: np.ndarray
    gamma: np.ndarray
    refit_widths: np.ndarray
    refit_errors: np.ndarray


def relaxed_greedy(target: GaussianBumpTarget, X, N: int, rng: np.random.Generator, *,
                   candidates: int = 16, refit_at=()) -> GreedyResult:
    r"""Barron's constructive approximation (Jones 1992; Barron 1993) of ``target`` on the
    empirical measure :math:`\mu` of the rows of ``X`` (points of the ball).

    Step :math:`k` sets :math:`f_k = (1 - \frac1k) f_{k-1} + \frac1k g_k` with :math:`g_k =
    \gamma\,\mathbf 1\{\langle u, x\rangle > \tau\}`, :math:`|\gamma| \le \Delta(f)`, minimising
    :math:`\|f - f(0) - f_k\|_{L^2(\mu)}`: exactly over :math:`(\tau, \gamma)` (a scan of the sorted
    projections) and over ``candidates`` directions :math:`u` drawn uniformly afresh at each step.
    Then :math:`f_N = f(0) + \frac1N\sum_k g_k`, and since the minimum is at most the average over
    Barron's representation,

    .. math::

        \mathbb E\,\|f - f_N\|^2_{L^2(\mu)} \le \frac{c}{N},\qquad
        c = \mathbb E\|g\|^2_{L^2(\mu)} - \|f - f(0)\|^2_{L^2(\mu)} \le \Delta(f)^2,

    for any number of candidates (expectation over the candidate directions).

    Parameters
    ----------
    target : GaussianBumpTarget
    X : array (M, d)
        Points of the ball :math:`|x| \le r` (the measure :math:`\mu`).
    N : int >= 1
        Number of units.
    rng : numpy.random.Generator
    candidates : int >= 1
        Directions tried per step.
    refit_at : sequence of int in [1, N]
        Widths at which the least-squares refit of the outer layer is computed.
    """
    if not isinstance(target, GaussianBumpTarget):
        raise TypeError(f"target must be a GaussianBumpTarget, got {type(target).__name__}")
    X = target._check_X(X)
    M = X.shape[0]
    if M == 0:
        raise ValueError("X must have at least one row")
    if np.max(np.linalg.norm(X, axis=1)) > target.r * (1 + 1e-12):
        raise ValueError(f"X must lie in the ball of radius r = {target.r:g}")
    N = check_int(N, "N", minimum=1)
    rng = check_rng(rng)
    candidates = check_int(candidates, "candidates", minimum=1)
    refit_at = as_array(refit_at, "refit_at", ndim=1, dtype=None) if len(refit_at) else np.zeros(0, int)
    if refit_at.size and (refit_at.dtype.kind not in "iu" or refit_at.min() < 1 or refit_at.max() > N):
        raise ValueError(f"refit_at must hold integers in [1, N = {N}], got {refit_at!r}")
    y = target(X) - 1.0                       # f - f(0) at the points
    Dl = target.delta
    h = np.zeros(M)
    p = np.arange(1, M + 1)[:, None] / M
    errors = np.empty(N)
    U = np.empty((N, target.d))
    tau = np.empty(N)
    gamma = np.empty(N)
    for k in range(1, N + 1):
        alpha = 1.0 / k
        res = y - (1.0 - alpha) * h
        C = rng.standard_normal((candidates, target.d))
        C /= np.linalg.norm(C, axis=1, keepdims=True)
        Z = X @ C.T                                               # (M, K)
        order = np.argsort(-Z, axis=0, kind="stable")
        S = np.cumsum(res[order], axis=0) / M                    # <res, 1{top j}>, j = 1..M
        g = np.clip(S / (alpha * p), -Dl, Dl)
        gain = 2 * alpha * g * S - alpha**2 * g**2 * p
        j, c = np.unravel_index(np.argmax(gain), gain.shape)
        zs = Z[order[:, c], c]
        below = zs[j + 1] if j + 1 < M else -target.r
        U[k - 1], tau[k - 1], gamma[k - 1] = C[c], 0.5 * (zs[j] + below), g[j, c]
        step = np.zeros(M)
        step[order[: j + 1, c]] = 1.0
        h = (1.0 - alpha) * h + alpha * gamma[k - 1] * step
        errors[k - 1] = np.mean((y - h) ** 2)
    refit = np.empty(refit_at.size)
    if refit_at.size:
        F = (X @ U.T > tau).astype(float)
        for i, n in enumerate(refit_at):
            A = np.concatenate([np.ones((M, 1)), F[:, :n]], axis=1)
            coef, *_ = np.linalg.lstsq(A, y, rcond=None)
            refit[i] = np.mean((y - A @ coef) ** 2)
    return GreedyResult(errors, U, tau, gamma, refit_at.astype(int), refit)
