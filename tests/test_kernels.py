"""Tests for mflib.kernels: closed forms against Monte Carlo, exact identities, PSD-ness, errors."""

import numpy as np
import pytest

import mflib as mf
from mflib import kernels as K

MC_DRAWS = 1_000_000
SIGMAS = 5.0


def _points():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((4, 5))
    X[1] = 0.0                                   # a zero row
    Y = rng.standard_normal((3, 5))
    Y[0] = 2.5 * X[0]                            # parallel to X[0]
    Y[1] = -0.7 * X[2]                           # antiparallel to X[2]
    return X, Y


def _mc_moments(X, Y, f, with_a=False, seed=0, chunk=200_000):
    """Monte Carlo mean and standard error of f(<w,x>, <w,y>) (times a^2) over w ~ N(0, I_d)."""
    rng = np.random.default_rng(seed)
    s1 = np.zeros((X.shape[0], Y.shape[0]))
    s2 = np.zeros_like(s1)
    for _ in range(MC_DRAWS // chunk):
        W = rng.standard_normal((chunk, X.shape[1]))
        A = rng.standard_normal(chunk) ** 2 if with_a else np.ones(chunk)
        FX, FY = f(X @ W.T), f(Y @ W.T)                          # (n, M), (m, M)
        s1 += (FX * A) @ FY.T
        s2 += (FX**2 * A**2) @ (FY**2).T
    mean = s1 / MC_DRAWS
    var = s2 / MC_DRAWS - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0) / MC_DRAWS)


def _relu(t):
    return np.maximum(t, 0.0)


def _step(t):
    return (t > 0).astype(float)


@pytest.mark.parametrize("name", ["relu", "arccos0", "relu_grad", "ntk"])
def test_closed_forms_against_monte_carlo(name):
    X, Y = _points()
    G = X @ Y.T
    if name == "relu":
        exact, (mc, se) = K.relu_kernel(X, Y), _mc_moments(X, Y, _relu)
    elif name == "arccos0":
        exact, (mc, se) = K.arccos_kernel(X, Y, degree=0), _mc_moments(X, Y, _step)
    elif name == "relu_grad":
        exact, (mc, se) = K.relu_grad_kernel(X, Y), _mc_moments(X, Y, _step, with_a=True, seed=1)
        mc, se = mc * G, se * np.abs(G)
    else:
        m1, s1 = _mc_moments(X, Y, _relu, seed=2)
        m0, s0 = _mc_moments(X, Y, _step, with_a=True, seed=3)
        exact, mc, se = K.ntk_kernel(X, Y), m1 + m0 * G, np.sqrt(s1**2 + (s0 * G) ** 2)
    assert np.all(np.abs(mc - exact) <= SIGMAS * se + 1e-12), (mc - exact) / np.maximum(se, 1e-300)


def test_identities():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 4))
    nrm2 = np.sum(X**2, axis=1)
    assert np.all(np.diag(K.arccos_kernel(X, degree=0)) == 0.5)          # exactly 1/2
    assert np.all(np.diag(K.arccos_kernel(X, X, degree=0)) == 0.5)
    assert np.allclose(np.diag(K.arccos_kernel(X, -X, degree=0)), 0.0, atol=1e-15)
    assert np.allclose(np.diag(K.relu_kernel(X)), nrm2 / 2, rtol=1e-14)
    assert np.allclose(np.diag(K.relu_kernel(X, -X)), 0.0, atol=1e-14)
    assert np.allclose(np.diag(K.relu_grad_kernel(X)), nrm2 / 2, rtol=1e-14)
    S = X / np.sqrt(nrm2)[:, None]
    assert np.allclose(np.diag(K.ntk_kernel(S)), 1.0, rtol=1e-14)
    # orthogonal inputs: kappa0 = 1/4, kappa1 = |x||y| / (2 pi)
    e1, e2 = np.eye(3)[:1] * 2.0, np.eye(3)[1:2] * 3.0
    assert K.arccos_kernel(e1, e2, degree=0)[0, 0] == pytest.approx(0.25, rel=1e-15)
    assert K.relu_kernel(e1, e2)[0, 0] == pytest.approx(6.0 / (2 * np.pi), rel=1e-15)
    # relu = (t + |t|)/2 gives kappa1(x, y) - kappa1(x, -y) = <x, y> / 2 (E[(w.x)(w.y)] = <x,y>)
    Y = rng.standard_normal((5, 4))
    assert np.allclose(K.relu_kernel(X, Y) - K.relu_kernel(X, -Y), X @ Y.T / 2, atol=1e-13)
    # same for the step: kappa0(x, y) + kappa0(x, -y) = 1/2 (one of the half-spaces holds)
    assert np.allclose(K.arccos_kernel(X, Y, 0) + K.arccos_kernel(X, -Y, 0), 0.5, atol=1e-15)
    # homogeneity: degree 1 in each argument for kappa1, degree 0 for kappa0
    assert np.allclose(K.relu_kernel(3.0 * X, Y), 3.0 * K.relu_kernel(X, Y), rtol=1e-13)
    assert np.allclose(K.arccos_kernel(3.0 * X, Y, 0), K.arccos_kernel(X, Y, 0), rtol=1e-13)
    # half of Cho & Saul's (1/pi) J_1
    th = K.angles(X, Y)
    J1 = np.sin(th) + (np.pi - th) * np.cos(th)
    cs = np.outer(np.linalg.norm(X, axis=1), np.linalg.norm(Y, axis=1)) * J1 / np.pi
    assert np.allclose(K.relu_kernel(X, Y), cs / 2, rtol=1e-13)
    assert np.allclose(K.ntk_kernel(X, Y), K.relu_kernel(X, Y) + K.relu_grad_kernel(X, Y), atol=1e-13)


def test_zero_rows_and_angles():
    X = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    for f in (K.relu_kernel, K.relu_grad_kernel, K.ntk_kernel, lambda A, B=None: K.arccos_kernel(A, B, 0)):
        G = f(X)
        assert np.all(G[0] == 0.0) and np.all(G[:, 0] == 0.0)
    # near-parallel rows: Kahan's formula keeps tiny angles accurate
    x = np.array([[1.0, 0.0]])
    y = np.array([[1.0, 1e-9]])
    assert K.angles(x, y)[0, 0] == pytest.approx(1e-9, rel=1e-6)
    assert K.angles(x, -y)[0, 0] == pytest.approx(np.pi - 1e-9, rel=1e-12)
    assert K.arccos_kernel(x, y, 0)[0, 0] == pytest.approx(0.5 - 1e-9 / (2 * np.pi), rel=1e-15)


@pytest.mark.parametrize("f", [K.relu_kernel, K.relu_grad_kernel, K.ntk_kernel,
                               lambda A, B=None: K.arccos_kernel(A, B, 0)])
def test_symmetric_psd(f):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 4))
    X[40:] = X[:40] + 1e-7 * rng.standard_normal((40, 4))     # near-duplicates: nearly singular
    G = f(X)
    assert np.array_equal(G, G.T)
    assert np.allclose(G, f(X, X), atol=1e-14 * np.abs(G).max())
    lam = np.linalg.eigvalsh(G)
    assert lam[0] >= -1e-12 * lam[-1]


def test_vectorised_shapes():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((7, 3)), rng.standard_normal((2, 3))
    for f in (K.relu_kernel, K.relu_grad_kernel, K.ntk_kernel, K.angles):
        assert f(X, Y).shape == (7, 2)
        assert np.allclose(f(X, Y), f(Y, X).T, atol=1e-14)
    assert mf.kernels is K


def test_errors():
    X = np.ones((3, 2))
    for f in (K.relu_kernel, K.relu_grad_kernel, K.ntk_kernel, K.angles):
        with pytest.raises(ValueError, match="Y must have d = 2"):
            f(X, np.ones((3, 4)))
        with pytest.raises(ValueError, match="X must be a 2-D array"):
            f(np.ones(3))
        with pytest.raises(ValueError, match="NaN"):
            f(np.array([[np.nan, 1.0]]))
    for bad in (2, -1, True, 0.5):
        with pytest.raises(ValueError, match="degree"):
            K.arccos_kernel(X, degree=bad)
    with pytest.raises(TypeError):
        K.relu_kernel("abc")


def test_relu_kernel_positive_definite_without_parallel_inputs():
    """Proposition of chapter 6: no two inputs parallel or antiparallel => K^(a), K^(w) positive
    definite; with more antiparallel pairs than dimensions K^(a) is singular
    (relu(t) - relu(-t) = t gives linear relations)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 3))
    for G in (K.relu_kernel(X), K.relu_grad_kernel(X)):
        lam = np.linalg.eigvalsh(G)
        assert lam[0] > 1e-8 * lam[-1]
    P = rng.standard_normal((4, 3))                   # 4 > d = 3 antiparallel pairs
    lam = np.linalg.eigvalsh(K.relu_kernel(np.concatenate([P, -P])))
    assert abs(lam[0]) < 1e-12 * lam[-1]
    lam = np.linalg.eigvalsh(K.relu_kernel(np.concatenate([P[:3], -P[:3]])))
    assert lam[0] > 1e-8 * lam[-1]                    # 3 pairs in R^3: still definite
