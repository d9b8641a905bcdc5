r"""Two-layer networks in the mean-field and the NTK scaling (chapters 1, 2 and 6).

With neurons :math:`\theta_i = (a_i, b_i, w_i) \in \mathbb{R}\times\mathbb{R}\times\mathbb{R}^d`
and :math:`\sigma_*(x;\theta_i) = a_i\,\sigma(\langle w_i, x\rangle + b_i)`,

.. math::

    f_N(x;\theta) = c_N \sum_{i=1}^N \sigma_*(x;\theta_i), \qquad
    c_N = \begin{cases} 1/N & \text{mean-field scaling}\\ 1/\sqrt N & \text{NTK scaling.}\end{cases}

The default parametrisation is :math:`\theta = w` (``a`` = 1, ``b`` = 0, neither trained).
Every function is vectorised over samples (rows of ``X``, shape ``(n, d)``) and neurons (rows of
``W``, shape ``(N, d)``); no Python loop runs over either.

**Vector outputs** (chapter 7, De Bortoli et al. 2020). A neuron :math:`w\in\mathbb R^{Cd}` read as
:math:`C` rows :math:`w^{(c)}\in\mathbb R^d` gives the feature map
:math:`F(w, x) = (\sigma(\langle w^{(c)}, x\rangle))_{c\le C}` and the network
:math:`f_N(x) = \frac1N\sum_k F(w^k, x)\in\mathbb R^C` (second layer fixed to :math:`1/N`):
:func:`vector_forward`, with :func:`vector_preactivations`, :func:`n_outputs` and
:func:`as_runs` (a stack of ``R`` networks, shape ``(R, N, Cd)``). :mod:`mflib.chaos` trains it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import activations as _act
from .validation import as_array, check_int

__all__ = ["SCALINGS", "scale_factor", "preactivations", "neuron_outputs", "forward",
           "NeuronGradients", "neuron_gradients", "RiskGradient", "risk_gradient",
           "as_runs", "n_outputs", "vector_preactivations", "vector_forward"]

SCALINGS = ("mean_field", "ntk")


def scale_factor(N: int, scaling: str = "mean_field") -> float:
    r"""The output scale :math:`c_N`: :math:`1/N` (``"mean_field"``) or :math:`1/\sqrt N` (``"ntk"``)."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    N = check_int(N, "N", minimum=1)
    return 1.0 / N if scaling == "mean_field" else 1.0 / np.sqrt(N)


def _check(X, W, a, b):
    W = as_array(W, "W", ndim=2)
    if W.shape[0] == 0:
        raise ValueError("W must have at least one row (N >= 1 neurons), got shape "
                         f"{W.shape}")
    X = as_array(X, "X", ndim=2)
    if X.shape[1] != W.shape[1]:
        raise ValueError(f"X must have d = {W.shape[1]} columns to match W, got shape {X.shape}")
    N = W.shape[0]
    if a is not None:
        a = as_array(a, "a", shape=(N,))
    if b is not None:
        b = as_array(b, "b", shape=(N,))
    return X, W, a, b


def preactivations(X, W, b=None) -> np.ndarray:
    r""":math:`H_{ji} = \langle w_i, x_j\rangle + b_i`, shape ``(n, N)``."""
    X, W, _, b = _check(X, W, None, b)
    H = X @ W.T
    if b is not None:
        H += b
    return H


def neuron_outputs(X, W, a=None, b=None, activation="relu") -> np.ndarray:
    r"""The matrix :math:`\sigma_*(x_j;\theta_i)`, shape ``(n, N)``."""
    act = _act.get(activation)
    X, W, a, b = _check(X, W, a, b)
    S = act.sigma(preactivations(X, W, b))
    if a is not None:
        S *= a
    return S


def forward(X, W, a=None, b=None, activation="relu", scaling: str = "mean_field") -> np.ndarray:
    r"""The network output :math:`f_N(x_j;\theta)` for each row of ``X``.

    Parameters
    ----------
    X : array, shape (n, d)
        Inputs.
    W : array, shape (N, d)
        First-layer weights :math:`w_i`.
    a, b : array, shape (N,), optional
        Output weights and biases (default: ``a`` = 1, ``b`` = 0, i.e. :math:`\theta = w`).
    activation : str or Activation
    scaling : {"mean_field", "ntk"}

    Returns
    -------
    f : array, shape (n,)
    """
    S = neuron_outputs(X, W, a, b, activation)
    return scale_factor(S.shape[1], scaling) * S.sum(axis=1)


class NeuronGradients(NamedTuple):
    r"""Per-neuron gradients of :math:`\sigma_*(x_j;\theta_i)` (not multiplied by :math:`c_N`).

    ``da[j, i]`` = :math:`\sigma(\langle w_i,x_j\rangle+b_i)`, ``db[j, i]`` =
    :math:`a_i\sigma'(\cdot)`, and ``dw[j, i, :]`` = :math:`a_i\sigma'(\cdot)\,x_j`, shapes
    ``(n, N)``, ``(n, N)`` and ``(n, N, d)``.
    """

    da: np.ndarray
    db: np.ndarray
    dw: np.ndarray


def neuron_gradients(X, W, a=None, b=None, activation="relu") -> NeuronGradients:
    r"""Gradients of each neuron's output with respect to its own parameters.

    The ``dw`` array has ``n * N * d`` entries; for large problems use :func:`risk_gradient`, which
    contracts over samples with one matrix product instead.
    """
    act = _act.get(activation)
    X, W, a, b = _check(X, W, a, b)
    H = preactivations(X, W, b)
    S = act.sigma(H)
    D = act.dsigma(H)
    if a is not None:
        D = D * a
    return NeuronGradients(da=S, db=D, dw=D[:, :, None] * X[:, None, :])


class RiskGradient(NamedTuple):
    r"""Gradient of the empirical risk with respect to ``a`` (N,), ``b`` (N,) and ``W`` (N, d)."""

    a: np.ndarray
    b: np.ndarray
    W: np.ndarray
    residual: np.ndarray


def risk_gradient(X, y, W, a=None, b=None, activation="relu",
                  scaling: str = "mean_field") -> RiskGradient:
    r"""Gradient of :math:`\hat R(\theta) = \frac1n\sum_j (y_j - f_N(x_j;\theta))^2`.

    With residuals :math:`r_j = y_j - f_N(x_j)`,
    :math:`\nabla_{w_i}\hat R = -\frac{2 c_N}{n}\sum_j r_j\,a_i\sigma'(h_{ji})\,x_j`, computed as one
    matrix product :math:`C^\top X` with :math:`C_{ji} = r_j a_i \sigma'(h_{ji})`; similarly for
    :math:`a_i` and :math:`b_i`. Also returns the residuals, shape ``(n,)``.
    """
    act = _act.get(activation)
    X, W, a, b = _check(X, W, a, b)
    y = as_array(y, "y", shape=(X.shape[0],))
    n, N = X.shape[0], W.shape[0]
    c = scale_factor(N, scaling)
    H = preactivations(X, W, b)
    S = act.sigma(H)
    f = c * (S @ a if a is not None else S.sum(axis=1))
    r = y - f
    D = act.dsigma(H)
    if a is not None:
        D *= a
    coef = -2.0 * c / n
    C = D * r[:, None]
    return RiskGradient(a=coef * (r @ S), b=coef * C.sum(axis=0), W=coef * (C.T @ X), residual=r)


# ----------------------------------------------------------------------------------------------
# Vector outputs: one unit per class, second layer 1/N (chapter 7)
# ----------------------------------------------------------------------------------------------
def as_runs(W, name: str = "W", dtype=np.float64) -> tuple[np.ndarray, bool]:
    """``W`` of shape (N, p) or (R, N, p) as an (R, N, p) array, and whether it had a run axis.

    Checks the rank, finiteness and that there is at least one run and one neuron.
    """
    W = as_array(W, name, dtype=dtype)
    if W.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (N, p) or (R, N, p), got {W.shape}")
    if W.ndim == 2:
        if W.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one neuron, got shape {W.shape}")
        return W[None], False
    if W.shape[1] == 0 or W.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one run and one neuron, got shape {W.shape}")
    return W, True


def n_outputs(p: int, d: int, name: str = "W") -> int:
    """The number of outputs :math:`C = p/d` of neurons with ``p`` coordinates on inputs of
    dimension ``d``; ``ValueError`` naming ``name`` when ``p`` is not a multiple of ``d``."""
    p = check_int(p, "p", minimum=1)
    d = check_int(d, "d", minimum=1)
    if p % d:
        raise ValueError(f"{name} has p = {p} coordinates per neuron, which is not a multiple of the "
                         f"input dimension d = {d} (p = C d with C outputs)")
    return p // d


def _float_dtype(A):
    return A.dtype if isinstance(A, np.ndarray) and A.dtype.kind == "f" else np.float64


def _vector_preact(X, W, C):
    """Unchecked core of :func:`vector_preactivations`: X (R or 1, n, d), W (R, N, p)."""
    R, N, p = W.shape
    d = p // C
    H = np.matmul(X, W.reshape(R, N * C, d).transpose(0, 2, 1))     # (R, n, N C)
    return H.reshape(R, X.shape[1], N, C)


def vector_preactivations(X, W, C: int) -> np.ndarray:
    r""":math:`H_{rmkc} = \langle w^{k,(c)}_r, x_m\rangle`, shape ``(R, n, N, C)``.

    Parameters
    ----------
    X : array, shape (n, d), or (R, n, d) / (1, n, d): one set of inputs per run or shared
    W : array, shape (R, N, p) with p = C d
    C : int >= 1
        Number of outputs (units per neuron).
    """
    C = check_int(C, "C", minimum=1)
    W = as_array(W, "W", ndim=3, dtype=_float_dtype(W))        # float32 stays float32
    if 0 in W.shape:
        raise ValueError(f"W must hold at least one run, one neuron and one coordinate, got shape "
                         f"{W.shape}")
    X = as_array(X, "X", dtype=_float_dtype(X))
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3 or X.shape[0] not in (1, W.shape[0]):
        raise ValueError(f"X must have shape (n, d), (1, n, d) or (R, n, d) with R = {W.shape[0]}, "
                         f"got {X.shape}")
    if W.shape[2] != C * X.shape[2]:
        raise ValueError(f"W must have p = C d = {C * X.shape[2]} coordinates per neuron "
                         f"(C = {C}, d = {X.shape[2]}), got shape {W.shape}")
    return _vector_preact(X, W, C)


def vector_forward(X, W, activation="relu") -> np.ndarray:
    r"""The vector-output network :math:`f_N(x) = \frac1N\sum_k F(w^k, x)\in\mathbb R^C`.

    Parameters
    ----------
    X : array, shape (n, d)
    W : array, shape (N, p) or (R, N, p), with p = C d
        Neurons of one network or of ``R`` networks.
    activation : str or Activation

    Returns
    -------
    f : array, shape (n, C) or (R, n, C)
    """
    act = _act.get(activation)
    X = as_array(X, "X", ndim=2)
    W3, batched = as_runs(W)
    C = n_outputs(W3.shape[2], X.shape[1])
    f = act.sigma(_vector_preact(X[None], W3, C)).mean(axis=2)
    return f if batched else f[0]
