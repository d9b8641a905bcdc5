"""Two-layer network: scalings, per-neuron gradients and risk gradient against finite differences."""

import numpy as np
import pytest

import mflib as mf


def test_mean_field_is_integral_against_empirical_measure(rng):
    X, W = rng.standard_normal((7, 4)), rng.standard_normal((9, 4))
    f = mf.network.forward(X, W)
    np.testing.assert_allclose(f, np.maximum(X @ W.T, 0).mean(axis=1), rtol=1e-14)
    g = mf.network.forward(X, W, scaling="ntk")
    np.testing.assert_allclose(g, f * np.sqrt(9), rtol=1e-14)


def test_general_theta_forward(rng):
    X, W = rng.standard_normal((5, 3)), rng.standard_normal((6, 3))
    a, b = rng.standard_normal(6), rng.standard_normal(6)
    f = mf.network.forward(X, W, a, b, activation="tanh")
    np.testing.assert_allclose(f, (np.tanh(X @ W.T + b) * a).sum(1) / 6, rtol=1e-14)


@pytest.mark.parametrize("scaling", ["mean_field", "ntk"])
@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_risk_gradient_against_finite_differences(rng, scaling, act):
    n, N, d = 11, 5, 3
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    W, a, b = rng.standard_normal((N, d)), rng.standard_normal(N), rng.standard_normal(N)

    def R(W, a, b):
        return np.mean((y - mf.network.forward(X, W, a, b, act, scaling)) ** 2)

    g = mf.network.risk_gradient(X, y, W, a, b, act, scaling)
    h = 1e-6
    for i in range(N):
        e = np.zeros(N)
        e[i] = h
        assert abs(g.a[i] - (R(W, a + e, b) - R(W, a - e, b)) / (2 * h)) < 1e-8
        assert abs(g.b[i] - (R(W, a, b + e) - R(W, a, b - e)) / (2 * h)) < 1e-8
        for k in range(d):
            E = np.zeros_like(W)
            E[i, k] = h
            assert abs(g.W[i, k] - (R(W + E, a, b) - R(W - E, a, b)) / (2 * h)) < 1e-8


def test_neuron_gradients_against_finite_differences(rng):
    X, W = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    G = mf.network.neuron_gradients(X, W, a, b, "tanh")
    assert G.dw.shape == (4, 5, 3)
    h = 1e-6
    S = lambda W, a, b: mf.network.neuron_outputs(X, W, a, b, "tanh")  # noqa: E731
    E = np.zeros_like(W)
    E[:, 1] = h
    np.testing.assert_allclose(G.dw[:, :, 1], (S(W + E, a, b) - S(W - E, a, b)) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(G.da, (S(W, a + h, b) - S(W, a - h, b)) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(G.db, (S(W, a, b + h) - S(W, a, b - h)) / (2 * h), atol=1e-8)


def test_network_validation(rng):
    W = rng.standard_normal((3, 2))
    with pytest.raises(ValueError, match="X must have d = 2"):
        mf.network.forward(np.ones((4, 3)), W)
    with pytest.raises(ValueError, match="W must have at least one row"):
        mf.network.forward(np.ones((4, 2)), np.ones((0, 2)))
    with pytest.raises(ValueError, match="scaling must be one of"):
        mf.network.forward(np.ones((4, 2)), W, scaling="lazy")
    with pytest.raises(ValueError, match="NaN or inf"):
        mf.network.forward(np.full((4, 2), np.nan), W)
    with pytest.raises(ValueError, match="a must have shape"):
        mf.network.forward(np.ones((4, 2)), W, a=np.ones(2))
