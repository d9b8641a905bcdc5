"""Input validation shared by every public function of mflib.

Each helper raises a ``ValueError`` (or ``TypeError``) whose message names the argument and says
what was expected, so that a reader who passes a wrong shape learns what to fix.

Huge-but-finite inputs (the rule, one home): an array entry beyond :data:`MAX_ABS` = 1e150 in
magnitude is rejected by :func:`as_array` with a ``ValueError`` naming the argument. Beyond it,
a square or a product of two entries overflows float64, so norms, Gram matrices and potentials
would silently become ``inf``, ``0`` or ``nan``; below it every mflib function returns the right
finite answer (a homogeneous function of degree <= 2 stays representable). Scalars pass through
:func:`check_real`, which rejects non-finite values and numbers too large for a float; a scalar
step that is finite but too large to be stable shows up as a :class:`mflib.runs.DivergenceError`.
"""

from __future__ import annotations

import numbers

import numpy as np

MAX_ABS = 1e150
"""Largest magnitude :func:`as_array` accepts (squares and products stay below the float64 max)."""


def as_array(x, name: str, ndim: int | None = None, shape: tuple | None = None,
             dtype=np.float64, finite: bool = True, max_abs: float | None = MAX_ABS) -> np.ndarray:
    """Convert ``x`` to a float array and check its rank, shape and finiteness.

    ``shape`` may contain ``None`` for free axes. With ``finite``, entries beyond ``max_abs`` in
    magnitude are rejected too (the module's rule for huge-but-finite inputs).
    """
    if x is None or isinstance(x, str | bytes):
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__}")
    if (isinstance(x, np.ndarray | np.generic) and x.dtype.kind == "c" and dtype is not None
            and np.dtype(dtype).kind != "c"):
        raise TypeError(f"{name} must be real, got a complex array")   # NumPy would drop Im
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__}") from exc
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(
                s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if finite and arr.size and arr.dtype.kind in "fc":
        big = float(np.max(np.abs(arr)))
        if not np.isfinite(big):
            raise ValueError(f"{name} contains NaN or inf values")
        if max_abs is not None and big > max_abs:
            raise ValueError(f"{name} has entries of magnitude up to {big:.3g}, beyond {max_abs:.0e} "
                             f"where squares and products overflow float64; rescale {name}")
    return arr


def check_int(x, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check that ``x`` is an integer in ``[minimum, maximum]``."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {x!r}")
    x = int(x)
    if minimum is not None and x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    if maximum is not None and x > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {x}")
    return x


def check_real(x, name: str, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """Check that ``x`` is a finite real number in the given (half-)open or closed interval."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {x!r}")
    try:
        x = float(x)
    except OverflowError:
        raise ValueError(f"{name} must be finite, got a number too large for a float") from None
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    if low is not None and (x < low or (low_open and x == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {x}")
    if high is not None and (x > high or (high_open and x == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {x}")
    return x


def check_rng(rng, name: str = "rng") -> np.random.Generator:
    """Require a ``numpy.random.Generator`` (mflib never touches global random state)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name} must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng
