"""mflib.fitting.mean_ci: the Student t interval of a mean of replicates."""

import numpy as np
import pytest

from mflib.fitting import mean_ci


def test_mean_ci_values_and_shapes():
    v = np.array([1.0, 2.0, 3.0, 4.0])
    c = mean_ci(v)
    half = 3.182446305284263 * np.std(v, ddof=1) / 2                # t_{0.975, 3}
    assert c.mean == pytest.approx(2.5) and c.n == 4 and c.level == 0.95
    assert (c.lo, c.hi) == pytest.approx((2.5 - half, 2.5 + half))
    M = np.stack([v, 2 * v])
    cm = mean_ci(M)
    assert cm.mean.shape == (2,) and np.allclose(cm.hi - cm.mean, [half, 2 * half])


def test_mean_ci_coverage():
    rng = np.random.default_rng(0)
    X = rng.normal(1.0, 2.0, size=(4000, 5))
    c = mean_ci(X)
    cover = np.mean((c.lo <= 1.0) & (1.0 <= c.hi))
    assert 0.935 <= cover <= 0.965, cover


def test_mean_ci_bad_input():
    with pytest.raises(ValueError, match="replicates"):
        mean_ci([1.0])
    with pytest.raises(ValueError, match="replicates"):
        mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=1.5)
