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


# ---- Barron's theorem on the Gaussian bump (GaussianBumpTarget, relaxed_greedy)

@pytest.mark.parametrize("d", [1, 3, 12])
def test_bump_barron_constant_against_monte_carlo(rng, d):
    """C_f = int |omega| F(omega) d omega with F the N(0, I_d) density (the Fourier convention
    f(x) = int e^{i<x, omega>} F(omega) d omega), checked by Monte Carlo over omega ~ F."""
    t = mf.approximation.GaussianBumpTarget(d, r=2.0)
    omega = rng.standard_normal((400_000, d))
    norms = np.linalg.norm(omega, axis=1)
    assert abs(norms.mean() - t.barron_constant) < 5 * norms.std() / np.sqrt(norms.size)
    assert t.delta == pytest.approx(4.0 * t.barron_constant, rel=1e-15)
    # the convention: f(x) = E_{omega ~ F} cos<omega, x> at a few points of the ball
    X = t.sample_inputs(4, rng)
    c = np.cos(omega[:50_000] @ X.T)
    z = (c.mean(axis=0) - t(X)) / (c.std(axis=0) / np.sqrt(c.shape[0]))
    assert np.all(np.abs(z) < 5)


@pytest.mark.parametrize("d", [1, 5])
def test_bump_step_representation_is_unbiased(rng, d):
    """f(x) - f(0) = E[gamma 1{<u, x> > tau}] with |gamma| <= Delta(f): the proof's representation."""
    t = mf.approximation.GaussianBumpTarget(d)
    X = t.sample_inputs(6, rng)
    U, tau, gamma = t.sample_units(300_000, rng)
    assert np.all(np.abs(gamma) <= t.delta) and np.all((tau >= 0) & (tau <= t.r))
    vals = (X @ U.T > tau) * gamma
    z = (vals.mean(axis=1) - (t(X) - 1.0)) / (vals.std(axis=1) / np.sqrt(vals.shape[1]))
    assert np.all(np.abs(z) < 5)
    est = mf.approximation.step_network(X, U, tau, gamma, bias=1.0)
    np.testing.assert_allclose(est, 1.0 + vals.mean(axis=1), rtol=0, atol=1e-12)


def test_bump_maurey_identity_for_iid_units(rng):
    """N units drawn i.i.d. from the representation: E||f - f_N||^2 = c / N (Maurey), c as computed."""
    t = mf.approximation.GaussianBumpTarget(4)
    X = t.sample_inputs(500, rng)
    c, c_se = t.maurey_constant(X, 200_000, rng)
    assert 0 < c < t.delta**2
    N, reps = 20, 600
    e = np.empty(reps)
    for i in range(reps):
        U, tau, gamma = t.sample_units(N, rng)
        e[i] = np.mean((mf.approximation.step_network(X, U, tau, gamma, 1.0) - t(X)) ** 2)
    se = np.hypot(e.std(ddof=1) / np.sqrt(reps), c_se / N)
    assert abs(e.mean() - c / N) < 5 * se


@pytest.mark.parametrize("d", [1, 6])
def test_relaxed_greedy_meets_its_bound(rng, d):
    """Barron's constructive bound E||f - f_N||^2 <= c / N <= Delta^2 / N, at every k, with a
    single candidate direction per step (the weakest search the proof allows)."""
    t = mf.approximation.GaussianBumpTarget(d)
    X = t.sample_inputs(400, rng)
    c, _ = t.maurey_constant(X, 100_000, rng)
    runs = [mf.approximation.relaxed_greedy(t, X, 32, rng, candidates=1) for _ in range(30)]
    E = np.array([r.errors for r in runs])
    k = np.arange(1, 33)
    upper = E.mean(axis=0) + 3 * E.std(axis=0, ddof=1) / np.sqrt(E.shape[0])
    assert np.all(upper * k <= 1.02 * c)
    assert np.all(E[:, 0] <= np.mean((t(X) - 1.0) ** 2) + 1e-12)   # g = 0 is a candidate
    # the returned units are the network whose errors were recorded
    r = runs[0]
    f_N = mf.approximation.step_network(X, r.U, r.tau, r.gamma, bias=1.0)
    assert np.mean((f_N - t(X)) ** 2) == pytest.approx(r.errors[-1], rel=1e-10, abs=1e-14)
    assert np.all(np.abs(r.gamma) <= t.delta)


def test_relaxed_greedy_refit_never_worse(rng):
    t = mf.approximation.GaussianBumpTarget(3)
    X = t.sample_inputs(300, rng)
    r = mf.approximation.relaxed_greedy(t, X, 16, rng, candidates=8, refit_at=[4, 8, 16])
    assert np.all(r.refit_errors <= r.errors[r.refit_widths - 1] + 1e-12)
    assert np.all(np.diff(r.refit_errors) <= 1e-12)             # nested least-squares problems


def test_bump_validation(rng):
    with pytest.raises(ValueError, match="r must be > 0"):
        mf.approximation.GaussianBumpTarget(2, r=0.0)
    t = mf.approximation.GaussianBumpTarget(2)
    with pytest.raises(ValueError, match="X must lie in the ball"):
        mf.approximation.relaxed_greedy(t, np.full((3, 2), 5.0), 4, rng)
    with pytest.raises(ValueError, match="refit_at"):
        mf.approximation.relaxed_greedy(t, t.sample_inputs(5, rng), 4, rng, refit_at=[5])
    with pytest.raises(TypeError, match="target"):
        mf.approximation.relaxed_greedy(mf.approximation.GaussianReluTarget(2), np.zeros((3, 2)), 4, rng)
