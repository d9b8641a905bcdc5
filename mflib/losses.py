r"""Losses on network outputs and the classification accuracy (chapter 7).

A loss :math:`\ell(f, y)` compares an output :math:`f\in\mathbb R^C` with a target :math:`y`:

* ``"squared"``: :math:`\ell(f, y) = |f - y|^2`, :math:`\partial_1\ell = 2(f - y)`, targets
  :math:`y\in\mathbb R^C` (a vector (n,) when :math:`C = 1`);
* ``"cross_entropy"``: :math:`\ell(f, y) = -\log\operatorname{softmax}(f)_y`,
  :math:`\partial_1\ell = \operatorname{softmax}(f) - e_y`, integer class labels
  :math:`y\in\{0,\dots,C-1\}`.

The checked functions (:func:`loss_value`, :func:`loss_derivative`, :func:`accuracy`) take outputs
of shape (n, C); :func:`check_loss` and :func:`check_targets` validate once, after which
:func:`per_sample` and :func:`derivative` act on outputs with any leading axes (runs, batches)
without further checks, for the inner loops of :mod:`mflib.chaos`.
"""

from __future__ import annotations

import numpy as np

from .validation import as_array, check_int

LOSSES = ("squared", "cross_entropy")

__all__ = ["LOSSES", "check_loss", "check_targets", "softmax", "per_sample", "derivative",
           "loss_value", "loss_derivative", "accuracy"]


def check_loss(loss) -> str:
    """The loss name, or ``ValueError`` naming the known ones."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def check_targets(y, n: int, loss: str, C: int, dtype=np.float64) -> np.ndarray:
    r"""Targets for ``n`` outputs in :math:`\mathbb R^C`, checked against the loss.

    Returns integer labels (n,) for ``"cross_entropy"`` (needs :math:`C\ge 2` and labels in
    :math:`[0, C)`), and an array (n, C) of ``dtype`` for ``"squared"`` (a vector (n,) is accepted
    when :math:`C = 1`).
    """
    n = check_int(n, "n", minimum=0)
    C = check_int(C, "C", minimum=1)
    if loss == "cross_entropy":
        if y is None or isinstance(y, str | bytes):
            raise TypeError(f"y must be integer class labels, got {type(y).__name__}")
        y = np.asarray(y)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must be integer class labels of shape ({n},) for the cross-entropy loss, "
                             f"got dtype {y.dtype} and shape {y.shape}")
        if C < 2:
            raise ValueError(f"the cross-entropy loss needs C >= 2 outputs, got C = {C}")
        if y.size and (y.min() < 0 or y.max() >= C):
            raise ValueError(f"y must hold labels in [0, {C}), got range [{y.min()}, {y.max()}]")
        return y.astype(np.int64)
    if loss != "squared":
        check_loss(loss)
    y = as_array(y, "y", dtype=dtype)
    if y.shape == (n,) and C == 1:
        return y[:, None]
    if y.shape != (n, C):
        raise ValueError(f"y must have shape ({n},) for C = 1 or ({n}, {C}), got {y.shape}")
    return y


def softmax(f) -> np.ndarray:
    r""":math:`\operatorname{softmax}(f)_c = e^{f_c}/\sum_{c'} e^{f_{c'}}` along the last axis
    (shifted by the maximum, so large outputs do not overflow)."""
    f = as_array(f, "f")
    if f.ndim < 1 or f.shape[-1] == 0:
        raise ValueError(f"f must have at least one output along its last axis, got shape {f.shape}")
    return _softmax(f)


def _softmax(f):
    z = f - f.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def derivative(f, y, loss: str) -> np.ndarray:
    r""":math:`\partial_1\ell(f, y)` for outputs f (..., n, C) and checked targets y (unchecked)."""
    if loss == "squared":
        return 2.0 * (f - y)
    G = _softmax(f)
    idx = np.broadcast_to(y[..., None], G.shape[:-1] + (1,))
    np.put_along_axis(G, idx, np.take_along_axis(G, idx, -1) - 1.0, axis=-1)
    return G


def per_sample(f, y, loss: str) -> np.ndarray:
    r""":math:`\ell(f, y)` for outputs f (..., n, C) and checked targets y; shape (..., n) (unchecked)."""
    if loss == "squared":
        return ((f - y) ** 2).sum(axis=-1)
    z = f - f.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=-1))
    yy = np.broadcast_to(y[..., None], f.shape[:-1] + (1,))
    return lse - np.take_along_axis(z, yy, -1)[..., 0]


def loss_value(f, y, loss: str = "squared") -> np.ndarray:
    r"""The loss per sample: :math:`|f - y|^2` (squared) or :math:`-\log\operatorname{softmax}(f)_y`.

    Parameters
    ----------
    f : array, shape (n, C)
    y : array, shape (n,) or (n, C) (squared), integer labels (n,) (cross-entropy)
    loss : {"squared", "cross_entropy"}

    Returns
    -------
    array, shape (n,)
    """
    loss = check_loss(loss)
    f = as_array(f, "f", ndim=2)
    return per_sample(f, check_targets(y, f.shape[0], loss, f.shape[1]), loss)


def loss_derivative(f, y, loss: str = "squared") -> np.ndarray:
    r""":math:`\partial_1\ell(f, y)`: :math:`2(f - y)` (squared) or
    :math:`\operatorname{softmax}(f) - e_y` (cross-entropy); shape (n, C)."""
    loss = check_loss(loss)
    f = as_array(f, "f", ndim=2)
    return derivative(f, check_targets(y, f.shape[0], loss, f.shape[1]), loss)


def accuracy(f, y) -> np.ndarray | float:
    r"""Fraction of samples whose largest output :math:`\arg\max_c f_c` equals the label.

    Parameters
    ----------
    f : array, shape (n, C) or (R, n, C)
        Outputs of one network or of ``R`` networks (for instance :func:`mflib.chaos.outputs`).
    y : array, shape (n,)
        Integer class labels.

    Returns
    -------
    float, or array (R,)
    """
    f = as_array(f, "f")
    if f.ndim not in (2, 3):
        raise ValueError(f"f must have shape (n, C) or (R, n, C), got {f.shape}")
    if y is None or isinstance(y, str | bytes):
        raise TypeError(f"y must be integer class labels, got {type(y).__name__}")
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be integer class labels, got dtype {y.dtype}")
    if y.shape != (f.shape[-2],):
        raise ValueError(f"y must have shape ({f.shape[-2]},), got {y.shape}")
    acc = (f.argmax(axis=-1) == y).mean(axis=-1)
    return float(acc) if f.ndim == 2 else acc
