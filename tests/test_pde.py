"""mflib.pde: reduced potentials against the full-d problem and Monte Carlo over directions, the
d -> infinity limit, the grid solver's conservation laws, monotone risk, exactness on the
isotropic ReLU case, convergence order, agreement with full-d particles, the noisy 1-D solver
and its Gibbs fixed point, and every validation path."""

import numpy as np
import pytest

import mflib as mf
from mflib import pde

Z = 5.0  # Monte Carlo tolerance: Z standard errors


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)


# ---------------------------------------------------------------------------------------------
# Reduced potentials
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "truncated_relu"])
@pytest.mark.parametrize("d,s0", [(7, 3), (5, 5)])
def test_VBar_and_integrand_equal_the_full_problem(rng, act, d, s0):
    p = mf.problems.AnisotropicGaussians(d, s0, 0.4, activation=act)
    red = pde.ReducedAnisotropic(p)
    M = 6
    R1 = np.abs(rng.standard_normal((M, 2))) + 0.1
    R2 = np.abs(rng.standard_normal((M, 2))) + 0.1
    if s0 == d:
        R1[:, 1] = R2[:, 1] = 0
    W1 = red.embed(R1, rng)
    assert np.allclose(red.radii(R1), p.radii(W1), atol=1e-12)
    assert np.allclose(red.VBar(R1), p.V(W1), atol=1e-12)
    # w' with prescribed cosines t1, t2 to w.
    t1 = rng.uniform(-0.9, 0.9, M)
    t2 = rng.uniform(-0.9, 0.9, M) if s0 < d else np.zeros(M)
    W2 = np.zeros((M, d))
    for i in range(M):
        for sl, t, r in ((slice(0, s0), t1[i], R2[i, 0]), (slice(s0, d), t2[i], R2[i, 1])):
            u = W1[i, sl] / np.linalg.norm(W1[i, sl]) if sl.stop > sl.start else None
            if u is None:
                continue
            g = rng.standard_normal(u.size)
            g -= (g @ u) * u
            W2[i, sl] = r * (t * u + np.sqrt(1 - t * t) * g / np.linalg.norm(g))
    full = np.array([p.U(W1[i:i + 1], W2[i:i + 1])[0, 0] for i in range(M)])
    assert np.allclose(red.U_at_cosines(R1, R2, t1, t2), full, atol=1e-9)


def test_grad_VBar_finite_differences(rng):
    red = pde.ReducedAnisotropic(mf.problems.AnisotropicGaussians(9, 4, 0.5))
    R = np.abs(rng.standard_normal((5, 2))) + 0.2
    h = 1e-6
    fd = np.stack([(red.VBar(R + h * e) - red.VBar(R - h * e)) / (2 * h) for e in np.eye(2)], axis=1)
    assert np.allclose(red.grad_VBar(R), fd, atol=1e-8)


@pytest.mark.parametrize("act,d,s0", [("relu", 8, 3), ("relu", 6, 6), ("truncated_relu", 7, 3)])
def test_UBar_matches_monte_carlo_over_directions(rng, act, d, s0):
    p = mf.problems.AnisotropicGaussians(d, s0, 0.5, activation=act)
    red = pde.ReducedAnisotropic(p)
    R = np.array([[0.8, 0.5], [1.1, 0.3]]) if s0 < d else np.array([[0.8, 0.0], [1.1, 0.0]])
    exact = red.UBar(R[:1], R[1:])[0, 0]
    n = 40_000 if act == "relu" else 1_000
    Wa = red.embed(np.repeat(R[:1], n, axis=0), rng)
    Wb = red.embed(np.repeat(R[1:], n, axis=0), rng)
    A = np.stack([np.sum(Wa * Wa * cov, 1) for _, cov in p.components])
    B = np.stack([np.sum(Wb * Wb * cov, 1) for _, cov in p.components])
    C = np.stack([np.sum(Wa * Wb * cov, 1) for _, cov in p.components])
    if act == "relu":
        k = pde._relu_k(A, B, C)
    else:
        s, kk = p.activation.sigma, p.activation.kinks
        k = np.stack([mf.quadrature.gauss_expect_pair(s, s, kk, kk, A[c], B[c], C[c]) for c in range(2)])
    samples = 0.5 * k.sum(axis=0)
    se = samples.std() / np.sqrt(n)
    assert abs(samples.mean() - exact) < Z * se, (samples.mean(), exact, se)


def test_UBar_approaches_infinite_d_limit_at_rate_one_over_d():
    R = np.array([[0.9, 0.4], [0.5, 0.8], [0.2, 0.3]])
    ds = np.array([40, 80, 160, 320])
    errs = []
    for d in ds:
        p = mf.problems.AnisotropicGaussians(int(d), int(d) // 4, 0.5)
        diff = pde.ReducedAnisotropic(p).UBar(R) - pde.ReducedAnisotropic(p, limit=True).UBar(R)
        errs.append(np.abs(diff).max())
    slope = mf.fitting.loglog_fit(ds, errs).slope
    assert -1.1 < slope < -0.9, slope


@pytest.mark.parametrize("act", ["truncated_relu", "sigmoid"])
def test_separable_and_direct_UBar_match_the_gauss_jacobi_sum(rng, act):
    p = mf.problems.AnisotropicGaussians(12, 5, 0.5, activation=act)
    red = pde.ReducedAnisotropic(p, n_hermite=60, n_cos=(24, 24))
    # a coarse rule for the direct sum is enough: it misses moments below 1e-7
    direct = pde.ReducedAnisotropic(p, n_hermite=None, n_cos=(6, 6))
    R = np.abs(rng.standard_normal((2, 2))) + 0.3
    U, Ud = red.UBar(R), direct.UBar(R, R[::-1])
    # Gauss-Jacobi sum of the problem's own quadrature kernel over the cosines, pair by pair.
    T1, T2 = np.meshgrid(direct.t1, direct.t2, indexing="ij")
    for i in range(2):
        for j in range(2):
            vals = direct.U_at_cosines(np.repeat(R[i:i + 1], T1.size, 0),
                                       np.repeat(R[j:j + 1], T1.size, 0), T1.ravel(), T2.ravel())
            s = np.outer(direct.w1, direct.w2).ravel() @ vals
            assert abs(s - U[i, j]) < 1e-6
            assert abs(s - Ud[i, 1 - j]) < 1e-15


@pytest.mark.parametrize("d,s0", [(20, 10), (7, 1), (6, 6)])
def test_relu_UBar_on_shared_directions_equals_the_sum_at_every_point(rng, d, s0):
    """UBar (ReLU) evaluates the Gauss-Jacobi sum once per direction and scales by the norms; the
    sum taken at every point (the compiled kernel called directly) agrees to round-off, on a polar
    grid (many points per ray, the origin, both axes) and at random points."""
    p = mf.problems.AnisotropicGaussians(d, s0, 0.5)
    red = pde.ReducedAnisotropic(p, n_cos=(12, 12))
    if s0 < d:
        Ra = np.vstack([mf.statics.polar_grid(2.0, 7, 5), np.abs(rng.standard_normal((6, 2)))])
    else:
        Ra = np.stack([np.r_[0.0, np.abs(rng.standard_normal(8))], np.zeros(9)], axis=1)
    Rb = Ra[rng.permutation(Ra.shape[0])[:10]] * 1.3

    def every_point(R1, R2, sym):
        return pde._relu_ubar(R1[:, 0].copy(), R1[:, 1].copy(), R2[:, 0].copy(), R2[:, 1].copy(),
                              red.t1, red.w1, red.t2, red.w2, red.comp_p, red.comp_a, sym)

    for U, ref in [(red.UBar(Ra), every_point(Ra, Ra, True)),
                   (red.UBar(Ra, Rb), every_point(Ra, Rb, False))]:
        assert np.abs(U - ref).max() < 4e-15 * np.abs(ref).max()
    assert np.array_equal(red.UBar(Ra), red.UBar(Ra).T)
    assert np.all(red.UBar(Ra)[0] == 0)            # the origin interacts with nothing


def test_isotropic_relu_is_degenerate():
    """s0 = d with ReLU: VBar linear and UBar bilinear in the radii (every radius moves alike)."""
    red = pde.ReducedAnisotropic(mf.problems.AnisotropicGaussians(10, 10, 0.6))
    r = np.array([0.3, 0.7, 1.9])
    assert np.allclose(red.VBar(r) / r, red.VBar(r)[0] / r[0], rtol=1e-13)
    U = red.UBar(r)
    assert np.allclose(U / np.outer(r, r), U[0, 0] / r[0] ** 2, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Grid solver
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small2d():
    p = mf.problems.AnisotropicGaussians(40, 10, 0.5)
    red = pde.ReducedAnisotropic(p)
    return p, red


def test_grid_solver_conserves_mass_keeps_density_nonnegative_and_decreases_risk(small2d):
    _, red = small2d
    S = pde.GridSolver(red, h=0.05, r_max=(1.3, 1.2))
    R0, w0 = pde.gaussian_init(red, 1.0, 12)
    sol = S.run(R0, w0, T=8.0, dt=0.05, n_records=80, snapshots=True)
    assert np.abs(sol.mass - 1).max() < 1e-13
    assert np.all(np.diff(sol.risk) <= 1e-12), np.diff(sol.risk).max()
    assert sol.risk[-1] < sol.risk[0] - 0.1
    assert np.all(S.density(sol.R, sol.weights) >= 0)
    assert np.all(sol.snapshots >= 0)
    # The discrete risk is a consistent approximation of the direct one (no grid).
    assert abs(S.risk(sol.R, sol.weights) - red.risk(sol.R, sol.weights)) < 5e-3


def test_dense_and_low_rank_interaction_agree(small2d):
    _, red = small2d
    R0, w0 = pde.gaussian_init(red, 1.0, 6)
    a = pde.GridSolver(red, h=0.1, r_max=(1.3, 1.2)).run(R0, w0, T=2.0, dt=0.1)
    b = pde.GridSolver(red, h=0.1, r_max=(1.3, 1.2), rank_tol=None).run(R0, w0, T=2.0, dt=0.1)
    assert np.abs(a.risk - b.risk).max() < 1e-11


def test_isotropic_relu_solution_is_the_exact_translation():
    """VBar = cV r, UBar = cU r r': every particle moves at -(cV + cU rbar), rbar relaxes
    exponentially; the spline quasi-interpolant reproduces linear functions, so away from r = 0
    the only error is the time step's."""
    p = mf.problems.AnisotropicGaussians(12, 12, 0.6)
    red = pde.ReducedAnisotropic(p)
    cV = red.VBar(np.array([1.0]))[0]
    cU = red.UBar(np.array([1.0]))[0, 0]
    R0, w0 = pde.gaussian_init(red, 0.8, 200)
    S = pde.GridSolver(red, h=0.02, r_max=2.0)
    sol = S.run(R0, w0, T=3.0, dt=0.01, n_records=7, snapshots=True)
    rstar = -cV / cU
    rbar0 = w0 @ R0[:, 0]
    rbar = rstar + (rbar0 - rstar) * np.exp(-cU * sol.t)
    assert R0[:, 0].min() > 0.1
    shift = np.array([s[:, 0] - R0[:, 0] for s in sol.snapshots])
    assert np.abs(shift - (rbar - rbar0)[:, None]).max() < 1e-6
    exact_risk = 1 + 2 * cV * rbar + cU * rbar**2
    assert np.abs(sol.risk - exact_risk).max() < 1e-6


def test_grid_solver_converges_at_second_order(small2d):
    _, red = small2d
    R0, w0 = pde.gaussian_init(red, 1.0, 10)
    curves = []
    for h in (0.2, 0.1, 0.05):
        S = pde.GridSolver(red, h=h, r_max=(1.3, 1.2))
        curves.append(S.run(R0, w0, T=4.0, dt=h, n_records=9).risk)
    e1 = np.abs(curves[0] - curves[1]).max()
    e2 = np.abs(curves[1] - curves[2]).max()
    order = np.log2(e1 / e2)
    assert 1.7 < order < 3.0, order


def test_reduced_pde_agrees_with_full_particles(rng):
    """The independent discretisation: N particles in R^d with exact population gradients."""
    d, s0, N = 6, 3, 200
    p = mf.problems.AnisotropicGaussians(d, s0, 0.5)
    red = pde.ReducedAnisotropic(p, n_cos=(16, 16))
    R0, w0 = pde.gaussian_init(red, 1.0, 24)
    sol = pde.GridSolver(red, h=0.1, r_max=(2.0, 1.6)).run(R0, w0, T=3.0, dt=0.1, n_records=4)
    runs = []
    for _ in range(4):
        W0 = rng.standard_normal((N, d)) / np.sqrt(d)
        flow = mf.jko.particle_flow(p, W0, 0.1, 30, scheme="heun", n_records=4)
        t = flow.t
        runs.append(flow.risk)
    runs = np.array(runs)
    assert np.allclose(t, sol.t)
    se = runs.std(axis=0, ddof=1) / 2
    # Finite-N bias of R_N: (1/N)(int U(w,w) - int int U) = O(1/N); bounded by max U(w,w)/N.
    bias = 2.0 * np.max(p.U(W0).diagonal()) / N
    assert np.all(np.abs(runs.mean(0) - sol.risk) < Z * se + bias), (runs.mean(0), sol.risk, se)
    assert sol.risk[-1] < sol.risk[0] - 0.05


def test_gaussian_init_is_the_law_of_the_radii(rng):
    red = pde.ReducedAnisotropic(mf.problems.AnisotropicGaussians(30, 10, 0.5))
    R, w = pde.gaussian_init(red, 0.7, 40)
    W = rng.standard_normal((100_000, 30)) * 0.7 / np.sqrt(30)
    rr = mf.problems.AnisotropicGaussians(30, 10, 0.5).radii(W)
    for f in (lambda r: r[:, 0], lambda r: r[:, 1] ** 2, lambda r: r[:, 0] * r[:, 1]):
        s = f(rr)
        assert abs(w @ f(R) - s.mean()) < Z * s.std() / np.sqrt(s.size) + 1e-4


# ---------------------------------------------------------------------------------------------
# Noisy dynamics in d = 1
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fp():
    p = mf.problems.AnisotropicGaussians(1, 1, 0.5, activation="truncated_relu")
    return pde.FokkerPlanck1D(p, w_max=4.0, n_cells=160, beta=20.0, lam=0.2)


def test_fokker_planck_mass_positivity_free_energy_and_gibbs_limit(fp):
    m0 = np.exp(-0.5 * (fp.x - 0.3) ** 2 / 0.05)
    m0 /= m0.sum()
    sol = fp.run(m0, T=30.0, n_records=31)
    ms, F = sol.m, sol.free_energy
    np.testing.assert_allclose(sol.t, np.linspace(0, 30, 31))
    assert np.abs(ms.sum(axis=1) - 1).max() < 1e-12
    assert ms.min() >= 0
    assert np.all(np.diff(F) <= 1e-12), np.diff(F).max()
    g, _ = fp.gibbs()
    # The Scharfetter-Gummel flux vanishes exactly on the discrete Gibbs state.
    assert np.abs(fp._flux(g)[0]).max() < 1e-10
    assert np.abs(ms[-1] - g).max() < 1e-5


def test_gibbs_fixed_point_equation(fp):
    g, it = fp.gibbs()
    e = np.exp(-fp.beta * fp.Psi(g))
    assert np.abs(g - e / e.sum()).max() < 1e-10
    assert it > 1


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def test_validation_errors(small2d):
    p, red = small2d
    with pytest.raises(TypeError, match="AnisotropicGaussians"):
        pde.ReducedAnisotropic(mf.problems.TeacherStudent(np.ones((1, 3))))
    with pytest.raises(ValueError, match="n_cos"):
        pde.ReducedAnisotropic(p, n_cos=(3,))
    with pytest.raises(ValueError, match="n_cos"):
        pde.ReducedAnisotropic(p, n_cos=(0, 3))
    with pytest.raises(ValueError, match=r"shape \(M, 2\)"):
        red.VBar(np.ones(3))
    iso = pde.ReducedAnisotropic(mf.problems.AnisotropicGaussians(5, 5, 0.5))
    with pytest.raises(ValueError, match="r2"):
        iso.VBar(np.ones((2, 2)))
    with pytest.raises(ValueError, match="t1 and t2"):
        red.U_at_cosines(np.ones((1, 2)), np.ones((1, 2)), [1.5], [0.0])
    with pytest.raises(ValueError, match="same number of rows"):
        red.U_at_cosines(np.ones((1, 2)), np.ones((2, 2)), [0.5], [0.0])
    with pytest.raises(ValueError, match="kappa"):
        pde.gaussian_init(red, 0.0, 4)
    with pytest.raises(ValueError, match="h must be"):
        pde.GridSolver(red, h=0.0, r_max=1.0)
    with pytest.raises(ValueError, match="r_max"):
        pde.GridSolver(red, h=0.5, r_max=1.0)
    with pytest.raises(ValueError, match="nodes"):
        pde.GridSolver(red, h=0.001, r_max=1.0)
    S = pde.GridSolver(red, h=0.1, r_max=(1.0, 1.0))
    R0, w0 = pde.gaussian_init(red, 1.0, 4)
    with pytest.raises(ValueError, match="weights must sum to 1"):
        S.run(R0, 2 * w0, T=1.0, dt=0.1)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        S.run(R0, -w0, T=1.0, dt=0.1)
    with pytest.raises(ValueError, match="T must be"):
        S.run(R0, w0, T=0.0, dt=0.1)
    with pytest.raises(ValueError, match="dt must be"):
        S.run(R0, w0, T=1.0, dt=-0.1)
    with pytest.raises(ValueError, match="left the grid"):
        S.run(R0 * 3, w0, T=1.0, dt=0.1)
    with pytest.raises(ValueError, match="d = 1"):
        pde.FokkerPlanck1D(p, 2.0, 20, 1.0)
    p1 = mf.problems.AnisotropicGaussians(1, 1, 0.5)
    with pytest.raises(ValueError, match="beta"):
        pde.FokkerPlanck1D(p1, 2.0, 20, 0.0)
    fp1 = pde.FokkerPlanck1D(p1, 2.0, 20, 1.0)
    with pytest.raises(ValueError, match="m0 must be"):
        fp1.run(np.ones(20), T=1.0)
    with pytest.raises(ValueError, match="damping"):
        fp1.gibbs(damping=0.0)


# ---------------------------------------------------------------------------------------------
# theta = (a, b, w) in reduced coordinates (mflib.reduced)
# ---------------------------------------------------------------------------------------------
def test_risk_abw_and_reduced_U_against_monte_carlo(rng):
    from mflib import reduced
    p = mf.problems.AnisotropicGaussians(10, 10, 0.6)
    N = 20
    W = rng.standard_normal((N, 10)) * 0.8 / np.sqrt(10)
    a, b = rng.normal(1, 0.3, N), rng.normal(0, 0.3, N)
    X, y = p.sample(200_000, rng)
    loss = (y - np.maximum(X @ W.T + b, 0) @ a / N) ** 2
    assert abs(reduced.risk_abw(p, a, b, W) - loss.mean()) < Z * loss.std() / np.sqrt(loss.size)
    # Reduced U = U averaged over uniform directions (Monte Carlo over directions, exact pairs).
    red = reduced.ReducedABW(p)
    P = np.array([[1.2, -0.3, 0.7], [0.8, 0.2, 1.1]])
    n = 4000
    Wa = pde.ReducedAnisotropic(p).embed(np.stack([np.full(n, 0.7), np.zeros(n)], 1), rng)
    Wb = pde.ReducedAnisotropic(p).embed(np.stack([np.full(n, 1.1), np.zeros(n)], 1), rng)
    vals = np.array([reduced.risk_abw(p, np.array([1.2, 0.8]), np.array([-0.3, 0.2]),
                                      np.stack([Wa[i], Wb[i]])) for i in range(n)])
    # risk of the 2-neuron network = 1 + (V1 + V2) + (U11 + U22 + 2 U12) / 4
    Vs = red.V(P)
    # U(theta, theta) is not averaged over directions: from the one-neuron risk 1 + 2V + U.
    Ud = np.array([reduced.risk_abw(p, P[i:i + 1, 0], P[i:i + 1, 1], Wa[:1] if i == 0 else Wb[:1])
                   - 1 - 2 * Vs[i] for i in range(2)])
    U12 = (vals - 1 - Vs.sum() - Ud.sum() / 4) * 2
    assert abs(U12.mean() - red.U(P[:1], P[1:])[0, 0]) < Z * U12.std() / np.sqrt(n) + 1e-9


def test_reduced_abw_dynamics_decreases_risk():
    from mflib import reduced
    p = mf.problems.AnisotropicGaussians(40, 40, 0.8)
    red = reduced.ReducedABW(p)
    R0, w0 = pde.gaussian_init(pde.ReducedAnisotropic(p), 0.8, 50)
    P0 = np.stack([np.ones(50), np.zeros(50), R0[:, 0]], 1)
    sol = red.run(P0, w0, T=5.0, dt=0.05, n_records=26)
    assert np.all(np.diff(sol.risk) <= 1e-12)
    assert sol.risk[-1] < sol.risk[0] - 0.1
    with pytest.raises(ValueError, match="ReLU"):
        reduced.ReducedABW(mf.problems.AnisotropicGaussians(5, 3, 0.5, activation="tanh"))
    with pytest.raises(ValueError, match="shape"):
        red.V(np.ones((3, 2)))
    with pytest.raises(ValueError, match="radii"):
        red.V(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="weights"):
        red.run(P0, 2 * w0, T=1.0, dt=0.1)


def test_risk_mehler_equals_problem_risk(rng):
    p = mf.problems.AnisotropicGaussians(30, 30, 0.5, activation="truncated_relu")
    W = rng.standard_normal((12, 30)) * 0.6 / np.sqrt(30)
    W[1] = 1.5 * W[0]                      # a pair with correlation 1: quadrature branch
    assert abs(pde.risk_mehler(p, W) - p.risk(W)) < 1e-9
    with pytest.raises(TypeError, match="AnisotropicGaussians"):
        pde.risk_mehler(mf.problems.TeacherStudent(np.ones((1, 3))), np.ones((2, 3)))


def test_exercise_ch4_1_limiting_mean_radius():
    """Chapter 4, exercise 1: r* = -cV/cU at d = 40, Delta = 0.8, and its d -> infinity value."""
    red = pde.ReducedAnisotropic(mf.problems.AnisotropicGaussians(40, 40, 0.8))
    r_star = -red.VBar([1.0])[0] / red.UBar([1.0])[0, 0]
    assert abs(r_star - 1.2076) < 5e-5
    red_inf = pde.ReducedAnisotropic(mf.problems.AnisotropicGaussians(40, 40, 0.8), limit=True)
    r_inf = -red_inf.VBar([1.0])[0] / red_inf.UBar([1.0])[0, 0]
    assert abs(r_inf - 0.8 * np.sqrt(2 * np.pi) / 1.64) < 1e-12


def test_relu_ubar_kernel_equals_arccos_sum():
    """The compiled grid kernel (branch-free arc-cosine, vectorised over the quadrature nodes)
    equals the Gauss-Jacobi sum of quadrature.arccos1 written out in NumPy, to 1e-14 relative,
    on random radii in the closed quadrant (anisotropic, two mixture components)."""
    red = pde.ReducedAnisotropic(mf.problems.AnisotropicGaussians(6, 3, 0.5), n_cos=(16, 16))
    R = np.abs(np.random.default_rng(0).standard_normal((25, 2)))
    R[0] = (0.0, 0.7)                                    # a point on each axis
    R[1] = (0.9, 0.0)
    K = red.UBar(R)
    ref = np.zeros_like(K)
    for c in range(red.comp_p.size):
        a = red.comp_a[c]
        A = a * R[:, 0] ** 2 + R[:, 1] ** 2
        C = (a * np.multiply.outer(np.outer(R[:, 0], R[:, 0]), red.t1)[..., None]
             + np.multiply.outer(np.outer(R[:, 1], R[:, 1]), red.t2)[:, :, None, :])
        AB = np.broadcast_to(np.outer(A, A)[:, :, None, None], C.shape)
        k = mf.quadrature.arccos1(AB.ravel(), C.ravel()).k.reshape(C.shape)
        ref += red.comp_p[c] * np.einsum("ijpq,p,q->ij", k, red.w1, red.w2)
    assert np.abs(K - ref).max() <= 1e-14 * np.abs(ref).max()
    assert np.abs(K - K.T).max() == 0.0
