"""The shared log-log fit: slope recovery, weights, the error bar's calibration."""

import numpy as np
import pytest

import mflib as mf


def test_weights_discount_an_uncertain_point():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    y = 2.0 * x**-1.0
    y[-1] *= 3.0                                   # one point far off the line...
    se = np.array([0.01, 0.01, 0.01, 0.01, 10.0]) * y
    unweighted = mf.fitting.loglog_slope(x, y)[0]
    weighted = mf.fitting.loglog_slope(x, y, se)[0]
    assert abs(unweighted + 1.0) > 0.2             # ...pulls the plain fit away
    assert abs(weighted + 1.0) < 1e-3              # ...but not the weighted one


def test_standard_error_is_calibrated(rng):
    """Over many noisy data sets, (slope - true) / se follows a t distribution: about 95% of the
    95% intervals cover the true slope."""
    x = np.logspace(0, 3, 8)
    cover = 0
    for _ in range(400):
        y = 3.0 * x**-0.5 * np.exp(0.05 * rng.standard_normal(x.size))
        lo, hi = mf.fitting.loglog_fit(x, y)["ci"]
        cover += lo <= -0.5 <= hi
    assert 0.92 <= cover / 400 <= 0.98


def test_chapter_wrappers_agree():
    x = np.array([10.0, 30.0, 100.0, 300.0])
    y = x**-0.7 * np.array([1.01, 0.99, 1.02, 0.98])
    s = mf.fitting.loglog_slope(x, y)
    assert mf.ntk.loglog_slope(x, y) == s
    assert mf.pde.fit_loglog(x, y) == s
    assert mf.approximation.loglog_fit(x, y)["slope"] == s[0]
    with pytest.raises(ValueError, match="positive"):
        mf.fitting.loglog_fit(x, -y)
