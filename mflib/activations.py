r"""Scalar activations :math:`\sigma` with their derivatives (chapter 1 onwards).

An :class:`Activation` bundles :math:`\sigma`, :math:`\sigma'`, a name and the points where
:math:`\sigma'` jumps (``kinks``). The kinks matter to quadrature: Gaussian expectations of a
piecewise-smooth function converge exponentially only when the integration is split there
(see :mod:`mflib.problems`).

Built in (look them up with :func:`get`):

* ``relu``: :math:`\sigma(t) = \max(t, 0)`;
* ``truncated_relu``: :math:`0` for :math:`t < 0`, :math:`t` on :math:`[0, 1]`, :math:`1` above,
  the bounded activation of the anisotropic-Gaussian application theorem of Mei, Misiakiewicz
  and Montanari (2019);
* ``sigmoid``: :math:`\sigma(t) = 1 / (1 + e^{-2t}) = (1 + \tanh t)/2`;
* ``tanh``;
* ``identity``: :math:`\sigma(t) = t`, the linear-Gaussian case of chapter 7 whose noise
  covariance has a closed form;
* ``bump``: bounded, non-monotone, even and piecewise linear;
* ``mmn``: bounded, non-monotone, piecewise linear, the activation of the two-initialisation
  example of Mei, Montanari and Nguyen (2018) (chapter 4 uses it for the law of :math:`r` too).

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
        """:math:`\\sigma(t)`, elementwise (NaN and inf propagate, as in NumPy's ufuncs)."""
        return self.sigma(_values(t))

    def derivative(self, t):
        """:math:`\\sigma'(t)`, elementwise."""
        return self.dsigma(_values(t))

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _values(t) -> np.ndarray:
    if t is None or isinstance(t, str | bytes) or np.iscomplexobj(t):
        raise TypeError(f"t must be an array of real numbers, got {type(t).__name__}")
    try:
        return np.asarray(t, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"t must be an array of real numbers, got {type(t).__name__}") from exc


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
    with np.errstate(over="ignore"):         # cosh overflows for |t| > 710: the value is 0
        return 0.5 / np.cosh(t) ** 2


def _tanh(t):
    return np.tanh(t)


def _dtanh(t):
    with np.errstate(over="ignore"):         # cosh overflows for |t| > 710: the value is 0
        return 1.0 / np.cosh(t) ** 2


def _identity(t):
    return t


def _didentity(t):
    return np.ones_like(t)


_BUMP_T = np.array([0.0, 0.25, 0.5, 1.5])
_BUMP_V = np.array([-1.0, 0.0, -1.0, 1.0])


def _bump(t):
    return np.interp(np.abs(t), _BUMP_T, _BUMP_V)


def _dbump(t):
    a = np.abs(t)
    slope = np.select([a < 0.25, a < 0.5, a < 1.5], [4.0, -4.0, 2.0], 0.0)
    return slope * np.sign(t)


relu = Activation("relu", _relu, _drelu, kinks=(0.0,))
truncated_relu = Activation("truncated_relu", _trelu, _dtrelu, kinks=(0.0, 1.0))
sigmoid = Activation("sigmoid", _sigmoid, _dsigmoid)
tanh = Activation("tanh", _tanh, _dtanh)
identity = Activation("identity", _identity, _didentity)
r"""The identity :math:`\sigma(t) = t`, so :math:`F(w, x) = \langle w, x\rangle`: the linear-Gaussian
case of chapter 7, whose noise covariance :math:`\Sigma` has a closed form."""
bump = Activation("bump", _bump, _dbump, kinks=(-1.5, -0.5, -0.25, 0.0, 0.25, 0.5, 1.5))
r"""A bounded, non-monotone, even, piecewise-linear activation (chapter 4's two initialisations):
:math:`\sigma(t)` interpolates :math:`(|t|, \sigma) = (0, -1), (0.25, 0), (0.5, -1), (1.5, 1)` and is 1
beyond :math:`|t| = 1.5`. On the isotropic problem with :math:`\Delta = 0.5` its reduced risk has a
poor local minimum at small radius and a good one near :math:`r = 1.4`, separated by a barrier near
:math:`r = 0.28`."""

_MMN_T = np.array([0.0, 0.5, 1.5])
_MMN_V = np.array([-2.5, -4.0, 7.5])


def _mmn(t):
    return np.interp(t, _MMN_T, _MMN_V)


def _dmmn(t):
    return np.select([t < 0.0, t < 0.5, t < 1.5], [0.0, -3.0, 11.5], 0.0)


mmn = Activation("mmn", _mmn, _dmmn, kinks=(0.0, 0.5, 1.5))
r"""The bounded, non-monotone, piecewise-linear activation of Mei, Montanari and Nguyen (2018) for
their two-initialisations example: :math:`\sigma(t) = -2.5` for :math:`t\le0`, :math:`7.5` for
:math:`t\ge1.5`, linear from :math:`(0, -2.5)` to :math:`(0.5, -4)` and from :math:`(0.5, -4)` to
:math:`(1.5, 7.5)` (chapter 4: the law of :math:`r` changes shape, and two starts reach two
outcomes)."""

BUILTIN: dict[str, Activation] = {a.name: a for a in (relu, truncated_relu, sigmoid, tanh,
                                                      identity, bump, mmn)}


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
