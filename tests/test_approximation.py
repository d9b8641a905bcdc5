"""Chapter 1: the exact L2 error of Maurey sampling, its expectation and the log-log fit."""

import numpy as np
import pytest

import mflib as mf


@pytest.mark.parametrize("d", [1, 3, 20])
def test_l2_error_against_monte_carlo(rng, d):
    t = mf.approximation.GaussianReluTarget(d)
    W = t.sample_neurons(25, rng)
    X = rng.standard_normal((300_000, d))
    sq = (t(X) - np.maximum(X @ W.T, 0).mean(axis=1)) ** 2
    assert abs(t.l2_error(W) - sq.mean()) < 5 * sq.std() / np.sqrt(sq.size)


@pytest.mark.parametrize("d", [2, 50, 2000])
def test_cross_term_averages_to_norm(rng, d):
    """E_w <f, sigma_w> = ||f||^2 = 1/(2 pi): checks c_d = d / (sqrt(2 pi) E|x|) in every d."""
    t = mf.approximation.GaussianReluTarget(d)
    W = t.sample_neurons(4_000_000 // d, rng)
    vals = np.linalg.norm(W, axis=1) * t.c_d / np.sqrt(2 * np.pi * d)
    assert abs(vals.mean() - t.norm2) < 5 * vals.std() / np.sqrt(vals.size)


def test_expected_error_is_dimension_free_maurey_rate(rng):
    for d in (2, 100):
        t = mf.approximation.GaussianReluTarget(d)
        E = mf.approximation.maurey_errors(t, [8, 64], reps=400, rng=rng)
        expected = t.expected_l2_error(np.array([8, 64]))
        se = E.std(axis=1, ddof=1) / np.sqrt(E.shape[1])
        assert np.all(np.abs(E.mean(axis=1) - expected) < 5 * se)


def test_validation():
    with pytest.raises(ValueError, match="d must be >= 1"):
        mf.approximation.GaussianReluTarget(0)
    t = mf.approximation.GaussianReluTarget(3)
    with pytest.raises(ValueError, match="W must have shape"):
        t.l2_error(np.ones((2, 4)))
    with pytest.raises(ValueError, match="N must be >= 1"):
        t.sample_neurons(0, np.random.default_rng(0))


@pytest.mark.parametrize("d,constant", [(1, 0.25), (2, 0.297), (10, 0.333), (100, 0.340)])
def test_exercise_ch1_sphere_maurey_constant(rng, d, constant):
    """Exercise 1.1: with rho uniform on the unit sphere, the Maurey constant
    int U(w, w) d rho - ||f||^2 takes the values printed in the chapter's solution."""
    W = rng.standard_normal((400, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    X = rng.standard_normal((20_000, d))
    S = np.maximum(X @ W.T, 0)
    from scipy.special import gammaln
    En = np.sqrt(2) * np.exp(gammaln((d + 1) / 2) - gammaln(d / 2))
    f_exact = np.linalg.norm(X, axis=1) / (np.sqrt(2 * np.pi) * En)
    diff = (S - f_exact[:, None]).mean(axis=0)       # one unbiased estimate of 0 per neuron
    assert abs(diff.mean()) < 5 * diff.std(ddof=1) / np.sqrt(diff.size)
    value = np.mean(S**2) - np.mean(f_exact**2)
    assert abs(value - constant) < 0.01
    assert abs(0.5 - d / (2 * np.pi * En**2) - constant) < 6e-4
