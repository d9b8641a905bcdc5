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


# ---- vector outputs (chapter 7's network, trained by mflib.chaos)
def test_vector_forward_against_a_loop(rng):
    n, N, d, C = 5, 7, 3, 4
    X, W = rng.standard_normal((n, d)), rng.standard_normal((N, C * d))
    f = mf.network.vector_forward(X, W, activation="tanh")
    loop = np.array([[np.mean([np.tanh(W[k, c * d:(c + 1) * d] @ x) for k in range(N)])
                      for c in range(C)] for x in X])
    np.testing.assert_allclose(f, loop, rtol=1e-13, atol=1e-15)
    R3 = np.stack([W, 2 * W])                      # a run axis: one output per network
    fr = mf.network.vector_forward(X, R3, activation="tanh")
    assert fr.shape == (2, n, C)
    np.testing.assert_allclose(fr[0], f, rtol=1e-14)
    np.testing.assert_allclose(fr[1], mf.network.vector_forward(X, 2 * W, "tanh"), rtol=1e-14)
    # C = 1 is the scalar mean-field network of forward()
    w1 = rng.standard_normal((N, d))
    np.testing.assert_allclose(mf.network.vector_forward(X, w1)[:, 0], mf.network.forward(X, w1),
                               rtol=1e-14)
    import mflib.chaos
    assert mflib.chaos.outputs is mf.network.vector_forward


def test_vector_preactivations_and_checks(rng):
    X, W = rng.standard_normal((4, 3)), rng.standard_normal((2, 5, 6))
    H = mf.network.vector_preactivations(X, W, 2)
    assert H.shape == (2, 4, 5, 2)
    np.testing.assert_allclose(H[1, 2, 3, 1], W[1, 3, 3:] @ X[2], rtol=1e-14)
    H32 = mf.network.vector_preactivations(X.astype(np.float32), W.astype(np.float32), 2)
    assert H32.dtype == np.float32                 # float32 stays float32 (chaos.sgd's dtype)
    with pytest.raises(ValueError, match="C d = 9"):
        mf.network.vector_preactivations(X, W, 3)
    with pytest.raises(ValueError, match="not a multiple"):
        mf.network.n_outputs(7, 3, "W0")
    assert mf.network.n_outputs(12, 3) == 4
    W3, batched = mf.network.as_runs(W[0])
    assert W3.shape == (1, 5, 6) and not batched
    with pytest.raises(ValueError, match="at least one"):
        mf.network.as_runs(np.zeros((0, 5, 6)))
    with pytest.raises(ValueError, match=r"\(N, p\) or \(R, N, p\)"):
        mf.network.as_runs(np.zeros(3))
