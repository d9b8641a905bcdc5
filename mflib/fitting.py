r"""Log-log rate fits with confidence intervals: the one rate fit every chapter and module uses.

A rate :math:`y \approx C x^{s}` is measured by fitting :math:`\log y = a + s\log x` with
:func:`loglog_fit`, in one of three ways, chosen by the arguments:

``"weighted"`` (``y`` and its standard errors ``y_se``)
    Weighted least squares with weights :math:`w_k = y_k/\mathrm{se}_k`, the inverse standard
    error of :math:`\log y_k` to first order. The errors are taken as known: the covariance of
    :math:`(a, s)` is :math:`(X^\top W^2 X)^{-1}` and the interval uses the normal quantile. If
    the points scatter more than their errors allow, :math:`\chi^2/\mathrm{dof} > 1` with
    :math:`\chi^2 = \sum_k w_k^2 r_k^2` on :math:`K - 2` degrees of freedom, the covariance is
    inflated by :math:`\chi^2/\mathrm{dof}` and the interval uses Student's t on :math:`K - 2`
    degrees of freedom. A scatter smaller than the errors never shrinks the interval below the
    one the errors imply.
``"ols"`` (``y`` alone)
    Ordinary least squares; the covariance is :math:`\hat\sigma^2 (X^\top X)^{-1}` with
    :math:`\hat\sigma^2` the residual variance on :math:`K - 2` degrees of freedom, and the
    interval uses Student's t. This error bar measures only the scatter about the line: with a
    single random run per point it is not a confidence interval over runs.
``"bootstrap"`` (``replicates``, shape ``(K, R)``)
    The slope of :math:`\log\bar y` against :math:`\log x`, with :math:`\bar y_k` the mean of the
    ``R`` replicates at :math:`x_k` (ordinary least squares), and a percentile interval from
    ``n_boot`` bootstrap resamples of the replicates. With ``paired=True`` (default) a column is
    one run followed across all :math:`x` (it may share randomness across :math:`x`, e.g. nested
    sub-systems of one large system), and whole columns are resampled; with ``paired=False`` the
    replicates at each :math:`x` are independent of the others and are resampled within each
    :math:`x` (rows may then have different lengths). The resamples come from ``rng``, a fixed
    internal generator by default, so the result is deterministic.

Every method needs at least 4 points and positive, finite values; the interval is a 95% one by
default. The result is a :class:`LogLogFit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .validation import as_array, check_int, check_real, check_rng

MIN_POINTS = 4
"""Fewest points :func:`loglog_fit` accepts: two parameters and at least two degrees of freedom."""


@dataclass(frozen=True, eq=False)
class LogLogFit:
    r"""Result of :func:`loglog_fit`: the line :math:`\log y = \mathrm{intercept} +
    \mathrm{slope}\,\log x` and its uncertainty.

    Attributes
    ----------
    slope, intercept : float
        Fitted exponent :math:`s` and :math:`a = \log C`.
    slope_se : float
        Standard error of the slope (inflated by :math:`\chi^2/\mathrm{dof}` when above 1 for
        ``"weighted"``; the standard deviation of the bootstrap slopes for ``"bootstrap"``).
    ci : (float, float)
        Confidence interval of the slope at ``level``.
    level : float
        Confidence level of ``ci`` and of :meth:`band`.
    chi2_dof : float or None
        :math:`\chi^2/(K - 2)` of the weighted fit; ``None`` for ``"ols"`` and ``"bootstrap"``,
        which have no standard errors to measure the scatter against.
    method : str
        ``"weighted"``, ``"ols"`` or ``"bootstrap"``.
    n : int
        Number of points :math:`K`.

    ``fit["slope"]`` is the same as ``fit.slope`` (mapping-style access for the fields and
    ``band``).
    """

    slope: float
    slope_se: float
    intercept: float
    ci: tuple[float, float]
    level: float
    chi2_dof: float | None
    method: str
    n: int
    _cov: np.ndarray | None = field(default=None, repr=False)
    _quantile: float = field(default=np.nan, repr=False)
    _boot: np.ndarray | None = field(default=None, repr=False)

    def band(self, x):
        """Lower, middle and upper values of the fitted line's confidence band at ``x``.

        Pointwise at ``level``: from the covariance of (intercept, slope) and the interval's
        quantile, or the percentiles of the bootstrap lines. Returns three arrays shaped like
        ``x``, in the units of ``y``.
        """
        x = as_array(x, "x")
        if np.any(x <= 0):
            raise ValueError("x must be > 0 (a log-log fit)")
        lx = np.log(x)
        mid = self.intercept + self.slope * lx
        if self._boot is not None:
            lines = self._boot[:, :1] + self._boot[:, 1:] * lx.reshape(1, -1)
            lo, hi = np.quantile(lines, [(1 - self.level) / 2, (1 + self.level) / 2], axis=0)
            lo, hi = lo.reshape(lx.shape), hi.reshape(lx.shape)
        else:
            c = self._cov
            half = self._quantile * np.sqrt(c[0, 0] + 2 * c[0, 1] * lx + c[1, 1] * lx**2)
            lo, hi = mid - half, mid + half
        return np.exp(lo), np.exp(mid), np.exp(hi)

    def __getitem__(self, key: str):
        if key not in ("slope", "slope_se", "intercept", "ci", "level", "chi2_dof", "method", "n",
                       "band"):
            raise KeyError(key)
        return getattr(self, key)


def _check_x(x) -> np.ndarray:
    x = as_array(x, "x", ndim=1)
    if x.size < MIN_POINTS:
        raise ValueError(f"x must have at least {MIN_POINTS} points for a slope with an interval, "
                         f"got {x.size}")
    if np.any(x <= 0):
        raise ValueError("x must be positive for a log-log fit")
    if np.unique(x).size < 2:
        raise ValueError("x must have at least 2 distinct values")
    return x


def _least_squares(lx, ly, w):
    """Weighted least squares of ly on (1, lx): coefficients, unscaled covariance, chi^2."""
    A = np.stack([np.ones_like(lx), lx], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(A, ly * w, rcond=None)
    r = ly * w - A @ coef
    return coef, np.linalg.inv(A.T @ A), float(r @ r)


def loglog_fit(x, y=None, y_se=None, level: float = 0.95, *, replicates=None, paired: bool = True,
               n_boot: int = 2000, rng: np.random.Generator | None = None) -> LogLogFit:
    r"""Fit :math:`\log y = a + s\log x`; the method follows from the arguments (module docstring).

    Parameters
    ----------
    x : array, shape (K,)
        Positive abscissae, ``K >= 4``.
    y : array, shape (K,), optional
        Positive values (give ``y`` or ``replicates``, not both).
    y_se : array, shape (K,), optional
        Positive standard errors of ``y``: a weighted fit with the known-variance interval,
        inflated by :math:`\max(1, \chi^2/\mathrm{dof})`. Without them: ordinary least squares.
    level : float
        Confidence level of ``ci`` and of ``band``, in (0, 1).
    replicates : array, shape (K, R), or a sequence of K 1-D arrays (``paired=False`` only)
        Positive values of ``R >= 2`` independent runs at each ``x``: a bootstrap fit of the
        log of their means.
    paired : bool
        ``True``: column ``r`` is one run across all ``x``; whole columns are resampled.
        ``False``: replicates are resampled within each ``x``.
    n_boot : int
        Number of bootstrap resamples.
    rng : numpy.random.Generator, optional
        Source of the resamples; ``np.random.default_rng(0)`` when omitted.

    Returns
    -------
    LogLogFit
    """
    from scipy import stats

    level = check_real(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    n_boot = check_int(n_boot, "n_boot", minimum=2)
    x = _check_x(x)
    if replicates is not None:
        if y is not None or y_se is not None:
            raise ValueError("give either y (with optional y_se) or replicates, not both")
        return _bootstrap(x, replicates, level, paired, n_boot, rng)
    if y is None:
        raise ValueError("y is required (or replicates)")
    y = as_array(y, "y", shape=(x.size,))
    if np.any(y <= 0):
        raise ValueError("y must be positive for a log-log fit")
    lx, ly = np.log(x), np.log(y)
    dof = x.size - 2
    t = float(stats.t.ppf(0.5 + level / 2, dof))
    if y_se is None:
        coef, cov, chi2 = _least_squares(lx, ly, np.ones(x.size))
        cov, q, chi2_dof, method = cov * chi2 / dof, t, None, "ols"
    else:
        se = as_array(y_se, "y_se", shape=(x.size,))
        if np.any(se <= 0):
            raise ValueError("y_se must be positive")
        coef, cov, chi2 = _least_squares(lx, ly, y / se)
        chi2_dof = chi2 / dof
        if chi2_dof > 1.0:
            cov, q = cov * chi2_dof, t
        else:
            q = float(stats.norm.ppf(0.5 + level / 2))
        method = "weighted"
    s, se_s = float(coef[1]), float(np.sqrt(cov[1, 1]))
    return LogLogFit(slope=s, slope_se=se_s, intercept=float(coef[0]),
                     ci=(s - q * se_s, s + q * se_s), level=level, chi2_dof=chi2_dof,
                     method=method, n=int(x.size), _cov=cov, _quantile=q)


def _bootstrap(x, replicates, level, paired, n_boot, rng) -> LogLogFit:
    K = x.size
    n_boot = check_int(n_boot, "n_boot", minimum=2)
    rng = np.random.default_rng(0) if rng is None else check_rng(rng)
    if paired:
        try:
            V = np.asarray(replicates, dtype=float)
        except ValueError as exc:
            raise ValueError("replicates must be a (K, R) array when paired=True; rows of different "
                             "lengths need paired=False") from exc
        V = as_array(V, "replicates", ndim=2)
        if V.shape[0] != K:
            raise ValueError(f"replicates must have shape ({K}, R) to match x, got {V.shape}")
        rows = list(V)
    else:
        if len(replicates) != K:
            raise ValueError(f"replicates must have {K} rows to match x, got {len(replicates)}")
        rows = [as_array(v, f"replicates[{k}]", ndim=1) for k, v in enumerate(replicates)]
    if min(r.size for r in rows) < 2:
        raise ValueError("replicates must have at least 2 replicates at each x")
    if any(np.any(r <= 0) for r in rows):
        raise ValueError("replicates must be positive for a log-log fit")
    lx = np.log(x)
    xc = lx - lx.mean()

    def slopes(LY):                                      # LY (K, ...) -> slopes and intercepts
        s = np.tensordot(xc, LY - LY.mean(axis=0), axes=1) / (xc @ xc)
        return s, LY.mean(axis=0) - s * lx.mean()

    s, a = slopes(np.log(np.array([r.mean() for r in rows])))
    if paired:
        pick = rng.integers(0, V.shape[1], size=(n_boot, V.shape[1]))
        means = V[:, pick].mean(axis=2)                                     # (K, n_boot)
    else:
        means = np.stack([r[rng.integers(0, r.size, size=(n_boot, r.size))].mean(axis=1)
                          for r in rows])
    bs, ba = slopes(np.log(means))
    lo, hi = np.quantile(bs, [(1 - level) / 2, (1 + level) / 2])
    return LogLogFit(slope=float(s), slope_se=float(bs.std(ddof=1)), intercept=float(a),
                     ci=(float(lo), float(hi)), level=level, chi2_dof=None, method="bootstrap",
                     n=int(K), _boot=np.stack([ba, bs], axis=1))


@dataclass(frozen=True)
class LinearFit:
    r"""Result of :func:`linear_fit`: the line :math:`y = \mathrm{intercept} + \mathrm{slope}\,x`.

    Attributes
    ----------
    intercept, slope : float
    intercept_ci, slope_ci : (float, float)
        Confidence intervals at ``level``.
    chi2_dof : float
        :math:`\chi^2/(K - 2)` of the weighted fit (the errors taken as known).
    level : float
    n : int
    """

    intercept: float
    slope: float
    intercept_ci: tuple[float, float]
    slope_ci: tuple[float, float]
    chi2_dof: float
    level: float
    n: int


def linear_fit(x, y, y_se, level: float = 0.95) -> LinearFit:
    r"""Weighted least squares of :math:`y = a + s x` with standard errors ``y_se``, for an
    extrapolation to :math:`x = 0` (a limit as a step size goes to 0, say).

    The same estimator and intervals as :func:`loglog_fit`'s ``"weighted"`` method, on
    :math:`(x, y)` instead of their logarithms: the errors are taken as known (normal quantile)
    unless the points scatter more than they allow, :math:`\chi^2/\mathrm{dof} > 1`, in which
    case the covariance is inflated by :math:`\chi^2/\mathrm{dof}` and the interval uses
    Student's t on :math:`K - 2` degrees of freedom. At least 4 points.

    Parameters
    ----------
    x, y : array (K,)
        Finite abscissae (at least 2 distinct) and values.
    y_se : array (K,)
        Positive standard errors of ``y`` (from independent replicates).
    level : float
        Confidence level, in (0, 1).
    """
    from scipy import stats

    level = check_real(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    x = as_array(x, "x", ndim=1)
    if x.size < MIN_POINTS:
        raise ValueError(f"x must have at least {MIN_POINTS} points, got {x.size}")
    if np.unique(x).size < 2:
        raise ValueError("x must have at least 2 distinct values")
    y = as_array(y, "y", shape=(x.size,))
    se = as_array(y_se, "y_se", shape=(x.size,))
    if np.any(se <= 0):
        raise ValueError("y_se must be positive")
    coef, cov, chi2 = _least_squares(x, y, 1.0 / se)
    chi2_dof = chi2 / (x.size - 2)
    if chi2_dof > 1.0:
        cov, q = cov * chi2_dof, float(stats.t.ppf(0.5 + level / 2, x.size - 2))
    else:
        q = float(stats.norm.ppf(0.5 + level / 2))
    a, s = float(coef[0]), float(coef[1])
    ha, hs = q * float(np.sqrt(cov[0, 0])), q * float(np.sqrt(cov[1, 1]))
    return LinearFit(intercept=a, slope=s, intercept_ci=(a - ha, a + ha), slope_ci=(s - hs, s + hs),
                     chi2_dof=float(chi2_dof), level=level, n=int(x.size))


@dataclass(frozen=True)
class MeanCI:
    r"""Result of :func:`mean_ci`: the mean of independent replicates and its confidence interval
    (arrays shaped like the input without its last axis, or floats)."""

    mean: np.ndarray | float
    lo: np.ndarray | float
    hi: np.ndarray | float
    se: np.ndarray | float
    level: float
    n: int


def mean_ci(replicates, level: float = 0.95) -> MeanCI:
    r"""Mean of independent replicates along the last axis, with Student's t interval
    :math:`\bar y \pm t_{R-1}\,s/\sqrt R` (:math:`s` the sample standard deviation, ``R`` the
    number of replicates): the yardstick for "agrees with" when a quantity (a ratio, a measured
    rate) is random and its replicates are independent.

    Parameters
    ----------
    replicates : array, shape (..., R)
        Finite values, ``R >= 2`` replicates on the last axis.
    level : float
        Confidence level, in (0, 1).

    Returns
    -------
    MeanCI
        ``mean``, ``lo``, ``hi``, ``se`` with the shape of ``replicates[..., 0]`` (floats for a 1-D
        input), ``level`` and ``n = R``.
    """
    from scipy import stats

    level = check_real(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    v = as_array(replicates, "replicates")
    if v.ndim == 0 or v.shape[-1] < 2:
        raise ValueError(f"replicates must have at least 2 replicates on its last axis, got shape {v.shape}")
    R = v.shape[-1]
    m = v.mean(axis=-1)
    se = v.std(axis=-1, ddof=1) / np.sqrt(R)
    h = float(stats.t.ppf(0.5 + level / 2, R - 1)) * se
    out = (m, m - h, m + h, se) if v.ndim > 1 else (float(m), float(m - h), float(m + h), float(se))
    return MeanCI(*out, level=level, n=int(R))
