"""Problems: exact V, U, risk against Monte Carlo, quadrature against closed forms, gradients
against finite differences, the risk identity, and every validation path."""

import numpy as np
import pytest

import mflib as mf
from mflib import quadrature

Z = 5.0  # Monte Carlo tolerance: Z standard errors


def mc_check(exact, samples, name):
    """Assert |exact - mean(samples)| <= Z * standard error (elementwise over the last axes)."""
    m = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    bad = np.abs(exact - m) > Z * se + 1e-12
    assert not bad.any(), f"{name}: exact {exact[bad]} vs MC {m[bad]} +- {se[bad]}"


@pytest.mark.parametrize("act", ["relu", "truncated_relu", "tanh"])
def test_anisotropic_V_U_against_monte_carlo(rng, act):
    p = mf.problems.AnisotropicGaussians(d=8, s0=3, delta=0.6, activation=act)
    W = rng.standard_normal((4, 8)) / np.sqrt(2)
    X, y = p.sample(200_000, rng)
    S = p.activation(X @ W.T)
    mc_check(p.V(W), -(y[:, None] * S), "V")
    mc_check(p.U(W), S[:, :, None] * S[:, None, :], "U")
    assert abs(np.mean(y**2) - p.Ey2) < 1e-12


def test_teacher_student_against_monte_carlo(rng):
    p = mf.problems.TeacherStudent(rng.standard_normal((3, 5)), a_teacher=[1.0, -2.0, 0.5], noise_std=0.3)
    W = rng.standard_normal((4, 5))
    X, y = p.sample(200_000, rng)
    S = np.maximum(X @ W.T, 0)
    mc_check(p.V(W), -(y[:, None] * S), "V")
    mc_check(np.array([p.Ey2]), (y**2)[:, None], "Ey2")
    f = S.mean(axis=1)
    mc_check(np.array([p.risk(W)]), ((y - f) ** 2)[:, None], "risk")


def test_teacher_in_the_model_has_risk_equal_to_noise(rng):
    Wt = rng.standard_normal((6, 4))
    p = mf.problems.TeacherStudent(Wt, noise_std=0.25)
    assert abs(p.risk(Wt) - 0.25**2) < 1e-12


def test_risk_identity_exact_on_an_empirical_distribution(rng):
    """R_N = E y^2 + (2/N) sum V + (1/N^2) sum U holds exactly for any distribution: check it on
    the empirical measure of a sample, where every term is a finite sum."""
    n, N, d = 500, 37, 6
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    W = rng.standard_normal((N, d))
    S = np.maximum(X @ W.T, 0)
    V = -(y @ S) / n
    U = S.T @ S / n
    lhs = np.mean((y - S.mean(axis=1)) ** 2)
    rhs = np.mean(y**2) + 2 * V.sum() / N + U.sum() / N**2
    assert abs(lhs - rhs) < 1e-10


def test_population_risk_against_monte_carlo(rng):
    p = mf.problems.AnisotropicGaussians(d=10, s0=4, delta=0.5)
    W = rng.standard_normal((50, 10)) * 0.8 / np.sqrt(10)
    X, y = p.sample(400_000, rng)
    loss = (y - np.maximum(X @ W.T, 0).mean(axis=1)) ** 2
    mc_check(np.array([p.risk(W)]), loss[:, None], "risk")


def test_relu_closed_form_equals_quadrature_to_round_off(rng):
    """The generic quadrature path, fed a user copy of ReLU, reproduces the arc-cosine formula."""
    relu_copy = mf.activations.Activation("relu_copy", lambda t: np.maximum(t, 0), lambda t: (t > 0) * 1.0,
                                          kinks=(0.0,))
    p_exact = mf.problems.AnisotropicGaussians(5, 2, 0.4)
    p_quad = mf.problems.AnisotropicGaussians(5, 2, 0.4, activation=relu_copy)
    W = rng.standard_normal((6, 5))
    W[1] = 2.5 * W[0]          # parallel pair: correlation exactly 1
    W[2] = -W[0]               # antiparallel pair
    # Exactly parallel and antiparallel pairs included: the angle comes from atan2(root, C), so
    # the closed form stays exact there (an arccos of C / sqrt(AB) lost half the digits).
    np.testing.assert_allclose(p_quad.U(W), p_exact.U(W), atol=1e-12)
    np.testing.assert_allclose(p_quad.V(W), p_exact.V(W), atol=1e-13)
    np.testing.assert_allclose(p_quad.grad_Psi(W, W), p_exact.grad_Psi(W, W), atol=1e-12)


@pytest.mark.parametrize("act", ["truncated_relu", "sigmoid", "tanh"])
def test_quadrature_accuracy_against_high_order_reference(rng, act):
    a = mf.activations.get(act)
    P = 300
    A, B = rng.uniform(0.05, 4, P), rng.uniform(0.05, 4, P)
    rho = np.concatenate([rng.uniform(-1, 1, P - 4), [1.0, -1.0, 0.9999999, -0.999]])
    C = rho * np.sqrt(A * B)
    default = quadrature.gauss_expect_pair(a.sigma, a.sigma, a.kinks, a.kinks, A, B, C)
    reference = quadrature.gauss_expect_pair(a.sigma, a.sigma, a.kinks, a.kinks, A, B, C, n=40, L=12.0)
    assert np.abs(default - reference).max() < 1e-8
    v = quadrature.gauss_expect(a.sigma, a.kinks, A)
    v_ref = quadrature.gauss_expect(a.sigma, a.kinks, A, n=60, L=12.0)
    assert np.abs(v - v_ref).max() < 1e-12


def test_quadrature_gaussian_moments():
    A = np.array([0.3, 1.0, 7.0])
    np.testing.assert_allclose(quadrature.gauss_expect(lambda u: u**2, (), A), A, rtol=1e-13)
    np.testing.assert_allclose(quadrature.gauss_expect(lambda u: u**4, (), A, m=0.5),
                               3 * A**2 + 6 * A * 0.25 + 0.5**4, rtol=1e-12)
    # E[u v] = C for any correlation, with means: E[(u)(v)] = C + m1 m2
    B, C = np.array([2.0, 0.5, 1.0]), np.array([0.5, -0.3, 2.0])
    got = quadrature.gauss_expect_pair(lambda u: u, lambda v: v, (), (), A, B, C, m1=0.2, m2=-1.0)
    np.testing.assert_allclose(got, C + 0.2 * -1.0, atol=1e-13)


@pytest.mark.parametrize("act", ["relu", "truncated_relu"])
def test_gradients_against_finite_differences(rng, act):
    p = mf.problems.AnisotropicGaussians(d=5, s0=2, delta=0.5, activation=act)
    W, Wr = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
    h = 1e-6
    gV, gU, gP = p.grad_V(W), p.grad1_U(W, Wr), p.grad_Psi(W, Wr)
    for i in range(3):
        for k in range(5):
            E = np.zeros_like(W)
            E[i, k] = h
            assert abs(gV[i, k] - (p.V(W + E)[i] - p.V(W - E)[i]) / (2 * h)) < 1e-7
            fdU = (p.U(W + E, Wr)[i] - p.U(W - E, Wr)[i]) / (2 * h)
            np.testing.assert_allclose(gU[i, :, k], fdU, atol=1e-7)
            assert abs(gP[i, k] - (p.Psi(W + E, Wr)[i] - p.Psi(W - E, Wr)[i]) / (2 * h)) < 1e-7


def test_teacher_student_grad_V(rng):
    p = mf.problems.TeacherStudent(rng.standard_normal((3, 4)), a_teacher=[1.0, -1.0, 2.0])
    W = rng.standard_normal((5, 4))
    h = 1e-6
    g = p.grad_V(W)
    for k in range(4):
        E = np.zeros_like(W)
        E[:, k] = h
        np.testing.assert_allclose(g[:, k], (p.V(W + E) - p.V(W - E)) / (2 * h), atol=1e-8)


def test_U_symmetric_psd_and_zero_neuron(rng):
    p = mf.problems.AnisotropicGaussians(d=6, s0=3, delta=0.3)
    W = rng.standard_normal((30, 6))
    W[0] = 0.0
    U = p.U(W)
    np.testing.assert_allclose(U, U.T, atol=1e-15)
    assert np.linalg.eigvalsh(U).min() > -1e-12
    assert np.all(U[0] == 0.0) and p.V(W)[0] == 0.0
    assert np.all(np.isfinite(p.grad_Psi(W, W)))


def test_relu_V_formula():
    p = mf.problems.AnisotropicGaussians(d=4, s0=2, delta=0.5)
    w = np.array([[0.6, 0.8, 0.0, 1.0]])     # |P_V w| = 1, |P_perp w| = 1
    sp, sm = np.sqrt(1.5**2 + 1), np.sqrt(0.5**2 + 1)
    np.testing.assert_allclose(p.V(w), [-(sp - sm) / (2 * np.sqrt(2 * np.pi))], rtol=1e-14)
    np.testing.assert_allclose(p.radii(w), [[1.0, 1.0]], rtol=1e-14)


def test_validation():
    AG = mf.problems.AnisotropicGaussians
    with pytest.raises(ValueError, match="s0 must be <= d"):
        AG(3, 4, 0.5)
    with pytest.raises(ValueError, match="delta must be < 1"):
        AG(3, 2, 1.0)
    with pytest.raises(ValueError, match="delta must be >= 0"):
        AG(3, 2, -0.1)
    with pytest.raises(ValueError, match="d must be >= 1"):
        AG(0, 0, 0.5)
    with pytest.raises(ValueError, match="activation must be one of"):
        AG(3, 2, 0.5, activation="swish")
    p = AG(3, 2, 0.5)
    with pytest.raises(ValueError, match="W must have d = 3 columns"):
        p.V(np.ones((2, 4)))
    with pytest.raises(ValueError, match="at least one row"):
        p.risk(np.ones((0, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        p.U(np.array([[np.inf, 0, 0]]))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        p.sample(3, rng=0)
    with pytest.raises(ValueError, match="n must be >= 0"):
        p.sample(-1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        mf.problems.TeacherStudent(np.ones((1, 2)), noise_std=-1.0)
    with pytest.raises(ValueError, match="a_teacher must have shape"):
        mf.problems.TeacherStudent(np.ones((2, 2)), a_teacher=np.ones(3))


def test_check_weights_and_init_weights():
    for p in (mf.problems.AnisotropicGaussians(7, 3, 0.5),
              mf.problems.TeacherStudent(np.ones((2, 7)), noise_std=0.1)):
        W = np.arange(14.0).reshape(2, 7)
        assert np.array_equal(p.check_weights(W.tolist()), W)
        with pytest.raises(ValueError, match="W0 must have d = 7 columns"):
            p.check_weights(np.ones((2, 6)), "W0")
        with pytest.raises(ValueError, match="at least one row"):
            p.check_weights(np.ones((0, 7)))
        with pytest.raises(ValueError, match="W must be a 2-D array"):
            p.check_weights(np.ones(7))
        # init_weights is the written-out expression: the same draws, the same values, and the
        # generator is left where that expression leaves it
        g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
        W0 = p.init_weights(40, 0.8, g1)
        assert np.array_equal(W0, g2.standard_normal((40, 7)) * 0.8 / np.sqrt(7))
        assert np.array_equal(W0, 0.8 * np.random.default_rng(5).standard_normal((40, 7)) / np.sqrt(7))
        assert g1.random() == g2.random()
        assert np.array_equal(p.init_weights(3, 0.0, g1), np.zeros((3, 7)))
        with pytest.raises(ValueError, match="N must be >= 1"):
            p.init_weights(0, 0.8, g1)
        with pytest.raises(ValueError, match="kappa must be >= 0"):
            p.init_weights(3, -0.1, g1)
        with pytest.raises(TypeError, match="numpy.random.Generator"):
            p.init_weights(3, 0.8, 0)


def test_exercise_ch2_bayes_risk(rng):
    """Exercise 2.1: the Bayes risk of the anisotropic Gaussians in d = s0 = 1, Delta = 0.5 is
    0.6911 (numerical integration in the solution); check it by Monte Carlo with E[y|x]."""
    p = mf.problems.AnisotropicGaussians(1, 1, 0.5)
    X, y = p.sample(400_000, rng)
    from scipy import stats
    pp, pm = stats.norm(0, 1.5).pdf(X[:, 0]), stats.norm(0, 0.5).pdf(X[:, 0])
    loss = (y - (pp - pm) / (pp + pm)) ** 2
    assert abs(loss.mean() - 0.6911) < 5 * loss.std() / np.sqrt(loss.size)


@pytest.mark.parametrize("make", [
    lambda: mf.problems.AnisotropicGaussians(40, 7, 0.6),                    # two coordinate groups
    lambda: mf.problems.TeacherStudent(np.ones((2, 40)), noise_std=0.1),     # one group
], ids=["anisotropic", "teacher-student"])
def test_relu_risk_kernel_equals_dense_pair_sum(rng, make):
    """The compiled ReLU risk (pairs i <= j, Gram matrices per coordinate group) equals the dense
    U(W).sum() of Problem.risk within 1e-12 relative, on generic, duplicated, nearly parallel,
    antiparallel and zero neurons, at N = 800 and at small N."""
    p = make()
    base = rng.standard_normal((6, p.d))
    special = np.concatenate([base, base, base + 1e-9 * rng.standard_normal(base.shape), -base,
                              np.zeros((2, p.d))])
    for W in (rng.standard_normal((800, p.d)) / np.sqrt(p.d), special, base[:1]):
        fast, dense = p.risk(W), mf.problems.Problem.risk(p, W)
        assert abs(fast - dense) <= 1e-12 * abs(dense), (fast, dense)
