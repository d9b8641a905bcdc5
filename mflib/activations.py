r"""Scalar activations :math:`\sigma` with their derivatives (chapter 1 onwards).

An :class:`Activation` bundles :math:`\sigma`, :math:`\sigma'`, a name and the points where
:math:`\sigma'` jumps (``kinks``). The kinks matter to quadrature: Gaussian expectations of a
piecewise-smooth function converge exponentially only when the integration is split there
(see :mod:`mflib.problems`).

Built in (look them up with :func:`get`):

* ``relu``: :math:`\sigma(t) = \max(t, 0)`;
* ``truncated_relu``: :math:`0` for :math:`t < 0`, :math:`t` on :math:`[0, 1]`, :math:`1` above,
  the bounded activation of the approximation theorem in the seed slides;
* ``sigmoid``: :math:`\sigma(t) = 1 / (1 + e^{-2t})` (the slides' normalisation);
* ``tanh``.

A user-supplied activation is any ``Activation(name, sigma, dsigma, kinks=())`` whose two callables
act elementwise on NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ArrayFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Activation:
    r"""An activation function :math:`\sigma:\mathbb{R}\to\mathbb{R}` and its derivative.

    Parameters
    ----------
    name : str
        Short name used in plots and error messages.
    sigma : callable
        Elementwise :math:`\sigma`, array in, array of the same shape out.
    dsigma : callable
        Elementwise :math:`\sigma'` (a one-sided value at the kinks is fine).
    kinks : tuple of float
        Points where :math:`\sigma'` is discontinuous (empty for smooth activations).
    """

    name: str
    sigma: ArrayFn
    dsigma: ArrayFn
    kinks: tuple[float, ...] = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError("name must be a non-empty string")
        if not callable(self.sigma) or not callable(self.dsigma):
            raise TypeError("sigma and dsigma must be callables acting elementwise on arrays")
        kinks = tuple(sorted(float(k) for k in self.kinks))
        if not all(np.isfinite(kinks)):
            raise ValueError("kinks must be finite numbers")
        object.__setattr__(self, "kinks", kinks)

    def __call__(self, t):
        return self.sigma(np.asarray(t, dtype=float))

    def derivative(self, t):
        """:math:`\\sigma'(t)`, elementwise."""
        return self.dsigma(np.asarray(t, dtype=float))

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _relu(t):
    return np.maximum(t, 0.0)


def _drelu(t):
    return (t > 0).astype(np.result_type(t, np.float64))


def _trelu(t):
    return np.clip(t, 0.0, 1.0)


def _dtrelu(t):
    return ((t > 0) & (t < 1)).astype(np.result_type(t, np.float64))


def _sigmoid(t):
    # 1 / (1 + exp(-2t)) = (1 + tanh(t)) / 2, stable for all t.
    return 0.5 * (1.0 + np.tanh(t))


def _dsigmoid(t):
    return 0.5 / np.cosh(t) ** 2


def _tanh(t):
    return np.tanh(t)


def _dtanh(t):
    return 1.0 / np.cosh(t) ** 2


relu = Activation("relu", _relu, _drelu, kinks=(0.0,))
truncated_relu = Activation("truncated_relu", _trelu, _dtrelu, kinks=(0.0, 1.0))
sigmoid = Activation("sigmoid", _sigmoid, _dsigmoid)
tanh = Activation("tanh", _tanh, _dtanh)

BUILTIN: dict[str, Activation] = {a.name: a for a in (relu, truncated_relu, sigmoid, tanh)}


def get(activation: str | Activation) -> Activation:
    """Return the :class:`Activation` for a name or pass an :class:`Activation` through.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    TypeError
        For anything that is neither a string nor an :class:`Activation`.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return BUILTIN[activation]
        except KeyError:
            raise ValueError(f"activation must be one of {sorted(BUILTIN)} or an "
                             f"mflib.activations.Activation, got {activation!r}") from None
    raise TypeError(f"activation must be a name or an mflib.activations.Activation, "
                    f"got {type(activation).__name__}")
