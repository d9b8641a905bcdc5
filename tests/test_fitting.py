"""The one log-log rate fit: exact recovery, weights, calibration of the three intervals, errors."""

import numpy as np
import pytest
from scipy import stats

import mflib as mf
from mflib.fitting import loglog_fit

X8 = np.logspace(0, 2, 8)


# ----------------------------------------------------------------------------------------------
# Exact recovery and the result object
# ----------------------------------------------------------------------------------------------
def test_noiseless_data_recovered_exactly():
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    y = 3.0 * x**-0.5
    for fit in (loglog_fit(x, y), loglog_fit(x, y, y_se=0.1 * y),
                loglog_fit(x, replicates=np.outer(y, np.ones(5))),
                loglog_fit(x, replicates=[np.full(k + 2, v) for k, v in enumerate(y)], paired=False)):
        assert fit.slope == pytest.approx(-0.5, abs=1e-12)
        assert fit.intercept == pytest.approx(np.log(3.0), abs=1e-12)
        lo, mid, hi = fit.band(x)
        assert np.allclose(mid, y, rtol=1e-12) and np.all(lo <= mid) and np.all(mid <= hi)
    assert loglog_fit(x, y).slope_se < 1e-12                        # no scatter, no error bar
    assert loglog_fit(x, replicates=np.outer(y, np.ones(5))).slope_se < 1e-12


def test_result_fields_and_mapping_access():
    x = np.array([10.0, 30.0, 100.0, 300.0, 1000.0])
    y = x**-0.7 * np.array([1.01, 0.99, 1.02, 0.98, 1.0])
    ols, wls = loglog_fit(x, y), loglog_fit(x, y, 0.02 * y)
    assert ols.method == "ols" and ols.chi2_dof is None and ols.n == 5 and ols.level == 0.95
    assert wls.method == "weighted" and wls.chi2_dof > 0
    assert loglog_fit(x, replicates=np.outer(y, [1.0, 1.1])).method == "bootstrap"
    assert ols["slope"] == ols.slope and ols["ci"] == ols.ci and ols["band"](x)[1].shape == (5,)
    with pytest.raises(KeyError):
        ols["_cov"]
    # the interval is slope +- quantile * slope_se for the two least-squares methods
    t = stats.t.ppf(0.975, 3)
    assert ols.ci == pytest.approx((ols.slope - t * ols.slope_se, ols.slope + t * ols.slope_se))
    # a 90% band lies inside the 95% one
    lo90 = loglog_fit(x, y, level=0.9).band(x)[0]
    assert np.all(lo90 >= ols.band(x)[0])


def test_weights_discount_an_uncertain_point():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    y = 2.0 * x**-1.0
    y[-1] *= 3.0                                   # one point far off the line...
    se = np.array([0.01, 0.01, 0.01, 0.01, 10.0]) * y
    assert abs(loglog_fit(x, y).slope + 1.0) > 0.2              # ...pulls the plain fit away
    assert abs(loglog_fit(x, y, se).slope + 1.0) < 1e-3         # ...but not the weighted one


# ----------------------------------------------------------------------------------------------
# Weighted fit: the known-variance interval, inflated only when chi^2/dof > 1
# ----------------------------------------------------------------------------------------------
def _known_variance_se(x, y, se):
    A = np.stack([np.ones(x.size), np.log(x)], axis=1) * (y / se)[:, None]
    return float(np.sqrt(np.linalg.inv(A.T @ A)[1, 1]))


def test_small_scatter_never_shrinks_the_interval():
    """Points much closer to the line than their error bars (chi^2/dof << 1, as in chapter 4's
    N-slope): the interval is the known-variance one, not the residual scatter's."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        y = 3.0 * X8**-0.5 * np.exp(0.005 * rng.standard_normal(X8.size))
        se = 0.05 * y
        fit = loglog_fit(X8, y, se)
        se0 = _known_variance_se(X8, y, se)
        assert fit.chi2_dof < 1
        assert fit.slope_se == pytest.approx(se0, rel=1e-12)
        half = stats.norm.ppf(0.975) * se0
        assert fit.ci == pytest.approx((fit.slope - half, fit.slope + half), rel=1e-12)
        # the residual-scatter error bar would be ~10x smaller
        assert loglog_fit(X8, y).slope_se < 0.3 * fit.slope_se


@pytest.mark.parametrize("K", [4, 8])
def test_weighted_interval_covers_when_the_errors_are_right(K):
    """Errors as stated: ~95% coverage (a little more, since a chance chi^2/dof > 1 inflates)."""
    rng = np.random.default_rng(K)
    x = np.logspace(0, 2, K)
    cover, reps = 0, 1500
    for _ in range(reps):
        y = 3.0 * x**-0.5 * np.exp(0.05 * rng.standard_normal(K))
        lo, hi = loglog_fit(x, y, y_se=0.05 * y).ci
        cover += lo <= -0.5 <= hi
    assert 0.94 <= cover / reps <= 0.99, cover / reps


@pytest.mark.parametrize("K", [4, 8])
def test_weighted_interval_inflated_when_errors_are_understated(K):
    """True scatter 5x the stated errors: chi^2/dof ~ 25, the interval is inflated by
    sqrt(chi^2/dof) with a t quantile, and its coverage is ~95% (the known-variance one would
    cover ~31%)."""
    rng = np.random.default_rng(10 + K)
    x = np.logspace(0, 2, K)
    cover = naive = 0
    reps = 1500
    chi = []
    for _ in range(reps):
        y = 3.0 * x**-0.5 * np.exp(0.25 * rng.standard_normal(K))
        fit = loglog_fit(x, y, y_se=0.05 * y)
        cover += fit.ci[0] <= -0.5 <= fit.ci[1]
        naive += abs(fit.slope + 0.5) <= 1.96 * _known_variance_se(x, y, 0.05 * y)
        chi.append(fit.chi2_dof)
    assert np.median(chi) > 10
    assert 0.93 <= cover / reps <= 0.97, cover / reps
    assert naive / reps < 0.5


def test_ols_interval_is_calibrated():
    """Without standard errors: residual scatter and a t quantile, exact for Gaussian noise."""
    rng = np.random.default_rng(3)
    cover, reps = 0, 1500
    for _ in range(reps):
        y = 3.0 * X8**-0.5 * np.exp(0.05 * rng.standard_normal(X8.size))
        lo, hi = loglog_fit(X8, y).ci
        cover += lo <= -0.5 <= hi
    assert 0.935 <= cover / reps <= 0.965, cover / reps


# ----------------------------------------------------------------------------------------------
# Bootstrap over replicates
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("paired", [True, False])
def test_bootstrap_interval_roughly_covers(paired):
    rng = np.random.default_rng(4)
    x = np.logspace(1, 3, 5)
    cover, reps = 0, 300
    for _ in range(reps):
        Y = 3.0 * x[:, None] ** -0.5 * rng.lognormal(0.0, 0.5, (x.size, 20))
        lo, hi = loglog_fit(x, replicates=Y, paired=paired, n_boot=500, rng=rng).ci
        cover += lo <= -0.5 <= hi
    assert 0.88 <= cover / reps <= 0.99, cover / reps


def test_bootstrap_is_deterministic_and_respects_pairing():
    rng = np.random.default_rng(1)
    x = np.array([10.0, 20.0, 40.0, 80.0])
    # a common factor per run shared across x (nested systems): it cancels in the slope only
    # when whole runs are resampled
    Y = x[:, None] ** -0.75 * rng.lognormal(0.0, 0.5, (1, 16)) * rng.lognormal(0.0, 0.02, (4, 16))
    a, b = loglog_fit(x, replicates=Y), loglog_fit(x, replicates=Y)
    assert a.slope == b.slope and a.ci == b.ci                  # fixed internal generator
    c = loglog_fit(x, replicates=Y, rng=np.random.default_rng(7))
    assert c.slope == a.slope and c.ci != a.ci
    unpaired = loglog_fit(x, replicates=Y, paired=False)
    assert a.slope_se < 0.3 * unpaired.slope_se
    assert a.ci[0] <= -0.75 <= a.ci[1]
    lo, mid, hi = a.band(x)
    assert np.all(lo <= mid) and np.all(mid <= hi)


def test_bootstrap_reproduces_the_former_chaos_bootstrap():
    """Same generator, same resamples as chapter 7's former ``chaos.loglog_slope``: whole
    columns drawn by ``rng.integers(0, R, size=(n_boot, R))``, slope of the log of the means."""
    rng = np.random.default_rng(1)
    N = np.array([16.0, 32.0, 64.0, 128.0, 256.0])
    V = N[:, None] ** -0.5 * np.exp(0.3 * rng.standard_normal((5, 12)))
    xc = np.log(N) - np.log(N).mean()
    pick = np.random.default_rng(9).integers(0, 12, size=(2000, 12))
    ly = np.log(V[:, pick].mean(axis=2))
    boot = (xc @ (ly - ly.mean(axis=0))) / (xc @ xc)
    fit = loglog_fit(N, replicates=V, rng=np.random.default_rng(9))
    assert fit.slope_se == pytest.approx(boot.std(ddof=1), rel=1e-12)
    assert fit.ci == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])), rel=1e-12)


def test_bootstrap_matches_the_replicate_means_fit():
    """The point estimate is the ordinary least-squares slope of the log of the replicate means,
    and the percentile interval contains it."""
    rng = np.random.default_rng(2)
    x = np.array([16.0, 32.0, 64.0, 128.0, 256.0, 512.0])
    Y = 0.1 * x[:, None] ** -0.5 * rng.lognormal(0.0, 0.3, (6, 32))
    fit = loglog_fit(x, replicates=Y, rng=np.random.default_rng(0))
    assert fit.slope == pytest.approx(loglog_fit(x, Y.mean(axis=1)).slope, abs=1e-12)
    assert fit.ci[0] < fit.slope < fit.ci[1] and 0 < fit.slope_se < 0.1


# ----------------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument
# ----------------------------------------------------------------------------------------------
def test_bad_input_raises_naming_the_argument():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    y = x**-1.0
    cases = [
        (dict(x=x[:3], y=y[:3]), "x must have at least 4 points"),
        (dict(x=x[:3], replicates=np.ones((3, 5))), "x must have at least 4 points"),
        (dict(x=-x, y=y), "x must be positive"),
        (dict(x=x, y=-y), "y must be positive"),
        (dict(x=x, y=np.append(y[:3], 0.0)), "y must be positive"),
        (dict(x=x, y=y, y_se=np.zeros(4)), "y_se must be positive"),
        (dict(x=x, y=y[:3]), "y must have shape"),
        (dict(x=x, y=y, y_se=y[:3]), "y_se must have shape"),
        (dict(x=x, y=np.append(y[:3], np.nan)), "y contains NaN"),
        (dict(x=np.append(x[:3], np.inf), y=y), "x contains NaN"),
        (dict(x=x, y=y, y_se=np.append(y[:3], np.inf)), "y_se contains NaN"),
        (dict(x=np.ones(4), y=y), "x must have at least 2 distinct"),
        (dict(x=x, y=y, level=1.0), "level must be <"),
        (dict(x=x), "y is required"),
        (dict(x=x, y=y, replicates=np.ones((4, 3))), "either y"),
        (dict(x=x, replicates=np.ones((3, 5))), r"replicates must have shape \(4, R\)"),
        (dict(x=x, replicates=np.ones((4, 1))), "at least 2 replicates"),
        (dict(x=x, replicates=-np.ones((4, 3))), "replicates must be positive"),
        (dict(x=x, replicates=np.full((4, 3), np.nan)), "replicates contains NaN"),
        (dict(x=x, replicates=[np.ones(2), np.ones(3), np.ones(2), np.ones(2)]), "paired=False"),
        (dict(x=x, replicates=[np.ones(2)] * 3, paired=False), "replicates must have 4 rows"),
        (dict(x=x, replicates=[np.ones(2)] * 3 + [np.array([1.0, np.nan])], paired=False),
         r"replicates\[3\] contains NaN"),
        (dict(x=x, replicates=np.ones((4, 3)), n_boot=1), "n_boot must be >= 2"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            loglog_fit(**kwargs)
    with pytest.raises(TypeError, match="rng"):
        loglog_fit(x, replicates=np.ones((4, 3)), rng=0)


def test_one_rate_fit():
    """No other rate fit is left in mflib."""
    for mod, name in [("fitting", "loglog_slope"), ("approximation", "loglog_fit"),
                      ("pde", "fit_loglog"), ("ntk", "loglog_slope"), ("chaos", "loglog_slope")]:
        assert not hasattr(getattr(mf, mod), name), (mod, name)
