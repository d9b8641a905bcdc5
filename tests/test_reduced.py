"""mflib.reduced for s0 < d: theta = (a, b, w) in reduced coordinates (a, b, r1, r2) against the full-d
problem (Monte Carlo over data and over directions), against Gauss-Jacobi quadrature in the two cosines
with 2-D Gaussian quadrature at each node, finite differences, and the monotone risk of the flow."""

import numpy as np
import pytest

import mflib as mf
from mflib import quadrature, reduced

Z = 5.0  # Monte Carlo tolerance: Z standard errors


@pytest.fixture
def rng():
    return np.random.default_rng(20240)


def _relu(u):
    return np.maximum(u, 0.0)


def _embed(p, r1, r2, n, rng):
    """n vectors of R^d with radii (r1, r2) along independent uniform directions."""
    G = rng.standard_normal((n, p.d))
    G[:, : p.s0] *= r1 / np.linalg.norm(G[:, : p.s0], axis=1, keepdims=True)
    G[:, p.s0:] *= r2 / np.linalg.norm(G[:, p.s0:], axis=1, keepdims=True)
    return G


def _U_full(p, a1, b1, W1, a2, b2, W2):
    """U(theta, theta') = E[sigma_* sigma_*'] for full-d pairs (rows), by 2-D Gaussian quadrature."""
    out = 0.0
    for prob, cov in p.components:
        A = np.einsum("ij,ij->i", W1 * cov, W1)
        B = np.einsum("ij,ij->i", W2 * cov, W2)
        C = np.einsum("ij,ij->i", W1 * cov, W2)
        out = out + prob * a1 * a2 * quadrature.gauss_expect_pair(_relu, _relu, (0.0,), (0.0,), A, B, C,
                                                                  m1=b1, m2=b2)
    return out


def test_reduced_V_against_monte_carlo_over_data(rng):
    p = mf.problems.AnisotropicGaussians(30, 8, 0.6)
    red = reduced.ReducedABW(p)
    P = np.array([[1.3, -0.4, 0.9, 0.5], [-0.7, 0.3, 0.2, 1.1]])
    W = np.stack([_embed(p, P[i, 2], P[i, 3], 1, rng)[0] for i in range(2)])
    X, y = p.sample(400_000, rng)
    vals = -y[:, None] * P[:, 0] * _relu(X @ W.T + P[:, 1])      # V = -E[y sigma_*]
    se = vals.std(axis=0) / np.sqrt(X.shape[0])
    assert np.all(np.abs(vals.mean(axis=0) - red.V(P)) < Z * se)
    # V depends on w only through the radii: a second embedding gives the same exact V.
    assert np.allclose(red.V(red.reduce(P[:, 0], P[:, 1], W)), red.V(P), atol=1e-14)


def test_reduced_U_against_cosine_quadrature_and_directions(rng):
    p = mf.problems.AnisotropicGaussians(60, 20, 0.5)
    red = reduced.ReducedABW(p)
    P1 = np.array([[1.2, -0.3, 0.7, 0.4]])
    P2 = np.array([[0.8, 0.2, 0.5, 0.9]])
    Ubar = red.U(P1, P2)[0, 0]
    # (i) Gauss-Jacobi in (t1, t2), exact pair expectation (with the biases) at every node.
    t1, w1 = quadrature.cosine_rule(p.s0, 24)
    t2, w2 = quadrature.cosine_rule(p.d - p.s0, 24)
    T1, T2 = (x.ravel() for x in np.meshgrid(t1, t2, indexing="ij"))
    wt = np.outer(w1, w2).ravel()
    (a, b, r1, r2), (a_, b_, q1, q2) = P1[0], P2[0]
    quad = 0.0
    for prob, cov in p.components:
        c2 = cov[0]
        A, B = c2 * r1**2 + r2**2, c2 * q1**2 + q2**2
        C = c2 * r1 * q1 * T1 + r2 * q2 * T2
        quad += prob * a * a_ * wt @ quadrature.gauss_expect_pair(_relu, _relu, (0.0,), (0.0,), A, B, C,
                                                                  m1=b, m2=b_)
    assert abs(Ubar - quad) < 1e-8
    # (ii) Monte Carlo over independent uniform directions in R^d, full-d U for each pair.
    n = 3000
    vals = _U_full(p, a, b, _embed(p, r1, r2, n, rng), a_, b_, _embed(p, q1, q2, n, rng))
    assert abs(vals.mean() - Ubar) < Z * vals.std() / np.sqrt(n)
    # d -> infinity: all cosines 0, only the n = 0 term.
    lim = reduced.ReducedABW(p, limit=True).U(P1, P2)[0, 0]
    assert abs(lim - quad) < 0.05 and lim != Ubar


def test_reduced_gradients_by_finite_differences(rng):
    p = mf.problems.AnisotropicGaussians(40, 12, 0.7)
    red = reduced.ReducedABW(p)
    M = 6
    P = np.column_stack([rng.normal(1, .3, M), rng.normal(0, .3, M), rng.uniform(.1, 1, M),
                         rng.uniform(.1, 1, M)])
    w = rng.dirichlet(np.ones(M))
    psi, g = red.potential(P, w)
    e = 1e-6

    def Psi(Q):
        return red.V(Q) + red.U(Q, P) @ w

    fd = np.stack([(Psi(P + e * np.eye(4)[j]) - Psi(P - e * np.eye(4)[j])) / (2 * e) for j in range(4)], 1)
    assert np.allclose(psi, Psi(P), atol=1e-14)
    assert np.allclose(g, fd, atol=1e-8)
    gv = red.grad_V(P)
    E = e * np.eye(4)
    fdv = np.stack([(red.V(P + E[j]) - red.V(P - E[j])) / (2 * e) for j in range(4)], 1)
    assert np.allclose(gv, fdv, atol=1e-8)
    # Psi is even in each radius: the radial velocity vanishes at r2 = 0.
    Q = P.copy()
    Q[:, 3] = 0.0
    assert np.allclose(red.potential(Q, w)[1][:, 3], 0.0, atol=1e-14)


def test_reduced_risk_is_the_mean_risk_of_random_embeddings(rng):
    """E over directions of the exact N-neuron risk = reduced risk + (diagonal correction)/N^2."""
    p = mf.problems.AnisotropicGaussians(50, 15, 0.5)
    red = reduced.ReducedABW(p)
    N = 8
    P = np.column_stack([rng.normal(1, .3, N), rng.normal(0, .3, N), rng.uniform(.3, 1, N),
                         rng.uniform(.3, 1, N)])
    w = np.full(N, 1.0 / N)
    W0 = np.stack([_embed(p, P[i, 2], P[i, 3], 1, rng)[0] for i in range(N)])
    diag_full = _U_full(p, P[:, 0], P[:, 1], W0, P[:, 0], P[:, 1], W0)      # direction-free
    target = red.risk(P, w) + (diag_full.sum() - np.trace(red.U(P, P))) / N**2
    n = 300
    vals = np.array([reduced.risk_abw(p, P[:, 0], P[:, 1],
                                      np.stack([_embed(p, P[i, 2], P[i, 3], 1, rng)[0] for i in range(N)]))
                     for _ in range(n)])
    assert abs(vals.mean() - target) < Z * vals.std() / np.sqrt(n)


def test_reduced_flow_decreases_risk_and_inputs():
    p = mf.problems.AnisotropicGaussians(320, 60, 0.5)
    red = reduced.ReducedABW(p)
    M = 40
    rng = np.random.default_rng(3)
    W0 = rng.standard_normal((M, p.d)) * 0.8 / np.sqrt(p.d)
    P0 = red.reduce(np.ones(M), np.zeros(M), W0)
    assert P0.shape == (M, 4)
    w0 = np.full(M, 1.0 / M)
    sol = red.run(P0, w0, T=4.0, dt=0.05, n_records=21, snapshots=True)
    assert np.all(np.diff(sol.risk) <= 1e-12)
    assert sol.risk[-1] < sol.risk[0] - 0.05
    assert sol.snapshots.shape == (21, M, 4) and np.all(sol.P[:, 2:] >= 0)
    # The uninformative radius shrinks, the informative one grows (on average).
    assert sol.P[:, 3].mean() < P0[:, 3].mean() and sol.P[:, 2].mean() > P0[:, 2].mean()
    with pytest.raises(ValueError, match="shape"):
        red.V(np.ones((3, 3)))
    with pytest.raises(ValueError, match="radii"):
        red.V(np.array([[1.0, 0.0, -0.1, 0.5]]))
    with pytest.raises(ValueError, match="radii"):
        red.U(np.array([[1.0, 0.0, 0.0, 0.0]]), P0)
    with pytest.raises(ValueError, match="weights"):
        red.run(P0, 2 * w0, T=1.0, dt=0.1)
    with pytest.raises(ValueError, match="weights"):
        red.potential(P0, w0[:-1])
    with pytest.raises(ValueError, match="AnisotropicGaussians"):
        reduced.ReducedABW(mf.problems.TeacherStudent(np.ones((1, 3))))
    with pytest.raises(ValueError, match="ReLU"):
        reduced.ReducedABW(mf.problems.AnisotropicGaussians(5, 3, 0.5, activation="tanh"))
    with pytest.raises(ValueError, match="T"):
        red.run(P0, w0, T=0.0, dt=0.1)


def test_sgd_abw_compiled_steps_match_a_plain_loop(rng):
    p = mf.problems.AnisotropicGaussians(20, 6, 0.5)
    N, steps, eps = 30, 5000, 1e-3
    W0 = rng.standard_normal((N, 20)) * 0.8 / np.sqrt(20)
    a0, b0 = rng.normal(1, 0.3, N), rng.normal(0, 0.3, N)
    tr = reduced.sgd_abw(p, a0, b0, W0, eps=eps, steps=steps, rng=np.random.default_rng(9), n_records=3,
                         record_risk=False, progress=False)
    a, b, W = a0.copy(), b0.copy(), W0.copy()
    data = np.random.default_rng(9).spawn(2)[0]     # the data stream of mflib.sgd.run
    C = mf.sgd.CHUNK
    for k in range(steps):
        if k % C == 0:
            X, y = p.sample(C, data)
        x, yk = X[k % C], y[k % C]
        hpre = W @ x + b
        g = eps * (yk - a @ np.maximum(hpre, 0) / N)
        on = (hpre > 0) * g * a
        a, b, W = a + g * np.maximum(hpre, 0), b + on, W + on[:, None] * x
    assert np.allclose(tr.W, W, atol=1e-10) and np.allclose(tr.a, a, atol=1e-10)
    assert np.allclose(tr.b, b, atol=1e-10)
