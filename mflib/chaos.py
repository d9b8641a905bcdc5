r"""Propagation of chaos for SGD with step sizes that scale with the width (chapter 7).

This module follows the parametrisation of De Bortoli, Durmus, Fontaine and Simsekli (2020),
``debortoli2020quantitative``, not the one of DESIGN.md; chapter 7 gives the translation. A particle
(neuron) is :math:`w\in\mathbb R^p` with :math:`p = C d`, read as :math:`C` rows
:math:`w^{(c)}\in\mathbb R^d`, and the feature map is

.. math::

    F(w, x) = \big(\sigma(\langle w^{(1)}, x\rangle), \dots, \sigma(\langle w^{(C)}, x\rangle)\big)
    \in\mathbb R^C, \qquad
    f_N(x) = \frac1N\sum_{k=1}^N F(w^{k}, x),

so the second layer is fixed to :math:`1/N` as in the paper; :math:`C = 1` is the scalar network
of DESIGN.md with :math:`\theta = w`, and :math:`C > 1` gives the vector output that a
multi-class cross-entropy needs. SGD with batch size :math:`M` is the paper's equation (2),

.. math::

    \begin{aligned}
    W_{n+1}^{1:N} &= W_n^{1:N} - \gamma N^\beta\,(n + \gamma_{\alpha,\beta}(N)^{-1})^{-\alpha}\,
    \nabla\hat{\mathcal R}^{N,M}(W_n^{1:N}),\\
    \gamma_{\alpha,\beta}(N) &= \gamma^{1/(1-\alpha)} N^{(\beta-1)/(1-\alpha)},
    \end{aligned}

with :math:`\hat{\mathcal R}^{N,M} = \frac1M\sum_{i}\ell(f_N(x_i), y_i) + \frac1N\sum_k V(w^k)`.

**Names in code.** The paper's letters keep their meaning in the formulas here, but two of them mean
something else elsewhere in mflib (DESIGN.md: one name, one meaning), so the arguments are named:
:math:`\gamma` (base step) is ``base_step``, :math:`\beta` (width exponent: the step grows like
:math:`N^\beta`) is ``width_exponent``; :math:`\alpha` (decay exponent) stays ``alpha`` and the
batch size :math:`M` stays ``M``. In :func:`mflib.sgd.run`, ``beta`` is the inverse temperature of
noisy SGD, and in :mod:`mflib.ntk`, ``gamma`` is the output scale.

One step lasts :math:`\gamma_{\alpha,\beta}(N)` units of mean-field time, so a horizon :math:`T`
takes :math:`n_T = \lfloor T/\gamma_{\alpha,\beta}(N)\rfloor` steps (:class:`Schedule`).

The continuous-time models are the particle system (6) and its limits, the mean-field ODE (7)
(:math:`\beta < 1`) and the McKean-Vlasov SDE (8) (:math:`\beta = 1`),

.. math::

    dW^{k}_t = (t+1)^{-\alpha}\Big\{h(W^k_t, \nu_t)\,dt
      + \big(\gamma_{\alpha,\beta}(N)/M\big)^{1/2}\,\Sigma^{1/2}(W^k_t,\nu_t)\,dB^k_t\Big\},

with the mean field :math:`h(w,\mu) = -\int \partial_1\ell(\mu[F(\cdot,x)], y)\,\nabla_w F(w,x)\,
d\pi - \nabla V(w)` and the covariance :math:`\Sigma(w,\mu) = \int\xi\xi^\top d\pi` of the noise
field :math:`\xi = -h - \partial_1\ell\,\nabla_w F - \nabla V` (:func:`field`). :func:`coupled`
simulates a family of particle systems and a much larger one that carries the limit law, coupled
synchronously (shared initial weights and Brownian increments), by Euler-Maruyama.

Everything is vectorised over neurons and over independent runs (a leading batch axis ``R``);
there is no Python loop over particles. The network itself (:math:`f_N`, its pre-activations and
the run axis) lives in :mod:`mflib.network` (:func:`mflib.network.vector_forward`; ``outputs`` here
is the same function). W2 distances come from :mod:`mflib.transport`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from . import activations as _act
from . import losses as _losses
from . import network as _network
from . import runs as _runs
from . import transport as _transport
from .validation import as_array, check_int, check_real, check_rng

BLOWUP = 1e6   # weights beyond this times their initial scale: divergence (as in mflib.sgd)
#: :func:`coupled`: particles beyond this times their initial scale (at least 1) are a divergence.
#: The systems it simulates move by O(1) over the horizons of chapter 7; an Euler-Maruyama step or
#: a noise amplitude too large for the dynamics throws particles far out first (a tanh unit then
#: saturates, its field vanishes and the particle stays there: finite, but wrong).
COUPLED_BLOWUP = 1e3

__all__ = [
    "Schedule", "time_step", "step_size", "n_steps",
    "outputs", "empirical_risk", "grad_risk",
    "sgd", "SGDRun", "field", "Field", "coupled", "Coupling", "euler_flow",
]


# ----------------------------------------------------------------------------------------------
# The step-size schedule of equation (2)
# ----------------------------------------------------------------------------------------------
def _check_ab(alpha, width_exponent):
    alpha = check_real(alpha, "alpha", low=0.0, high=1.0)
    if alpha == 1.0:
        raise ValueError("alpha must be in [0, 1): the time step base_step^(1/(1-alpha)) "
                         "N^((width_exponent-1)/(1-alpha)) is undefined at alpha = 1, got 1.0")
    width_exponent = check_real(width_exponent, "width_exponent", low=0.0, high=1.0)
    return alpha, width_exponent


@dataclass(frozen=True)
class Schedule:
    r"""The step sizes of the paper's equation (2) for a network of ``N`` neurons.

    Parameters
    ----------
    N : int >= 1
        Number of neurons.
    base_step : float > 0
        Base step :math:`\gamma`.
    alpha : float in [0, 1)
        Decay exponent of the steps (:math:`\alpha = 0`: constant steps).
    width_exponent : float in [0, 1]
        Width exponent :math:`\beta`: the SGD step grows like :math:`N^\beta`.
    M : int >= 1
        Batch size.

    Notes
    -----
    * ``dt`` :math:`= \gamma_{\alpha,\beta}(N) = \gamma^{1/(1-\alpha)}N^{(\beta-1)/(1-\alpha)}`,
      the mean-field time one step lasts;
    * ``step(n)`` :math:`= \gamma N^\beta (n + \gamma_{\alpha,\beta}(N)^{-1})^{-\alpha}`, the
      step applied to :math:`\nabla\hat{\mathcal R}^N` in (2);
    * ``mf_step(n)`` :math:`=` ``step(n) / N``, the step in front of the mean field in (3);
    * ``n_steps(T)`` :math:`= \lfloor T/\gamma_{\alpha,\beta}(N)\rfloor`;
    * ``noise`` :math:`= (\gamma_{\alpha,\beta}(N)/M)^{1/2}`, the diffusion prefactor of (6).
    """

    N: int
    base_step: float = 1.0
    alpha: float = 0.0
    width_exponent: float = 0.0
    M: int = 1

    def __post_init__(self):
        object.__setattr__(self, "N", check_int(self.N, "N", minimum=1))
        object.__setattr__(self, "base_step",
                           check_real(self.base_step, "base_step", low=0.0, low_open=True))
        alpha, width_exponent = _check_ab(self.alpha, self.width_exponent)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "width_exponent", width_exponent)
        object.__setattr__(self, "M", check_int(self.M, "M", minimum=1))

    @property
    def dt(self) -> float:
        r""":math:`\gamma_{\alpha,\beta}(N)`."""
        a = 1.0 / (1.0 - self.alpha)
        return self.base_step ** a * float(self.N) ** ((self.width_exponent - 1.0) * a)

    @property
    def noise(self) -> float:
        r""":math:`(\gamma_{\alpha,\beta}(N)/M)^{1/2}`."""
        return float(np.sqrt(self.dt / self.M))

    def step(self, n):
        r""":math:`\gamma N^\beta (n + \gamma_{\alpha,\beta}(N)^{-1})^{-\alpha}` for step index ``n >= 0``."""
        if isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 0:
            n = np.float64(n)                    # the per-step call of sgd: no array checks
        else:
            n = as_array(n, "n")
        if np.any(n < 0):
            raise ValueError("step index n must be >= 0")
        out = (self.base_step * float(self.N) ** self.width_exponent
               * (n + 1.0 / self.dt) ** (-self.alpha))
        return float(out) if out.ndim == 0 else out

    def mf_step(self, n):
        r"""``step(n) / N`` :math:`= \gamma N^{\beta-1}(n + \gamma_{\alpha,\beta}(N)^{-1})^{-\alpha}`."""
        return self.step(n) / self.N

    def n_steps(self, T: float) -> int:
        r""":math:`n_T = \lfloor T/\gamma_{\alpha,\beta}(N)\rfloor` (with a 1e-9 relative guard
        against round-off, so that ``T = 10 * dt`` gives 10 and not 9)."""
        T = check_real(T, "T", low=0.0)
        return int(np.floor(T / self.dt * (1.0 + 1e-9)))


def _suggest_base_step(sched: Schedule) -> float:
    r"""A tenth of the base step, and at most the one at which a step lasts one unit of mean-field
    time (:math:`\gamma = N^{1-\beta}`): the advice of a DivergenceError."""
    return min(sched.base_step / 10.0, float(sched.N) ** (1.0 - sched.width_exponent))


def time_step(N: int, base_step: float = 1.0, alpha: float = 0.0,
              width_exponent: float = 0.0) -> float:
    r""":math:`\gamma_{\alpha,\beta}(N) = \gamma^{1/(1-\alpha)} N^{(\beta-1)/(1-\alpha)}`
    (:math:`\gamma` = ``base_step``, :math:`\beta` = ``width_exponent``)."""
    return Schedule(N, base_step, alpha, width_exponent).dt


def step_size(n, N: int, base_step: float = 1.0, alpha: float = 0.0,
              width_exponent: float = 0.0):
    r"""The SGD step of (2), :math:`\gamma N^\beta (n + \gamma_{\alpha,\beta}(N)^{-1})^{-\alpha}`."""
    return Schedule(N, base_step, alpha, width_exponent).step(n)


def n_steps(T: float, N: int, base_step: float = 1.0, alpha: float = 0.0,
            width_exponent: float = 0.0) -> int:
    r""":math:`n_T = \lfloor T/\gamma_{\alpha,\beta}(N)\rfloor`."""
    return Schedule(N, base_step, alpha, width_exponent).n_steps(T)


# ----------------------------------------------------------------------------------------------
# Network, risk and gradients (vectorised over runs R, samples n, neurons N, outputs C)
# ----------------------------------------------------------------------------------------------
#: The network output :math:`f_N(x) = \frac1N\sum_k F(w^k, x)` (one home:
#: :func:`mflib.network.vector_forward`, which :mod:`mflib.network` documents).
outputs = _network.vector_forward


def _penalty_grad(penalty, W):
    if penalty is None:
        return None
    if callable(penalty):
        g = np.asarray(penalty(W), dtype=W.dtype)
        if g.shape != W.shape:
            raise ValueError(f"penalty(W) must return the gradient of V with W's shape {W.shape}, "
                             f"got {g.shape}")
        return g
    return penalty * W


def _check_penalty(penalty):
    if penalty is None or callable(penalty):
        return penalty
    lam = check_real(penalty, "penalty", low=0.0)
    return lam if lam > 0 else None


def _grad_core(X, y, W, C, act, loss, N_eff, weights=None):
    """Gradient of the data term of R_hat^{N} w.r.t. each neuron, for X (R, n, d), W (R, N, p)."""
    H = _network.vector_preactivations(X, W, C)           # (R, n, N, C)
    f = act.sigma(H).mean(axis=2)                          # (R, n, C)
    G = _losses.derivative(f, y, loss)                     # (R, n, C)
    if weights is None:
        G = G / X.shape[1]
    else:
        G = G * weights[None, :, None]
    A = act.dsigma(H) * G[:, :, None, :]                   # (R, n, N, C)
    R, n, N, _ = A.shape
    g = np.matmul(A.reshape(R, n, N * C).transpose(0, 2, 1), X)   # (R, N C, d)
    return g.reshape(R, N, -1) / N_eff, f


def _grad_independent(Xb, yb, W, C, act, loss):
    """Neuron k's gradient on its own batch Xb[:, k] (R, N, M, d), the network using all neurons."""
    R, N, M, d = Xb.shape
    H = _network.vector_preactivations(Xb.reshape(R, N * M, d), W, C)
    f = act.sigma(H).mean(axis=2)                                          # (R, N M, C)
    G = _losses.derivative(f.reshape(R, N, M, C), yb, loss) / M            # (R, N, M, C)
    Hk = np.einsum("rkmd,rkcd->rkmc", Xb, W.reshape(R, N, C, d))           # own pre-activations
    A = act.dsigma(Hk) * G
    return np.einsum("rkmc,rkmd->rkcd", A, Xb).reshape(R, N, C * d) / N


@njit(cache=True)
def _relu_sum(H, C, f):
    """f[m, c] = sum_k relu(H[m, k C + c]) in one read of H (M, N C); float64 accumulation."""
    M, NC = H.shape
    L = 16 * C                               # 16 neurons at a time: the inner loop vectorises
    J = NC - NC % L
    acc = np.zeros(L)
    for m in range(M):
        acc[:] = 0.0
        h = H[m]
        for j0 in range(0, J, L):
            for i in range(L):
                v = h[j0 + i]
                if v > 0:
                    acc[i] += v
        for j in range(J, NC):
            v = h[j]
            if v > 0:
                acc[j - J] += v
        for c in range(C):
            f[m, c] = acc[c::C].sum()


@njit(cache=True)
def _relu_backward(H, G):
    """H[m, k C + c] <- 1{H > 0} G[m, c] in place (relu' times the scaled loss derivative)."""
    M, NC = H.shape
    C = G.shape[1]
    row = np.empty(NC, dtype=H.dtype)        # G[m] tiled along the row: the select vectorises
    zero = H.dtype.type(0)
    for m in range(M):
        for j in range(0, NC, C):
            row[j:j + C] = G[m]
        h = H[m]
        for j in range(NC):
            h[j] = row[j] if h[j] > zero else zero


class _Step:
    r"""One in-place SGD step of :func:`sgd` (all neurons on one batch), at the matrix-product limit.

    Per run, the step is two large products: the forward one :math:`H = X_b W^\top` (``M`` by
    ``N C``, into a buffer allocated once) and the weight update
    :math:`W \mathrel{+}= -\frac{\text{lr}}{N_{\text{eff}}}\,A^\top X_b`, a BLAS ``gemm`` with
    ``beta = 1`` that writes into ``W`` itself, so no ``(N, p)`` temporary is ever formed. The scale
    is folded into the small ``(M, C)`` array :math:`\partial_1\ell/M`, and for ReLU the
    elementwise work is two compiled passes over ``H`` (the sum of :math:`\sigma(H)` over neurons,
    read only, then :math:`\sigma'(H)` times the scaled loss derivative, in place). Results
    equal :func:`_grad_core` followed by ``W -= lr * g`` up to round-off.
    """

    def __init__(self, W, M: int, C: int, act, loss: str, N_eff: int):
        from scipy.linalg import blas as _blas

        R, N, p = W.shape
        self.R, self.N, self.C, self.d = R, N, C, p // C
        self.act, self.loss, self.N_eff = act, loss, N_eff
        self.H = np.empty((R, M, N * C), dtype=W.dtype)
        self.gemm = _blas.get_blas_funcs("gemm", dtype=W.dtype)

    def __call__(self, W, Xb, yb, lr, penalty=None):
        """Update ``W`` (R, N, p) in place with the batch ``Xb`` (R, M, d), ``yb``; return ``W``."""
        R, N, C, d = self.R, self.N, self.C, self.d
        M = Xb.shape[1]
        H = self.H
        for r in range(R):                      # H^T = W X_b^T, by the same BLAS as the update
            Ht = self.gemm(1.0, W[r].reshape(N * C, d).T, Xb[r].T, trans_a=1, c=H[r].T,
                           overwrite_c=True)
            if not np.shares_memory(Ht, H):     # pragma: no cover - f2py copied: write it back
                H[r] = Ht.T
        H4 = H.reshape(R, M, N, C)
        relu = self.act is _act.relu
        if relu:                                # one read of H, no temporary
            f = np.empty((R, M, C), dtype=W.dtype)
            for r in range(R):
                _relu_sum(H[r], C, f[r])
            f /= N
        else:
            f = self.act.sigma(H4).mean(axis=2)
        G = _losses.derivative(f, yb, self.loss) / M                        # (R, M, C)
        G *= W.dtype.type(-lr / self.N_eff)
        if relu:                                # sigma'(h) G = 1{h > 0} G, in place
            for r in range(R):
                _relu_backward(H[r], G[r])
            A = H
        else:
            A = (self.act.dsigma(H4) * G[:, :, None, :]).reshape(R, M, N * C).astype(W.dtype)
        gv = _penalty_grad(penalty, W) if callable(penalty) else None
        if penalty is not None and gv is None:
            W *= W.dtype.type(1.0 - lr * penalty / self.N_eff)
        elif gv is not None:
            gv *= W.dtype.type(lr / self.N_eff)
            W -= gv
        for r in range(R):
            Wt = W[r].reshape(N * C, d).T                                    # (d, N C), Fortran order
            out = self.gemm(1.0, Xb[r].T, A[r].T, beta=1.0, c=Wt, trans_b=1, overwrite_c=True)
            if not np.shares_memory(out, W):    # pragma: no cover - f2py copied: write it back
                Wt[...] = out
        return W


def empirical_risk(X, y, W, loss: str = "squared", activation="relu", penalty=None,
                   weights=None) -> np.ndarray | float:
    r""":math:`\hat{\mathcal R}^N(w^{1:N}) = \sum_i \pi_i\,\ell(f_N(x_i), y_i) + \frac1N\sum_k V(w^k)`.

    ``weights`` :math:`\pi_i` default to :math:`1/n`. ``penalty`` is a ridge coefficient
    :math:`\lambda` (:math:`V(w) = \lambda|w|^2/2`) or None; a callable penalty has no value here
    (only its gradient is known), so it is rejected.

    Returns a float for W (N, p) and an array (R,) for W (R, N, p).
    """
    loss, act, X, y, W3, batched, C, w = _risk_args(X, y, W, loss, activation, weights)
    f = act.sigma(_network.vector_preactivations(X[None], W3, C)).mean(axis=2)
    r = (_losses.per_sample(f, y, loss) * w).sum(axis=-1)
    if callable(penalty):
        raise ValueError("empirical_risk needs a ridge coefficient (float) as penalty, not a callable")
    lam = _check_penalty(penalty)
    if lam:
        r = r + 0.5 * lam * (W3 ** 2).sum(axis=(1, 2)) / W3.shape[1]
    return r if batched else float(r[0])


def grad_risk(X, y, W, loss: str = "squared", activation="relu", penalty=None,
              weights=None) -> np.ndarray:
    r""":math:`\nabla_{w^k}\hat{\mathcal R}^N`, shape of ``W`` ((N, p) or (R, N, p)).

    .. math::

        \begin{aligned}
        \nabla_{w^k}\hat{\mathcal R}^N &= \frac1N\Big(\sum_i \pi_i\,\partial_1\ell(f_N(x_i), y_i)
        \cdot\nabla_w F(w^k, x_i) + \nabla V(w^k)\Big),\\
        \nabla_{w^{(c)}} F_c(w, x) &= \sigma'(\langle w^{(c)}, x\rangle)\,x,
        \end{aligned}

    computed as one batched matrix product. Multiplying by :math:`-N` gives the mean field
    :math:`h(w^k, \nu^N)` when :math:`\pi` is the data distribution (see :func:`field`).
    """
    loss, act, X, y, W3, batched, C, w = _risk_args(X, y, W, loss, activation, weights)
    g, _ = _grad_core(X[None], y, W3, C, act, loss, W3.shape[1], weights=w)
    gv = _penalty_grad(_check_penalty(penalty), W3)
    if gv is not None:
        g = g + gv / W3.shape[1]
    return g if batched else g[0]


def _risk_args(X, y, W, loss, activation, weights):
    """Checked arguments of :func:`empirical_risk` and :func:`grad_risk`."""
    loss = _losses.check_loss(loss)
    act = _act.get(activation)
    X = as_array(X, "X", ndim=2)
    W3, batched = _network.as_runs(W)
    C = _network.n_outputs(W3.shape[2], X.shape[1])
    y = _losses.check_targets(y, X.shape[0], loss, C)
    return loss, act, X, y, W3, batched, C, _data_weights(weights, X.shape[0])


def _data_weights(weights, n):
    if weights is None:
        return np.full(n, 1.0 / n)
    w = as_array(weights, "weights", shape=(n,))
    if np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError("weights must be non-negative and sum to 1 (a probability vector on the data)")
    return w


# ----------------------------------------------------------------------------------------------
# SGD with the schedule of equation (2)
# ----------------------------------------------------------------------------------------------
@dataclass
class SGDRun:
    r"""Output of :func:`sgd`.

    Attributes
    ----------
    W : array (R, N, p)              weights after ``n_T`` steps (or (N, p) without a run axis)
    schedule : Schedule              the schedule (with the effective width ``N * n_copies``)
    n_T : int                        number of steps taken
    t : array (K,)                   mean-field times ``n * dt`` of the snapshots
    snapshots : array (K, R, N, p) or None
    W_avg : array like W, or None    :math:`(n_T - n_0 + 1)^{-1}\sum_{n=n_0}^{n_T} W_n`
    """

    W: np.ndarray
    schedule: Schedule
    n_T: int
    t: np.ndarray
    snapshots: np.ndarray | None = None
    W_avg: np.ndarray | None = None


def sgd(W0, X, y, *, base_step: float = 1.0, alpha: float = 0.0, width_exponent: float = 0.0,
        M: int = 1, T: float | None = None, steps: int | None = None, loss: str = "squared",
        activation="relu", penalty=None, rng: np.random.Generator | None = None,
        n_copies: int = 1, independent: bool = False, record_every: int | None = None,
        average_from: int | None = None, dtype=np.float64, progress: bool | None = None) -> SGDRun:
    r"""SGD of equation (2) on the empirical distribution of ``(X, y)``, for ``R`` runs at once.

    Each step draws, independently for each run, a batch of ``M`` indices uniformly with
    replacement (i.i.d. samples from :math:`\pi = \frac1n\sum_i\delta_{(x_i, y_i)}`) and updates

    .. math::

        \begin{aligned}
        w^k &\leftarrow w^k - \gamma N^{\beta-1}(n + \gamma_{\alpha,\beta}(N)^{-1})^{-\alpha}\\
        &\qquad {}\times\Big(\frac1M\sum_{i\in\text{batch}}\partial_1\ell(f_N(x_i), y_i)
        \cdot\nabla_w F(w^k, x_i) + \nabla V(w^k)\Big).
        \end{aligned}

    Parameters
    ----------
    W0 : array, shape (N, p) or (R, N, p)
        Initial neurons (``p = C d``); a leading axis stacks ``R`` independent runs. Not modified.
    X : array, shape (n, d)
        Data points (the support of :math:`\pi`).
    y : array
        Targets: (n,) or (n, C) for ``"squared"``, integer labels (n,) for ``"cross_entropy"``.
    base_step, alpha, width_exponent, M
        The schedule (:class:`Schedule`): base step :math:`\gamma`, decay exponent
        :math:`\alpha` in [0, 1), width exponent :math:`\beta` in [0, 1], batch size >= 1.
    T, steps : float or int
        Horizon in mean-field time (:math:`n_T = \lfloor T/\gamma_{\alpha,\beta}(N)\rfloor`) or a
        number of steps; exactly one of them.
    loss : {"squared", "cross_entropy"}
    activation : str or Activation
    penalty : float >= 0, callable or None
        Ridge coefficient :math:`\lambda` (:math:`V(w) = \lambda|w|^2/2`) or a function returning
        :math:`\nabla V` with the shape of its argument.
    rng : numpy.random.Generator
        Draws the batches only (the initial weights are ``W0``), so two calls with the same seed
        see the same data stream.
    n_copies : int >= 1
        Each row of ``W0`` stands for ``n_copies`` identical neurons: identical neurons receive
        identical updates and stay identical, so a network of :math:`N = N_0 \cdot` ``n_copies``
        neurons started from ``N_0`` distinct rows is simulated at the cost of ``N_0``.
    independent : bool
        False (SGD): all neurons of a run see the same batch. True: an ablation, *not* SGD, in
        which every neuron draws its own batch of ``M`` points (the network is still evaluated
        with all neurons), so that the noise is independent across neurons like the Brownian
        motions of (6). Costs :math:`O(N^2 M)` per step: for small problems.
    record_every : int, optional
        Keep a snapshot of all weights every ``record_every`` steps (and at 0 and ``n_T``).
    average_from : int, optional
        Also return the average of :math:`W_n` over :math:`n_0 \le n \le n_T` (``n_0`` given).
    dtype : numpy float type
        ``np.float64`` (default) or ``np.float32`` (about twice as fast for wide networks).
    progress : bool or None

    Returns
    -------
    SGDRun

    Raises
    ------
    mflib.runs.DivergenceError
        If the weights become non-finite or exceed :data:`BLOWUP` times their initial scale
        (checked every 256 steps and at the records; the message names the step and suggests a
        base_step).
    """
    loss = _losses.check_loss(loss)
    act = _act.get(activation)
    rng = check_rng(rng)
    X = as_array(X, "X", ndim=2, dtype=dtype)          # read in dtype: no float64 detour
    W, batched = _network.as_runs(W0, "W0", dtype=dtype)
    W = W.astype(dtype, copy=True)
    n, d = X.shape
    if n == 0:
        raise ValueError("X must hold at least one data point")
    C = _network.n_outputs(W.shape[2], d, "W0")
    y = _losses.check_targets(y, n, loss, C, dtype)
    n_copies = check_int(n_copies, "n_copies", minimum=1)
    if independent and n_copies > 1:
        raise ValueError("independent=True gives each neuron its own batch, so copies would not stay "
                         "identical: use n_copies=1")
    R, N0, p = W.shape
    sched = Schedule(N0 * n_copies, base_step, alpha, width_exponent, M)
    if (T is None) == (steps is None):
        raise ValueError("give exactly one of T (mean-field time) and steps")
    n_T = sched.n_steps(T) if T is not None else check_int(steps, "steps", minimum=0)
    if T is not None and n_T == 0 and T > 0:
        raise ValueError(f"T = {T:g} is shorter than one step (one step lasts gamma_(alpha,beta)(N) = "
                         f"{sched.dt:.4g} of mean-field time with base_step = {base_step:g}): no step "
                         f"would be taken; increase T or decrease base_step")
    penalty = _check_penalty(penalty)
    if record_every is not None:
        record_every = check_int(record_every, "record_every", minimum=1)
    if average_from is not None:
        average_from = check_int(average_from, "average_from", minimum=0, maximum=n_T)
    W_sum = np.zeros_like(W) if average_from is not None else None
    chunk = 256
    idx_all = None
    if not independent:
        step = _Step(W, M, C, act, loss, sched.N)
        Xb = np.empty((R, M, d), dtype=X.dtype)
    grid = _runs.record_grid(n_T, record_every)
    limit = BLOWUP * max(float(np.abs(W).max()), 1.0)
    with np.errstate(over="ignore", invalid="ignore"), \
            _runs.Recorder(grid, sched.dt, progress=progress, desc="SGD", threads=1,
                        where="SGD (De Bortoli et al.'s schedule)",
                        advice=f"try a smaller base_step (now {base_step:g}), e.g. "
                               f"{_suggest_base_step(sched):.3g}") as rec:
        for k0, k1 in rec.spans():
            for k in range(k0, k1):
                if W_sum is not None and k >= average_from:
                    W_sum += W
                if k % chunk == 0:
                    rec.check(W, step=k, limit=limit)
                    shape = ((min(chunk, n_T - k), R, N0, M) if independent
                             else (min(chunk, n_T - k), R, M))
                    idx_all = rng.integers(0, n, size=shape)
                idx = idx_all[k % chunk]
                lr = dtype(sched.step(k))
                if independent:
                    g = _grad_independent(X[idx], y[idx], W, C, act, loss)
                    if penalty is not None:
                        g += _penalty_grad(penalty, W) / sched.N
                    W -= lr * g
                else:                            # in place, at the matrix-product limit
                    step(W, np.take(X, idx, axis=0, out=Xb), y[idx], lr, penalty)
                rec.tick()
            rec.check(W, limit=limit)
            rec.record(W=W if record_every is not None else None)
    if W_sum is not None:
        W_sum += W                               # the last iterate n_T (n_T >= average_from)
    W_avg = W_sum / (n_T - average_from + 1) if W_sum is not None else None
    unbatch = (lambda A: A) if batched else (lambda A: A[0])
    snap = rec.array("W")
    t = rec.t if snap is not None else np.array([])
    if snap is not None and not batched:
        snap = snap[:, 0]
    return SGDRun(W=unbatch(W), schedule=sched, n_T=n_T, t=t,
                  snapshots=snap, W_avg=unbatch(W_avg) if W_avg is not None else None)


# ----------------------------------------------------------------------------------------------
# The mean field h and the noise covariance Sigma
# ----------------------------------------------------------------------------------------------
@dataclass
class Field:
    r""":math:`h(w^k,\mu)` (P, p), :math:`\Sigma(w^k,\mu)` (P, p, p) and the outputs
    :math:`\mu[F(\cdot, x_i)]` (n, C) used to compute them."""

    h: np.ndarray
    Sigma: np.ndarray
    f: np.ndarray


def _field_packed(W, starts, sizes, block, X, y, w, C, act, loss, penalty, unbiased):
    r"""h and Sigma for particles W (P, p) whose measures are the blocks [starts, starts + sizes).

    With :math:`A_{kci} = \partial_1\ell_c(f(x_i), y_i)\,\sigma'(\langle w^{k,(c)}, x_i\rangle)` the
    gradient sample is :math:`g_{ki} = (A_{kci} x_i)_c`; its mean and second moment are matrix
    products with :math:`X` and with the rows :math:`x_i\otimes x_i`, so no (P, n, p) array is formed.
    """
    P, p = W.shape
    n, d = X.shape
    H = (W.reshape(P * C, d) @ X.T).reshape(P, C, n)
    S = act.sigma(H)
    f = np.add.reduceat(S, starts, axis=0) / sizes[:, None, None]              # (B, C, n)
    G = _losses.derivative(f.transpose(0, 2, 1), y, loss).transpose(0, 2, 1)   # (B, C, n)
    if act is _act.tanh:                     # tanh' = 1 - tanh^2 spares a transcendental
        A = 1.0 - S * S
    else:
        A = act.dsigma(H)
    A *= G[block]                                                              # (P, C, n)
    Aw = A * w
    mean = (Aw @ X).reshape(P, p)                                              # E[g]
    XX = (X[:, :, None] * X[:, None, :]).reshape(n, d * d)
    second = ((A[:, :, None, :] * Aw[:, None, :, :]) @ XX).reshape(P, C, C, d, d)
    Sigma = second.transpose(0, 1, 3, 2, 4).reshape(P, p, p) - mean[:, :, None] * mean[:, None, :]
    if unbiased:
        Sigma *= n / (n - 1.0)
    h = -mean
    gv = _penalty_grad(penalty, W)
    if gv is not None:
        h = h - gv
    return h, Sigma, f


def field(W, X, y, measure=None, weights=None, loss: str = "squared", activation="relu",
          penalty=None) -> Field:
    r"""The mean field :math:`h(w,\mu)` and noise covariance :math:`\Sigma(w,\mu)` at the rows of ``W``.

    .. math::

        \begin{aligned}
        h(w,\mu) &= -\int \partial_1\ell(\mu[F(\cdot,x)], y)\cdot\nabla_w F(w,x)\,d\pi(x,y) - \nabla V(w),\\
        \Sigma(w,\mu) &= \int \xi\,\xi^\top d\pi,\qquad
        \xi = -h - \partial_1\ell\cdot\nabla_w F - \nabla V,
        \end{aligned}

    with :math:`\mu` the uniform measure on the rows of ``measure`` (default: on ``W`` itself).

    Parameters
    ----------
    W : array, shape (P, p)
        Points where the fields are evaluated.
    X, y : arrays, shapes (n, d) and (n,) / (n, C) / labels (n,)
        Either the support of :math:`\pi` (give ``weights``) or an i.i.d. sample of size
        :math:`n \ge 2` from :math:`\pi` (``weights=None``: the integral becomes the sample mean
        and :math:`\Sigma` the unbiased sample covariance, :math:`n/(n-1)` times the plug-in).
    measure : array, shape (L, p), optional
        Atoms of :math:`\mu`.
    weights : array, shape (n,), optional
        Probabilities :math:`\pi_i` of the data points (exact integrals).
    loss, activation, penalty
        As in :func:`sgd`.

    Returns
    -------
    Field
        ``h`` (P, p), ``Sigma`` (P, p, p), ``f`` (n, C) :math:`= \mu[F(\cdot, x_i)]`.

    Notes
    -----
    Memory is :math:`O(P n p)`: meant for small :math:`p` (the low-dimensional problems whose
    limits are simulated), not for images.
    """
    loss = _losses.check_loss(loss)
    act = _act.get(activation)
    X = as_array(X, "X", ndim=2)
    W = as_array(W, "W", ndim=2)
    n, d = X.shape
    C = _network.n_outputs(W.shape[1], d)
    y = _losses.check_targets(y, n, loss, C)
    mu = W if measure is None else as_array(measure, "measure", ndim=2)
    if mu.shape[1] != W.shape[1] or mu.shape[0] == 0:
        raise ValueError(f"measure must have shape (L, {W.shape[1]}) with L >= 1, got {mu.shape}")
    if weights is None:
        if n < 2:
            raise ValueError("a sample of at least n = 2 data points is needed to estimate Sigma")
        w, unbiased = np.full(n, 1.0 / n), True
    else:
        w, unbiased = _data_weights(weights, n), False
    penalty = _check_penalty(penalty)
    Wall = np.concatenate([mu, W])
    P = Wall.shape[0]
    starts = np.array([0, mu.shape[0]])
    sizes = np.array([mu.shape[0], W.shape[0]])
    block = np.zeros(P, dtype=np.int64)          # every point sees the measure mu (block 0)
    h, Sigma, f = _field_packed(Wall, starts, sizes, block, X, y, w, C, act, loss, penalty, unbiased)
    L = mu.shape[0]
    return Field(h=h[L:], Sigma=Sigma[L:], f=f[0].T)


# ----------------------------------------------------------------------------------------------
# Synchronous coupling of particle systems with their limit (Euler-Maruyama)
# ----------------------------------------------------------------------------------------------
@dataclass
class Coupling:
    r"""Output of :func:`coupled`.

    Attributes
    ----------
    N : array (K,)              sizes of the particle systems
    sup_sq : array (K, R)       per system: the mean over its particles of
                                :math:`\sup_{t\le T}|W^{k,N}_t - W^{k,*}_t|^2`
    t : array (S+1,)            Euler-Maruyama times
    mean_sq : array (K, S+1)    :math:`E|W^{k,N}_t - W^{k,*}_t|^2` along time (mean over runs and particles)
    W_limit : array (L, p)      the limit system at time T (its law approximates :math:`\lambda^*_T`)
    W_N : list of arrays (R, N, p)   the particle systems at time T
    index : list of arrays (R, N)    which limit particles each system is coupled to
    sup_sq_frozen : array (K, R) or None
        with ``frozen=True``: per system, the mean over its particles of
        :math:`\sup_{t\le T}|W^{k,N}_t - \tilde W^{k,N}_t|^2`, where :math:`\tilde W^{k,N}`
        has the same initial weight, Brownian increments and noise amplitude as :math:`W^{k,N}`
        but is driven by the limit law instead of :math:`\nu^N_t` (no interaction)
    W_frozen : list of arrays (R, N, p) or None   the non-interacting copies at time T
    """

    N: np.ndarray
    sup_sq: np.ndarray
    t: np.ndarray
    mean_sq: np.ndarray
    W_limit: np.ndarray
    W_N: list
    index: list
    sup_sq_frozen: np.ndarray | None = None
    W_frozen: list | None = None


def coupled(W0, Ns, runs: int, X, y, *, base_step: float = 1.0, alpha: float = 0.0,
            width_exponent: float = 0.0, M: int = 1, T: float = 1.0, dt: float = 0.01,
            weights=None, batch: int | None = None,
            noise: bool = True, loss: str = "squared", activation="tanh", penalty=None,
            frozen: bool = False,
            rng: np.random.Generator | None = None, progress: bool | None = None) -> Coupling:
    r"""Particle systems (6) of sizes ``Ns`` coupled synchronously with their mean-field limit.

    The limit law is carried by a large system of :math:`L` particles started at the rows of
    ``W0``: for :math:`\beta < 1` it follows the ODE (7) (no noise), for :math:`\beta = 1` the
    SDE (8), whose noise amplitude :math:`(\gamma^{1/(1-\alpha)}/M)^{1/2}` does not depend on the
    width. Run ``r`` of the system of size :math:`N` is made of the limit particles
    :math:`r N_{\max} + \{0,\dots,N-1\}`: same initial weights and same Brownian increments, but
    its drift and covariance use its own empirical measure :math:`\nu^N_t` and its noise has the
    amplitude :math:`(\gamma_{\alpha,\beta}(N)/M)^{1/2}` of (6). Everything is advanced together
    by Euler-Maruyama with step ``dt``,

    .. math::

        \begin{aligned}
        W_{t+dt} &= W_t + (t+1)^{-\alpha}\big\{h(W_t,\mu_t)\,dt + a\,\Sigma^{1/2}(W_t,\mu_t)\,
        \Delta B\big\},\\
        \Delta B &\sim\mathcal N(0, dt\,I_p),
        \end{aligned}

    and :math:`\sup_{t\le T}|W^{k,N}_t - W^{k,*}_t|^2` is tracked on the time grid.

    Parameters
    ----------
    W0 : array, shape (L, p)
        Initial weights of the limit system (i.i.d. from :math:`\mu_0`); needs
        ``L >= runs * max(Ns)``.
    Ns : sequence of int
        Sizes of the particle systems.
    runs : int >= 1
        Independent copies of each particle system (disjoint sets of limit particles).
    X, y : arrays
        The data: support of :math:`\pi` with ``weights`` (default uniform), exact integrals.
    base_step, alpha, width_exponent, M
        The schedule (:math:`\gamma`, :math:`\alpha`, :math:`\beta`, :math:`M`, as in
        :func:`sgd`); ``M`` enters only through the noise amplitude.
    T, dt : float
        Horizon and Euler-Maruyama step.
    batch : int, optional
        Estimate :math:`h` and :math:`\Sigma` at each step from a fresh batch of this many i.i.d.
        data points (shared by all systems, so that the estimation error is common to both sides
        of the coupling) instead of the exact integrals.
    noise : bool
        False drops the diffusion everywhere (the :math:`M\to\infty` limit of (6)).
    loss, activation, penalty
        As in :func:`sgd` (default activation ``"tanh"``, smooth as the theorems assume).
    frozen : bool
        Also simulate, for every system, the *non-interacting* copies :math:`\tilde W^{k,N}`: the
        same initial weights, Brownian increments and noise amplitude as the system's particles,
        but drift and covariance taken at the limit law (the large system) instead of the
        system's own :math:`\nu^N_t`. Then :math:`W^{k,N} - \tilde W^{k,N}` is the error due to
        the interaction alone (``Coupling.sup_sq_frozen``), which the injected noise does not
        set by construction. Costs one more particle per system particle.
    rng : numpy.random.Generator
        Brownian increments (and batches).
    progress : bool or None

    Returns
    -------
    Coupling

    Raises
    ------
    mflib.runs.DivergenceError
        If the particles become non-finite or exceed :data:`COUPLED_BLOWUP` times their initial
        scale (at least 1), checked every step. The message names the step and time and suggests
        a smaller ``base_step`` when the noise variance per unit time
        :math:`\gamma_{\alpha,\beta}(N)/M` exceeds 1 (the value that brings it to 1), else a
        tenth of ``dt``.
    """
    loss = _losses.check_loss(loss)
    act = _act.get(activation)
    rng = check_rng(rng)
    X = as_array(X, "X", ndim=2)
    W0 = as_array(W0, "W0", ndim=2)
    n, d = X.shape
    L, p = W0.shape
    C = _network.n_outputs(p, d, "W0")
    y = _losses.check_targets(y, n, loss, C)
    w = _data_weights(weights, n)
    Ns = np.array([check_int(int(N) if isinstance(N, np.integer) else N, "Ns[i]", minimum=1)
                   for N in np.atleast_1d(Ns)], dtype=np.int64)
    if Ns.size == 0:
        raise ValueError("Ns must hold at least one size")
    runs = check_int(runs, "runs", minimum=1)
    alpha, width_exponent = _check_ab(alpha, width_exponent)
    base_step = check_real(base_step, "base_step", low=0.0, low_open=True)
    M = check_int(M, "M", minimum=1)
    T = check_real(T, "T", low=0.0)
    dt = check_real(dt, "dt", low=0.0, low_open=True)
    if batch is not None:
        batch = check_int(batch, "batch", minimum=2)
    penalty = _check_penalty(penalty)
    if not isinstance(frozen, bool | np.bool_):
        raise TypeError(f"frozen must be True or False, got {type(frozen).__name__}")
    Nmax = int(Ns.max())
    if L < runs * Nmax:
        raise ValueError(f"W0 must have at least runs * max(Ns) = {runs * Nmax} rows, got L = {L}")

    # Packed layout: block 0 = limit system, then runs blocks for each N (then, with frozen, one
    # block of non-interacting copies, whose particles are driven by block 0's measure).
    index = [np.arange(runs)[:, None] * Nmax + np.arange(N)[None, :] for N in Ns]
    n_tag = runs * int(Ns.sum())
    gidx = np.concatenate([np.arange(L)] + [ix.ravel() for ix in index])
    sizes = np.concatenate([[L], np.repeat(Ns, runs)])
    block = np.repeat(np.arange(sizes.size), sizes)
    amp_lim = (np.sqrt(base_step ** (1.0 / (1.0 - alpha)) / M)
               if (width_exponent == 1.0 and noise) else 0.0)
    amp_N = np.array([Schedule(int(N), base_step, alpha, width_exponent, M).noise if noise else 0.0
                      for N in Ns])
    amp = np.concatenate([[amp_lim], np.repeat(amp_N, runs)])[block]
    if frozen:
        gidx = np.concatenate([gidx, gidx[L:]])
        amp = np.concatenate([amp, amp[L:]])
        block = np.concatenate([block, np.zeros(n_tag, dtype=block.dtype)])
        sizes = np.concatenate([sizes, [n_tag]])          # a measure of its own, never used
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    W = W0[gidx].copy()
    tagged = slice(L, L + n_tag)
    copies = slice(L + n_tag, L + 2 * n_tag)
    steps = int(np.ceil(T / dt * (1.0 - 1e-12)))
    tgrid = np.minimum(np.arange(steps + 1) * dt, T)
    part_block = np.repeat(np.arange(Ns.size), runs * Ns)          # system index of each tagged particle
    run_id = np.concatenate([np.repeat(np.arange(runs), N) for N in Ns])
    sup = np.zeros(n_tag)
    sup_frozen = np.zeros(n_tag) if frozen else None
    counts = runs * Ns
    mean_now = np.zeros(Ns.size)
    limit = COUPLED_BLOWUP * max(float(np.abs(W0).max()), 1.0)
    var_per_time = float(np.max(amp) ** 2)                 # gamma_(alpha,beta)(N) / M, largest
    if var_per_time > 1.0:
        # the base step at which gamma_(alpha,beta)(min N) / M = 1
        good = M ** (1.0 - alpha) * float(Ns.min()) ** (1.0 - width_exponent)
        if width_exponent == 1.0:
            good = M ** (1.0 - alpha)
        advice = (f"try a smaller base_step (now {base_step:g}): the noise variance per unit time "
                  f"gamma_(alpha,beta)(N)/M reaches {var_per_time:.3g}; e.g. base_step = {good:.3g} "
                  f"brings it to 1")
    else:
        advice = f"try a smaller dt (now {dt:g}), e.g. {dt / 10:.3g}"
    with _runs.Recorder(np.arange(steps + 1), times=tgrid, progress=progress,
                        desc="Euler-Maruyama", threads=1, where="the coupled particle systems",
                        advice=advice) as rec:
        for k0, k1 in rec.spans():
            for s in range(k0, k1):
                h_dt = tgrid[s + 1] - tgrid[s]
                if batch is None:
                    Xs, ys, ws, unb = X, y, w, False
                else:
                    ib = rng.choice(n, size=batch, p=w)
                    Xs, ys, ws, unb = X[ib], y[ib], np.full(batch, 1.0 / batch), True
                h, Sigma, _ = _field_packed(W, starts, sizes, block, Xs, ys, ws, C, act, loss,
                                            penalty, unb)
                rec.check(h, Sigma, step=s,
                          what="the mean field or the noise covariance became non-finite")
                coef = (tgrid[s] + 1.0) ** (-alpha)
                step = h * h_dt
                if noise:
                    dB = rng.standard_normal((L, p)) * np.sqrt(h_dt)
                    step += amp[:, None] * np.einsum("kpq,kq->kp", _transport._psd_sqrt(Sigma),
                                                     dB[gidx])
                W += coef * step
                diff = W[tagged] - W[gidx[tagged]]
                sq = np.einsum("kp,kp->k", diff, diff)
                np.maximum(sup, sq, out=sup)
                if frozen:
                    diff = W[tagged] - W[copies]
                    np.maximum(sup_frozen, np.einsum("kp,kp->k", diff, diff), out=sup_frozen)
                mean_now = np.bincount(part_block, sq, minlength=Ns.size) / counts
            rec.check(W, limit=limit)
            rec.record(mean_sq=mean_now)
    mean_sq = rec.array("mean_sq").T
    key = part_block * runs + run_id
    per_system = lambda v: (np.bincount(key, v, minlength=Ns.size * runs)   # noqa: E731
                            .reshape(Ns.size, runs) / Ns[:, None])
    W_N, W_frozen, off = [], [] if frozen else None, L
    for N in Ns:
        W_N.append(W[off:off + runs * N].reshape(runs, N, p))
        if frozen:
            W_frozen.append(W[off + n_tag:off + n_tag + runs * N].reshape(runs, N, p))
        off += runs * N
    return Coupling(N=Ns, sup_sq=per_system(sup), t=tgrid, mean_sq=mean_sq, W_limit=W[:L].copy(),
                    W_N=W_N, index=index,
                    sup_sq_frozen=per_system(sup_frozen) if frozen else None, W_frozen=W_frozen)


def euler_flow(W0, X, y, *, base_step: float = 1.0, alpha: float = 0.0,
               width_exponent: float = 0.0, T: float = 1.0,
               activation="tanh", loss: str = "squared") -> np.ndarray:
    r"""The noiseless particle system (6), advanced by explicit Euler with SGD's own time step and
    number of steps: SGD with the exact gradient of the empirical risk over ``(X, y)`` instead of
    a batch's (chapter 7: SGD minus this is SGD's noise; this minus the fine-step system (6) is
    the Euler bias).

    ``W0`` is one system (N, p) or R independent systems (R, N, p) of ``N`` neurons each. The
    time step is :class:`Schedule` ``(N, base_step, alpha, width_exponent).dt`` and the number of
    steps ``Schedule.n_steps(T)``, exactly as :func:`sgd` with ``T``; with ``alpha`` in (0, 1)
    step ``n`` is multiplied by :math:`(t_n + 1)^{-\alpha}`, :math:`t_n = n\,` ``dt``, which is
    SGD's decaying step ``Schedule.step(n) / N`` (section 7.2). Computed by :func:`coupled` with
    ``noise=False``. Returns the weights at the last step, shaped like ``W0``.
    """
    alpha, width_exponent = _check_ab(alpha, width_exponent)
    W0 = as_array(W0, "W0")
    if W0.ndim not in (2, 3) or W0.size == 0:
        raise ValueError(f"W0 must have shape (N, p) or (R, N, p) with N, p >= 1, got {W0.shape}")
    W3 = W0[None] if W0.ndim == 2 else W0
    R, N, p = W3.shape
    s = Schedule(N, base_step, alpha, width_exponent)
    c = coupled(W3.reshape(-1, p), [N], R, X, y, noise=False, dt=s.dt, T=s.n_steps(T) * s.dt,
                base_step=base_step, alpha=alpha, width_exponent=width_exponent,
                activation=activation, loss=loss, rng=np.random.default_rng(0))
    return c.W_N[0][0] if W0.ndim == 2 else c.W_N[0]
