r"""Log-log fits with error bars: the one least-squares fit every chapter's rate uses.

A rate :math:`y \approx C x^{s}` is measured by fitting :math:`\log y = a + s\log x`. With
standard errors :math:`\mathrm{se}_k` of the :math:`y_k`, the fit is weighted by
:math:`w_k = y_k/\mathrm{se}_k` (the inverse standard error of :math:`\log y_k` to first order).
The slope's standard error is the usual least-squares one, :math:`\hat\sigma^2 (X^\top W^2 X)^{-1}`
with :math:`\hat\sigma^2` the weighted residual variance on :math:`n - 2` degrees of freedom.
Used by chapters 1 (Maurey rate), 4 (error terms in N and eps) and 6 (movement and kernel change).
"""

from __future__ import annotations

import numpy as np

from .validation import as_array


def loglog_fit(x, y, y_se=None, level: float = 0.95) -> dict:
    r"""Weighted least-squares fit of :math:`\log y = a + s \log x`.

    Parameters
    ----------
    x, y : array, shape (K,)
        Positive values, at least 3 points.
    y_se : array, shape (K,), optional
        Standard errors of ``y``; without them every point has weight 1.
    level : float
        Confidence level of ``ci`` and of ``band``.

    Returns
    -------
    dict
        ``slope``, ``slope_se``, ``intercept``, ``ci`` (Student-t interval of the slope) and
        ``band(x)``: lower, middle and upper values of the fitted line's confidence band at ``x``.
    """
    from scipy import stats

    x = as_array(x, "x", ndim=1)
    y = as_array(y, "y", shape=(x.size,))
    if x.size < 3:
        raise ValueError(f"x must have at least 3 points for a slope with an error bar, got {x.size}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for a log-log fit")
    w = np.ones(x.size) if y_se is None else y / np.maximum(as_array(y_se, "y_se", shape=(x.size,)), 1e-300)
    lx, ly = np.log(x), np.log(y)
    A = np.stack([np.ones(x.size), lx], axis=1)
    coef, *_ = np.linalg.lstsq(A * w[:, None], ly * w, rcond=None)
    r = (ly - A @ coef) * w
    cov = np.linalg.inv((A * w[:, None]).T @ (A * w[:, None])) * (r @ r) / (x.size - 2)
    t = stats.t.ppf(0.5 + level / 2, x.size - 2)
    se = float(np.sqrt(cov[1, 1]))

    def band(xq):
        lq = np.log(np.asarray(xq, dtype=float))
        Aq = np.stack([np.ones_like(lq), lq], axis=-1)
        mid = Aq @ coef
        half = t * np.sqrt(np.einsum("...i,ij,...j->...", Aq, cov, Aq))
        return np.exp(mid - half), np.exp(mid), np.exp(mid + half)

    return {"slope": float(coef[1]), "slope_se": se, "intercept": float(coef[0]),
            "ci": (float(coef[1] - t * se), float(coef[1] + t * se)), "band": band}


def loglog_slope(x, y, y_se=None) -> tuple[float, float]:
    """Slope and its standard error of :func:`loglog_fit` (same arguments)."""
    fit = loglog_fit(x, y, y_se)
    return fit["slope"], fit["slope_se"]
