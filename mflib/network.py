r"""Two-layer networks in the mean-field and the NTK scaling (chapters 1, 2 and 6).

With neurons :math:`\theta_i = (a_i, b_i, w_i) \in \mathbb{R}\times\mathbb{R}\times\mathbb{R}^d`
and :math:`\sigma_*(x;\theta_i) = a_i\,\sigma(\langle w_i, x\rangle + b_i)`,

.. math::

    f_N(x;\theta) = c_N \sum_{i=1}^N \sigma_*(x;\theta_i), \qquad
    c_N = \begin{cases} 1/N & \text{mean-field scaling}\\ 1/\sqrt N & \text{NTK scaling.}\end{cases}

The default parametrisation is :math:`\theta = w` (``a`` = 1, ``b`` = 0, neither trained).
Every function is vectorised over samples (rows of ``X``, shape ``(n, d)``) and neurons (rows of
``W``, shape ``(N, d)``); no Python loop runs over either.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import activations as _act
from .validation import as_array, check_int

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
