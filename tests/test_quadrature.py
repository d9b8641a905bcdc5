"""mflib.quadrature, the home of the Gaussian primitives, each tested here once: the arc-cosine pair
expectation (arccos1) against 50-digit arithmetic, kink-aware quadrature and finite differences; the
kink-aware nodes (gauss_nodes); Hermite coefficients by quadrature and in closed form
(hermite_coefficients, relu_hermite); Gram matrices by Mehler's formula (mehler_gram); the cosine of
two uniform directions (cosine_rule, cosine_moments) against closed-form moments and Monte Carlo."""

import mpmath as mp
import numpy as np
import pytest
from scipy import integrate, special

from mflib import activations as act
from mflib import quadrature as quad

Z = 5.0  # Monte Carlo tolerance: Z standard errors (rng: the fixture of conftest.py)


def _k_mp(AB, C):
    with mp.workdps(60):
        AB, C = mp.mpf(float(AB)), mp.mpf(float(C))
        r = mp.sqrt(max(AB - C * C, 0))
        return float((r + (mp.pi - mp.atan2(r, C)) * C) / (2 * mp.pi))


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("gap", [0.5, 1e-2, 1e-4, 1e-8, 1e-12, 0.0])
def test_arccos1_near_parallel_and_antiparallel_full_precision(sign, gap):
    """|cos| = 1 - gap: the relative error stays at round-off level (arccos(C / sqrt(AB)) with
    clipping, the formula this replaced, was 4e-2 wrong at gap 1e-8 antiparallel)."""
    AB = np.array([1.7, 0.3, 2.0e3])
    C = sign * np.sqrt(AB) * (1.0 - gap)
    k = quad.arccos1(AB, C).k
    for i in range(AB.size):
        ref = _k_mp(AB[i], C[i])
        ks = quad.arccos1_scalar(AB[i], C[i])
        if ref == 0.0:
            assert k[i] == 0.0 and ks == 0.0
        else:
            assert abs(k[i] - ref) <= 4e-16 * ref
            assert abs(ks - ref) <= 4e-16 * ref


def test_arccos1_against_quadrature_and_derivative():
    rng = np.random.default_rng(3)
    A, B = rng.uniform(0.2, 3.0, 50), rng.uniform(0.2, 3.0, 50)
    C = rng.uniform(-1, 1, 50) * np.sqrt(A * B)
    r = quad.arccos1(A * B, C)
    ref = quad.gauss_expect_pair(act.relu.sigma, act.relu.sigma, act.relu.kinks, act.relu.kinks, A, B, C)
    np.testing.assert_allclose(r.k, ref, rtol=1e-11, atol=1e-14)
    h = 1e-6
    dC = (quad.arccos1(A * B, C + h).k - quad.arccos1(A * B, C - h).k) / (2 * h)
    np.testing.assert_allclose(r.kappa0, dC, rtol=1e-7)
    dA = (quad.arccos1((A + h) * B, C).k - quad.arccos1((A - h) * B, C).k) / (2 * h)
    np.testing.assert_allclose(r.root / (4 * np.pi * A), dA, rtol=1e-7)
    scal = np.array([quad.arccos1_scalar(a * b, c) for a, b, c in zip(A, B, C, strict=True)])
    np.testing.assert_allclose(scal, r.k, rtol=1e-15, atol=0)


def test_arccos1_degenerate_and_given_angle():
    r = quad.arccos1(np.array([0.0, 4.0, 4.0]), np.array([0.0, 2.0, -2.0]))
    assert r.k[0] == 0.0 and r.k[2] == 0.0 and r.k[1] == pytest.approx(1.0)
    theta = np.array([0.0, 1.0, np.pi - 1e-9, np.pi])
    AB = np.full(4, 2.0)
    given = quad.arccos1(AB, None, theta=theta)
    plain = quad.arccos1(AB, np.sqrt(AB) * np.cos(theta))
    np.testing.assert_allclose(given.kappa0, (np.pi - theta) / (2 * np.pi), rtol=0, atol=1e-16)
    np.testing.assert_allclose(given.k[:2], plain.k[:2], rtol=1e-15)


# -- kink-aware nodes ----------------------------------------------------------------------------
def test_gauss_nodes_reproduce_gauss_expect_and_split_at_every_kink():
    A = np.array([0.0, 0.3, 2.0, 40.0])
    m = np.array([0.2, -0.5, 0.0, 1.0])
    s = np.sqrt(A)
    f = act.get("truncated_relu")
    z, w = quad.gauss_nodes(f.kinks, s, m, n=20)
    E = np.sum(w * f.sigma(m[:, None] + s[:, None] * z) * np.exp(-0.5 * z * z), axis=1)
    np.testing.assert_allclose(E / np.sqrt(2 * np.pi), quad.gauss_expect(f.sigma, f.kinks, A, m),
                               rtol=1e-15, atol=1e-17)
    assert np.all(np.diff(z, axis=1) >= 0) and np.all(np.abs(z) <= quad.L_DEFAULT)
    np.testing.assert_allclose(w.sum(axis=1), 2 * quad.L_DEFAULT, rtol=1e-14)
    # Two functions of the same z, kinks at 1/s1 and 1/s2: one rule resolves both.
    s12 = np.array([[0.7, -1.9], [2.5, 0.4]])
    z, w = quad.gauss_nodes((1.0,), s12, 0.0, n=16)

    def g(t, a, b):
        return abs(a * t - 1) * abs(b * t - 1) * np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)

    for k in range(2):
        a, b = s12[k]
        ref = integrate.quad(g, -12, 12, args=(a, b), points=sorted([1 / a, 1 / b]), epsabs=0,
                             epsrel=1e-12, limit=200)[0]
        got = np.sum(w[k] * np.abs(a * z[k] - 1) * np.abs(b * z[k] - 1) * np.exp(-0.5 * z[k] ** 2))
        assert abs(got / np.sqrt(2 * np.pi) - ref) < 1e-12 * ref
    # Extra break points are honoured: they become piece ends.
    z1, _ = quad.gauss_nodes((), np.ones(1), 0.0, n=4, extra=np.array([[0.77]]))
    z0, _ = quad.gauss_nodes((), np.ones(1), 0.0, n=4)
    assert z1.shape[1] == z0.shape[1] + 4 and np.sum(z1 < 0.77) % 4 == 0


# -- Hermite coefficients ------------------------------------------------------------------------
def test_hermite_coefficients_relu_closed_form():
    A = np.array([0.0, 0.3, 2.0])
    c = quad.hermite_coefficients(act.relu.sigma, act.relu.kinks, A, 6)
    s = np.sqrt(A)
    phi0 = 1 / np.sqrt(2 * np.pi)
    # E[relu(s z) He_n(z)] / sqrt(n!) = s * He_{n-2}(0) phi(0) / sqrt(n!) for n >= 2.
    exact = np.stack([s * phi0, s / 2, s * phi0 / np.sqrt(2), 0 * s, -s * phi0 / np.sqrt(24), 0 * s,
                      3 * s * phi0 / np.sqrt(720)], axis=1)
    assert np.allclose(c, exact, atol=1e-12)
    # the closed form of relu_hermite at b = 0 is the same thing: round-off up to n = 8, then the
    # quadrature's error grows with the degree of He_n (1e-10 at n = 25..40, 40 nodes per piece)
    h, _, _ = quad.relu_hermite(s[1:], np.zeros(2), 40)
    err = np.abs(quad.hermite_coefficients(act.relu.sigma, act.relu.kinks, A[1:], 40) - h).max(axis=0)
    assert err[:9].max() < 1e-14 and err.max() < 2e-10
    with pytest.raises(ValueError, match="A must be >= 0"):
        quad.hermite_coefficients(act.relu.sigma, act.relu.kinks, [-1.0], 3)
    with pytest.raises(ValueError, match="n_max"):
        quad.hermite_coefficients(act.relu.sigma, act.relu.kinks, [1.0], -1)


def test_relu_hermite_derivatives_and_monte_carlo(rng):
    s, b = np.array([0.4, 1.3]), np.array([-0.5, 0.8])
    h, ds, db = quad.relu_hermite(s, b, 8)
    e = 1e-6
    assert np.allclose(ds, (quad.relu_hermite(s + e, b, 8)[0] - quad.relu_hermite(s - e, b, 8)[0])
                       / (2 * e), atol=1e-8)
    assert np.allclose(db, (quad.relu_hermite(s, b + e, 8)[0] - quad.relu_hermite(s, b - e, 8)[0])
                       / (2 * e), atol=1e-8)
    z = rng.standard_normal(400_000)
    val = np.maximum(s[0] * z + b[0], 0) * (z**3 - 3 * z) / np.sqrt(6)
    assert abs(val.mean() - h[0, 3]) < Z * val.std() / np.sqrt(z.size)
    # against the quadrature of E[relu(s z + b) He_n(z)] / sqrt(n!), with the bias
    z, w = quad.gauss_nodes((0.0,), s, b, n=30)
    He = quad._hermite_norm(z, 8)
    dens = w * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) * np.maximum(s[:, None] * z + b[:, None], 0)
    np.testing.assert_allclose(np.einsum("pq,pqn->pn", dens, He), h, rtol=0, atol=1e-13)


# -- Mehler's formula ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["truncated_relu", "sigmoid", "relu_bias"])
def test_mehler_gram_against_pair_quadrature(rng, name):
    """Every entry of the Gram matrix against the 2-D quadrature; pairs with |rho| > 0.95 (here a
    parallel and an antiparallel copy) come from that quadrature itself, the diagonal from diag."""
    N, d = 7, 5
    W = rng.standard_normal((N, d)) * 0.7
    W[1], W[2] = 1.5 * W[0], -0.5 * W[3]
    A, C = np.sum(W * W, axis=1), W @ W.T
    if name == "relu_bias":
        f, kinks, m = act.relu.sigma, act.relu.kinks, rng.normal(0, 0.3, N)
        c = quad.relu_hermite(np.sqrt(A), m, 60)[0]
    else:
        a = act.get(name)
        f, kinks, m = a.sigma, a.kinks, np.zeros(N)
        c = quad.hermite_coefficients(f, kinks, A, 60)
    K = quad.mehler_gram(f, kinks, c, A, C, m=m)
    i, j = np.triu_indices(N, 1)
    ref = quad.gauss_expect_pair(f, f, kinks, kinks, A[i], A[j], C[i, j], m1=m[i], m2=m[j])
    rho = C[i, j] / np.sqrt(A[i] * A[j])
    hi = np.abs(rho) > quad.MEHLER_RHO_MAX
    assert hi.sum() == 2
    np.testing.assert_array_equal(K[i[hi], j[hi]], ref[hi])
    assert np.abs(K[i, j] - ref).max() < 1e-6          # the series, truncated at n = 60
    np.testing.assert_allclose(np.diag(K), quad.gauss_expect(lambda u: f(u) ** 2, kinks, A, m),
                               rtol=0, atol=0)
    np.testing.assert_allclose(K, K.T, rtol=0, atol=1e-15)
    assert np.array_equal(quad.mehler_gram(f, kinks, c, A, C, m=m, diag=np.arange(N)).diagonal(),
                          np.arange(N))


# -- the cosine of two uniform directions ---------------------------------------------------------
@pytest.mark.parametrize("m", [2, 3, 7, 60])
def test_cosine_rule_moments(m):
    assert np.allclose(quad.cosine_moments(m, 18)[2::2],
                       [np.prod([(2 * j + 1) / (m + 2 * j) for j in range(k)]) for k in range(1, 10)])
    assert np.all(quad.cosine_moments(m, 18)[1::2] == 0)
    t, w = quad.cosine_rule(m, 10)
    assert abs(w.sum() - 1) < 1e-14 and np.all(w > 0) and np.all(np.abs(t) < 1)
    assert np.array_equal(t, -t[::-1]) and np.array_equal(w, w[::-1])
    # E t^{2k} for the cosine of two uniform directions in R^m: prod_{j<k} (2j+1)/(m+2j).
    for k in range(1, 10):
        exact = np.prod([(2 * j + 1) / (m + 2 * j) for j in range(k)])
        assert abs(np.sum(w * t ** (2 * k)) - exact) < 1e-13 * max(1, exact) + 1e-16
        assert abs(np.sum(w * t ** (2 * k - 1))) < 1e-15


def test_cosine_rule_against_monte_carlo(rng):
    m = 5
    u, v = rng.standard_normal((2, 200_000, m))
    c = np.sum(u * v, axis=1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    t, w = quad.cosine_rule(m, 8)
    for f in (np.exp, lambda x: np.cos(3 * x), lambda x: x**2 * np.sin(x + 1)):
        s = f(c)
        assert abs(np.sum(w * f(t)) - s.mean()) < Z * s.std() / np.sqrt(s.size)


def test_cosine_rule_degenerate_dimensions_and_validation():
    t, w = quad.cosine_rule(1, 5)
    assert np.allclose(t, [-1, 1]) and np.allclose(w, [0.5, 0.5])
    t, w = quad.cosine_rule(0, 5)
    assert np.allclose(t, [0]) and np.allclose(w, [1])
    assert np.array_equal(quad.cosine_moments(0, 4), [1, 0, 0, 0, 0])
    assert np.array_equal(quad.cosine_moments(1, 4), [1, 0, 1, 0, 1])
    # Gauss-Jacobi weights of roots_jacobi integrate the Beta density's normalisation.
    _, wj = special.roots_jacobi(5, 1.5, 1.5)
    assert abs(wj.sum() - special.beta(2.5, 2.5) * 2**4) < 1e-12
    with pytest.raises(ValueError, match="m must be"):
        quad.cosine_rule(-1, 3)
    with pytest.raises(ValueError, match="n must be"):
        quad.cosine_rule(3, 0)
    with pytest.raises(ValueError, match="k_max"):
        quad.cosine_moments(3, -1)
