"""mflib.jko: backward Euler, the quantile JKO scheme for Fokker-Planck, implicit particle steps."""

from __future__ import annotations

import numpy as np
import pytest

import mflib as mf

J = mf.jko


# ---------------------------------------------------------------------------------------------
# 1. Finite-dimensional gradient flows
# ---------------------------------------------------------------------------------------------
def test_backward_euler_on_quadratic_is_the_resolvent():
    A = np.array([[1.0, 0.3], [0.3, 100.0]])
    b = np.array([0.5, -1.0])
    obj = J.quadratic(A, b)
    x0 = np.array([2.0, 1.0])
    for eps in (1e-3, 0.1, 10.0):
        X = J.backward_euler(obj.F, obj.grad, x0, eps, 5, hess_F=obj.hess)
        x = x0.copy()
        for k in range(5):
            x = np.linalg.solve(np.eye(2) + eps * A, x + eps * b)
            np.testing.assert_allclose(X[k + 1], x, rtol=1e-9, atol=1e-10)
        # without a Hessian (BFGS inner solver) the same iterates
        Xb = J.backward_euler(obj.F, obj.grad, x0, eps, 5)
        np.testing.assert_allclose(Xb, X, rtol=1e-8, atol=1e-9)


def test_forward_euler_stiff_quadratic_threshold():
    L = 100.0
    obj = J.quadratic(np.diag([1.0, L]))
    x0 = np.array([1.0, 1.0])
    for eps, stable in [(0.019, True), (0.021, False)]:
        X = J.forward_euler(obj.grad, x0, eps, 400)
        want = np.array([(1 - eps) ** 400, (1 - eps * L) ** 400])
        np.testing.assert_allclose(X[-1], want, rtol=1e-9)
        assert (np.abs(X[-1, 1]) < 1.0) == stable
    # the implicit scheme decays for any eps
    X = J.backward_euler(obj.F, obj.grad, x0, 1.0, 10, hess_F=obj.hess)
    assert np.all(np.abs(X[-1]) < np.abs(x0))


def test_amplification_factors():
    mu = np.array([0.0, 1.0, 2.0, 3.0, 1j])
    np.testing.assert_allclose(np.abs(J.amplification(mu, "forward")), [1, 0, 1, 2, np.sqrt(2)])
    np.testing.assert_allclose(np.abs(J.amplification(mu, "backward")),
                               [1, 0.5, 1 / 3, 0.25, 1 / np.sqrt(2)])
    # The A-stability of backward Euler: |factor| <= 1 on the whole right half-plane.
    z = np.random.default_rng(0).uniform(0, 50, 200) + 1j * np.random.default_rng(1).uniform(-50, 50, 200)
    assert np.all(np.abs(J.amplification(z, "backward")) <= 1.0)
    with pytest.raises(ValueError, match="scheme"):
        J.amplification(1.0, "midpoint")


@pytest.mark.parametrize("eps", [0.01, 0.3, 2.0, 50.0])
def test_proximal_energy_inequality_nonconvex(eps):
    """F(x_{k+1}) + |x_{k+1} - x_k|^2/(2 eps) <= F(x_k) along backward Euler."""
    obj = J.double_well_2d(k=20.0, c=0.5)
    for x0 in ([0.05, 1.0], [-1.5, -0.5], [2.0, 3.0]):
        X = J.backward_euler(obj.F, obj.grad, x0, eps, 15, hess_F=obj.hess)
        gaps = J.energy_gaps(obj.F, X, eps)
        assert np.all(gaps <= 1e-12 * (1.0 + abs(obj.F(X[0])))), gaps.max()
        # every step solves the Euler-Lagrange equation of the proximal problem
        res = X[1:] - X[:-1] + eps * np.array([obj.grad(x) for x in X[1:]])
        assert np.max(np.abs(res)) < 1e-9
        # F is monotone and ends near a minimum (+-1, 0.5) when eps is not tiny
        Fv = np.array([obj.F(x) for x in X])
        assert np.all(np.diff(Fv) <= 1e-12)
    if eps >= 2.0:
        assert obj.F(X[-1]) < 1e-6


def test_forward_euler_violates_energy_inequality_when_unstable():
    obj = J.double_well_2d(k=20.0, c=0.5)
    X = J.forward_euler(obj.grad, [1.2, 0.9], 0.12, 5)          # eps k = 2.4 > 2: unstable
    assert np.max(J.energy_gaps(obj.F, X, 0.12)) > 0


def test_double_well_derivatives_by_finite_differences():
    obj = J.double_well_2d(k=7.0, c=0.3)
    rng = np.random.default_rng(3)
    h = 1e-6
    for x in rng.standard_normal((5, 2)):
        g = np.array([(obj.F(x + h * e) - obj.F(x - h * e)) / (2 * h) for e in np.eye(2)])
        np.testing.assert_allclose(obj.grad(x), g, rtol=1e-6, atol=1e-7)
        H = np.array([(obj.grad(x + h * e) - obj.grad(x - h * e)) / (2 * h) for e in np.eye(2)]).T
        np.testing.assert_allclose(obj.hess(x), H, rtol=1e-6, atol=1e-6)


def test_finite_dimensional_errors():
    obj = J.quadratic(np.eye(2))
    with pytest.raises(ValueError, match="eps"):
        J.proximal_step(obj.F, obj.grad, [1.0, 0.0], 0.0)
    with pytest.raises(ValueError, match="eps"):
        J.forward_euler(obj.grad, [1.0, 0.0], -1.0, 3)
    with pytest.raises(ValueError, match="steps"):
        J.backward_euler(obj.F, obj.grad, [1.0, 0.0], 0.1, -1)
    with pytest.raises(ValueError, match="grad_F"):
        J.forward_euler(None, [1.0, 0.0], 0.1, 3)
    with pytest.raises(ValueError, match="x_k"):
        J.proximal_step(obj.F, obj.grad, np.zeros((2, 2)), 0.1)
    with pytest.raises(ValueError, match="A"):
        J.quadratic(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="k"):
        J.double_well_2d(k=0.0)
    with pytest.raises(J.ConvergenceError):
        J.proximal_step(lambda x: float(-x @ x), lambda x: -2 * x, [1.0, 0.0], 1.0, max_iter=3)


# ---------------------------------------------------------------------------------------------
# 2. The quantile JKO scheme for Fokker-Planck
# ---------------------------------------------------------------------------------------------
M0, V0 = 2.0, 0.25


def _ou_error(tau, M=200, beta=1.0):
    q0 = J.gaussian_quantiles(M0, V0, M)
    q = J.fokker_planck_1d(lambda x: x, beta, q0, tau, int(round(1.0 / tau)))[-1]
    m, v = J.ornstein_uhlenbeck(M0, V0, 1.0, beta=beta)
    return mf.transport.w2(q, J.gaussian_quantiles(float(m), float(v), M))


def test_quantile_jko_converges_to_ornstein_uhlenbeck_at_first_order():
    """W2 error at t = 1 against the exact OU quantiles: log-log slope in tau near 1."""
    taus = np.array([0.2, 0.1, 0.05, 0.025])
    errs = np.array([_ou_error(t) for t in taus])
    slope = mf.fitting.loglog_fit(taus, errs).slope
    assert 0.9 < slope < 1.1, (slope, errs)
    ratios = errs[:-1] / errs[1:]
    assert np.all((ratios > 1.8) & (ratios < 2.2)), ratios
    assert errs[-1] < 0.012


def test_quantile_jko_mean_is_backward_euler_exactly():
    """Sum of the Euler-Lagrange equations: the diffusion terms telescope, so for
    V = a (x - c)^2 / 2 the mean obeys m_{k+1} - c = (m_k - c) / (1 + a tau) exactly."""
    a, c, beta, tau = 1.7, -0.4, 2.5, 0.3
    q0 = np.sort(np.random.default_rng(0).standard_normal(50)) + 1.0
    q = J.fokker_planck_1d(lambda x: a * (x - c), beta, q0, tau, 12, d2V=lambda x: a + 0 * x)
    want = c + (q0.mean() - c) / (1 + a * tau) ** np.arange(13)
    np.testing.assert_allclose(q.mean(axis=1), want, rtol=1e-11, atol=1e-11)


def test_exercise_ch5_1_error_of_the_mean():
    """Exercise ex-ch5-1: at t = 1 with tau = 0.1 the mean is off by 2 (1.1^-10 - e^-1) = 0.0353,
    close to the leading term 2 e^-1 tau / 2 = 0.0368."""
    q = J.fokker_planck_1d(lambda x: x, 1.0, J.gaussian_quantiles(2.0, 0.25, 20), 0.1, 10)
    err = q[-1].mean() - 2 * np.exp(-1)
    assert err == pytest.approx(0.0353, abs=5e-5)
    assert abs(err - np.exp(-1) * 0.1) < 0.002


def test_quantile_jko_stationary_variance():
    """At a fixed point sum_i q_i G_i = 0 gives mean(q^2) = (M - 1) / (M a beta) for V = a x^2 / 2
    (the discrete analogue of Var = 1/(a beta); the answer of exercise ex-ch5-2)."""
    M, a, beta = 50, 2.0, 0.5
    q = J.fokker_planck_1d(lambda x: a * x, beta, J.gaussian_quantiles(1.0, 3.0, M), 5.0, 60)[-1]
    assert np.mean(q**2) == pytest.approx((M - 1) / (M * a * beta), rel=1e-9)


def test_quantile_jko_energy_inequality_nonconvex_potential_and_fd_hessian():
    dV = lambda x: x**3 - x              # noqa: E731   double well V = x^4/4 - x^2/2
    d2V = lambda x: 3 * x**2 - 1         # noqa: E731
    V = lambda x: x**4 / 4 - x**2 / 2    # noqa: E731
    q0 = J.gaussian_quantiles(0.3, 0.05, 80)
    tau, beta = 0.1, 4.0
    q = J.fokker_planck_1d(dV, beta, q0, tau, 30, d2V=d2V)
    q_fd = J.fokker_planck_1d(dV, beta, q0, tau, 30)          # V'' by differences: same solution
    np.testing.assert_allclose(q_fd, q, rtol=1e-9, atol=1e-9)
    F = J.free_energy_1d(V, beta, q)
    move = np.mean(np.diff(q, axis=0) ** 2, axis=1) / (2 * tau)
    assert np.all(F[1:] + move <= F[:-1] + 1e-12)
    assert np.all(np.diff(q, axis=1) > 0)
    # Euler-Lagrange residual of the last step
    k = q[-1]
    inv = 1 / np.diff(k)
    G = (k - q[-2]) / tau + dV(k) + (np.append(inv, 0) - np.insert(inv, 0, 0)) / beta
    assert np.max(np.abs(G)) * tau < 1e-9


def test_ornstein_uhlenbeck_solves_the_moment_equations():
    a, c, beta, m0, v0 = 0.7, 1.0, 3.0, -2.0, 0.1
    t = np.linspace(0.1, 3, 7)
    h = 1e-5
    m, v = J.ornstein_uhlenbeck(m0, v0, t, a, c, beta)
    mp, vp = J.ornstein_uhlenbeck(m0, v0, t + h, a, c, beta)
    mm, vm = J.ornstein_uhlenbeck(m0, v0, t - h, a, c, beta)
    np.testing.assert_allclose((mp - mm) / (2 * h), -a * (m - c), rtol=1e-7)
    np.testing.assert_allclose((vp - vm) / (2 * h), -2 * a * v + 2 / beta, rtol=1e-7)
    m_0, v_0 = J.ornstein_uhlenbeck(m0, v0, 0.0, a, c, beta)
    assert (float(m_0), float(v_0)) == (m0, pytest.approx(v0))


def test_gaussian_quantiles():
    q = J.gaussian_quantiles(1.5, 4.0, 1001)
    assert np.all(np.diff(q) > 0)
    assert q.mean() == pytest.approx(1.5, abs=1e-12)
    assert q[500] == pytest.approx(1.5, abs=1e-12)
    assert np.var(q) == pytest.approx(4.0, rel=0.01)


def test_fokker_planck_errors():
    q0 = np.linspace(-1, 1, 5)
    dV = lambda x: x                      # noqa: E731
    with pytest.raises(ValueError, match="q0"):
        J.fokker_planck_1d(dV, 1.0, q0[::-1], 0.1, 3)
    with pytest.raises(ValueError, match="q0"):
        J.fokker_planck_1d(dV, 1.0, np.array([0.0, 0.0, 1.0]), 0.1, 3)
    with pytest.raises(ValueError, match="q0"):
        J.fokker_planck_1d(dV, 1.0, [0.0], 0.1, 3)
    with pytest.raises(ValueError, match="q0"):
        J.fokker_planck_1d(dV, 1.0, np.zeros((2, 2)), 0.1, 3)
    with pytest.raises(ValueError, match="tau"):
        J.fokker_planck_1d(dV, 1.0, q0, 0.0, 3)
    with pytest.raises(ValueError, match="tau"):
        J.fokker_planck_1d(dV, 1.0, q0, -0.1, 3)
    with pytest.raises(ValueError, match="steps"):
        J.fokker_planck_1d(dV, 1.0, q0, 0.1, -1)
    with pytest.raises(ValueError, match="beta"):
        J.fokker_planck_1d(dV, 0.0, q0, 0.1, 3)
    with pytest.raises(ValueError, match="dV"):
        J.fokker_planck_1d(3.0, 1.0, q0, 0.1, 3)
    with pytest.raises(TypeError, match="dV"):                 # also a TypeError
        J.fokker_planck_1d("x", 1.0, q0, 0.1, 3)
    with pytest.raises(ValueError, match="dV"):
        J.fokker_planck_1d(lambda x: x[:2], 1.0, q0, 0.1, 3)
    with pytest.raises(ValueError, match="q"):
        J.free_energy_1d(dV, 1.0, q0[::-1])
    with pytest.raises(ValueError, match="var"):
        J.gaussian_quantiles(0.0, 0.0, 5)
    with pytest.raises(ValueError, match="t"):
        J.ornstein_uhlenbeck(0.0, 1.0, -1.0)
    assert J.fokker_planck_1d(dV, 1.0, q0, 0.1, 0).shape == (1, 5)


# ---------------------------------------------------------------------------------------------
# 2b. Interaction: the quantile scheme for a free energy with a pairwise term, and its tau -> 0 limit
# ---------------------------------------------------------------------------------------------
def _quadratic_interaction(kappa):
    """U(x, y) = kappa (x - y)^2 / 2: dU = kappa (x - y), (d11 U, d12 U) = (kappa, -kappa)."""
    return (lambda x, y: 0.5 * kappa * (x - y) ** 2, lambda x, y: kappa * (x - y),
            lambda x, y: (kappa + 0 * (x - y), -kappa + 0 * (x - y)))


def test_interaction_mean_is_backward_euler_and_variance_follows_the_moment_ode():
    """V = a x^2/2, U = kappa (x - y)^2/2: the interaction forces sum to zero, so the mean obeys
    m_{k+1} = m_k / (1 + a tau) exactly; the variance solves v' = -2 (a + kappa) v + 2/beta, so
    the tau -> 0 limit (quantile_flow_1d) is the Gaussian N(m0 e^{-a t}, v(t)) up to the error
    of M quantiles, which is the same as without interaction (OU with a + kappa in the spread)."""
    a, kappa, beta, M = 1.0, 2.0, 1.0, 400
    U, dU, d2U = _quadratic_interaction(kappa)
    q0 = J.gaussian_quantiles(1.5, 0.2, M)
    tau = 0.1
    q = J.fokker_planck_1d(lambda x: a * x, beta, q0, tau, 10, dU=dU, d2U=d2U)
    np.testing.assert_allclose(q.mean(axis=1), q0.mean() / (1 + a * tau) ** np.arange(11),
                               rtol=1e-11, atol=1e-12)
    t = 1.0
    ref = J.quantile_flow_1d(lambda x: a * x, beta, q0, [t], dU=dU, d2U=d2U)[-1]
    m = 1.5 * np.exp(-a * t)
    vinf = 1 / ((a + kappa) * beta)
    v = vinf + (0.2 - vinf) * np.exp(-2 * (a + kappa) * t)
    err = mf.transport.w2_1d(ref, J.gaussian_quantiles(m, v, M))
    # the same M-quantile error without interaction (OU with rate a + kappa from the same start,
    # whose spread evolves identically up to the centring): the interaction adds nothing
    ou = J.quantile_flow_1d(lambda x: (a + kappa) * x, beta, q0 - 1.5, [t])[-1]
    floor = mf.transport.w2_1d(ou, J.gaussian_quantiles(0.0, v, M))
    assert err == pytest.approx(floor, rel=1e-6, abs=1e-9)
    assert floor < 2e-3


def test_interaction_fd_jacobian_and_energy_inequality():
    net = J.bump_network_1d([-2.0, 2.0], [0.5, 0.5], s=1.0, lam=0.02)
    q0 = J.gaussian_quantiles(0.2, 0.05, 60)
    tau, beta = 0.2, 50.0
    q = J.fokker_planck_1d(net.dV, beta, q0, tau, 20, d2V=net.d2V, dU=net.dU, d2U=net.d2U)
    q_fd = J.fokker_planck_1d(net.dV, beta, q0, tau, 20, dU=net.dU)     # Jacobians by differences
    np.testing.assert_allclose(q_fd, q, rtol=1e-9, atol=1e-9)
    F = J.free_energy_1d(net.V, beta, q, U=net.U)
    move = np.mean(np.diff(q, axis=0) ** 2, axis=1) / (2 * tau)
    assert np.all(F[1:] + move <= F[:-1] + 1e-12)
    # Euler-Lagrange residual of the last step, from the formula
    k = q[-1]
    inv = 1 / np.diff(k)
    G = ((k - q[-2]) / tau + net.dV(k) + net.dU(k[:, None], k[None, :]).mean(axis=1)
         + (np.append(inv, 0) - np.insert(inv, 0, 0)) / beta)
    assert np.max(np.abs(G)) * tau < 1e-9


def test_bump_network_closed_forms():
    """U and V against Monte Carlo (tolerance 5 standard errors); derivatives against differences."""
    net = J.bump_network_1d([-1.0, 0.5], [0.7, 0.3], s=1.3, lam=0.1)
    x = 1.3 * np.random.default_rng(0).standard_normal(400_000)
    phi = lambda z: np.exp(-z**2 / 2)        # noqa: E731
    y = 0.7 * phi(x + 1.0) + 0.3 * phi(x - 0.5)
    for a, b in [(0.3, -0.7), (1.5, 1.2), (-2.0, 0.0)]:
        s = phi(x - a) * phi(x - b)
        assert abs(s.mean() - net.U(a, b)) < 5 * s.std() / np.sqrt(x.size)
        v = -y * phi(x - a)
        assert abs(v.mean() + 0.05 * a**2 - net.V(a)) < 5 * v.std() / np.sqrt(x.size)
    xs, ys, h = np.linspace(-3, 3, 7), np.linspace(-2, 2.5, 7), 1e-5
    np.testing.assert_allclose(net.dU(xs, ys), (net.U(xs + h, ys) - net.U(xs - h, ys)) / (2 * h),
                               atol=1e-9)
    np.testing.assert_allclose(net.d2U(xs, ys)[0], (net.dU(xs + h, ys) - net.dU(xs - h, ys)) / (2 * h),
                               atol=1e-9)
    np.testing.assert_allclose(net.d2U(xs, ys)[1], (net.dU(xs, ys + h) - net.dU(xs, ys - h)) / (2 * h),
                               atol=1e-9)
    np.testing.assert_allclose(net.dV(xs), (net.V(xs + h) - net.V(xs - h)) / (2 * h), atol=1e-9)
    np.testing.assert_allclose(net.d2V(xs), (net.dV(xs + h) - net.dV(xs - h)) / (2 * h), atol=1e-9)
    np.testing.assert_allclose(net.target(xs), 0.7 * phi(xs + 1) + 0.3 * phi(xs - 0.5))
    np.testing.assert_allclose(net.f(xs, np.array([0.0, 1.0])), 0.5 * (phi(xs) + phi(xs - 1)))


def test_jko_with_interaction_converges_to_the_quantile_flow_at_first_order():
    """E(tau) = q^tau(T) - q(T) = A tau + B tau^2 + ...: halving tau halves the error (up to the
    tau^2 term), the Richardson combination 4 E(tau/2) - E(tau) is A tau to O(tau^3) (slope 1),
    and E(tau) - 2 E(tau/2) = B tau^2 / 2 (ratio 4 per halving)."""
    net = J.bump_network_1d([-2.0, 2.0], [0.5, 0.5], s=1.0, lam=0.02)
    beta, T, M = 400.0, 4.0, 60
    q0 = J.gaussian_quantiles(0.2, 0.05, M)
    kw = dict(d2V=net.d2V, dU=net.dU, d2U=net.d2U)
    ref = J.quantile_flow_1d(net.dV, beta, q0, [T], **kw)[-1]
    taus = [0.4, 0.2, 0.1, 0.05]
    E = np.array([J.fokker_planck_1d(net.dV, beta, q0, t, int(round(T / t)), **kw)[-1] - ref
                  for t in taus])
    err = np.sqrt(np.mean(E**2, axis=1))
    assert np.all((err[:-1] / err[1:] > 1.8) & (err[:-1] / err[1:] < 2.2)), err
    lead = np.sqrt(np.mean((4 * E[1:] - E[:-1]) ** 2, axis=1))
    assert np.all(np.abs(lead[:-1] / lead[1:] - 2) < 0.05), lead
    rem = np.sqrt(np.mean((E[:-1] - 2 * E[1:]) ** 2, axis=1))
    assert np.all((rem[:-1] / rem[1:] > 3.3) & (rem[:-1] / rem[1:] < 4.7)), rem


def test_quantile_flow_is_the_small_tau_limit_for_ou():
    """Without interaction: the JKO error against quantile_flow_1d is first order and the
    quantile flow at t = 0 returns q0."""
    q0 = J.gaussian_quantiles(2.0, 0.25, 100)
    ref = J.quantile_flow_1d(lambda x: x, 1.0, q0, [0.0, 1.0])
    np.testing.assert_array_equal(ref[0], q0)
    e = [mf.transport.w2_1d(J.fokker_planck_1d(lambda x: x, 1.0, q0, t, int(round(1 / t)))[-1],
                            ref[-1]) for t in (0.02, 0.01)]
    assert 1.9 < e[0] / e[1] < 2.1
    assert np.all(J.quantile_flow_1d(lambda x: x, 1.0, q0, [0.0, 0.0, 0.5]).shape == (3, 100))


def test_quantile_density_integrates_to_one_and_matches_a_gaussian():
    M = 2000
    q = J.gaussian_quantiles(1.0, 0.5, M)
    x, rho = J.quantile_density(q)
    assert x.shape == rho.shape == (M - 1,)
    # mass between the outer particles is (M - 1)/M exactly (the two half-cells are missing)
    assert np.sum(rho * np.diff(q)) == pytest.approx((M - 1) / M, rel=1e-12)
    inner = np.abs(x - 1.0) < 1.0
    want = np.exp(-((x - 1.0) ** 2) / 1.0) / np.sqrt(np.pi)
    np.testing.assert_allclose(rho[inner], want[inner], rtol=2e-3)
    with pytest.raises(ValueError, match="q"):
        J.quantile_density(q[::-1])


def test_interaction_bad_input():
    q0 = J.gaussian_quantiles(0.0, 1.0, 10)
    _, dU, d2U = _quadratic_interaction(1.0)
    with pytest.raises(ValueError, match="d2U"):
        J.fokker_planck_1d(lambda x: x, 1.0, q0, 0.1, 2, d2U=d2U)
    with pytest.raises(TypeError, match="dU"):
        J.fokker_planck_1d(lambda x: x, 1.0, q0, 0.1, 2, dU="x")
    with pytest.raises(ValueError, match="dU"):
        J.fokker_planck_1d(lambda x: x, 1.0, q0, 0.1, 2, dU=lambda x, y: x)
    with pytest.raises(ValueError, match="d2U"):
        J.fokker_planck_1d(lambda x: x, 1.0, q0, 0.1, 2, dU=dU, d2U=lambda x, y: x)
    with pytest.raises(ValueError, match="t"):
        J.quantile_flow_1d(lambda x: x, 1.0, q0, [1.0, 0.5])
    with pytest.raises(ValueError, match="rtol"):
        J.quantile_flow_1d(lambda x: x, 1.0, q0, [1.0], rtol=0.1)
    with pytest.raises(ValueError, match="weights"):
        J.bump_network_1d([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="s"):
        J.bump_network_1d([0.0], [1.0], s=0.0)


# ---------------------------------------------------------------------------------------------
# 3. Particles of a network: explicit and implicit (JKO) steps
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ag():
    p = mf.problems.AnisotropicGaussians(3, 1, 0.5)
    rng = np.random.default_rng(0)
    W0 = 0.3 * rng.standard_normal((12, 3))
    W0[:, 0] += np.where(rng.random(12) < 0.5, 1.0, -1.0)
    return p, W0


def test_implicit_step_solves_backward_euler_and_is_a_jko_step(ag):
    p, W0 = ag
    tau = 0.5
    W1, r = J.particle_implicit_step(p, W0, tau, return_residual=True)
    np.testing.assert_allclose(W1, W0 - tau * p.grad_Psi(W1, W1), atol=1e-7)
    assert r < 1e-7
    # JKO objective with the exact W2 (assignment) is not beaten by nearby competitors
    N = W0.shape[0]

    def jko(W):
        return 0.5 * p.risk(W) + mf.transport.w2_squared(W, W0) / (2 * tau)

    # the identity matching is optimal here, so W2^2 = mean |w_i - w_i^k|^2
    assert mf.transport.w2_squared(W1, W0) == pytest.approx(np.mean(np.sum((W1 - W0) ** 2, 1)), rel=1e-12)
    best = jko(W1)
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert jko(W1 + 1e-3 * rng.standard_normal(W1.shape)) > best
    # energy inequality: R/2 + W2^2/(2 tau) <= R(W0)/2
    assert best <= 0.5 * p.risk(W0) + 1e-14
    assert N == 12


def test_explicit_and_implicit_agree_to_first_order_in_tau(ag):
    p, W0 = ag
    T = 2.0
    diffs = []
    for tau in (0.2, 0.1, 0.05):
        steps = int(round(T / tau))
        e = J.particle_flow(p, W0, tau, steps, scheme="explicit")
        i = J.particle_flow(p, W0, tau, steps, scheme="implicit")
        diffs.append(np.max(np.abs(e.W - i.W)))
    ratios = np.array(diffs[:-1]) / np.array(diffs[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.2)), (diffs, ratios)


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_particle_flow_schemes_converge_at_their_order(ag, lam):
    # One flow, three schemes: against a fine Heun reference at T = 2, explicit and implicit
    # Euler converge at order 1 (error ratio 2 per halving of tau), Heun at order 2 (ratio 4).
    p, W0 = ag
    T = 2.0
    ref = J.particle_flow(p, W0, T / 640, 640, scheme="heun", lam=lam, n_records=3).W
    for scheme, order in (("explicit", 1), ("implicit", 1), ("heun", 2)):
        errs = []
        for steps in (20, 40, 80):
            f = J.particle_flow(p, W0, T / steps, steps, scheme=scheme, lam=lam, n_records=5)
            assert f.scheme == scheme and f.steps[-1] == steps and f.t[-1] == pytest.approx(T)
            errs.append(np.max(np.abs(f.W - ref)))
        ratios = np.array(errs[:-1]) / np.array(errs[1:])
        assert np.all(np.abs(np.log2(ratios) - order) < 0.2), (scheme, errs, ratios)


def test_particle_flow_records_and_ridge(ag):
    p, W0 = ag
    W0c = W0.copy()
    f = J.particle_flow(p, W0, 0.1, 10, scheme="heun", snapshots=True)
    np.testing.assert_array_equal(f.steps, np.arange(11))          # every step by default
    np.testing.assert_allclose(f.t, 0.1 * np.arange(11))
    np.testing.assert_array_equal(f.snapshots[0], W0)
    np.testing.assert_array_equal(f.snapshots[-1], f.W)
    np.testing.assert_array_equal(W0, W0c)                         # not modified
    g = J.particle_flow(p, W0, 0.1, 10, scheme="heun", record_every=4)
    np.testing.assert_array_equal(g.steps, [0, 4, 8, 10])
    np.testing.assert_array_equal(g.W, f.W)                        # records do not change it
    np.testing.assert_array_equal(g.risk, f.risk[[0, 4, 8, 10]])
    # the ridge pulls the particles in: the implicit step with lam solves its own equation
    W1, r = J.particle_implicit_step(p, W0, 0.5, lam=2.0, return_residual=True)
    np.testing.assert_allclose(W1 - W0 + 0.5 * (p.grad_Psi(W1, W1) + 2.0 * W1), 0, atol=1e-7)
    assert np.linalg.norm(W1) < np.linalg.norm(J.particle_implicit_step(p, W0, 0.5))


def test_particle_flow_divergence_raises_or_stops(ag):
    p, W0 = ag
    with pytest.raises(mf.runs.DivergenceError, match=r"explicit particle flow diverged at step "
                                                      r"\d+ \(t = .*smaller tau"):
        J.particle_flow(p, W0, 1e4, 50, scheme="explicit")
    e = J.particle_flow(p, W0, 1e4, 50, scheme="explicit", on_divergence="stop", snapshots=True)
    assert e.blew_up and e.risk.size == 51 and np.isinf(e.risk[-1]) and np.isfinite(e.risk[0])
    k = int(np.argmax(np.isinf(e.risk)))
    assert np.all(np.isnan(e.snapshots[k:])) and np.all(np.isfinite(e.W))
    with pytest.raises(ValueError, match="scheme"):
        J.particle_flow(p, W0, 0.1, 3, scheme="rk4")
    with pytest.raises(ValueError, match="on_divergence"):
        J.particle_flow(p, W0, 0.1, 3, on_divergence="ignore")


def test_implicit_stable_where_explicit_blows_up(ag):
    p, W0 = ag
    W_eq = J.particle_flow(p, W0, 1.0, 30).W
    lam_max = np.linalg.eigvalsh(J.particle_drift_jacobian(p, W_eq)).max()
    tau = 3.0 * 2.0 / lam_max                     # three times the explicit stability limit
    e = J.particle_flow(p, W0, tau, 40, scheme="explicit", on_divergence="stop")
    i = J.particle_flow(p, W0, tau, 40, scheme="implicit")
    assert e.blew_up or e.risk[-1] > 10 * e.risk[0]
    assert np.all(np.diff(i.risk) <= 1e-10)          # monotone up to round-off in R_N (~1e-12)
    assert i.risk[-1] < i.risk[0]
    # and below the limit the explicit scheme is fine
    e2 = J.particle_flow(p, W0, 0.5 * 2.0 / lam_max, 40, scheme="explicit")
    assert np.all(np.isfinite(e2.risk)) and e2.risk[-1] < e2.risk[0]


def test_drift_jacobian_is_half_N_hessian_of_risk(ag):
    p, W0 = ag
    W = W0[:4]
    N, d = W.shape
    Jac = J.particle_drift_jacobian(p, W)
    h = 1e-4
    z = W.ravel()
    Hess = np.empty((z.size, z.size))
    for a in range(z.size):
        for b in range(z.size):
            ea, eb = np.eye(z.size)[a] * h, np.eye(z.size)[b] * h
            R = lambda v: p.risk(v.reshape(N, d))   # noqa: E731
            Hess[a, b] = (R(z + ea + eb) - R(z + ea - eb) - R(z - ea + eb) + R(z - ea - eb)) / (4 * h * h)
    np.testing.assert_allclose(Jac, 0.5 * N * Hess, atol=1e-5)


def test_particle_errors(ag):
    p, W0 = ag
    with pytest.raises(ValueError, match="tau"):
        J.particle_implicit_step(p, W0, 0.0)
    with pytest.raises(ValueError, match="tau"):
        J.particle_flow(p, W0, -1.0, 3)
    with pytest.raises(ValueError, match="steps"):
        J.particle_flow(p, W0, 0.1, -1)
    with pytest.raises(ValueError, match="problem"):
        J.particle_explicit_step("not a problem", W0, 0.1)
    with pytest.raises(ValueError, match="columns"):
        J.particle_explicit_step(p, W0[:, :2], 0.1)
