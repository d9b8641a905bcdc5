r"""Lazy (NTK) versus mean-field training of a two-layer ReLU network on a fixed data set
(chapter 6): the empirical neural tangent kernel, full-batch gradient descent, the linearised
model and the infinite-width kernel predictor.

Notation (H. Yang, lecture 13, 2022). For inputs :math:`x\in\mathbb R^d` and :math:`N` neurons,

.. math::

    h(x;\theta) = \sum_{k=1}^N a_k\,\sigma(\langle w_k, x\rangle), \qquad
    a_k = \gamma\,\bar a_k,\qquad \bar a_k\sim\mathcal N(0,1),\ w_k\sim\mathcal N(0,I_d),

:math:`\sigma = \mathrm{relu}`, :math:`\gamma \in \{1/\sqrt N, 1/N\}`, so that
:math:`h = ` :func:`mflib.network.forward` with ``a = a_bar`` and ``scaling = "ntk"``
(:math:`\gamma = 1/\sqrt N`) or ``"mean_field"`` (:math:`\gamma = 1/N`). On a training set
:math:`X = (x_1,\dots,x_n)` with targets :math:`y`, :math:`e = h(X;\theta) - y` and
:math:`R_S(\theta) = \frac1{2n}|e|^2`.

Which variables are trained (``trained``):

* ``"a_bar"`` (default): gradient descent on :math:`\bar\theta = (\bar a, w)`, both layers on the
  same :math:`O(1)` footing. With :math:`\gamma = 1/\sqrt N` this is Jacot et al.'s NTK
  parametrisation (lazy training); with :math:`\gamma = 1/N` it is the mean-field
  parametrisation of Mei et al. and Chizat and Bach (feature learning).
* ``"a"``: gradient descent on the lecture's :math:`\theta = (a, w)`, i.e.
  :math:`\dot\theta = -\nabla_\theta R_S` (the "standard parametrisation"). Here the first-layer
  part of the kernel carries a factor :math:`\gamma^2` and training is lazy for every
  :math:`\gamma\in(0,1)` (the linear regime of Luo et al. 2021).

**Kernel time.** All dynamics here run in the time :math:`s` in which the outputs obey

.. math::

    \begin{aligned}
    \frac{d}{ds} h(X;\theta(s)) &= -\frac1n\,\hat K(s)\,e(s),\qquad
    \hat K = \hat K^{(a)} + \hat K^{(w)},\\
    \hat K^{(a)}_{ij} &= \frac1N\sum_k \sigma(w_k^\top x_i)\sigma(w_k^\top x_j),
    \end{aligned}

with :math:`\hat K^{(w)}_{ij} = \frac{c^2}{N}\sum_k \bar a_k^2\,\sigma'(w_k^\top x_i)
\sigma'(w_k^\top x_j)\,x_i^\top x_j` and :math:`c = 1` (``"a_bar"``) or :math:`c = \gamma`
(``"a"``, the lecture's :math:`\hat K(\theta)`). :math:`\hat K(0)` has the same law for both
:math:`\gamma` (for ``"a_bar"``), so both regimes start from the same linear dynamics and can be
compared at equal :math:`s`; the per-neuron velocity is what differs:

* ``"a_bar"``: :math:`\partial_s\bar\theta_k = -\frac{1}{N\gamma^2}\nabla_{\bar\theta_k}R_S`,
  i.e. gradient flow on :math:`\bar\theta` in time :math:`\tau = s/(N\gamma^2)`; for
  :math:`\gamma = 1/N` this is the mean-field time of DESIGN.md (each particle moves with
  :math:`-\nabla\Psi`, :math:`O(1)` speed), for :math:`\gamma = 1/\sqrt N` it is Jacot's time
  (:math:`O(1/\sqrt N)` speed).
* ``"a"``: :math:`\partial_s\theta = -\frac1N\nabla_\theta R_S`, i.e. the lecture's gradient flow
  :math:`\dot\theta = -\nabla_\theta R_S` in its time :math:`t = s/N`. The lecture's linear rate
  :math:`R_S(\theta(t)) \le e^{-N\lambda_S t/n}R_S(\theta(0))` reads
  :math:`R_S(s) \le e^{-\lambda_S s/n}R_S(0)`.

Gradient descent with step ``ds`` is the explicit Euler scheme of these flows, i.e. GD on the
trained variables with learning rate ``ds`` times the factor of :func:`time_factor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.linalg import cho_factor as _cho_factor
from scipy.linalg import cho_solve as _cho_solve
from scipy.special import exprel as _exprel

from . import activations as _act
from . import datasets as _datasets
from . import kernels as _kernels
from . import network as _net
from . import progress as _progress
from . import runs as _runs
from .validation import as_array, check_int, check_real, check_rng

TRAINED = ("a_bar", "a")
SCALINGS = _net.SCALINGS
BLOWUP = 1e8


def _check_trained(trained):
    if trained not in TRAINED:
        raise ValueError(f"trained must be one of {TRAINED}, got {trained!r}")
    return trained


def _check_scaling(scaling):
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    return scaling


def _check_params(X, a_bar, W):
    W = as_array(W, "W", ndim=2)
    if W.shape[0] == 0:
        raise ValueError(f"W must have at least one row (N >= 1 neurons), got shape {W.shape}")
    X = as_array(X, "X", ndim=2)
    if X.shape[1] != W.shape[1]:
        raise ValueError(f"X must have d = {W.shape[1]} columns to match W, got shape {X.shape}")
    a_bar = as_array(a_bar, "a_bar", shape=(W.shape[0],))
    return X, a_bar, W


def gamma(N: int, scaling: str = "ntk") -> float:
    r"""The lecture's :math:`\gamma`: :math:`1/\sqrt N` (``"ntk"``) or :math:`1/N`
    (``"mean_field"``), i.e. :func:`mflib.network.scale_factor`."""
    N = check_int(N, "N", minimum=1)
    return _net.scale_factor(N, _check_scaling(scaling))


def time_factor(N: int, scaling: str = "ntk", trained: str = "a_bar") -> float:
    r"""Factor :math:`c` with :math:`\partial_s\vartheta = -c\,\nabla_\vartheta R_S` for the trained
    variables :math:`\vartheta` in kernel time :math:`s`.

    :math:`c = 1/(N\gamma^2)` for ``trained="a_bar"`` (:math:`\vartheta = (\bar a, w)`; 1 in the NTK
    scaling, :math:`N` in the mean-field scaling) and :math:`c = 1/N` for ``trained="a"``
    (:math:`\vartheta = (a, w)`, the lecture's time :math:`t = s/N`). With it
    :math:`\hat K = c\,J J^\top` for the Jacobian :math:`J` of :func:`jacobian`.
    """
    g = gamma(N, scaling)
    return 1.0 / (N * g * g) if _check_trained(trained) == "a_bar" else 1.0 / N


def init(N: int, d: int, rng: np.random.Generator, symmetric: bool = False):
    r"""Initial :math:`\bar a_k \sim \mathcal N(0,1)`, :math:`w_k \sim \mathcal N(0, I_d)`.

    Parameters
    ----------
    N, d : int >= 1
    rng : numpy.random.Generator
    symmetric : bool
        If True (``N`` even), the second half repeats the first half's :math:`w_k` with
        :math:`-\bar a_k`, so that :math:`h(\cdot;\theta(0)) \equiv 0` (Chizat et al.'s trick).

    Returns
    -------
    a_bar : array, shape (N,)
    W : array, shape (N, d)
    """
    N = check_int(N, "N", minimum=1)
    d = check_int(d, "d", minimum=1)
    rng = check_rng(rng)
    if symmetric:
        if N % 2:
            raise ValueError(f"N must be even for a symmetric initialisation, got {N}")
        a = rng.standard_normal(N // 2)
        W = rng.standard_normal((N // 2, d))
        return np.concatenate([a, -a]), np.concatenate([W, W])
    a = rng.standard_normal(N)
    return a, rng.standard_normal((N, d))


def output(X, a_bar, W, scaling: str = "ntk") -> np.ndarray:
    r""":math:`h(X;\theta) = \gamma\sum_k \bar a_k\,\mathrm{relu}(\langle w_k, x\rangle)`, shape
    ``(n,)`` (:func:`mflib.network.forward`)."""
    X, a_bar, W = _check_params(X, a_bar, W)
    return _net.forward(X, W, a=a_bar, scaling=_check_scaling(scaling))


def risk(X, y, a_bar, W, scaling: str = "ntk") -> float:
    r"""Empirical risk :math:`R_S = \frac1{2n}\sum_i (h(x_i;\theta) - y_i)^2`."""
    X, a_bar, W = _check_params(X, a_bar, W)
    y = as_array(y, "y", shape=(X.shape[0],))
    e = output(X, a_bar, W, scaling) - y
    return 0.5 * float(e @ e) / X.shape[0]


def _features(X, W):
    """relu(<w_k, x_i>) and relu'(<w_k, x_i>), each (n, N) (mflib.network's preactivations)."""
    H = _net.preactivations(X, W)
    return _act.relu.sigma(H), _act.relu.dsigma(H)


class EmpiricalNTK(NamedTuple):
    r"""``K = Ka + Kw``, each of shape ``(n, m)``; ``Kw`` already carries :math:`c^2`."""

    K: np.ndarray
    Ka: np.ndarray
    Kw: np.ndarray


def empirical_ntk(X, a_bar, W, scaling: str = "ntk", trained: str = "a_bar", Y=None) -> EmpiricalNTK:
    r"""Empirical NTK :math:`\hat K = \hat K^{(a)} + \hat K^{(w)}` of a finite network.

    .. math::

        \begin{aligned}
        \hat K^{(a)}_{ij} &= \frac1N\sum_{k=1}^N \sigma(w_k^\top x_i)\,\sigma(w_k^\top y_j),\\
        \hat K^{(w)}_{ij} &= \frac{c^2}{N}\sum_{k=1}^N \bar a_k^2\,\sigma'(w_k^\top x_i)\,
        \sigma'(w_k^\top y_j)\;x_i^\top y_j,
        \end{aligned}

    :math:`c = 1` for ``trained="a_bar"`` and :math:`c = \gamma` for ``trained="a"`` (then
    :math:`c\,\bar a_k = a_k` and this is the lecture's :math:`\hat K(\theta)`). Equivalently
    :math:`\hat K = ` :func:`time_factor` :math:`\times J J^\top`. Built from the per-neuron features
    of :func:`mflib.network.neuron_gradients` with two matrix products (no loop over neurons).
    As :math:`N\to\infty` it tends to :func:`limit_kernel`, at the Monte Carlo rate
    :math:`N^{-1/2}`.

    Parameters
    ----------
    X : array, shape (n, d)
    a_bar : array, shape (N,)
    W : array, shape (N, d)
    scaling : {"ntk", "mean_field"}
        Sets :math:`\gamma`; matters only for ``trained="a"``.
    trained : {"a_bar", "a"}
    Y : array, shape (m, d), optional
        Second set of inputs (default ``X``; the result is then exactly symmetric).

    Returns
    -------
    EmpiricalNTK
        ``K``, ``Ka``, ``Kw``, each ``(n, m)``.
    """
    X, a_bar, W = _check_params(X, a_bar, W)
    _check_trained(trained)
    _check_scaling(scaling)
    N = W.shape[0]
    c2 = 1.0 if trained == "a_bar" else gamma(N, scaling) ** 2
    if Y is not None:
        Y = as_array(Y, "Y", ndim=2)
        if Y.shape[1] != X.shape[1]:
            raise ValueError(f"Y must have d = {X.shape[1]} columns to match X, got shape {Y.shape}")
    with _runs.blas_threads(1):
        Sx, Dx = _features(X, W)
        Dxa = Dx * (c2 * a_bar**2)
        if Y is None:
            Ka = Sx @ Sx.T / N
            Kw = (Dxa @ Dx.T / N) * (X @ X.T)
            Ka, Kw = 0.5 * (Ka + Ka.T), 0.5 * (Kw + Kw.T)
        else:
            Sy, Dy = _features(Y, W)
            Ka = Sx @ Sy.T / N
            Kw = (Dxa @ Dy.T / N) * (X @ Y.T)
    return EmpiricalNTK(Ka + Kw, Ka, Kw)


def limit_kernel(X, Y=None, trained: str = "a_bar") -> np.ndarray:
    r"""The :math:`N\to\infty` limit of :func:`empirical_ntk` at initialisation:
    :math:`K^{(a)} + K^{(w)}` (:func:`mflib.kernels.ntk_kernel`) for ``trained="a_bar"``, and
    :math:`K^{(a)}` (:func:`mflib.kernels.relu_kernel`) for ``trained="a"`` (the first-layer part
    carries :math:`\gamma^2 \to 0`), shape ``(n, m)``."""
    if _check_trained(trained) == "a_bar":
        return _kernels.ntk_kernel(X, Y)
    return _kernels.relu_kernel(X, Y)


def lambda_min(K) -> float:
    r"""Smallest eigenvalue of a symmetric matrix ``K`` (n, n), e.g. :math:`\lambda_S =
    \lambda_{\min}(K^{(a)})`."""
    K = as_array(K, "K", ndim=2)
    if K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(f"K must be a non-empty square matrix, got shape {K.shape}")
    if not np.allclose(K, K.T, rtol=1e-10, atol=1e-12 * max(np.abs(K).max(), 1e-300)):
        raise ValueError("K must be symmetric")
    return float(np.linalg.eigvalsh(K)[0])


def jacobian(X, a_bar, W, scaling: str = "ntk", trained: str = "a_bar") -> np.ndarray:
    r"""Jacobian of :math:`h(X;\theta)` with respect to the trained variables, shape
    ``(n, N + N d)``: columns :math:`\partial/\partial\bar a_k` (or :math:`\partial/\partial a_k`),
    then :math:`\partial/\partial w_{k\ell}` in row-major order of ``W``.

    ``trained="a_bar"``: :math:`\partial_{\bar a_k}h = \gamma\sigma(w_k^\top x)`,
    :math:`\nabla_{w_k}h = \gamma\bar a_k\sigma'(w_k^\top x)x`; ``trained="a"``:
    :math:`\partial_{a_k}h = \sigma(w_k^\top x)`, same :math:`\nabla_{w_k}h`. Memory
    :math:`n N (d+1)`; meant for tests and linearisation at moderate sizes.
    """
    X, a_bar, W = _check_params(X, a_bar, W)
    if X.shape[0] == 0:
        raise ValueError(f"X must hold at least one input, got shape {X.shape}")
    _check_trained(trained)
    g = gamma(W.shape[0], scaling)
    ng = _net.neuron_gradients(X, W, a=a_bar)
    Ja = ng.da * (g if trained == "a_bar" else 1.0)
    Jw = (g * ng.dw).reshape(X.shape[0], -1)
    return np.concatenate([Ja, Jw], axis=1)


@dataclass
class Run:
    r"""Record of :func:`train` at kernel times ``s`` (R records).

    Attributes
    ----------
    s : (R,)              kernel times :math:`s = k\,ds`
    risk : (R,)           :math:`R_S(\theta(s))`
    h : (R, n)            outputs on the training set
    h_test : (R, m) or None  outputs on ``X_test``
    dist : (R,)           :math:`|\theta(s)-\theta(0)|` in the lecture's variables
                          :math:`\theta = (a, w)`, :math:`a = \gamma\bar a`
    move_a : (R,)         :math:`\max_k |a_k(s) - a_k(0)|` (lecture's :math:`a = \gamma\bar a`)
    move_a_bar : (R,)     :math:`\max_k |\bar a_k(s) - \bar a_k(0)| = \text{move\_a}/\gamma`
    move_w : (R,)         :math:`\max_k \|w_k(s) - w_k(0)\|_2`
    rms_a_bar, rms_w : (R,)  root mean squares over neurons of the same movements
    kernel_change : (R,) or None   :math:`\|\hat K(s) - \hat K(0)\|_F`
    a_bar, W              final parameters
    gamma, time_factor    :math:`\gamma` and :math:`c` of :func:`time_factor`
    """

    s: np.ndarray
    risk: np.ndarray
    h: np.ndarray
    h_test: np.ndarray | None
    dist: np.ndarray
    move_a: np.ndarray
    move_a_bar: np.ndarray
    move_w: np.ndarray
    rms_a_bar: np.ndarray
    rms_w: np.ndarray
    kernel_change: np.ndarray | None
    a_bar: np.ndarray
    W: np.ndarray
    gamma: float
    time_factor: float


def train(X, y, a_bar0, W0, scaling: str = "ntk", ds: float = 0.5, steps: int = 100,
          trained: str = "a_bar", record_every: int | None = None, n_log: int | None = None,
          X_test=None, track_kernel: bool = True, progress: bool | None = None) -> Run:
    r"""Full-batch gradient descent on :math:`R_S = \frac1{2n}|h(X;\theta) - y|^2` in kernel time.

    One step (explicit Euler for the flow of the module docstring, :math:`s \mapsto s + ds`):

    .. math::

        \vartheta \leftarrow \vartheta - ds\; c\; \nabla_\vartheta R_S(\theta),\qquad
        c = \texttt{time\_factor}(N, \text{scaling}, \text{trained}),

    so that, to first order in ``ds``, :math:`h(X) \leftarrow h(X) - \frac{ds}{n}\hat K e`.
    The lecture's time is :math:`t = s/N` for ``trained="a"``; for ``trained="a_bar"`` the plain
    gradient-flow time on :math:`(\bar a, w)` is :math:`\tau = s/(N\gamma^2)` (:math:`= s` in the
    NTK scaling, :math:`N s` in the mean-field scaling). Stable for
    :math:`ds\,\lambda_{\max}(\hat K)/n < 2` (on the unit sphere :math:`\lambda_{\max}\le n` for
    ``"a_bar"``, so ``ds < 2`` is safe near initialisation).

    Parameters
    ----------
    X : array, shape (n, d)
    y : array, shape (n,)
    a_bar0 : array, shape (N,)
        Initial :math:`\bar a` (not modified); :math:`a = \gamma\bar a`.
    W0 : array, shape (N, d)
        Initial first-layer weights (not modified).
    scaling : {"ntk", "mean_field"}
        :math:`\gamma = 1/\sqrt N` or :math:`1/N`.
    ds : float > 0
        Step in kernel time.
    steps : int >= 0
    trained : {"a_bar", "a"}
        See the module docstring.
    record_every, n_log : int, optional
        Record every ``record_every`` steps or on ``n_log`` log-spaced steps (0 and ``steps``
        always), as in :func:`mflib.runs.record_grid`.
    X_test : array, shape (m, d), optional
        Also record :math:`h` there.
    track_kernel : bool
        Record :math:`\|\hat K(s)-\hat K(0)\|_F` (costs :math:`O(n^2 N)` per record).
    progress : bool or None

    Returns
    -------
    Run

    Raises
    ------
    mflib.runs.DivergenceError
        If the weights become non-finite or exceed ``BLOWUP`` times their initial scale
        (checked after every step; the message names the step).
    """
    X, a_bar0, W0 = _check_params(X, a_bar0, W0)
    n, N = X.shape[0], W0.shape[0]
    y = as_array(y, "y", shape=(n,))
    _check_scaling(scaling)
    _check_trained(trained)
    ds = check_real(ds, "ds", low=0.0, low_open=True)
    steps = check_int(steps, "steps", minimum=0)
    if X_test is not None:
        X_test = as_array(X_test, "X_test", ndim=2)
        if X_test.shape[1] != X.shape[1]:
            raise ValueError(f"X_test must have d = {X.shape[1]} columns, got shape {X_test.shape}")
    grid = _runs.record_grid(steps, record_every, n_log)
    g = gamma(N, scaling)
    c_a = 1.0 / (N * g * g)                      # rate for a_bar, both choices of `trained`
    c_w = c_a if trained == "a_bar" else 1.0 / N
    a, W = a_bar0.copy(), W0.copy()
    K0 = empirical_ntk(X, a, W, scaling, trained).K if track_kernel else None
    limit = BLOWUP * max(np.abs(W0).max(), np.abs(a_bar0).max(), 1.0)
    gd = _GradientStep(X, y, N, g)
    state = gd(a, W)                              # residual h - y and the gradient of R_S
    with _runs.Recorder(grid, ds, progress=progress, desc="GD", threshold=20000, threads=1,
                        where="gradient descent",
                        advice=f"try a smaller ds (now {ds:g}), e.g. {ds / 10:.3g}") as rec:
        for k0, k1 in rec.spans():
            for k in range(k0, k1):
                _, grad_a, grad_W = state
                a -= (ds * c_a) * grad_a
                W -= (ds * c_w) * grad_W
                rec.check(W, a, limit=limit, step=k + 1)
                state = gd(a, W)
                rec.tick()
            e = state[0]
            da, dW = a - a_bar0, W - W0
            dw2 = np.sum(dW * dW, axis=1)
            rec.record(risk=0.5 * float(e @ e) / n, h=y + e,
                       h_test=(_net.forward(X_test, W, a=a, scaling=scaling)
                               if X_test is not None else None),
                       dist=np.sqrt(g * g * float(da @ da) + float(dw2.sum())),
                       ma=np.abs(da).max(), mw=np.sqrt(dw2.max()),
                       ra=np.sqrt(np.mean(da * da)), rw=np.sqrt(dw2.mean()),
                       kc=(np.linalg.norm(empirical_ntk(X, a, W, scaling, trained).K - K0)
                           if track_kernel else None))
    ma = rec.array("ma")
    return Run(s=rec.t, risk=rec.array("risk"), h=rec.array("h"), h_test=rec.array("h_test"),
               dist=rec.array("dist"), move_a=g * ma, move_a_bar=ma, move_w=rec.array("mw"),
               rms_a_bar=rec.array("ra"), rms_w=rec.array("rw"), kernel_change=rec.array("kc"),
               a_bar=a, W=W, gamma=g, time_factor=c_w)


class _GradientStep:
    r"""Residual :math:`e = h(X) - y` and :math:`\nabla_{\bar a}R_S`, :math:`\nabla_W R_S` with
    preallocated ``(N, n)`` buffers (the same numbers as :func:`mflib.network.risk_gradient`,
    which allocates fresh arrays each call; the tests check the two agree)."""

    def __init__(self, X, y, N, g):
        self.X, self.XT, self.y, self.g = X, np.ascontiguousarray(X.T), y, g
        self.n = X.shape[0]
        self.H = np.empty((N, self.n))
        self.B = np.empty((N, self.n), dtype=bool)

    def __call__(self, a, W):
        H, B, g = self.H, self.B, self.g
        np.matmul(W, self.XT, out=H)                  # <w_k, x_i>
        np.maximum(H, 0.0, out=H)                     # relu
        e = g * (a @ H) - self.y                      # h(X) - y
        grad_a = (g / self.n) * (H @ e)
        np.greater(H, 0.0, out=B)                     # relu'
        np.multiply(B, e, out=H)
        grad_W = ((g / self.n) * a)[:, None] * (H @ self.X)
        return e, grad_a, grad_W


class Linearised(NamedTuple):
    r"""Outputs of the linearised model: ``train`` (R, n) on the training set and ``test``
    (R, m) on other inputs (or None)."""

    train: np.ndarray
    test: np.ndarray | None


def linearised(K0, h0, y, s, K0_test=None, h0_test=None, ds: float | None = None) -> Linearised:
    r"""Closed-form training of the linearised model
    :math:`h^{\rm lin}(x;s) = h(x;0) + \nabla h(x;0)\,(\vartheta(s)-\vartheta(0))` in kernel time.

    Gradient flow (``ds=None``): the linear ODE
    :math:`\frac{d}{ds}h^{\rm lin}(X;s) = -\frac1n\hat K_0\,(h^{\rm lin}(X;s) - y)` is solved
    through the eigendecomposition :math:`\hat K_0 = V\Lambda V^\top`:

    .. math::

        h^{\rm lin}(X;s) &= \big(I - e^{-\hat K_0 s/n}\big)\,y + e^{-\hat K_0 s/n}\,h(X;0),\\
        h^{\rm lin}(x;s) &= h(x;0) - \hat K_0(x,X)\,V\,
            \mathrm{diag}\Big(\frac{1-e^{-\lambda_i s/n}}{\lambda_i}\Big)V^\top\big(h(X;0)-y\big)

    (the diagonal entry read as :math:`s/n` when :math:`\lambda_i = 0`). In the lecture's time for
    ``trained="a"``, :math:`s = N t`: the exponent is :math:`-N\hat K_0 t/n`.

    Gradient descent with step ``ds`` (the discretisation used by :func:`train`): replace
    :math:`e^{-\lambda s/n}` by :math:`(1-\lambda\,ds/n)^{s/ds}` (then ``s`` must be multiples of
    ``ds``). This is exactly what GD on the linearised model produces, so a comparison with
    :func:`train` isolates the nonlinearity from the time-discretisation error.

    Parameters
    ----------
    K0 : array, shape (n, n)
        Empirical NTK at initialisation (:func:`empirical_ntk`), symmetric PSD.
    h0 : array, shape (n,)
        :math:`h(X;\theta(0))`.
    y : array, shape (n,)
    s : array, shape (R,)
        Kernel times, >= 0.
    K0_test : array, shape (m, n), optional
        :math:`\hat K_0(x, X)` for test inputs (``empirical_ntk(X_test, ..., Y=X).K``).
    h0_test : array, shape (m,), optional
        :math:`h(x;\theta(0))` at the test inputs (required with ``K0_test``).
    ds : float > 0, optional
        Step of gradient descent; ``None`` for the gradient flow.

    Returns
    -------
    Linearised
    """
    K0 = as_array(K0, "K0", ndim=2)
    n = K0.shape[0]
    if K0.shape != (n, n) or n == 0:
        raise ValueError(f"K0 must be a non-empty square matrix, got shape {K0.shape}")
    h0 = as_array(h0, "h0", shape=(n,))
    y = as_array(y, "y", shape=(n,))
    s = np.atleast_1d(as_array(s, "s"))
    if s.ndim != 1 or np.any(s < 0):
        raise ValueError("s must be a 1-D array of times >= 0")
    with _runs.blas_threads(1):
        lam, V = np.linalg.eigh(0.5 * (K0 + K0.T))
    scale = float(np.abs(lam).max())
    if not np.isfinite(scale):
        raise ValueError("K0 must be finite")
    if lam[0] < -1e-9 * max(scale, np.finfo(float).tiny):
        raise ValueError(f"K0 must be positive semi-definite; its smallest eigenvalue is {lam[0]:.3g} "
                         f"(largest magnitude {scale:.3g})")
    r0 = V.T @ (h0 - y)
    if ds is None:
        decay, phi = _flow_factors(lam, s / n)
    else:
        ds = check_real(ds, "ds", low=0.0, low_open=True)
        k = np.rint(s / ds)
        if not np.allclose(k * ds, s, rtol=1e-9, atol=1e-12 * max(1.0, float(s.max()))):
            raise ValueError("with ds given, every s must be a multiple of ds")
        decay, phi = _gd_factors(lam, ds / n, k)
    train_out = y + (decay * r0) @ V.T
    test_out = None
    if K0_test is not None or h0_test is not None:
        if K0_test is None or h0_test is None:
            raise ValueError("give both K0_test and h0_test, or neither")
        K0_test = as_array(K0_test, "K0_test", shape=(None, n))
        h0_test = as_array(h0_test, "h0_test", shape=(K0_test.shape[0],))
        test_out = h0_test - ((phi * r0) @ V.T) @ K0_test.T
    return Linearised(train_out, test_out)


def _flow_factors(lam, t):
    r"""Decay :math:`e^{-\lambda t}` and :math:`\varphi = (1-e^{-\lambda t})/\lambda` for the gradient
    flow, shape (len(t), len(lam)).

    :math:`\varphi` is evaluated as :math:`t\,\mathrm{exprel}(-\lambda t)` with
    :math:`\mathrm{exprel}(z) = (e^z-1)/z` (``scipy.special.exprel``, exact 1 at 0): no cancellation
    for any :math:`\lambda`, from exactly 0 through :math:`\pm` round-off to small resolvable values,
    and continuous across 0 (the naive quotient loses all digits when :math:`\lambda t` is at round-off
    level and is O(1) wrong there).
    """
    z = -np.outer(t, lam)
    return np.exp(z), t[:, None] * _exprel(z)


def _gd_factors(lam, h, k):
    r"""Decay :math:`(1-\lambda h)^k` and :math:`\varphi = (1-(1-\lambda h)^k)/\lambda` for gradient
    descent with step :math:`h` = ds/n, shape (len(k), len(lam)).

    With :math:`x = \lambda h` and :math:`u = k\,\mathrm{log1p}(-x)`, the decay is :math:`e^u` and

    .. math:: \varphi = k h\;\mathrm{exprel}(u)\;\frac{\mathrm{log1p}(-x)}{-x},

    each factor computed without cancellation (the last read as 1 at x = 0). For x >= 1/2 (large
    eigenvalues, where nothing cancels, and 1 - x <= 0 is possible) the direct form is used.
    """
    x = lam * h                                                # (n,)
    kk = k[:, None]
    small = x < 0.5
    xs = np.where(small, x, 0.0)
    l1 = np.log1p(-xs)
    ratio = np.ones_like(xs)
    nz = xs != 0
    ratio[nz] = l1[nz] / (-xs[nz])
    u = kk * l1[None, :]
    decay_s, phi_s = np.exp(u), (kk * h) * _exprel(u) * ratio[None, :]
    xb = np.where(small, 1.0, x)
    with np.errstate(over="ignore", invalid="ignore"):
        decay_b = np.power((1.0 - xb)[None, :], kk.astype(int))
        phi_b = (1.0 - decay_b) / (xb / h)[None, :]
    return np.where(small, decay_s, decay_b), np.where(small, phi_s, phi_b)


def ntk_predictor(X, y, X_test, trained: str = "a_bar", ridge: float = 0.0) -> np.ndarray:
    r"""Infinite-width lazy predictor: kernel regression with :func:`limit_kernel`,

    .. math::

        f_\infty(x) = K(x, X)\,\big(K(X,X) + \text{ridge}\cdot n\,I\big)^{-1} y,

    the :math:`s\to\infty`, :math:`N\to\infty` limit of :func:`linearised` with
    :math:`h(\cdot;0)\equiv 0` (e.g. the symmetric initialisation of :func:`init`).

    Parameters
    ----------
    X : array, shape (n, d)
    y : array, shape (n,)
    X_test : array, shape (m, d)
    trained : {"a_bar", "a"}
    ridge : float >= 0

    Returns
    -------
    f : array, shape (m,)
    """
    X = as_array(X, "X", ndim=2)
    y = as_array(y, "y", shape=(X.shape[0],))
    X_test = as_array(X_test, "X_test", ndim=2)
    if X_test.shape[1] != X.shape[1]:
        raise ValueError(f"X_test must have d = {X.shape[1]} columns, got shape {X_test.shape}")
    ridge = check_real(ridge, "ridge", low=0.0)
    K = limit_kernel(X, None, trained) + ridge * X.shape[0] * np.eye(X.shape[0])
    with _runs.blas_threads(1):
        coef = _cho_solve(_cho_factor(K), y)
        return limit_kernel(X_test, X, trained) @ coef


@dataclass
class WidthSweep:
    r"""Output of :func:`sweep_widths`: one entry per width, averaged over seeds (final time
    :math:`s = T` unless said otherwise).

    Attributes
    ----------
    N : (W,)                          widths
    move_a_bar, move_w : (W,)         :math:`\max_k|\bar a_k(T)-\bar a_k(0)|`,
                                      :math:`\max_k\|w_k(T)-w_k(0)\|`
    rms_a_bar, rms_w : (W,)           root mean squares over neurons of the same
    dKa, dKw : (W,)                   :math:`\|\hat K^{(a)}(T)-\hat K^{(a)}(0)\|_F`, same for
                                      :math:`\hat K^{(w)}`
    kernel_change : (W,)              :math:`\sup_s\|\hat K(s)-\hat K(0)\|_F/\|\hat K(0)\|_F`
    lin_gap : (W,)                    :math:`\sup_s (\frac1n\sum_i (h(x_i;s)-h^{\rm lin}(x_i;s))^2)^{1/2}`
    s : (R,)                          record times
    risk, risk_lin : (W, R)           :math:`R_S` of the network and of the linearised model (first seed)
    runs : list of Run                first-seed runs; ``init`` : list of (a_bar0, W0) for them
    replicates : dict of (W, seeds)   the same eight summaries per width *and seed* (keys as the
                                      attribute names above), for fits with intervals from
                                      independent initialisations
                                      (:func:`mflib.fitting.loglog_fit` with ``replicates=``)
    """

    N: np.ndarray
    move_a_bar: np.ndarray
    move_w: np.ndarray
    rms_a_bar: np.ndarray
    rms_w: np.ndarray
    dKa: np.ndarray
    dKw: np.ndarray
    kernel_change: np.ndarray
    lin_gap: np.ndarray
    s: np.ndarray
    risk: np.ndarray
    risk_lin: np.ndarray
    runs: list
    init: list
    replicates: dict


def sweep_widths(X, y, Ns, scaling: str = "ntk", ds: float = 0.5, steps: int = 600, seeds: int = 1,
                 seed: int = 0, trained: str = "a_bar", n_log: int = 12,
                 progress: bool | None = None) -> WidthSweep:
    r"""Train one network per width and seed with :func:`train` and summarise how far it moved.

    For each width :math:`N` in ``Ns`` and replicate :math:`j < ` ``seeds``, the initialisation is
    :func:`init` with ``np.random.default_rng([seed, N, j])``; the network is compared with its
    linearised model trained by the same gradient descent (:func:`linearised` with ``ds``), so
    ``lin_gap`` measures the nonlinearity only.

    Parameters
    ----------
    X : array, shape (n, d)
    y : array, shape (n,)
    Ns : sequence of int
    scaling : {"ntk", "mean_field"}
    ds, steps : step in kernel time and number of steps (:math:`T = ` ``ds * steps``)
    seeds : int >= 1
    seed : int
    trained : {"a_bar", "a"}
    n_log : int
        Number of log-spaced records.
    progress : bool or None

    Returns
    -------
    WidthSweep
    """
    X = as_array(X, "X", ndim=2)
    y = as_array(y, "y", shape=(X.shape[0],))
    Ns = np.asarray(Ns)
    if Ns.ndim != 1 or Ns.size == 0 or not np.issubdtype(Ns.dtype, np.integer) or np.any(Ns < 1):
        raise ValueError(f"Ns must be a non-empty 1-D sequence of integers >= 1, got {Ns!r}")
    seeds = check_int(seeds, "seeds", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    n = X.shape[0]
    keys = ("move_a_bar", "move_w", "rms_a_bar", "rms_w", "dKa", "dKw", "kernel_change", "lin_gap")
    reps = {k: np.zeros((Ns.size, seeds)) for k in keys}
    risk, risk_lin, runs, inits = [], [], [], []
    with _progress.bar(int(Ns.size * seeds), progress, desc="widths") as bar:
        for i, N in enumerate(Ns):
            for j in range(seeds):
                a0, W0 = init(int(N), X.shape[1], np.random.default_rng([seed, int(N), j]))
                r = train(X, y, a0, W0, scaling, ds=ds, steps=steps, trained=trained, n_log=n_log)
                E0 = empirical_ntk(X, a0, W0, scaling, trained)
                E1 = empirical_ntk(X, r.a_bar, r.W, scaling, trained)
                lin = linearised(E0.K, r.h[0], y, r.s, ds=ds).train
                vals = dict(move_a_bar=r.move_a_bar[-1], move_w=r.move_w[-1], rms_a_bar=r.rms_a_bar[-1],
                            rms_w=r.rms_w[-1], dKa=np.linalg.norm(E1.Ka - E0.Ka),
                            dKw=np.linalg.norm(E1.Kw - E0.Kw),
                            kernel_change=r.kernel_change.max() / np.linalg.norm(E0.K),
                            lin_gap=np.sqrt(np.mean((r.h - lin) ** 2, axis=1)).max())
                for k in keys:
                    reps[k][i, j] = vals[k]
                if j == 0:
                    e = lin - y
                    risk.append(r.risk)
                    risk_lin.append(0.5 * np.sum(e * e, axis=1) / n)
                    runs.append(r)
                    inits.append((a0, W0))
                bar.update()
    out = {k: v.mean(axis=1) for k, v in reps.items()}
    return WidthSweep(N=Ns, s=runs[0].s, risk=np.array(risk), risk_lin=np.array(risk_lin), runs=runs,
                      init=inits, replicates=reps, **out)


class LinearConvergence(NamedTuple):
    r"""Output of :func:`linear_convergence`, one row per width and one column per seed.

    Fields, with shapes (W widths, S seeds, R records):

    - ``N`` (W,): the widths;
    - ``lam_S`` (float): :math:`\lambda_S = \lambda_{\min}(K^{(a)})`, the infinite-width value;
    - ``lam0``, ``lamT`` (W, S): :math:`\lambda_{\min}(\hat K)` at :math:`s = 0` and at the end
      :math:`s = T` (the lecture's Gram matrix :math:`\hat K^{(a)} + \gamma^2\hat K^{(w)}`);
    - ``rate`` (W, S): the measured rate as an eigenvalue, :math:`\lambda` such that one step of
      gradient descent multiplies :math:`R_S` by :math:`(1-\lambda\,ds/n)^2`, averaged over the
      last ``window`` of the run;
    - ``bound`` (W, S, bool): :math:`R_S(s) \le e^{-\lambda_S s/n}R_S(0)` at every record;
    - ``s`` (R,): record times (kernel time); ``risk`` (W, S, R): :math:`R_S(s)` of every run;
    - ``ds`` (float): the step.
    """

    N: np.ndarray
    lam_S: float
    lam0: np.ndarray
    lamT: np.ndarray
    rate: np.ndarray
    bound: np.ndarray
    s: np.ndarray
    risk: np.ndarray
    ds: float


def linear_convergence(X, y, Ns, seeds: int = 8, ds: float = 1.0, steps: int = 1000, seed: int = 0,
                       scaling: str = "ntk", window: float = 0.25, n_records: int = 41,
                       progress: bool | None = None) -> LinearConvergence:
    r"""The lecture's linear convergence, measured: gradient descent with the lecture's flow
    (``trained="a"``) from independent initialisations at several widths.

    For each width :math:`N` in ``Ns`` and replicate :math:`j <` ``seeds`` (initialisation
    :func:`init` with ``np.random.default_rng([seed, N, j])``), :func:`train` runs ``steps`` steps
    of ``ds`` in kernel time, recording :math:`R_S` every ``steps // (n_records - 1)`` steps (and
    at the last). The
    measured rate is read off the last fraction ``window`` of the run, between records
    :math:`s_1 < s_2`: with the per-step factor :math:`q = (R_S(s_2)/R_S(s_1))^{ds/(s_2-s_1)}`,

    .. math:: \lambda_{\rm meas} = \frac{n}{ds}\big(1 - \sqrt q\big),

    the eigenvalue whose mode decays at that speed under gradient descent
    (:math:`\approx -\frac{n}{2}\frac{d}{ds}\log R_S` for small steps). For the linearised model
    it tends to :math:`\lambda_{\min}(\hat K(0))` as :math:`s\to\infty` (from above: faster
    modes have not yet died out), which is the comparison the chapter makes. Choose ``steps`` so
    that :math:`R_S(T)` stays far above round-off (:math:`R_S(T)/R_S(0) \gtrsim 10^{-20}`).

    Parameters
    ----------
    X : array, shape (n, d)
    y : array, shape (n,)
    Ns : sequence of int >= 1
    seeds : int >= 2
    ds : float > 0
    steps : int >= 4
    seed : int >= 0
    scaling : {"ntk", "mean_field"}
        :math:`\gamma`; the lecture's flow is lazy for both.
    window : float in (0, 1)
        Fraction of the run (at its end) over which the rate is measured.
    n_records : int >= 5
        About this many records, equally spaced in steps (0 and ``steps`` included).
    progress : bool or None

    Returns
    -------
    LinearConvergence
    """
    X = as_array(X, "X", ndim=2)
    n, d = X.shape
    if n == 0:
        raise ValueError(f"X must hold at least one input, got shape {X.shape}")
    y = as_array(y, "y", shape=(n,))
    Ns = np.asarray(Ns)
    if Ns.ndim != 1 or Ns.size == 0 or not np.issubdtype(Ns.dtype, np.integer) or np.any(Ns < 1):
        raise ValueError(f"Ns must be a non-empty 1-D sequence of integers >= 1, got {Ns!r}")
    seeds = check_int(seeds, "seeds", minimum=2)
    ds = check_real(ds, "ds", low=0.0, low_open=True)
    steps = check_int(steps, "steps", minimum=4)
    seed = check_int(seed, "seed", minimum=0)
    _check_scaling(scaling)
    window = check_real(window, "window", low=0.0, high=1.0, low_open=True, high_open=True)
    n_records = check_int(n_records, "n_records", minimum=5)
    every = max(1, steps // (n_records - 1))
    grid = _runs.record_grid(steps, every)
    lam_S = lambda_min(limit_kernel(X, trained="a"))
    shape = (Ns.size, seeds)
    lam0, lamT, rate = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    bound = np.zeros(shape, dtype=bool)
    risk = np.zeros(shape + (grid.size,))
    s = grid * ds
    i1 = int(np.searchsorted(grid, (1.0 - window) * steps))
    i1 = min(i1, grid.size - 2)
    with _progress.bar(int(Ns.size * seeds), progress, desc="widths x seeds") as bar:
        for i, N in enumerate(Ns):
            for j in range(seeds):
                a0, W0 = init(int(N), d, np.random.default_rng([seed, int(N), j]))
                r = train(X, y, a0, W0, scaling, ds=ds, steps=steps, trained="a", record_every=every,
                          track_kernel=False, progress=False)
                risk[i, j] = r.risk
                lam0[i, j] = lambda_min(empirical_ntk(X, a0, W0, scaling, "a").K)
                lamT[i, j] = lambda_min(empirical_ntk(X, r.a_bar, r.W, scaling, "a").K)
                k = grid[-1] - grid[i1]
                q = np.exp(np.log(r.risk[-1] / r.risk[i1]) / k)
                rate[i, j] = n / ds * (1.0 - np.sqrt(q))
                bound[i, j] = bool(np.all(r.risk <= np.exp(-lam_S * s / n) * r.risk[0]))
                bar.update()
    return LinearConvergence(N=Ns, lam_S=lam_S, lam0=lam0, lamT=lamT, rate=rate, bound=bound, s=s,
                             risk=risk, ds=ds)


class LambdaMin(NamedTuple):
    r"""Output of :func:`lambda_min_fluctuations`: ``lam_S`` (the limit), and per width the
    mean error ``bias`` :math:`= E\hat\lambda - \lambda_S` and the standard deviation ``std``
    of :math:`\hat\lambda = \lambda_{\min}(\hat K(0))` over the draws, shapes ``(W,)``."""

    lam_S: float
    bias: np.ndarray
    std: np.ndarray


def lambda_min_fluctuations(X, Ns, draws: int = 20, seed: int = 0, trained: str = "a") -> LambdaMin:
    r"""Law of large numbers for :math:`\lambda_{\min}` of the empirical Gram matrix at
    initialisation: for each width, ``draws`` independent initialisations.

    With ``trained="a"`` the matrix is :math:`\hat K^{(a)}(\theta^0)` and the limit is the
    lecture's :math:`\lambda_S = \lambda_{\min}(K^{(a)})`; with ``"a_bar"`` it is the full
    :math:`\hat K(0)` and :func:`limit_kernel`. :math:`\lambda_{\min}` is concave, so
    :math:`E\hat\lambda \le \lambda_S` (Jensen): the bias is negative, of order :math:`1/N`, and
    the fluctuations are of order :math:`N^{-1/2}` (central limit theorem for
    :math:`\hat K - K`).
    """
    X = as_array(X, "X", ndim=2)
    if X.shape[0] == 0:
        raise ValueError(f"X must hold at least one input, got shape {X.shape}")
    _check_trained(trained)
    Ns = np.asarray(Ns)
    if Ns.ndim != 1 or Ns.size == 0 or not np.issubdtype(Ns.dtype, np.integer) or np.any(Ns < 1):
        raise ValueError(f"Ns must be a non-empty 1-D sequence of integers >= 1, got {Ns!r}")
    draws = check_int(draws, "draws", minimum=2)
    seed = check_int(seed, "seed", minimum=0)
    lam_S = lambda_min(limit_kernel(X, trained=trained))
    bias, std = np.zeros(Ns.size), np.zeros(Ns.size)
    for i, N in enumerate(Ns):
        lam = np.empty(draws)
        for j in range(draws):
            a0, W0 = init(int(N), X.shape[1], np.random.default_rng([seed, int(N), j]))
            E = empirical_ntk(X, a0, W0, "ntk", trained)
            lam[j] = lambda_min(E.Ka if trained == "a" else E.K)
        bias[i], std[i] = lam.mean() - lam_S, lam.std(ddof=1)
    return LambdaMin(lam_S, bias, std)


class Generalisation(NamedTuple):
    r"""Output of :func:`generalisation_curve`: relative test errors
    :math:`\sum (f - y)^2/\sum y^2`, shapes ``(len(ns), seeds)``, for the mean-field network
    (``mean_field``) and the infinite-width NTK predictor (``ntk``); ``alignment`` (len(ns), seeds)
    is the :math:`|\bar a_k|\,|w_k|`-weighted mean of :math:`|\cos(w_k, u)|` after training
    (``alignment0`` before); ``train_error`` (len(ns), seeds) is the relative training error
    :math:`2nR_S/\sum_i y_i^2` of the mean-field network at the end."""

    ns: np.ndarray
    mean_field: np.ndarray
    ntk: np.ndarray
    alignment: np.ndarray
    alignment0: float
    train_error: np.ndarray


def generalisation_curve(link, d: int, ns, N: int = 128, ds: float = 1.0, steps: int = 1000,
                         seeds: int = 1, n_test: int = 2000, seed: int = 0, bias: bool = False,
                         progress: bool | None = None) -> Generalisation:
    r"""Test error against the sample size for a single-index target, mean field versus NTK.

    Data: :math:`x` uniform on the unit sphere of :math:`\mathbb R^d`, :math:`u = e_1`,
    :math:`y = g(\sqrt d\,\langle u, x\rangle)` with ``link`` :math:`g` (so that
    :math:`\sqrt d\langle u,x\rangle \approx \mathcal N(0,1)`). For each :math:`n` in ``ns``
    and each seed: a mean-field network (:math:`\gamma = 1/N`, ``trained="a_bar"``) trained by
    :func:`train` for ``steps`` steps of ``ds``, and the kernel predictor :func:`ntk_predictor`
    with the limiting NTK of the same architecture (the lazy limit :math:`N, s\to\infty`), both
    fitted to the same training set and evaluated on the same ``n_test`` fresh points.

    With ``bias=True`` both predictors see :math:`(x, 1)/\sqrt2` instead of :math:`x` (a neuron
    :math:`\bar a\,\sigma(\langle w, x\rangle + b)` with a trained bias, inputs still on a
    sphere); the targets and the seeds are the same, and the alignment is measured with
    :math:`u` padded by a zero.

    Returns
    -------
    Generalisation
    """
    if not callable(link):
        raise TypeError("link must be a callable acting elementwise on arrays")
    d = check_int(d, "d", minimum=1)
    ns = np.asarray(ns)
    if ns.ndim != 1 or ns.size == 0 or not np.issubdtype(ns.dtype, np.integer) or np.any(ns < 1):
        raise ValueError(f"ns must be a non-empty 1-D sequence of integers >= 1, got {ns!r}")
    N = check_int(N, "N", minimum=1)
    seeds = check_int(seeds, "seeds", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    if not isinstance(bias, bool | np.bool_):
        raise TypeError(f"bias must be True or False, got {type(bias).__name__}")
    u = np.zeros(d)
    u[0] = 1.0
    n_test = check_int(n_test, "n_test", minimum=1)
    Xt = _datasets.sphere(n_test, d, np.random.default_rng([seed, 0]))
    yt = link(np.sqrt(d) * Xt @ u)

    def lift(Z):
        return np.concatenate([Z, np.ones((Z.shape[0], 1))], axis=1) / np.sqrt(2.0) if bias else Z

    Xt, u_net = lift(Xt), (np.append(u, 0.0) if bias else u)
    norm = float(yt @ yt)
    err_mf, err_k, align, err_tr = (np.zeros((ns.size, seeds)) for _ in range(4))

    def weighted_alignment(a, W):
        wt = np.abs(a) * np.linalg.norm(W, axis=1)
        return float(wt @ (np.abs(W @ u_net) / np.linalg.norm(W, axis=1)) / wt.sum())

    align0 = []
    with _progress.bar(int(ns.size * seeds), progress, desc="sample sizes") as bar:
        for i, n in enumerate(ns):
            for j in range(seeds):
                rng = np.random.default_rng([seed, 1, int(n), j])
                X = _datasets.sphere(int(n), d, rng)
                y = link(np.sqrt(d) * X @ u)
                X = lift(X)
                f = ntk_predictor(X, y, Xt)
                err_k[i, j] = float((f - yt) @ (f - yt)) / norm
                a0, W0 = init(N, X.shape[1], rng)
                r = train(X, y, a0, W0, "mean_field", ds=ds, steps=steps, n_log=2, track_kernel=False)
                f = output(Xt, r.a_bar, r.W, "mean_field")
                err_mf[i, j] = float((f - yt) @ (f - yt)) / norm
                align[i, j] = weighted_alignment(r.a_bar, r.W)
                err_tr[i, j] = 2.0 * n * r.risk[-1] / float(y @ y)
                align0.append(weighted_alignment(a0, W0))
                bar.update()
    return Generalisation(ns, err_mf, err_k, align, float(np.mean(align0)), err_tr)


def l1_moment(d: int) -> float:
    r""":math:`C_d = E\|w\|_1^4` for :math:`w\sim\mathcal N(0,I_d)` (the lecture's constant), exactly:
    with half-normal moments :math:`m_1 = \sqrt{2/\pi}, m_2 = 1, m_3 = 2\sqrt{2/\pi}, m_4 = 3`,

    .. math::

        \begin{aligned}
        C_d &= d m_4 + 4d(d-1)m_3m_1 + 3d(d-1)m_2^2\\
        &\quad {}+ 6d(d-1)(d-2)m_2m_1^2 + d(d-1)(d-2)(d-3)m_1^4.
        \end{aligned}
    """
    d = check_int(d, "d", minimum=1)
    m1 = np.sqrt(2.0 / np.pi)
    m3 = 2.0 * m1
    d1, d2, d3 = d * (d - 1), d * (d - 1) * (d - 2), d * (d - 1) * (d - 2) * (d - 3)
    return float(3.0 * d + 4 * d1 * m3 * m1 + 3 * d1 + 6 * d2 * m1**2 + d3 * m1**4)


class WidthCondition(NamedTuple):
    """The three lower bounds of the theorem's width condition and the smallest N meeting them."""

    N_min: float
    terms: tuple[float, float, float]
    C_d: float


def width_condition(n: int, d: int, lambda_S: float, R0: float, delta: float = 0.1) -> WidthCondition:
    r"""Smallest width allowed by the linear-convergence theorem (arXiv:2106.06682, in Yang's lecture):

    .. math::

        \begin{aligned}
        N \ge \max\Big\{&\frac{32 n^4 C_d}{\lambda_S^2\delta},\
            \frac{4\sqrt2\,d n\sqrt{R_S(\theta^0)}}{\lambda_S},\\
            &\frac{256\sqrt2\,d^3n^2\log(4N(d+1)/\delta)\sqrt{R_S(\theta^0)}}{\lambda_S^2}\Big\},
        \end{aligned}

    the last term solved for :math:`N` by fixed-point iteration (it grows like :math:`\log N`).

    Parameters
    ----------
    n, d : int >= 1
    lambda_S : float > 0
        :math:`\lambda_{\min}(K^{(a)})`.
    R0 : float >= 0
        :math:`R_S(\theta^0)`.
    delta : float in (0, 1)
        Failure probability.

    Returns
    -------
    WidthCondition
    """
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    lam = check_real(lambda_S, "lambda_S", low=0.0, low_open=True)
    R0 = check_real(R0, "R0", low=0.0)
    delta = check_real(delta, "delta", low=0.0, high=1.0, low_open=True, high_open=True)
    Cd = l1_moment(d)
    t1 = 32.0 * n**4 * Cd / (lam**2 * delta)
    t2 = 4.0 * np.sqrt(2.0) * d * n * np.sqrt(R0) / lam
    c3 = 256.0 * np.sqrt(2.0) * d**3 * n**2 * np.sqrt(R0) / lam**2
    N = max(t1, t2, 1.0)
    for _ in range(200):
        t3 = c3 * np.log(4.0 * N * (d + 1) / delta)
        N_new = max(t1, t2, t3)
        if N_new <= N * (1 + 1e-12):
            break
        N = N_new
    return WidthCondition(N_min=float(N), terms=(float(t1), float(t2), float(t3)), C_d=Cd)


__all__ = ["EmpiricalNTK", "Generalisation", "LambdaMin", "LinearConvergence", "Linearised", "Run",
           "WidthCondition", "WidthSweep", "empirical_ntk", "gamma", "generalisation_curve", "init",
           "jacobian", "l1_moment", "lambda_min", "lambda_min_fluctuations",
           "limit_kernel", "linear_convergence", "linearised", "ntk_predictor", "output", "risk",
           "sweep_widths", "time_factor", "train", "width_condition"]
