"""Tests for mflib.chaos (chapter 7): schedule, gradients, fields, coupling, SGD regimes."""

from __future__ import annotations

import numpy as np
import pytest

import mflib.chaos as ch
from mflib import activations, datasets, network


# ----------------------------------------------------------------------------------------------
# The schedule of equation (2), against values computed by hand
# ----------------------------------------------------------------------------------------------
def test_schedule_hand_values_decreasing_steps():
    # gamma = 1/2, alpha = 1/2, beta = 1/2, N = 100:
    # dt = (1/2)^2 * 100^(-1) = 1/400; step(0) = 1/2 * 10 * 400^(-1/2) = 1/4;
    # step(125) = 5 / sqrt(525); n_T(1) = 400; mf_step(0) = 1/400; noise (M = 4) = sqrt(1/1600).
    s = ch.Schedule(N=100, base_step=0.5, alpha=0.5, width_exponent=0.5, M=4)
    assert s.dt == pytest.approx(0.0025, rel=1e-14)
    assert s.step(0) == pytest.approx(0.25, rel=1e-14)
    assert s.step(125) == pytest.approx(5.0 / np.sqrt(525.0), rel=1e-14)
    assert s.n_steps(1.0) == 400
    assert s.mf_step(0) == pytest.approx(0.0025, rel=1e-14)
    assert s.noise == pytest.approx(0.025, rel=1e-14)
    np.testing.assert_allclose(s.step(np.array([0, 125])), [0.25, 5.0 / np.sqrt(525.0)], rtol=1e-14)


def test_schedule_hand_values_constant_steps():
    # alpha = 0, beta = 1: the SGD step is gamma N, the mean-field step is gamma, n_T = T / gamma.
    s = ch.Schedule(N=50, base_step=0.3, alpha=0.0, width_exponent=1.0)
    assert s.dt == pytest.approx(0.3)
    assert s.step(7) == pytest.approx(15.0)
    assert s.n_steps(10.0) == 33
    # alpha = 0, beta = 0 (Mei-Montanari-Nguyen): step gamma, time step gamma / N.
    s = ch.Schedule(N=1000, base_step=2.0, alpha=0.0, width_exponent=0.0)
    assert s.dt == pytest.approx(0.002)
    assert s.step(0) == pytest.approx(2.0)
    assert s.n_steps(1.0) == 500            # 1 / 0.002 must not round down to 499
    assert ch.n_steps(0.3, 10, 0.1, 0.0, 1.0) == 3        # 0.3 / 0.1 = 2.9999999999999996 in floats
    # alpha = 0, beta = 0.75, N = 10^4: dt = 10^-1, step = 10^3.
    assert ch.time_step(10_000, 1.0, 0.0, 0.75) == pytest.approx(0.1)
    assert ch.step_size(3, 10_000, 1.0, 0.0, 0.75) == pytest.approx(1000.0)


def test_exercise_schedule_answer():
    # Exercise ex-ch7-1: N = 10^4, gamma = 1/2, alpha = 1/2, beta = 1/2, T = 2.
    s = ch.Schedule(N=10_000, base_step=0.5, alpha=0.5, width_exponent=0.5)
    assert s.dt == pytest.approx(2.5e-5, rel=1e-13)
    assert s.step(0) == pytest.approx(0.25, rel=1e-13)
    assert s.n_steps(2.0) == 80_000
    assert s.mf_step(0) == pytest.approx(2.5e-5, rel=1e-13)


@pytest.mark.parametrize("kw", [dict(alpha=-0.1), dict(alpha=1.0), dict(alpha=1.5),
                                dict(width_exponent=-0.01), dict(width_exponent=1.01), dict(M=0),
                                dict(base_step=0.0), dict(N=0)])
def test_schedule_value_errors(kw):
    args = dict(N=10, base_step=1.0, alpha=0.0, width_exponent=0.5, M=1) | kw
    with pytest.raises(ValueError, match=list(kw)[0]):          # the message names the argument
        ch.Schedule(**args)


def test_schedule_other_errors():
    s = ch.Schedule(10)
    with pytest.raises(ValueError):
        s.n_steps(-1.0)
    with pytest.raises(ValueError):
        s.step(-1)
    with pytest.raises(TypeError):
        ch.Schedule(10, M=2.5)


# ----------------------------------------------------------------------------------------------
# Network, losses and gradients
# ----------------------------------------------------------------------------------------------
def _fd_grad(fun, W, h=1e-6):
    G = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        G[idx] = (fun(Wp) - fun(Wm)) / (2 * h)
    return G


@pytest.mark.parametrize("loss,act", [("cross_entropy", "tanh"), ("squared", "sigmoid")])
def test_grad_risk_finite_differences(loss, act):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 3))
    y = rng.integers(0, 4, 7) if loss == "cross_entropy" else rng.standard_normal((7, 4))
    W = rng.standard_normal((5, 12))
    w = rng.random(7)
    w /= w.sum()
    g = ch.grad_risk(X, y, W, loss, act, penalty=0.3, weights=w)
    G = _fd_grad(lambda V: ch.empirical_risk(X, y, V, loss, act, 0.3, weights=w), W)
    np.testing.assert_allclose(g, G, atol=1e-8)
    # batched over runs gives the same per run
    g2 = ch.grad_risk(X, y, np.stack([W, 2 * W]), loss, act, penalty=0.3, weights=w)
    np.testing.assert_allclose(g2[0], g, atol=1e-14)


def test_scalar_network_matches_mflib_network():
    rng = np.random.default_rng(1)
    X, W = rng.standard_normal((6, 4)), rng.standard_normal((9, 4))
    np.testing.assert_allclose(ch.outputs(X, W)[:, 0], network.forward(X, W), atol=1e-14)
    y = rng.standard_normal(6)
    # d/dW of (1/n) sum (f - y)^2 is network.risk_gradient's W field
    np.testing.assert_allclose(ch.grad_risk(X, y, W), network.risk_gradient(X, y, W).W, atol=1e-14)


def test_output_shapes():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 3))
    W = rng.standard_normal((4, 3, 6))                     # R = 4 runs, N = 3, p = 2 * 3
    f = ch.outputs(X, W)
    assert f.shape == (4, 5, 2)
    np.testing.assert_allclose(ch.outputs(X, W[1]), f[1], rtol=1e-15)
    with pytest.raises(ValueError):
        ch.outputs(X, rng.standard_normal((3, 7)))        # p not a multiple of d


# ----------------------------------------------------------------------------------------------
# SGD
# ----------------------------------------------------------------------------------------------
def test_translation_to_design_conventions():
    # Squared loss, alpha = 0: one step of (2) is DESIGN.md's SGD step with eps = 2 gamma N^(beta-1).
    rng = np.random.default_rng(3)
    N, d, gamma, beta = 20, 3, 0.7, 0.75
    W0 = rng.standard_normal((N, d))
    x, y = rng.standard_normal((1, d)), np.array([0.4])      # one data point: every batch is it
    run = ch.sgd(W0, x, y, base_step=gamma, width_exponent=beta, M=3, steps=1, rng=rng)
    eps = 2 * gamma * N ** (beta - 1)
    h = W0 @ x[0]
    r = y[0] - np.maximum(h, 0).mean()
    W1 = W0 + eps * r * (h > 0)[:, None] * x[0]
    np.testing.assert_allclose(run.W, W1, atol=1e-14)
    np.testing.assert_allclose(run.W, W0 - gamma * N ** beta * network.risk_gradient(x, y, W0).W, atol=1e-14)
    assert run.t[-1] == pytest.approx(gamma * N ** (beta - 1)) if run.t.size else True


def test_sgd_n_copies_equals_explicit_copies():
    rng = np.random.default_rng(4)
    X, y = datasets.synthetic_1d(16)
    W0 = 0.5 * rng.standard_normal((2, 3, 2))               # R = 2 runs, 3 distinct neurons
    a = ch.sgd(W0, X, y, width_exponent=0.5, M=2, T=0.5, n_copies=4, activation="tanh",
               rng=np.random.default_rng(5))
    b = ch.sgd(np.repeat(W0, 4, axis=1), X, y, width_exponent=0.5, M=2, T=0.5, activation="tanh",
               rng=np.random.default_rng(5))
    assert a.n_T == b.n_T == ch.n_steps(0.5, 12, 1.0, 0.0, 0.5)
    np.testing.assert_allclose(np.repeat(a.W, 4, axis=1), b.W, atol=1e-13)


def test_sgd_independent_batches():
    X, y = datasets.synthetic_1d(16)
    rng = np.random.default_rng(6)
    # one neuron: its own batch is the batch, so the ablation coincides with SGD
    W0 = rng.standard_normal((3, 1, 2))
    a = ch.sgd(W0, X, y, width_exponent=1.0, base_step=0.2, M=3, steps=5, activation="tanh",
               rng=np.random.default_rng(7))
    b = ch.sgd(W0, X, y, width_exponent=1.0, base_step=0.2, M=3, steps=5, activation="tanh", independent=True,
               rng=np.random.default_rng(7))
    np.testing.assert_allclose(a.W, b.W, atol=1e-14)
    # several neurons: neuron k's gradient is row k of the full-network gradient on its own batch
    W = rng.standard_normal((2, 4, 2))
    idx = rng.integers(0, 16, size=(2, 4, 3))
    g = ch._grad_independent(X[idx], y[idx][..., None], W, 1, ch._act.get("tanh"), "squared")
    for r in range(2):
        for k in range(4):
            np.testing.assert_allclose(g[r, k], ch.grad_risk(X[idx[r, k]], y[idx[r, k]], W[r], "squared",
                                                             "tanh")[k], atol=1e-14)
    with pytest.raises(ValueError):
        ch.sgd(W0, X, y, steps=1, independent=True, n_copies=2, rng=rng)


def _sgd_reference(W0, X, y, steps, M, loss, activation, penalty, n_copies, dtype, seed, **kw):
    """The straightforward loop: gradient by _grad_core (one batched product), then W -= lr g."""
    act = activations.get(activation)
    W = np.array(W0, dtype=dtype)
    X = np.asarray(X, dtype=dtype)
    R, N0, p = W.shape
    C = p // X.shape[1]
    sched = ch.Schedule(N0 * n_copies, M=M, **kw)
    idx_all = np.random.default_rng(seed).integers(0, X.shape[0], size=(steps, R, M))
    for k in range(steps):
        idx = idx_all[k]
        g, _ = ch._grad_core(X[idx], y[idx], W, C, act, loss, sched.N)
        if penalty is not None:
            g += (penalty(W) if callable(penalty) else penalty * W) / sched.N
        W -= dtype(sched.step(k)) * g
    return W


@pytest.mark.parametrize("loss, activation, penalty, n_copies", [
    ("cross_entropy", "relu", None, 1), ("cross_entropy", "relu", 0.3, 2),
    ("squared", "tanh", None, 1), ("squared", "relu", lambda W: W ** 3, 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_in_place_step_matches_reference(loss, activation, penalty, n_copies, dtype):
    rng = np.random.default_rng(21)
    n, d, C, R, N0, M, steps = 40, 12, 3, 2, 7, 5, 6
    X = rng.standard_normal((n, d))
    y = rng.integers(0, C, n) if loss == "cross_entropy" else rng.standard_normal((n, C))
    W0 = 0.3 * rng.standard_normal((R, N0, C * d))
    kw = dict(base_step=0.5, alpha=0.25, width_exponent=0.75)
    ref = _sgd_reference(W0, X, y, steps, M, loss, activation, penalty, n_copies, dtype, 22, **kw)
    new = ch.sgd(W0, X, y, M=M, steps=steps, loss=loss, activation=activation, penalty=penalty,
                 n_copies=n_copies, dtype=dtype, rng=np.random.default_rng(22), **kw)
    assert new.W.dtype == dtype
    assert np.abs(ref - W0).max() > 1e-3                    # the steps moved the weights
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(new.W, ref, rtol=0, atol=tol * np.abs(ref).max())


def test_sgd_same_seed_same_output_and_records():
    X, y = datasets.synthetic_1d(8)
    W0 = np.random.default_rng(8).standard_normal((5, 2))
    kw = dict(width_exponent=0.75, M=2, T=5.0, activation="tanh", record_every=3, average_from=2)
    a = ch.sgd(W0, X, y, rng=np.random.default_rng(9), **kw)
    b = ch.sgd(W0, X, y, rng=np.random.default_rng(9), **kw)
    np.testing.assert_array_equal(a.W, b.W)
    assert a.snapshots.shape[1:] == (5, 2)
    np.testing.assert_array_equal(a.snapshots[0], W0)
    np.testing.assert_array_equal(a.snapshots[-1], a.W)
    assert a.t[-1] == pytest.approx(a.n_T * a.schedule.dt)
    np.testing.assert_allclose(a.W_avg.shape, a.W.shape)
    c = ch.sgd(W0, X, y, rng=np.random.default_rng(10), **kw)
    assert not np.allclose(a.W, c.W)


def test_sgd_average_is_the_mean_of_iterates():
    X, y = datasets.synthetic_1d(8)
    W0 = np.random.default_rng(11).standard_normal((3, 2))
    r = ch.sgd(W0, X, y, steps=6, M=2, record_every=1, average_from=2, activation="tanh",
               rng=np.random.default_rng(12))
    np.testing.assert_allclose(r.W_avg, r.snapshots[2:].mean(axis=0), atol=1e-14)


def test_sgd_value_errors():
    X, y = datasets.synthetic_1d(8)
    W0 = np.zeros((3, 2))
    rng = np.random.default_rng(0)
    for kw in [dict(alpha=1.2), dict(alpha=-0.5), dict(width_exponent=1.5),
               dict(width_exponent=-1.0), dict(M=0), dict(base_step=-1.0)]:
        with pytest.raises(ValueError):
            ch.sgd(W0, X, y, steps=1, rng=rng, **kw)
    with pytest.raises(ValueError):
        ch.sgd(W0, X, y, rng=rng)                        # neither T nor steps
    with pytest.raises(ValueError):
        ch.sgd(W0, X, y, T=1.0, steps=3, rng=rng)        # both
    with pytest.raises(ValueError):
        ch.sgd(np.zeros((3, 3)), X, y, steps=1, rng=rng)  # p = 3 is not a multiple of d = 2
    with pytest.raises(ValueError):
        ch.sgd(W0, X, y[:5], steps=1, rng=rng)
    with pytest.raises(ValueError):
        ch.sgd(W0, X, y, steps=1, loss="cross_entropy", rng=rng)   # C = 1
    with pytest.raises(ValueError):
        ch.sgd(W0, X, y, steps=1, penalty=-1.0, rng=rng)
    with pytest.raises(TypeError):
        ch.sgd(W0, X, y, steps=1, rng=0)


# ----------------------------------------------------------------------------------------------
# Two regimes: spread across independent runs (all neurons started at the same w0)
# ----------------------------------------------------------------------------------------------
def _spread(beta, N, seed, runs=200):
    X, y = datasets.synthetic_1d(16)
    W0 = np.tile(np.array([0.3, -0.2]), (runs, 1, 1))          # (runs, 1, 2): one distinct neuron
    r = ch.sgd(W0, X, y, width_exponent=beta, M=1, T=1.0, n_copies=N, activation="tanh",
               rng=np.random.default_rng(seed))
    return r.W[:, 0, :].var(axis=0, ddof=1).sum()


def test_spread_shrinks_with_N_for_beta_below_one_only():
    # beta = 1/2: the variance of the final weight across runs scales like gamma_{0,1/2}(N) = N^(-1/2)
    # (1/16 from N = 16 to 4096); beta = 1: the dynamics do not depend on N, the spread stays.
    # With 200 runs a variance ratio has a relative standard error of about 0.14.
    small, large = _spread(0.5, 16, 1), _spread(0.5, 4096, 2)
    assert large / small < 0.25
    small, large = _spread(1.0, 16, 3), _spread(1.0, 4096, 4)
    assert 0.6 < large / small < 1.6
    assert _spread(1.0, 4096, 4) > 5 * _spread(0.5, 4096, 2)


# ----------------------------------------------------------------------------------------------
# The fields h and Sigma
# ----------------------------------------------------------------------------------------------
def test_field_h_is_minus_N_times_gradient():
    rng = np.random.default_rng(13)
    X = rng.standard_normal((9, 3))
    y = rng.integers(0, 2, 9)
    W = rng.standard_normal((6, 6))
    F = ch.field(W, X, y, weights=np.full(9, 1 / 9), loss="cross_entropy", activation="tanh", penalty=0.2)
    g = ch.grad_risk(X, y, W, "cross_entropy", "tanh", penalty=0.2)
    np.testing.assert_allclose(F.h, -6 * g, atol=1e-13)
    np.testing.assert_allclose(F.f, ch.outputs(X, W, "tanh"), atol=1e-14)
    # Sigma is symmetric positive semi-definite
    np.testing.assert_allclose(F.Sigma, np.swapaxes(F.Sigma, 1, 2), atol=1e-14)
    assert np.linalg.eigvalsh(F.Sigma).min() > -1e-12


def test_field_exact_on_a_finite_distribution():
    # pi uniform on 5 points: Sigma is the plug-in covariance of the per-point gradients.
    rng = np.random.default_rng(14)
    X, y = rng.standard_normal((5, 2)), rng.standard_normal(5)
    W, mu = rng.standard_normal((3, 2)), rng.standard_normal((7, 2))
    F = ch.field(W, X, y, measure=mu, weights=np.full(5, 0.2), activation="tanh")
    f = np.tanh(X @ mu.T).mean(axis=1)
    g = (2 * (f - y))[None, :, None] * (1 - np.tanh(W @ X.T) ** 2)[:, :, None] * X[None]   # (3, 5, 2)
    xi = g - g.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(F.h, -g.mean(axis=1), atol=1e-14)
    np.testing.assert_allclose(F.Sigma, np.einsum("kip,kiq->kpq", xi, xi) / 5, atol=1e-14)


def test_sigma_estimate_linear_gaussian():
    # F(w, x) = <w, x>, x ~ N(0, I_d), y = <w*, x> + s e: with a = m - w* (m the mean of mu),
    # h = -2a and Sigma = 4((|a|^2 + s^2) I + a a^T) (Isserlis), for every w.
    d, s, B = 3, 0.5, 40_000
    rng = np.random.default_rng(15)
    w_star = np.array([1.0, -0.5, 0.25])
    mu = rng.standard_normal((50, d)) * 0.3 + np.array([0.2, 0.1, -0.3])
    a = mu.mean(axis=0) - w_star
    X = rng.standard_normal((B, d))
    y = X @ w_star + s * rng.standard_normal(B)
    W = rng.standard_normal((2, d))
    F = ch.field(W, X, y, measure=mu, activation=activations.identity)
    exact = 4 * ((a @ a + s ** 2) * np.eye(d) + np.outer(a, a))
    g = (2 * (X @ a - (y - X @ w_star)))[:, None] * X            # per-sample gradient samples
    xi = g - g.mean(axis=0)
    se = (xi[:, :, None] * xi[:, None, :]).std(axis=0) / np.sqrt(B)
    for k in range(2):
        assert np.all(np.abs(F.Sigma[k] - exact) < 5 * se)
        assert np.all(np.abs(F.h[k] + 2 * a) < 5 * g.std(axis=0) / np.sqrt(B))
    # and the estimate is not trivially close: a wrong s is rejected
    wrong = 4 * ((a @ a + 0.6 ** 2) * np.eye(d) + np.outer(a, a))
    assert np.any(np.abs(F.Sigma[0] - wrong) > 5 * se)


def test_field_value_errors():
    X, y = datasets.synthetic_1d(4)
    with pytest.raises(ValueError):
        ch.field(np.zeros((2, 2)), X[:1], y[:1])                  # one sample cannot estimate Sigma
    with pytest.raises(ValueError):
        ch.field(np.zeros((2, 2)), X, y, measure=np.zeros((3, 3)))
    with pytest.raises(ValueError):
        ch.field(np.zeros((2, 2)), X, y, weights=np.full(4, 0.3))


# ----------------------------------------------------------------------------------------------
# Synchronous coupling
# ----------------------------------------------------------------------------------------------
def _coupling(beta, **kw):
    X, y = datasets.synthetic_1d(16)
    W0 = 0.3 * np.random.default_rng(17).standard_normal((2048, 2))
    args = dict(base_step=1.0, width_exponent=beta, M=1, T=1.0, dt=0.05, rng=np.random.default_rng(18)) | kw
    return ch.coupled(W0, [8, 128], 8, X, y, **args)


@pytest.mark.parametrize("beta,ratio", [(0.5, 2.0), (1.0, 4.0)])
def test_coupling_distance_decreases_in_N(beta, ratio):
    # Theorems 1-2: E sup|W^N - W^*|^2 <~ N^-(1-beta) (beta < 1, M = 1) and N^-1 (beta = 1);
    # from N = 8 to 128 that is a factor 4 and 16; we ask for half of it.
    c = _coupling(beta)
    m = c.sup_sq.mean(axis=1)
    assert m[0] > ratio * m[1] > 0
    assert c.mean_sq.shape == (2, c.t.size) and c.mean_sq[:, 0].max() == 0.0
    assert np.all(c.mean_sq[:, -1] <= m + 1e-15)


def test_coupling_full_size_system_is_its_own_limit():
    # A system made of all L limit particles has the same measure and (beta = 1, or no noise) the same
    # noise amplitude as the limit, so it must coincide with it exactly.
    X, y = datasets.synthetic_1d(8)
    W0 = 0.3 * np.random.default_rng(19).standard_normal((64, 2))
    for kw in (dict(width_exponent=1.0), dict(width_exponent=0.5, noise=False)):
        c = ch.coupled(W0, [64], 1, X, y, T=0.5, dt=0.05, rng=np.random.default_rng(20), **kw)
        assert c.sup_sq.max() == 0.0
        np.testing.assert_array_equal(c.W_N[0][0], c.W_limit)


def test_coupling_noise_amplitude_and_batches():
    # beta < 1 with noise: the tagged particles move away from their ODE copies; a fresh-batch
    # estimate of h and Sigma (shared by both sides) gives a nearby answer; same seed, same output.
    a = _coupling(0.5)
    b = _coupling(0.5)
    np.testing.assert_array_equal(a.sup_sq, b.sup_sq)
    c = _coupling(0.5, batch=16)
    assert c.sup_sq.mean() == pytest.approx(a.sup_sq.mean(), rel=0.5)
    d = _coupling(0.5, noise=False)
    assert d.sup_sq.mean() < 0.5 * a.sup_sq.mean()


def test_coupling_value_errors():
    X, y = datasets.synthetic_1d(8)
    W0 = np.zeros((32, 2))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        ch.coupled(W0, [16], 4, X, y, rng=rng)             # needs L >= 64
    for kw in [dict(alpha=1.0), dict(width_exponent=1.2), dict(M=0), dict(dt=0.0), dict(T=-1.0)]:
        with pytest.raises(ValueError):
            ch.coupled(W0, [4], 2, X, y, rng=rng, **kw)
    with pytest.raises(ValueError):
        ch.coupled(W0, [], 1, X, y, rng=rng)
    with pytest.raises(ValueError):
        ch.coupled(W0, [0], 1, X, y, rng=rng)


# ---- non-interacting copies (frozen=True) and divergence (issue: nothing silently wrong)
def test_coupled_frozen_copies():
    X, y = datasets.synthetic_1d(8)
    W0 = 0.3 * np.random.default_rng(3).standard_normal((512, 2))
    kw = dict(T=0.5, dt=0.05, width_exponent=0.5, M=2, activation="tanh")
    a = ch.coupled(W0, [4, 16], 4, X, y, rng=np.random.default_rng(1), **kw)
    b = ch.coupled(W0, [4, 16], 4, X, y, frozen=True, rng=np.random.default_rng(1), **kw)
    # the copies change nothing else, bit for bit
    np.testing.assert_array_equal(a.sup_sq, b.sup_sq)
    np.testing.assert_array_equal(a.W_limit, b.W_limit)
    assert a.sup_sq_frozen is None and b.sup_sq_frozen.shape == (2, 4)
    assert [w.shape for w in b.W_frozen] == [(4, 4, 2), (4, 16, 2)]
    # the interaction error is a small part of the distance to the limit here
    assert np.all(b.sup_sq_frozen < b.sup_sq)
    # without noise a non-interacting copy IS the limit copy (same start, same measure)
    c = ch.coupled(W0, [4, 16], 4, X, y, frozen=True, noise=False,
                      rng=np.random.default_rng(1), **kw)
    np.testing.assert_allclose(c.sup_sq_frozen, c.sup_sq, rtol=1e-12)
    for Wf, ix in zip(c.W_frozen, c.index, strict=True):
        np.testing.assert_allclose(Wf, c.W_limit[ix], rtol=0, atol=1e-14)
    with pytest.raises(TypeError, match="frozen"):
        ch.coupled(W0, [4], 2, X, y, frozen="yes", rng=np.random.default_rng(1), **kw)


def test_huge_base_step_raises_divergence_with_advice():
    from mflib.runs import DivergenceError

    X, y = datasets.synthetic_1d(16)
    W0 = 0.3 * np.random.default_rng(0).standard_normal((64, 2))
    for b in (0.0, 1.0):
        with pytest.raises(DivergenceError, match="smaller base_step") as e:
            ch.coupled(W0, [8], 2, X, y, base_step=1e12, width_exponent=b, T=1.0, dt=0.05,
                          rng=np.random.default_rng(1))
        # the step and time where it happened, and a value that brings the noise variance to 1
        assert e.value.step == 1 and e.value.time == pytest.approx(0.05)
        assert ("e.g. base_step = 8 " if b == 0.0 else "e.g. base_step = 1 ") in str(e.value)
    # a step too large for the drift, with a sane noise level: advice on dt
    with pytest.raises(DivergenceError, match=r"smaller dt \(now 10\), e.g. 1"):
        ch.coupled(W0, [8], 2, X, y, T=100.0, dt=10.0, activation="relu",
                      rng=np.random.default_rng(2))
    with pytest.raises(DivergenceError, match=r"smaller base_step \(now 1e\+12\), e.g. 8"):
        ch.sgd(W0[:8], X, y, base_step=1e12, steps=300, activation="relu",
                  rng=np.random.default_rng(1))
    # a horizon shorter than one step is an input error, not an empty run
    with pytest.raises(ValueError, match="shorter than one step"):
        ch.sgd(W0[:8], X, y, base_step=1e12, T=1.0, rng=np.random.default_rng(1))


def test_euler_flow_is_gradient_descent_on_the_empirical_risk():
    """euler_flow: R systems at once equal R single calls (the systems do not interact), no step
    when T is below one step, and the empirical risk falls at every horizon (noiseless descent)."""
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((40, 2)), np.tanh(rng.standard_normal(40))
    W0 = 0.5 * rng.standard_normal((3, 16, 2))
    kw = dict(base_step=0.5, width_exponent=0.5)
    both = ch.euler_flow(W0, X, y, T=2.0, **kw)
    for r in range(3):
        np.testing.assert_allclose(both[r], ch.euler_flow(W0[r], X, y, T=2.0, **kw), rtol=0, atol=1e-13)
    dt = ch.Schedule(16, 0.5, 0.0, 0.5).dt
    np.testing.assert_array_equal(ch.euler_flow(W0[0], X, y, T=0.5 * dt, **kw), W0[0])
    risks = [ch.empirical_risk(X, y, ch.euler_flow(W0[0], X, y, T=T, **kw), activation="tanh")
             for T in (0.0, 0.5, 1.0, 2.0)]
    assert all(b < a for a, b in zip(risks, risks[1:], strict=False)), risks
    with pytest.raises(ValueError, match="W0"):
        ch.euler_flow(np.zeros(3), X, y)


def test_euler_flow_with_alpha_is_exact_gradient_sgd_with_decaying_steps():
    """euler_flow with alpha > 0 equals a plain loop of n_T exact-gradient steps
    W <- W - Schedule.step(n) * grad_risk(W) (SGD with its noise removed), to round-off; the
    decay matters (alpha = 0 differs), and alpha outside [0, 1) is rejected."""
    rng = np.random.default_rng(11)
    X, y = rng.standard_normal((12, 2)), np.tanh(rng.standard_normal(12))
    W0 = 0.5 * rng.standard_normal((2, 8, 2))
    kw = dict(base_step=0.7, alpha=0.25, width_exponent=0.5)
    s = ch.Schedule(8, 0.7, 0.25, 0.5)
    n_T = s.n_steps(3.0)
    assert n_T >= 15
    W = W0.copy()
    for n in range(n_T):
        W = W - s.step(n) * ch.grad_risk(X, y, W, activation="tanh")
    got = ch.euler_flow(W0, X, y, T=3.0, **kw)
    np.testing.assert_allclose(got, W, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ch.euler_flow(W0[1], X, y, T=3.0, **kw), W[1], rtol=0, atol=1e-12)
    flat = ch.euler_flow(W0, X, y, T=3.0, **dict(kw, alpha=0.0))
    assert np.abs(flat - got).max() > 1e-3
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="alpha"):
            ch.euler_flow(W0, X, y, T=3.0, **dict(kw, alpha=bad))
