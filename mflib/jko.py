r"""Backward Euler, proximal steps and the JKO scheme (chapter 5).

Three levels of the same idea, "move downhill, but pay for the distance travelled":

1. **Finite dimension.** For the gradient flow :math:`\dot x = -\nabla F(x)` on
   :math:`\mathbb R^d`, forward Euler is :math:`x_{k+1} = x_k - \varepsilon\nabla F(x_k)` and
   backward Euler is :math:`x_{k+1} = x_k - \varepsilon\nabla F(x_{k+1})`, i.e. a stationary point
   of the proximal problem

   .. math::

       x_{k+1} \in \operatorname*{arg\,min}_x\ F(x) + \frac{|x - x_k|^2}{2\varepsilon},

   which gives the energy inequality
   :math:`F(x_{k+1}) + |x_{k+1}-x_k|^2/(2\varepsilon) \le F(x_k)` (compare with :math:`x = x_k`).
   :func:`proximal_step`, :func:`backward_euler`, :func:`forward_euler`, :func:`energy_gaps`.

2. **Measures (JKO).** With the Wasserstein distance in place of :math:`|x - x_k|`,
   :math:`\rho_{k+1} \in \operatorname{arg\,min}_\rho F(\rho) + W_2(\rho,\rho_k)^2/(2\tau)`
   (Jordan, Kinderlehrer and Otto 1998). For
   :math:`F(\rho) = \int V\,d\rho + \beta^{-1}\int\rho\log\rho` on the line, written with quantile
   particles, it is :func:`fokker_planck_1d`; the exact Ornstein-Uhlenbeck solution for quadratic
   :math:`V` is :func:`ornstein_uhlenbeck`. An interaction energy
   :math:`\frac12\iint U\,d\rho\,d\rho` enters through ``dU``; its :math:`\tau\to0` limit at
   fixed :math:`M`, the reference for time errors, is :func:`quantile_flow_1d`;
   :func:`bump_network_1d` is the smooth mean-field risk of a 1-D network in that form, and
   :func:`quantile_density` the density the particles represent.

3. **Particles of a network.** With :math:`\rho` the empirical measure of :math:`N` neurons, a
   JKO step of :math:`F = R/2` is backward Euler for the particle system
   :math:`\dot w_i = -\nabla\Psi(w_i;\rho_N)`: :func:`particle_implicit_step`.
   :func:`particle_flow` runs that system by any of three schemes (``scheme="implicit"``,
   ``"explicit"`` or ``"heun"``); it is mflib's one particle flow (chapters 4 and 5).

References
----------
R. Jordan, D. Kinderlehrer, F. Otto, SIAM J. Math. Anal. 29 (1998) (``jordan1998variational``);
L. Ambrosio, N. Gigli, G. Savare, *Gradient Flows in Metric Spaces* (``ambrosio2008gradient``);
F. Santambrogio, *Optimal Transport for Applied Mathematicians*, ch. 8 (``santambrogio2015optimal``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_banded
from scipy.optimize import minimize
from scipy.special import ndtri

from . import runs as _runs
from .validation import as_array, check_int, check_real

__all__ = [
    "Objective", "quadratic", "double_well_2d", "amplification",
    "forward_euler", "proximal_step", "backward_euler", "energy_gaps",
    "fokker_planck_1d", "free_energy_1d", "gaussian_quantiles", "ornstein_uhlenbeck",
    "quantile_flow_1d", "quantile_density", "Interacting1D", "bump_network_1d",
    "particle_explicit_step", "particle_drift_jacobian", "particle_implicit_step", "particle_flow",
    "ParticleFlow", "PARTICLE_SCHEMES",
]


class ArgumentTypeError(TypeError, ValueError):
    """A wrong type for an argument (both a TypeError and a ValueError, so either can be caught)."""


class ConvergenceError(RuntimeError):
    """An inner solver (Newton, trust region, L-BFGS) did not reach its tolerance."""


def _check_callable(f, name: str) -> Callable:
    if not callable(f):
        raise ArgumentTypeError(f"{name} must be callable, got {type(f).__name__}")
    return f


# ==============================================================================================
# 1. Finite-dimensional gradient flows
# ==============================================================================================
@dataclass(frozen=True)
class Objective:
    r"""A smooth function :math:`F:\mathbb R^d\to\mathbb R` with its gradient and Hessian.

    Attributes
    ----------
    F : callable, (d,) -> float
    grad : callable, (d,) -> (d,)
    hess : callable, (d,) -> (d, d)
    name : str
    """

    F: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    hess: Callable[[np.ndarray], np.ndarray]
    name: str = "F"


def quadratic(A, b=None) -> Objective:
    r"""The quadratic :math:`F(x) = \tfrac12 x^\top A x - b^\top x` (symmetric ``A`` (d, d)).

    With :math:`A = \operatorname{diag}(1, L)`, :math:`L\gg1`, it is the model stiff problem:
    forward Euler is stable iff :math:`\varepsilon < 2/\lambda_{\max}(A)`, backward Euler
    :math:`x_{k+1} = (I+\varepsilon A)^{-1}(x_k + \varepsilon b)` for every :math:`\varepsilon>0`
    when :math:`A \succeq 0`.
    """
    A = as_array(A, "A", ndim=2)
    if A.shape[0] != A.shape[1] or not np.allclose(A, A.T):
        raise ValueError(f"A must be a symmetric square matrix, got shape {A.shape}")
    b = np.zeros(A.shape[0]) if b is None else as_array(b, "b", shape=(A.shape[0],))
    return Objective(F=lambda x: float(0.5 * x @ A @ x - b @ x),
                     grad=lambda x: A @ x - b,
                     hess=lambda x: A.copy(),
                     name="quadratic")


def double_well_2d(k: float = 20.0, c: float = 0.5) -> Objective:
    r"""A non-convex 2-D function with two minima at :math:`(\pm1, c)` and a stiff valley.

    .. math::

        F(x_1, x_2) = \tfrac14(x_1^2 - 1)^2 + \tfrac k2\,(x_2 - c\,x_1^2)^2 .

    The valley floor :math:`x_2 = c x_1^2` is curved, the walls have curvature :math:`k` (stiff for
    large ``k``), and :math:`F` is not convex near :math:`x_1 = 0` (a saddle at the origin).
    """
    k = check_real(k, "k", low=0.0, low_open=True)
    c = check_real(c, "c")

    def F(x):
        u = x[1] - c * x[0] ** 2
        return float(0.25 * (x[0] ** 2 - 1.0) ** 2 + 0.5 * k * u * u)

    def grad(x):
        u = x[1] - c * x[0] ** 2
        return np.array([x[0] * (x[0] ** 2 - 1.0) - 2.0 * k * c * x[0] * u, k * u])

    def hess(x):
        u = x[1] - c * x[0] ** 2
        h11 = 3.0 * x[0] ** 2 - 1.0 + 4.0 * k * c * c * x[0] ** 2 - 2.0 * k * c * u
        h12 = -2.0 * k * c * x[0]
        return np.array([[h11, h12], [h12, k]])

    return Objective(F=F, grad=grad, hess=hess, name=f"double well (k={k:g}, c={c:g})")


def amplification(mu, scheme: str) -> np.ndarray:
    r"""Growth factor of one Euler step on :math:`\dot x = -\lambda x`, :math:`\mu = \varepsilon\lambda`.

    Forward: :math:`x_{k+1} = (1-\mu)x_k`; backward: :math:`x_{k+1} = x_k/(1+\mu)`. The stability
    region is where the modulus is at most 1: the disc :math:`|1-\mu|\le1` for forward Euler, the
    exterior of the disc :math:`|1+\mu|\ge 1` (the whole right half-plane included) for backward.

    Parameters
    ----------
    mu : complex array, any shape
    scheme : {"forward", "backward"}

    Returns
    -------
    complex array, the shape of ``mu``
    """
    mu = as_array(mu, "mu", dtype=complex)
    if scheme == "forward":
        return 1.0 - mu
    if scheme == "backward":
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 / (1.0 + mu)
    raise ValueError(f"scheme must be 'forward' or 'backward', got {scheme!r}")


def _x0(x0, name="x0") -> np.ndarray:
    x0 = np.atleast_1d(as_array(x0, name))
    if x0.ndim != 1 or x0.size == 0:
        raise ValueError(f"{name} must be a non-empty vector (d,), got shape {x0.shape}")
    return x0


def forward_euler(grad_F, x0, eps: float, steps: int) -> np.ndarray:
    r"""Explicit Euler :math:`x_{k+1} = x_k - \varepsilon\nabla F(x_k)`.

    Parameters
    ----------
    grad_F : callable, (d,) -> (d,)
    x0 : array (d,)
    eps : float > 0
    steps : int >= 0

    Returns
    -------
    array (steps + 1, d)
        The iterates; once they overflow, the remaining rows are ``inf``/``nan`` (no exception),
        so that a blow-up can be plotted.
    """
    _check_callable(grad_F, "grad_F")
    x = _x0(x0)
    eps = check_real(eps, "eps", low=0.0, low_open=True)
    steps = check_int(steps, "steps", minimum=0)
    out = np.empty((steps + 1, x.size))
    out[0] = x
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps):
            out[k + 1] = out[k] - eps * np.asarray(grad_F(out[k]), dtype=float)
    return out


def proximal_step(F, grad_F, x_k, eps: float, hess_F=None, tol: float = 1e-10,
                  max_iter: int = 500) -> np.ndarray:
    r"""One backward-Euler step as a proximal problem, solved by a trust-region Newton method.

    .. math::

        x_{k+1} \in \operatorname*{arg\,min}_x\ \Phi(x),\qquad
        \Phi(x) = \varepsilon F(x) + \tfrac12|x - x_k|^2 ,

    (the proximal objective :math:`F(x) + |x-x_k|^2/(2\varepsilon)` times :math:`\varepsilon`, so
    that :math:`\nabla\Phi = \varepsilon\nabla F(x) + x - x_k` is in units of length). The inner
    solver is :func:`scipy.optimize.minimize` with ``method="trust-exact"`` (Newton's method in a
    trust region, safe for indefinite Hessians) when ``hess_F`` is given, BFGS otherwise, started
    at :math:`x_k`. Both accept only steps that decrease :math:`\Phi`, so the result satisfies the
    energy inequality :math:`F(x_{k+1}) + |x_{k+1}-x_k|^2/(2\varepsilon)\le F(x_k)` even when
    :math:`F` is not convex and the minimiser found is only local. If round-off in :math:`\Phi`
    stops the descent early, plain Newton steps on :math:`\nabla\Phi = 0` finish it; they are
    accepted only if shorter than :math:`10^{-4}(1+|x_k|)` (a local refinement that changes
    :math:`\Phi` by about the squared residual, so the inequality keeps holding up to round-off).
    On return the Euler-Lagrange residual :math:`|x_{k+1} - x_k + \varepsilon\nabla F(x_{k+1})|`
    is at most ``tol`` times
    :math:`1 + |x_k|`; otherwise a :class:`ConvergenceError` is raised.

    Parameters
    ----------
    F : callable, (d,) -> float
    grad_F : callable, (d,) -> (d,)
    x_k : array (d,)
    eps : float > 0
    hess_F : callable, (d,) -> (d, d), optional
    tol : float > 0
    max_iter : int >= 1

    Returns
    -------
    array (d,)
    """
    _check_callable(F, "F")
    _check_callable(grad_F, "grad_F")
    if hess_F is not None:
        _check_callable(hess_F, "hess_F")
    xk = _x0(x_k, "x_k")
    eps = check_real(eps, "eps", low=0.0, low_open=True)
    tol = check_real(tol, "tol", low=0.0, low_open=True)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    scale = 1.0 + float(np.linalg.norm(xk))
    eye = np.eye(xk.size)

    def phi(x):
        r = x - xk
        return eps * F(x) + 0.5 * r @ r

    def dphi(x):
        return eps * np.asarray(grad_F(x), dtype=float) + x - xk

    if hess_F is not None:
        res = minimize(phi, xk.copy(), jac=dphi, hess=lambda x: eps * np.asarray(hess_F(x)) + eye,
                       method="trust-exact", options={"gtol": 0.1 * tol * scale, "maxiter": max_iter})
    else:
        res = minimize(phi, xk.copy(), jac=dphi, method="BFGS",
                       options={"gtol": 0.1 * tol * scale, "maxiter": max_iter})
    x = res.x
    g = dphi(x)
    resid = float(np.linalg.norm(g))
    for _ in range(5):          # Newton polish when round-off in Phi stopped the descent early
        if resid <= tol * scale:
            break
        if hess_F is not None:
            Jac = eps * np.asarray(hess_F(x), dtype=float) + eye
        else:
            h = 1e-6 * (1.0 + np.abs(x))
            Jac = np.stack([(dphi(x + h[j] * eye[j]) - dphi(x - h[j] * eye[j])) / (2 * h[j])
                            for j in range(x.size)], axis=1)
        dx = np.linalg.solve(Jac, g)
        if not np.linalg.norm(dx) <= 1e-4 * scale:
            break               # only a local refinement, never a jump (to a saddle or a maximum)
        x_new = x - dx
        g_new = dphi(x_new)
        if not np.linalg.norm(g_new) < resid:
            break
        x, g, resid = x_new, g_new, float(np.linalg.norm(g_new))
    if not resid <= tol * scale:
        raise ConvergenceError(f"proximal step did not converge: residual {resid:.3g} > tol "
                               f"{tol * scale:.3g} ({res.message})")
    return x


def backward_euler(F, grad_F, x0, eps: float, steps: int, hess_F=None, tol: float = 1e-10) -> np.ndarray:
    r"""Implicit Euler :math:`x_{k+1} = x_k - \varepsilon\nabla F(x_{k+1})` by repeated :func:`proximal_step`.

    Returns
    -------
    array (steps + 1, d)
        The iterates :math:`x_0, \dots, x_{\text{steps}}`.
    """
    x = _x0(x0)
    steps = check_int(steps, "steps", minimum=0)
    out = np.empty((steps + 1, x.size))
    out[0] = x
    for k in range(steps):
        out[k + 1] = proximal_step(F, grad_F, out[k], eps, hess_F=hess_F, tol=tol)
    return out


def energy_gaps(F, X, eps: float) -> np.ndarray:
    r"""The energy-inequality gaps :math:`F(x_{k+1}) + |x_{k+1}-x_k|^2/(2\varepsilon) - F(x_k)`.

    Non-positive for every step of backward Euler (the proximal step); forward Euler can make
    them positive.

    Parameters
    ----------
    F : callable, (d,) -> float
    X : array (K + 1, d)
        Iterates, e.g. from :func:`backward_euler`.
    eps : float > 0

    Returns
    -------
    array (K,)
    """
    _check_callable(F, "F")
    X = as_array(X, "X", ndim=2, finite=False)
    if X.shape[0] == 0:
        raise ValueError("X must hold at least one iterate (K + 1 >= 1 rows)")
    eps = check_real(eps, "eps", low=0.0, low_open=True)
    Fv = np.array([F(x) for x in X])
    step = np.sum(np.diff(X, axis=0) ** 2, axis=1)
    return Fv[1:] + step / (2.0 * eps) - Fv[:-1]


# ==============================================================================================
# 2. JKO for the 1-D Fokker-Planck equation, particles as quantiles
# ==============================================================================================
def gaussian_quantiles(m: float, var: float, M: int) -> np.ndarray:
    r"""The :math:`M` mid-point quantiles :math:`m + \sqrt{v}\,\Phi^{-1}\big((i+\frac12)/M\big)`, sorted.

    The quantile particles of :math:`\mathcal N(m, v)` used by :func:`fokker_planck_1d`: particle
    :math:`i` carries the mass of the quantile levels :math:`[i/M, (i+1)/M]`.
    """
    m = check_real(m, "m")
    var = check_real(var, "var", low=0.0, low_open=True)
    M = check_int(M, "M", minimum=1)
    return m + np.sqrt(var) * ndtri((np.arange(M) + 0.5) / M)


def ornstein_uhlenbeck(m0: float, var0: float, t, a: float = 1.0, c: float = 0.0,
                       beta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact mean and variance of the Ornstein-Uhlenbeck flow from a Gaussian start.

    For :math:`V(x) = \frac a2(x-c)^2` the Fokker-Planck equation
    :math:`\partial_t\rho = \partial_x(\rho V') + \beta^{-1}\partial_x^2\rho` maps
    :math:`\mathcal N(m_0, v_0)` to :math:`\mathcal N(m(t), v(t))` with

    .. math::

        m(t) = c + (m_0 - c)e^{-at},\qquad
        v(t) = \frac1{a\beta} + \Big(v_0 - \frac1{a\beta}\Big)e^{-2at}.

    Parameters
    ----------
    m0, var0 : float
        Initial mean and variance (``var0 >= 0``).
    t : float or array
        Times >= 0.
    a : float > 0
    c : float
    beta : float > 0

    Returns
    -------
    (mean, var) : arrays of the shape of ``t``
    """
    m0 = check_real(m0, "m0")
    var0 = check_real(var0, "var0", low=0.0)
    a = check_real(a, "a", low=0.0, low_open=True)
    c = check_real(c, "c")
    beta = check_real(beta, "beta", low=0.0, low_open=True)
    t = as_array(t, "t")
    if np.any(t < 0):
        raise ValueError("t must be >= 0")
    vinf = 1.0 / (a * beta)
    return c + (m0 - c) * np.exp(-a * t), vinf + (var0 - vinf) * np.exp(-2.0 * a * t)


def free_energy_1d(V, beta: float, q, U=None) -> float:
    r"""The discrete free energy of quantile particles, the functional minimised by :func:`fokker_planck_1d`.

    .. math::

        F_M(q) = \frac1M\sum_{i=0}^{M-1}V(q_i) + \frac{1}{\beta}\sum_{i=0}^{M-2}\frac1M
        \log\frac{1}{M\Delta_i},\qquad \Delta_i = q_{i+1}-q_i,

    i.e. :math:`\int V\,d\rho + \beta^{-1}\int\rho\log\rho` with the density :math:`1/(M\Delta_i)`
    on each gap, plus :math:`\frac1{2M^2}\sum_{i,j}U(q_i,q_j)` when an interaction ``U`` is given.
    Along the JKO scheme
    :math:`F_M(q^{k+1}) + \frac{1}{2\tau M}\sum_i(q^{k+1}_i-q^k_i)^2 \le F_M(q^k)`.

    Parameters
    ----------
    V : callable, (M,) -> (M,)
    beta : float > 0
    q : array (M,) or (K, M), strictly increasing along the last axis
    U : callable, optional
        Symmetric interaction :math:`U(x, y)`, elementwise with broadcasting.

    Returns
    -------
    float, or array (K,) for a trajectory
    """
    _check_callable(V, "V")
    if U is not None:
        _check_callable(U, "U")
    beta = check_real(beta, "beta", low=0.0, low_open=True)
    q = as_array(q, "q")
    if q.ndim not in (1, 2) or q.shape[-1] < 2:
        raise ValueError(f"q must have shape (M,) or (K, M) with M >= 2, got {q.shape}")
    gap = np.diff(q, axis=-1)
    if np.any(gap <= 0):
        raise ValueError("q must be strictly increasing along its last axis")
    M = q.shape[-1]
    Vq = np.asarray(V(q.reshape(-1)), dtype=float).reshape(q.shape)
    out = Vq.mean(axis=-1) - np.log(M * gap).sum(axis=-1) / (beta * M)
    if U is not None:
        Q = q.reshape(-1, M)
        out = out + np.array([0.5 * np.asarray(U(r[:, None], r[None, :]), dtype=float).mean()
                              for r in Q]).reshape(out.shape)
    return float(out) if q.ndim == 1 else out


def _fp_forces(q, dV, beta, dU):
    """G0(q) = V'(q) + (1/M) sum_j d1U(q_i, q_j) + (1/Delta_i - 1/Delta_{i-1})/beta, and 1/Delta."""
    gap = np.diff(q)
    inv = 1.0 / gap
    right = np.append(inv, 0.0)          # 1/Delta_i   (0 for the last particle)
    left = np.insert(inv, 0, 0.0)        # 1/Delta_{i-1} (0 for the first particle)
    G = dV(q) + (right - left) / beta
    if dU is not None:
        G = G + dU(q[:, None], q[None, :]).mean(axis=1)
    return G, inv


def _fp_jacobian(q, inv, d2V, beta, d2U, shift):
    """dG0/dq + shift I: banded (3, M) without interaction, dense (M, M) with it."""
    M = q.size
    w = inv * inv / beta                           # 1/(beta Delta_i^2), (M-1,)
    diag = shift + d2V(q) + np.append(w, 0.0) + np.insert(w, 0, 0.0)
    if d2U is None:
        ab = np.zeros((3, M))
        ab[1] = diag
        ab[0, 1:] = -w                             # super-diagonal
        ab[2, :-1] = -w                            # sub-diagonal
        return ab
    uxx, uxy = d2U(q[:, None], q[None, :])
    J = uxy / M
    J[np.diag_indices(M)] += diag + uxx.mean(axis=1)
    J[np.arange(M - 1), np.arange(1, M)] -= w
    J[np.arange(1, M), np.arange(M - 1)] -= w
    return J


def _fp_residual(q, qk, dV, beta, tau, dU=None):
    """G(q) = (q - q^k)/tau + G0(q), and 1/Delta."""
    G0, inv = _fp_forces(q, dV, beta, dU)
    return (q - qk) / tau + G0, inv


def _fp_step(q_k, dV, d2V, beta, tau, tol, max_newton, dU=None, d2U=None):
    q = q_k.copy()
    scale = 1.0 + np.max(np.abs(q_k))
    G, inv = _fp_residual(q, q_k, dV, beta, tau, dU)
    norm = np.max(np.abs(G))
    for _ in range(max_newton):
        if tau * norm <= tol * scale:
            return q
        J = _fp_jacobian(q, inv, d2V, beta, d2U, 1.0 / tau)
        delta = solve_banded((1, 1), J, G) if d2U is None else np.linalg.solve(J, G)
        if np.max(np.abs(delta)) <= tol * scale and np.all(np.diff(q - delta) > 0):
            return q - delta                       # Newton: the error after this step is O(|delta|^2)
        alpha = 1.0
        while True:                                # damping: keep the order and reduce |G|
            q_new = q - alpha * delta
            if np.all(np.diff(q_new) > 0):
                G_new, inv_new = _fp_residual(q_new, q_k, dV, beta, tau, dU)
                norm_new = np.max(np.abs(G_new))
                if norm_new < norm or alpha < 1e-3:
                    break
            alpha *= 0.5
            if alpha < 1e-10:
                raise ConvergenceError("Newton's method for the JKO step lost the particle order")
        q, G, inv, norm = q_new, G_new, inv_new, norm_new
    raise ConvergenceError(f"Newton's method for the JKO step did not converge in {max_newton} "
                           f"iterations (residual tau*|G| = {tau * norm:.3g})")


def _interaction(dU, d2U, M):
    """Checked interaction callables (None, None without interaction); d2U by differences if absent."""
    if dU is None:
        if d2U is not None:
            raise ValueError("d2U needs dU (the interaction's first derivative)")
        return None, None
    _check_callable(dU, "dU")

    def dU_checked(x, y):
        g = np.asarray(dU(x, y), dtype=float)
        if g.shape != (M, M):
            raise ValueError(f"dU must map arrays (M, 1), (1, M) to an array (M, M), got shape {g.shape}")
        return g

    if d2U is None:
        def d2U_(x, y):
            h = 1e-5 * (1.0 + np.abs(x) + np.abs(y))
            return ((dU_checked(x + h, y) - dU_checked(x - h, y)) / (2 * h),
                    (dU_checked(x, y + h) - dU_checked(x, y - h)) / (2 * h))
    else:
        _check_callable(d2U, "d2U")

        def d2U_(x, y):
            out = d2U(x, y)
            if not isinstance(out, tuple) or len(out) != 2:
                raise ValueError("d2U must return a pair (d11 U, d12 U) of arrays (M, M)")
            return tuple(np.broadcast_to(np.asarray(o, dtype=float), (M, M)) for o in out)
    return dU_checked, d2U_


def _potential(dV, d2V, M):
    """Checked V' and V'' (V'' by central differences of V' if absent)."""
    _check_callable(dV, "dV")

    def dV_checked(q):
        g = np.asarray(dV(q), dtype=float)
        if g.shape != (M,):
            raise ValueError(f"dV must map an array (M,) to an array (M,), got shape {g.shape}")
        return g

    if d2V is None:
        def d2V_(q):
            h = 1e-5 * (1.0 + np.abs(q))
            return (dV_checked(q + h) - dV_checked(q - h)) / (2 * h)
    else:
        _check_callable(d2V, "d2V")

        def d2V_(q):
            return np.broadcast_to(np.asarray(d2V(q), dtype=float), (M,))
    return dV_checked, d2V_


def _quantile_start(q0, name="q0"):
    q0 = as_array(q0, name, ndim=1)
    if q0.size < 2:
        raise ValueError(f"{name} must hold at least 2 particles (the entropy needs gaps), got {q0.size}")
    if not np.all(np.diff(q0) > 0):
        raise ValueError(f"{name} must be sorted in strictly increasing order (quantile particles)")
    return q0


def fokker_planck_1d(dV, beta: float, q0, tau: float, steps: int, d2V=None, tol: float = 1e-11,
                     max_newton: int = 50, progress: bool | None = None, *, dU=None,
                     d2U=None) -> np.ndarray:
    r"""JKO scheme for the 1-D Fokker-Planck equation with particles as quantiles.

    The equation :math:`\partial_t\rho = \partial_x(\rho V') + \beta^{-1}\partial_x^2\rho` is the
    Wasserstein gradient flow of :math:`F(\rho) = \int V\,d\rho + \beta^{-1}\int\rho\log\rho`
    (Jordan, Kinderlehrer and Otto 1998). On the line a measure is its quantile function, and
    :math:`W_2(\rho,\rho')^2 = \int_0^1 |q(s) - q'(s)|^2 ds` (Santambrogio 2015, sec. 2.2). We
    represent :math:`\rho` by :math:`M` sorted particles :math:`q_0<\dots<q_{M-1}`, particle
    :math:`i` standing for the quantile level :math:`s_i = (i+\frac12)/M`, and the density between
    neighbours by :math:`1/(M\Delta_i)`, :math:`\Delta_i = q_{i+1}-q_i`. The discrete JKO step is

    .. math::

        q^{k+1} = \operatorname*{arg\,min}_{q_0<\dots<q_{M-1}}\ \frac1M\sum_i V(q_i)
        - \frac{1}{\beta M}\sum_{i=0}^{M-2}\log\Delta_i
        + \frac{1}{2\tau}\,\frac1M\sum_i (q_i - q_i^k)^2 ,

    whose Euler-Lagrange equations (times :math:`M`) are, with :math:`1/\Delta_{-1} = 1/\Delta_{M-1} = 0`,

    .. math::

        G_i(q) = \frac{q_i - q_i^k}{\tau} + V'(q_i)
        + \frac1\beta\Big(\frac1{\Delta_i} - \frac1{\Delta_{i-1}}\Big) = 0 ,

    the backward-Euler step of the quantile equation
    :math:`\partial_t q = -V'(q) - \beta^{-1}\partial_s(1/\partial_s q)`. For convex :math:`V` (or
    :math:`1/\tau + V'' > 0`) the objective is strictly convex on the ordered cone, and Newton's
    method with the tridiagonal Jacobian
    :math:`\partial G/\partial q = \tau^{-1} I + \operatorname{diag}V''(q) + \beta^{-1}L(q)`
    (:math:`L` the weighted graph Laplacian with weights :math:`\Delta_i^{-2}`), damped to keep
    the order of the particles, converges quadratically from :math:`q^k`. Stop when the Newton
    update (or :math:`\tau\max_i|G_i|`) is at most ``tol`` :math:`\cdot(1+\max|q^k|)`.

    Parameters
    ----------
    dV : callable, (M,) -> (M,)
        :math:`V'` applied elementwise.
    beta : float > 0
        Inverse temperature.
    q0 : array (M,), M >= 2
        Strictly increasing initial quantile particles (e.g. :func:`gaussian_quantiles`).
    tau : float > 0
        JKO time step.
    steps : int >= 0
        Number of JKO steps; time :math:`t = k\tau`.
    d2V : callable, (M,) -> (M,), optional
        :math:`V''`; if omitted, a central difference of ``dV`` (step :math:`10^{-5}(1+|q|)`), which
        only changes the Newton Jacobian, not the equations solved.
    tol : float > 0
        Newton tolerance (relative, in units of length).
    max_newton : int >= 1
    progress : bool or None
        Progress bar (:mod:`mflib.progress`).
    dU : callable, optional
        An interaction energy :math:`\frac12\iint U\,d\rho\,d\rho` (``U`` symmetric) added to
        :math:`F`: ``dU(x, y)`` is :math:`\partial_xU(x, y)`, called with ``x`` of shape (M, 1) and
        ``y`` of shape (1, M). The equation becomes
        :math:`\partial_t\rho = \partial_x\big(\rho\,\partial_x\Psi\big) + \beta^{-1}\partial_x^2\rho`
        with :math:`\Psi = V + \int U(\cdot, y)\rho(dy)`, and :math:`G_i` gains
        :math:`\frac1M\sum_j\partial_xU(q_i, q_j)` (the empirical measure of the particles,
        :math:`j = i` included). The Jacobian gains
        :math:`\frac1M\big(\delta_{ik}\sum_j\partial_{xx}U(q_i,q_j) + \partial_{xy}U(q_i,q_k)\big)`
        and is then solved densely (:math:`O(M^3)` per Newton iteration).
    d2U : callable, optional
        ``d2U(x, y)`` returns the pair :math:`(\partial_{xx}U, \partial_{xy}U)`; by central
        differences of ``dU`` if omitted (the Jacobian only).

    Returns
    -------
    array (steps + 1, M)
        Row ``k`` holds the particles at time :math:`k\tau`, sorted.

    Raises
    ------
    ValueError
        Unsorted (or tied) ``q0``, ``tau <= 0``, ``steps < 0``, ``beta <= 0``, non-callable ``dV``
        (the latter is an :class:`ArgumentTypeError`, both a TypeError and a ValueError).
    ConvergenceError
        If Newton's method fails (e.g. a very non-convex ``V`` with a large ``tau``).
    mflib.runs.DivergenceError
        If the particles become non-finite (``dV`` overflowing); the message names the step.

    Examples
    --------
    >>> q0 = gaussian_quantiles(2.0, 0.25, 200)
    >>> # Ornstein-Uhlenbeck, 20 steps of tau = 0.05: up to t = 1
    >>> q = fokker_planck_1d(lambda x: x, 1.0, q0, 0.05, 20)
    >>> q.shape
    (21, 200)
    """
    beta = check_real(beta, "beta", low=0.0, low_open=True)
    q0 = _quantile_start(q0)
    tau = check_real(tau, "tau", low=0.0, low_open=True)
    steps = check_int(steps, "steps", minimum=0)
    tol = check_real(tol, "tol", low=0.0, low_open=True)
    max_newton = check_int(max_newton, "max_newton", minimum=1)
    M = q0.size
    dV_checked, d2V_ = _potential(dV, d2V, M)
    dU_, d2U_ = _interaction(dU, d2U, M)

    q = q0
    with _runs.Recorder(np.arange(steps + 1), tau, progress=progress, desc="JKO",
                        threshold=20000, where="the JKO scheme",
                        advice=f"try a smaller tau (now {tau:g}), e.g. {tau / 10:.3g}") as rec:
        for k0, k1 in rec.spans():
            for _ in range(k0, k1):
                q = _fp_step(q, dV_checked, d2V_, beta, tau, tol, max_newton, dU_, d2U_)
            rec.check(q)
            rec.record(q=q)
    return rec.array("q")


def quantile_density(q) -> tuple[np.ndarray, np.ndarray]:
    r"""The density that quantile particles represent: :math:`1/(M\Delta_i)` at the gap midpoints.

    Particle :math:`i` carries mass :math:`1/M`, so the density between neighbours is
    :math:`1/(M\Delta_i)`, :math:`\Delta_i = q_{i+1} - q_i` (the convention of
    :func:`fokker_planck_1d` and :func:`free_energy_1d`).

    Parameters
    ----------
    q : array (M,), M >= 2, strictly increasing

    Returns
    -------
    (x, density) : arrays (M - 1,)
        Midpoints :math:`(q_i + q_{i+1})/2` and densities :math:`1/(M\Delta_i)`.
    """
    q = _quantile_start(q, "q")
    return 0.5 * (q[1:] + q[:-1]), 1.0 / (q.size * np.diff(q))


def quantile_flow_1d(dV, beta: float, q0, t, d2V=None, *, dU=None, d2U=None,
                     rtol: float = 1e-10) -> np.ndarray:
    r"""The quantile particles' ODE, :math:`\dot q = -G^0(q)`: the limit :math:`\tau\to0` of
    :func:`fokker_planck_1d` at fixed :math:`M`, by a stiff high-order integrator.

    :func:`fokker_planck_1d` is backward Euler, :math:`(q^{k+1}-q^k)/\tau = -G^0(q^{k+1})`, for the
    semi-discrete system

    .. math::

        \dot q_i = -V'(q_i) - \frac1M\sum_j\partial_xU(q_i,q_j)
        - \frac1\beta\Big(\frac1{\Delta_i}-\frac1{\Delta_{i-1}}\Big),\qquad i = 0..M-1 .

    Integrating this system accurately gives the reference against which the JKO scheme's time
    error is measured with the *same* particles, so that the error of representing
    :math:`\rho` by :math:`M` quantiles cancels. Integrator: :func:`scipy.integrate.solve_ivp`
    with ``method="Radau"`` (implicit Runge-Kutta of order 5, L-stable), the exact Jacobian
    :math:`-\partial G^0/\partial q`, relative tolerance ``rtol`` and absolute tolerance
    ``rtol * (1 + max|q0|)``.

    Parameters
    ----------
    dV, beta, q0, d2V, dU, d2U
        As in :func:`fokker_planck_1d`.
    t : array (K,)
        Non-decreasing times >= 0 at which to return the particles.
    rtol : float in (0, 1e-3]
        Relative tolerance of the integrator.

    Returns
    -------
    array (K, M)
        Row ``k`` holds the particles at time ``t[k]``.

    Raises
    ------
    ConvergenceError
        If the integrator fails.
    """
    from scipy.integrate import solve_ivp
    from scipy.sparse import diags

    beta = check_real(beta, "beta", low=0.0, low_open=True)
    q0 = _quantile_start(q0)
    t = as_array(t, "t", ndim=1)
    if t.size == 0 or np.any(t < 0) or np.any(np.diff(t) < 0):
        raise ValueError("t must be a non-empty, non-decreasing array of times >= 0")
    rtol = check_real(rtol, "rtol", low=0.0, high=1e-3, low_open=True)
    M = q0.size
    dV_checked, d2V_ = _potential(dV, d2V, M)
    dU_, d2U_ = _interaction(dU, d2U, M)

    def rhs(_, q):
        return -_fp_forces(q, dV_checked, beta, dU_)[0]

    def jac(_, q):
        J = _fp_jacobian(q, 1.0 / np.diff(q), d2V_, beta, d2U_, 0.0)
        if d2U_ is None:                                 # banded (3, M) -> sparse tridiagonal
            return -diags([J[2, :-1], J[1], J[0, 1:]], [-1, 0, 1], format="csc")
        return -J

    if t[-1] == 0.0:
        return np.repeat(q0[None, :], t.size, axis=0)
    times, where = np.unique(t, return_inverse=True)     # solve_ivp wants increasing times
    sol = solve_ivp(rhs, (0.0, float(t[-1])), q0, method="Radau", t_eval=times, jac=jac,
                    rtol=rtol, atol=rtol * (1.0 + float(np.max(np.abs(q0)))))
    if not sol.success:
        raise ConvergenceError(f"the quantile ODE integrator failed: {sol.message}")
    out = sol.y.T[where]
    out[t == 0.0] = q0
    if not (np.all(np.isfinite(out)) and np.all(np.diff(out, axis=1) > 0)):
        raise ConvergenceError("the quantile ODE integrator lost the particle order")
    return out


@dataclass(frozen=True)
class Interacting1D:
    r"""A 1-D free energy :math:`\int V\,d\rho + \frac12\iint U\,d\rho\,d\rho` as callables.

    ``V, dV, d2V`` act elementwise on arrays; ``U(x, y)``, ``dU(x, y)`` (:math:`\partial_xU`) and
    ``d2U(x, y)`` (the pair :math:`(\partial_{xx}U, \partial_{xy}U)`) broadcast ``x`` against
    ``y``. Pass ``dV, d2V, dU, d2U`` to :func:`fokker_planck_1d` and :func:`quantile_flow_1d`,
    ``V`` and ``U`` to :func:`free_energy_1d`, ``f`` (the network, :math:`x, q \mapsto
    \frac1M\sum_i\sigma_*(x; q_i)`) and ``target`` to plot what a measure represents.
    """

    V: Callable
    dV: Callable
    d2V: Callable
    U: Callable
    dU: Callable
    d2U: Callable
    f: Callable
    target: Callable
    name: str = "interacting"


def bump_network_1d(centers, weights, s: float = 1.5, lam: float = 0.0) -> Interacting1D:
    r"""The mean-field risk of a 1-D network of Gaussian bumps, as a potential and an interaction.

    Neurons :math:`\sigma_*(x;\theta) = \varphi(x-\theta)`, :math:`\varphi(z) = e^{-z^2/2}`, one
    parameter :math:`\theta\in\mathbb R` each; the network :math:`f(x;\rho) = \int\varphi(x-\theta)
    \rho(d\theta)`; data :math:`x\sim\mathcal N(0, s^2)` and :math:`y = f_*(x) = \sum_k c_k
    \varphi(x - \mu_k)` (a teacher network). With :math:`\kappa = 1 + 2s^2`, the closed form

    .. math::

        g(a, b) = \mathbb E_x[\varphi(x-a)\varphi(x-b)] = \kappa^{-1/2}
        \exp\Big(-\frac{(a-b)^2}4 - \frac{(a+b)^2}{4\kappa}\Big)

    gives the book's potentials :math:`U(\theta,\theta') = g(\theta,\theta')` and
    :math:`V(\theta) = -\mathbb E[y\,\sigma_*(x;\theta)] = -\sum_kc_k\,g(\mu_k,\theta)`, to which the
    ridge adds :math:`\lambda\theta^2/2`. Then :math:`R(\rho)/2 + \frac\lambda2\int\theta^2d\rho =
    \frac12\mathbb Ey^2 + \int V_\lambda\,d\rho + \frac12\iint U\,d\rho\,d\rho`, and with
    ``V = V_lambda`` the Wasserstein gradient flow of :math:`F_\beta` (DESIGN.md) is the noisy
    mean-field PDE :math:`\partial_t\rho = \partial_\theta(\rho\,\partial_\theta\Psi_\lambda) +
    \beta^{-1}\partial_\theta^2\rho`. :math:`U` is smooth with bounded second derivatives, so the
    free energy is :math:`\lambda_*`-convex along geodesics for some :math:`\lambda_*\in\mathbb R`.

    Parameters
    ----------
    centers, weights : array (K,)
        The teacher's neurons :math:`\mu_k` and output weights :math:`c_k`.
    s : float > 0
        Standard deviation of the data.
    lam : float >= 0
        Ridge :math:`\lambda`.

    Returns
    -------
    Interacting1D
    """
    mu = as_array(centers, "centers", ndim=1)
    if mu.size == 0:
        raise ValueError("centers must hold at least one teacher neuron")
    c = as_array(weights, "weights", shape=mu.shape)
    s = check_real(s, "s", low=0.0, low_open=True)
    lam = check_real(lam, "lam", low=0.0)
    kap = 1.0 + 2.0 * s * s
    pre = 1.0 / np.sqrt(kap)

    def g(a, b):
        return pre * np.exp(-0.25 * (a - b) ** 2 - 0.25 * (a + b) ** 2 / kap)

    def p(a, b):                                   # d/da log g
        return -0.5 * (a - b) - 0.5 * (a + b) / kap

    def U(x, y):
        return g(x, y)

    def dU(x, y):
        return g(x, y) * p(x, y)

    def d2U(x, y):
        gxy, px, py = g(x, y), p(x, y), p(y, x)
        return gxy * (px * px - 0.5 - 0.5 / kap), gxy * (px * py + 0.5 - 0.5 / kap)

    def _teacher(fun, x):
        x = np.asarray(x, dtype=float)
        return sum(ck * fun(x, mk) for mk, ck in zip(mu, c, strict=True))

    def V(x):
        x = np.asarray(x, dtype=float)
        return -_teacher(g, x) + 0.5 * lam * x * x

    def dV(x):
        x = np.asarray(x, dtype=float)
        return -_teacher(dU, x) + lam * x

    def d2V(x):
        x = np.asarray(x, dtype=float)
        return -_teacher(lambda a, b: d2U(a, b)[0], x) + lam

    def f(x, q):
        x, q = np.asarray(x, dtype=float), np.asarray(q, dtype=float)
        return np.exp(-0.5 * (x[..., None] - q) ** 2).mean(axis=-1)

    def target(x):
        x = np.asarray(x, dtype=float)
        return sum(ck * np.exp(-0.5 * (x - mk) ** 2) for mk, ck in zip(mu, c, strict=True))

    return Interacting1D(V=V, dV=dV, d2V=d2V, U=U, dU=dU, d2U=d2U, f=f, target=target,
                         name=f"bump network (teacher at {np.round(mu, 3).tolist()}, s={s:g}, lam={lam:g})")


# ==============================================================================================
# 3. The particle system of a two-layer network: explicit and implicit (JKO) steps
# ==============================================================================================
def _problem_W(problem, W, name="W"):
    if not hasattr(problem, "grad_Psi") or not hasattr(problem, "risk"):
        raise ArgumentTypeError(f"problem must be an mflib.problems.Problem, got {type(problem).__name__}")
    return problem.check_weights(W, name)


def particle_explicit_step(problem, W, tau: float) -> np.ndarray:
    r"""Forward Euler for the particles: :math:`w_i \leftarrow w_i - \tau\nabla\Psi(w_i;\rho_N)`.

    :math:`\rho_N = \frac1N\sum_j\delta_{w_j}` is the current empirical measure; this is the mean
    drift of one-pass SGD with step :math:`\tau` (time :math:`t = k\tau`, DESIGN.md).

    Parameters
    ----------
    problem : mflib.problems.Problem
    W : array (N, d)
    tau : float > 0

    Returns
    -------
    array (N, d)
    """
    W = _problem_W(problem, W)
    tau = check_real(tau, "tau", low=0.0, low_open=True)
    return W - tau * problem.grad_Psi(W, W)


def particle_drift_jacobian(problem, W) -> np.ndarray:
    r"""Jacobian of the particle drift :math:`W\mapsto(\nabla\Psi(w_i;\rho_N))_i`, shape (N d, N d).

    Equal to :math:`\frac N2\nabla^2R_N(W)` (symmetric); by central differences of the exact
    :math:`\nabla\Psi` (step :math:`10^{-6}(1+|W|)`, error :math:`O(10^{-10})` relative). Near a
    stable equilibrium its largest eigenvalue :math:`\lambda_{\max}` sets the explicit stability
    limit :math:`\tau < 2/\lambda_{\max}`; the implicit step has no such limit where
    :math:`\nabla^2R_N\succeq0`.

    Parameters
    ----------
    problem : mflib.problems.Problem
    W : array (N, d)

    Returns
    -------
    array (N d, N d), symmetrised; rows and columns ordered as ``W.ravel()``.
    """
    W = _problem_W(problem, W)
    N, d = W.shape
    z = W.ravel()
    h = 1e-6 * (1.0 + float(np.max(np.abs(z))))
    Jac = np.empty((z.size, z.size))
    for j in range(z.size):             # one column per coordinate; each column is vectorised
        e = np.zeros(z.size)
        e[j] = h
        Wp, Wm = (z + e).reshape(N, d), (z - e).reshape(N, d)
        gp = problem.grad_Psi(Wp, Wp).ravel()      # the same object twice: rho_N is W itself
        gm = problem.grad_Psi(Wm, Wm).ravel()
        Jac[:, j] = (gp - gm) / (2.0 * h)
    return 0.5 * (Jac + Jac.T)


def particle_implicit_step(problem, W, tau: float, tol: float = 1e-8, max_iter: int = 200,
                           return_residual: bool = False, lam: float = 0.0):
    r"""Backward Euler for the particles = one JKO step of :math:`R/2` over empirical measures.

    With :math:`\rho = \frac1N\sum_i\delta_{w_i}` and :math:`\rho_k = \frac1N\sum_i\delta_{w_i^k}`,
    and an optimal identity matching (on the line: the particles keep their order; in dimension
    :math:`d\ge2`: the pairs :math:`\{(w_i^k, w_i)\}` are cyclically monotone, which
    :func:`mflib.transport.w2_squared` can check),
    :math:`W_2(\rho,\rho_k)^2 = \frac1N\sum_i|w_i-w_i^k|^2`, so the JKO step of
    :math:`F = R/2` (the functional whose Wasserstein gradient flow is
    :math:`\partial_t\rho = \nabla\cdot(\rho\nabla\Psi)` in the time :math:`t = k\varepsilon` of
    DESIGN.md; :math:`\delta R/\delta\rho = 2\Psi`) reads

    .. math::

        W^{k+1} = \operatorname*{arg\,min}_W\ \frac12 R_N(W) + \frac{1}{2\tau N}\sum_i|w_i - w_i^k|^2 .

    Since :math:`\nabla_{w_i}R_N = \frac2N\nabla\Psi(w_i;\rho_N)`, the Euler-Lagrange equations are
    the implicit particle step

    .. math::

        H_i(W) = w_i - w_i^k + \tau\,\nabla\Psi\big(w_i;\rho_N\big) = 0,\qquad i = 1..N,

    i.e. :math:`w_i^{k+1} = w_i^k - \tau\nabla\Psi(w_i^{k+1};\rho_N^{k+1})` (backward-Euler
    SGD). Inner solver, with the exact :math:`R_N` and :math:`\nabla\Psi` of the
    problem: the trust-region Newton-CG method (:func:`scipy.optimize.minimize`, ``"trust-ncg"``)
    on :math:`\Phi(W) = \frac{\tau N}{2}R_N(W) + \frac12\sum_i|w_i-w_i^k|^2` (gradient :math:`H`),
    Hessian-vector products by central differences of :math:`H`, started at :math:`W^k`. A
    trust-region method accepts only steps that decrease :math:`\Phi`, so the energy inequality
    :math:`R_N(W^{k+1})/2 + \frac{1}{2\tau N}\sum|w_i^{k+1}-w_i^k|^2 \le R_N(W^k)/2` holds (up to
    round-off). When round-off in :math:`\Phi` stops it early (:math:`R_N` is computed to about
    :math:`10^{-11}` when neurons are parallel), Newton-Krylov steps on :math:`H = 0` (MINRES on
    the same products, each accepted only if shorter than :math:`10^{-4}(1+\max|W^k|)`) finish. Converged when
    :math:`\max_{i,a}|H_{ia}| \le` ``tol`` :math:`\cdot(1 + \max|W^k|)`.

    ReLU potentials are not differentiable at :math:`w = 0`: if a particle is driven into the
    origin the step ends on the kink, where the Euler-Lagrange equation holds only for a
    subgradient, and a :class:`ConvergenceError` is raised.

    Parameters
    ----------
    problem : mflib.problems.Problem
    W : array (N, d)
        :math:`W^k`.
    tau : float > 0
    tol : float > 0
    max_iter : int
        Trust-region iterations.
    return_residual : bool
        Also return the final residual :math:`\max|H|`.
    lam : float >= 0
        Ridge: the step of :math:`\dot w_i = -\nabla\Psi(w_i;\rho_N) - \lambda w_i`, i.e.
        :math:`\Phi` gains :math:`\tau\lambda|W|^2/2` and :math:`H_i` gains :math:`\tau\lambda w_i`.

    Returns
    -------
    array (N, d), or (array, float) with ``return_residual``
    """
    from scipy.sparse.linalg import LinearOperator, minres

    Wk = _problem_W(problem, W)
    tau = check_real(tau, "tau", low=0.0, low_open=True)
    tol = check_real(tol, "tol", low=0.0, low_open=True)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    lam = check_real(lam, "lam", low=0.0)
    N, d = Wk.shape
    zk = Wk.ravel()
    scale = 1.0 + float(np.max(np.abs(Wk)))

    def phi(z):
        r = z - zk
        out = 0.5 * tau * N * problem.risk(z.reshape(N, d)) + 0.5 * (r @ r)
        return out + 0.5 * tau * lam * (z @ z) if lam else out

    def H(z):
        Wz = z.reshape(N, d)
        out = z - zk + tau * problem.grad_Psi(Wz, Wz).ravel()
        return out + (tau * lam) * z if lam else out

    def hessp(z, v):
        nv = np.linalg.norm(v)
        if nv == 0.0:
            return np.zeros_like(v)
        h = 1e-6 * (1.0 + np.linalg.norm(z)) / nv
        return (H(z + h * v) - H(z - h * v)) / (2.0 * h)

    try:
        with np.errstate(over="ignore", invalid="ignore"):
            res = minimize(phi, zk.copy(), jac=H, hessp=hessp, method="trust-ncg",
                           options={"gtol": 0.1 * tol * scale, "maxiter": max_iter})
    except ValueError as exc:       # scipy's "array must not contain infs or NaNs": overflow
        raise ConvergenceError(f"implicit particle step did not converge: the objective overflowed "
                               f"({exc}); try a smaller tau (now {tau:g})") from None
    z = res.x
    h = H(z)
    r = float(np.max(np.abs(h)))
    for _ in range(8):                          # Newton-Krylov polish of H(z) = 0
        if r <= tol * scale:
            break
        op = LinearOperator((z.size, z.size), matvec=lambda v, z=z: hessp(z, v), dtype=float)
        delta = minres(op, h, rtol=1e-10, maxiter=4 * z.size)[0]
        if not np.max(np.abs(delta)) <= 1e-4 * scale:
            break                               # a local refinement only, never a jump
        alpha = 1.0
        while alpha > 1e-3:
            z_new = z - alpha * delta
            h_new = H(z_new)
            r_new = float(np.max(np.abs(h_new)))
            if r_new < r:
                break
            alpha *= 0.5
        else:
            break
        z, h, r = z_new, h_new, r_new
    if not r <= tol * scale:
        raise ConvergenceError(f"implicit particle step did not converge: residual {r:.3g} > "
                               f"{tol * scale:.3g} ({res.message})")
    Wn = z.reshape(N, d)
    return (Wn, r) if return_residual else Wn


PARTICLE_SCHEMES = ("explicit", "implicit", "heun")


@dataclass
class ParticleFlow:
    r"""Output of :func:`particle_flow`.

    Attributes
    ----------
    t : array (K,)            record times :math:`k\tau` (every step by default)
    steps : array (K,)        record steps :math:`k`
    risk : array (K,)         exact population risk :math:`R_N(W^k)` (``inf`` after a blow-up)
    W : array (N, d)          final particles (the last finite ones if the run blew up)
    snapshots : array (K, N, d) or None   particles at the record steps (NaN after a blow-up)
    blew_up : bool            True if the run stopped on a divergence (``on_divergence="stop"``)
    scheme : str              ``"explicit"``, ``"implicit"`` or ``"heun"``
    """

    t: np.ndarray
    steps: np.ndarray
    risk: np.ndarray
    W: np.ndarray
    snapshots: np.ndarray | None = None
    blew_up: bool = False
    scheme: str = "implicit"


def particle_flow(problem, W0, tau: float, steps: int, scheme: str = "implicit",
                  lam: float = 0.0, record_every: int | None = None, n_records: int | None = None,
                  snapshots: bool = False, tol: float = 1e-8, on_divergence: str = "raise",
                  progress: bool | None = None) -> ParticleFlow:
    r"""The particle system :math:`\dot w_i = -\nabla\Psi(w_i;\rho_N) - \lambda w_i` with the
    exact population gradient (no data sampling, no reduction), ``steps`` steps of size
    :math:`\tau` (time :math:`t = k\tau`) by one of three schemes:

    * ``"explicit"``: forward Euler, :func:`particle_explicit_step`, the mean drift of one-pass
      SGD with step :math:`\tau` (first order; stable for :math:`\tau < 2/\lambda_{\max}`,
      :func:`particle_drift_jacobian`);
    * ``"implicit"``: backward Euler = one JKO step of :math:`R/2` per step,
      :func:`particle_implicit_step` (first order, no step limit where :math:`\nabla^2R_N\succeq0`);
    * ``"heun"``: Heun's method (explicit, second order): the "particle dynamics" of Mei,
      Misiakiewicz and Montanari, chapter 4's discretisation of the PDE independent of
      :class:`mflib.pde.GridSolver`.

    Parameters
    ----------
    problem : mflib.problems.Problem
    W0 : array (N, d)
        Initial particles (not modified).
    tau : float > 0
        Step; time :math:`t = k\tau`.
    steps : int >= 0
    scheme : {"implicit", "explicit", "heun"}
    lam : float >= 0
        Ridge :math:`\lambda` (the drift :math:`-\lambda w_i`; for ``"implicit"`` the proximal
        problem gains :math:`\tau\lambda|W|^2/2`). The recorded risk is :math:`R_N` without it.
    record_every, n_records : int, optional
        Record every ``record_every`` steps or on ``n_records`` uniform steps
        (:func:`mflib.runs.record_grid`); default: every step. 0 and ``steps`` always.
    snapshots : bool
        Keep the particles at the record steps.
    tol : float > 0
        Tolerance of the implicit step.
    on_divergence : {"raise", "stop"}
        When the particles become non-finite or leave :math:`|W| \le 10^6\max(1, |W^0|)`:
        raise :class:`mflib.runs.DivergenceError` (default), or stop the run and return what
        was recorded, with ``risk = inf`` (and NaN snapshots) from then on and ``blew_up=True``
        (chapter 5 plots such blow-ups of the explicit scheme).
    progress : bool or None
        Progress bar (:mod:`mflib.progress`).

    Returns
    -------
    ParticleFlow

    Raises
    ------
    mflib.runs.DivergenceError
        See ``on_divergence``; the message names the step and the time.
    ConvergenceError
        If an implicit step does not converge.
    """
    if scheme not in PARTICLE_SCHEMES:
        raise ValueError(f"scheme must be one of {PARTICLE_SCHEMES}, got {scheme!r}")
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence must be 'raise' or 'stop', got {on_divergence!r}")
    W = _problem_W(problem, W0, "W0").copy()
    tau = check_real(tau, "tau", low=0.0, low_open=True)
    steps = check_int(steps, "steps", minimum=0)
    lam = check_real(lam, "lam", low=0.0)
    tol = check_real(tol, "tol", low=0.0, low_open=True)
    if record_every is None and n_records is None:
        record_every = 1
    grid = _runs.record_grid(steps, record_every, n_records=n_records)
    bound = 1e6 * max(1.0, float(np.max(np.abs(W))))

    def velocity(V):
        v = -problem.grad_Psi(V, V)
        return v - lam * V if lam else v

    blew_up = False
    with _runs.Recorder(grid, tau, progress=progress, desc=f"{scheme} flow",
                        where=f"the {scheme} particle flow",
                        advice=f"try a smaller tau (now {tau:g}), e.g. {tau / 10:.3g}") as rec:
        try:
            for k0, k1 in rec.spans():
                for k in range(k0, k1):
                    if scheme == "implicit":
                        Wn = particle_implicit_step(problem, W, tau, tol=tol, lam=lam)
                    else:
                        with np.errstate(over="ignore", invalid="ignore"):
                            if scheme == "explicit":
                                Wn = W + tau * velocity(W)
                            else:
                                v1 = velocity(W)
                                Wp = W + tau * v1       # the predictor: checked like a step
                                rec.check(Wp, limit=bound, step=k + 1)
                                Wn = W + 0.5 * tau * (v1 + velocity(Wp))
                    rec.check(Wn, limit=bound, step=k + 1)
                    W = Wn
                    rec.tick()
                rec.record(risk=problem.risk(W), W=W if snapshots else None)
        except _runs.DivergenceError:
            if on_divergence == "raise":
                raise
            blew_up = True
    n, K = rec.recorded.size, grid.size
    risk = np.concatenate([rec.array("risk"), np.full(K - n, np.inf)])
    snaps = None
    if snapshots:
        snaps = np.concatenate([rec.array("W"), np.full((K - n,) + W.shape, np.nan)])
    return ParticleFlow(t=grid * tau, steps=grid, risk=risk, W=W, snapshots=snaps,
                        blew_up=blew_up, scheme=scheme)
