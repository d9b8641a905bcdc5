"""Statics (chapter 3): the simplex QP against closed forms, brute force and SLSQP; KKT conditions
and the certified duality gap; a teacher in the dictionary (optimal risk = noise level); the reduced
anisotropic dictionary against explicit vectors and Monte Carlo; the excess-risk identity; the
chapter's exercise; every validation path."""

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize

import mflib as mf
from mflib import statics as st

Z = 5.0  # Monte Carlo tolerance in standard errors


def rep_vectors(problem, R, T1=None, T2=None):
    """Weight vectors in R^d with radii R (m, 2) and, if given, cosines T1, T2 (m,) to e_1, e_{s0+1}."""
    d, s0 = problem.d, problem.s0
    m = R.shape[0]
    W = np.zeros((m, d))
    t1 = np.ones(m) if T1 is None else T1
    t2 = np.ones(m) if T2 is None else T2
    W[:, 0] = R[:, 0] * t1
    if s0 >= 2:
        W[:, 1] = R[:, 0] * np.sqrt(np.maximum((1.0 - t1) * (1.0 + t1), 0.0))
    if d - s0 >= 1:
        W[:, s0] = R[:, 1] * t2
    if d - s0 >= 2:
        W[:, s0 + 1] = R[:, 1] * np.sqrt(np.maximum((1.0 - t2) * (1.0 + t2), 0.0))
    return W


def reduced_U_oracle(problem, Ra, Rb, n_quad):
    """Direction-averaged U from the problem's own U on explicit vectors: for each pair of atoms, a
    vector with radii Ra[i] along e_1, e_{s0+1} against vectors with radii Rb[j] at the Gauss-Jacobi
    cosines (t1, t2) (the implementation statics had before it used ReducedAnisotropic.UBar)."""
    t1, q1 = mf.quadrature.cosine_rule(problem.s0, n_quad)
    t2, q2 = mf.quadrature.cosine_rule(problem.d - problem.s0, n_quad)
    T1, T2 = (x.ravel() for x in np.meshgrid(t1, t2, indexing="ij"))
    Qw = np.outer(q1, q2).ravel()
    nq = Qw.size
    Wa = rep_vectors(problem, Ra)
    Wb = rep_vectors(problem, np.repeat(Rb, nq, axis=0), np.tile(T1, Rb.shape[0]),
                     np.tile(T2, Rb.shape[0]))
    return (problem.U(Wa, Wb).reshape(Ra.shape[0], Rb.shape[0], nq) * Qw).sum(axis=2)


def random_qp(rng, n, rank=None):
    X = rng.standard_normal((rank or n, n))
    return 0.3 * rng.standard_normal(n), X.T @ X / X.shape[0]


def Q(V, U, p, c=0.0):
    return c + 2.0 * V @ p + p @ U @ p


def brute_force(V, U):
    """Exact optimum: the smallest value of the affine minimiser over every support with q >= 0."""
    n = V.size
    best = np.inf
    for m in range(1, n + 1):
        for S in itertools.combinations(range(n), m):
            S = list(S)
            K = np.block([[U[np.ix_(S, S)], np.ones((m, 1))], [np.ones((1, m)), np.zeros((1, 1))]])
            sol = np.linalg.solve(K, np.concatenate([-V[S], [1.0]]))
            q = np.zeros(n)
            q[S] = sol[:m]
            if q.min() >= -1e-12:
                best = min(best, Q(V, U, q))
    return best


# --- the quadratic program -------------------------------------------------------------------
def test_two_atom_closed_form(rng):
    for _ in range(50):
        V, U = random_qp(rng, 2)
        p, lam = st.two_atom_optimum(V, U)
        r = st.solve_qp(V, U)
        assert np.allclose(r.p, p, atol=1e-10)
        assert abs(r.multiplier - lam) < 1e-10
        # the sympy formula of the chapter: q = (U22 - U12 + V2 - V1) / (U11 - 2 U12 + U22), clipped
        q = np.clip((U[1, 1] - U[0, 1] + V[1] - V[0]) / (U[0, 0] - 2 * U[0, 1] + U[1, 1]), 0, 1)
        assert abs(r.p[0] - q) < 1e-10


@pytest.mark.parametrize("n, rank", [(6, None), (7, 3), (7, 1)])
def test_qp_against_brute_force(rng, n, rank):
    for _ in range(5):
        V, U = random_qp(rng, n, rank)
        if rank is not None and rank < n:       # singular U: brute force needs U + tiny I to solve KKT
            best = brute_force(V, U + 1e-13 * np.eye(n))
        else:
            best = brute_force(V, U)
        r = st.solve_qp(V, U, const=0.7)
        assert r.gap <= 1e-12
        assert abs(r.value - 0.7 - best) < 1e-9
        assert abs(r.p.sum() - 1) < 1e-14 and r.p.min() >= 0


def test_qp_against_slsqp(rng):
    n = 12
    V, U = random_qp(rng, n, rank=5)
    r = st.solve_qp(V, U)
    res = minimize(lambda p: Q(V, U, p), np.full(n, 1 / n), jac=lambda p: 2 * (V + U @ p),
                   bounds=[(0, 1)] * n, constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1}],
                   method="SLSQP", options={"ftol": 1e-15, "maxiter": 2000})
    assert res.success
    assert r.value <= res.fun + 1e-12           # certified optimum is never beaten
    assert abs(r.value - res.fun) < 1e-8


def test_gap_bounds_suboptimality(rng):
    V, U = random_qp(rng, 30, rank=8)
    best = st.solve_qp(V, U).value
    for _ in range(20):
        p = rng.dirichlet(np.full(30, 0.3))
        g = 2 * (V + U @ p)
        assert Q(V, U, p) - best <= p @ g - g.min() + 1e-12


def test_kkt_conditions_on_random_problems(rng):
    """Psi = lambda/2 on the support, Psi >= lambda/2 - gap/2 elsewhere (Psi recomputed from U, V)."""
    V, U = random_qp(rng, 200, rank=20)
    r = st.solve_qp(V, U, tol=1e-13)
    psi = V + U @ r.p
    S = r.p > 0
    assert np.ptp(psi[S]) <= 1e-12
    assert abs(2 * psi[S].mean() - r.multiplier) <= 1e-12
    assert (2 * psi[~S] >= r.multiplier - r.gap - 1e-14).all()
    assert r.gap <= 1e-13


def test_max_iter_raises(rng):
    V, U = random_qp(rng, 40, rank=40)
    with pytest.raises(RuntimeError, match="max_iter"):
        st.solve_qp(V, U, max_iter=1)


# --- problems on dictionaries ------------------------------------------------------------------
def teacher(noise=0.3, a=None):
    ang = np.deg2rad([0.0, 100.0, 220.0])
    Wt = np.stack([np.cos(ang), np.sin(ang)], axis=1) * np.array([[1.0], [1.5], [1.2]])
    return mf.problems.TeacherStudent(Wt, a_teacher=a, noise_std=noise), Wt


def test_teacher_in_dictionary_reaches_noise_level(rng):
    """A teacher made of dictionary atoms: min R = noise^2, Psi* = 0 everywhere, lambda = 0."""
    p, Wt = teacher(noise=0.3)
    G = np.vstack([st.polar_grid(2.4, 24, 72, full_circle=True), Wt])
    res = st.solve(st.explicit_dictionary(p, G))
    assert res.gap <= 1e-12
    assert abs(res.risk - 0.3**2) < 1e-12
    assert abs(res.multiplier) < 1e-12
    assert np.abs(res.Psi).max() < 1e-12
    # off the dictionary too: Psi(w; rho*) = -E[noise * sigma] = 0
    assert np.abs(res.Psi_at(3 * rng.standard_normal((50, 2)))).max() < 1e-12
    c = st.compare(res, Wt)                      # the teacher itself is optimal
    assert abs(c.excess) < 1e-12 and abs(c.f_dist2) < 1e-12


def test_kkt_non_representable_target_with_weight_decay(rng):
    p, _ = teacher(noise=0.2, a=np.array([2.0, 1.0, -1.5]))
    lam = 0.05
    D = st.explicit_dictionary(p, st.polar_grid(2.0, 16, 48, full_circle=True))
    res = st.solve(D, lam=lam)
    assert res.gap <= 1e-12
    G = D.atoms
    psi = p.V(G) + 0.5 * lam * (G**2).sum(1) + p.U(G, res.atoms) @ res.weights   # independent Psi
    assert np.abs(psi - res.Psi).max() < 1e-12
    assert np.ptp(psi[res.support]) < 1e-12
    assert abs(psi[res.support].mean() - res.multiplier / 2) < 1e-12
    assert psi.min() >= res.multiplier / 2 - res.gap / 2 - 1e-14
    # R* = E y^2 + int V~ d rho* + lambda/2 (multiply the KKT equation by rho* and integrate)
    Vt = D.V + 0.5 * lam * D.sq_norm
    assert abs(res.objective - (D.Ey2 + Vt @ res.p + res.multiplier / 2)) < 1e-12
    # independent solver on the support's neighbourhood: SLSQP on 40 atoms containing the support
    idx = np.union1d(res.support, rng.choice(D.n, 40 - res.support.size, replace=False))
    sub = st.solve_qp(Vt[idx], D.U[np.ix_(idx, idx)], const=D.Ey2)
    assert abs(sub.value - res.objective) < 1e-12
    m = idx.size
    sl = minimize(lambda q: Q(Vt[idx], D.U[np.ix_(idx, idx)], q, D.Ey2), np.full(m, 1 / m),
                  bounds=[(0, 1)] * m, constraints=[{"type": "eq", "fun": lambda q: q.sum() - 1}],
                  method="SLSQP", options={"ftol": 1e-15, "maxiter": 3000})
    assert sl.fun >= res.objective - 1e-12 and sl.fun - res.objective < 1e-7


def test_reduced_dictionary_equals_sign_average_when_spheres_are_points():
    """d = 2, s0 = 1: an atom (r1, r2) is uniform on the four points (+-r1, +-r2): exact check."""
    p = mf.problems.AnisotropicGaussians(2, 1, 0.6)
    R = np.array([[0.5, 0.2], [1.0, 0.0], [0.3, 1.1], [0.0, 0.0]])
    D = st.reduced_dictionary(p, R)
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], float)
    E = (R[:, None, :] * signs[None]).reshape(-1, 2)               # (4 atoms * 4 signs, 2)
    Ubar = p.U(E).reshape(4, 4, 4, 4).mean(axis=(1, 3))
    assert np.abs(D.U - Ubar).max() < 1e-14
    assert np.abs(D.V - p.V(E).reshape(4, 4).mean(1)).max() < 1e-14


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_reduced_dictionary_against_monte_carlo(rng, act):
    d, s0 = (7, 3) if act == "relu" else (4, 2)
    p = mf.problems.AnisotropicGaussians(d, s0, 0.5, activation=act)
    R = np.array([[0.8, 0.5], [1.2, 0.3]])
    D = st.reduced_dictionary(p, R, n_quad=12)
    m = 4000 if act == "relu" else 300

    def draw(r):
        u1 = rng.standard_normal((m, s0))
        u2 = rng.standard_normal((m, d - s0))
        u1 /= np.linalg.norm(u1, axis=1, keepdims=True)
        u2 /= np.linalg.norm(u2, axis=1, keepdims=True)
        return np.hstack([r[0] * u1, r[1] * u2])

    A, B, A2 = draw(R[0]), draw(R[1]), draw(R[0])
    pairs = {(0, 1): (A, B), (0, 0): (A, A2)}
    for (i, j), (X1, X2) in pairs.items():
        u = np.array([p.U(X1[k:k + 1], X2[k:k + 1])[0, 0] for k in range(m)])
        assert abs(D.U[i, j] - u.mean()) <= Z * u.std(ddof=1) / np.sqrt(m)
    # V depends on the radii only: exact at random directions
    assert np.abs(p.V(A) - D.V[0]).max() < 1e-8


def test_reduced_cross_matches_dictionary():
    p = mf.problems.AnisotropicGaussians(9, 4, 0.5)
    R = st.polar_grid(1.5, 3, 4)
    D = st.reduced_dictionary(p, R, n_quad=10)
    W = rep_vectors(p, R)          # one neuron with each atom's radii
    assert np.abs(D.cross_U(W) - D.U).max() < 1e-13


@pytest.mark.parametrize("act,d,s0", [("relu", 20, 10), ("relu", 7, 1), ("relu", 6, 6),
                                      ("relu", 3, 2), ("truncated_relu", 5, 2)])
def test_reduced_dictionary_against_the_explicit_vector_oracle(rng, act, d, s0):
    """D.U and cross_U (ReducedAnisotropic.UBar: compiled arc-cosine sum on shared directions, or
    the direct sum of the pair quadrature) against U of explicit vectors at the same cosines."""
    p = mf.problems.AnisotropicGaussians(d, s0, 0.5, activation=act)
    n_r = 6 if act == "relu" else 2
    R = st.polar_grid(1.8, n_r, 4) if s0 < d else np.stack([np.linspace(0, 1.8, 7), np.zeros(7)], 1)
    D = st.reduced_dictionary(p, R, n_quad=10)
    ref = reduced_U_oracle(p, R, R, 10)
    assert np.abs(D.U - 0.5 * (ref + ref.T)).max() < 1e-14 * np.abs(ref).max()
    W = rng.standard_normal((5, d)) / np.sqrt(d)
    ref = reduced_U_oracle(p, p.radii(W), R, 10)
    assert np.abs(D.cross_U(W) - ref).max() < 1e-14 * np.abs(ref).max()


def test_compare_identity_and_certificate(rng):
    """excess = ||f - f*||^2 + 2 int (Psi* - lambda/2) d rho_N, and excess <= certificate."""
    p = mf.problems.AnisotropicGaussians(8, 4, 0.5)
    lam = 0.05
    D = st.reduced_dictionary(p, st.polar_grid(2.0, 40, 16), n_quad=10)
    res = st.solve(D, lam=lam)
    for scale in (0.3, 1.0):
        W = scale * rng.standard_normal((30, 8))
        c = st.compare(res, W)
        assert abs(c.excess - c.f_dist2 - c.off_contact) < 1e-12
        assert c.f_dist2 >= 0 and c.excess > 0
        assert c.excess <= st.certificate(D, W, lam) + 1e-12
    # a configuration on the optimum: the particles on the sphere of the support radius
    r1 = res.atoms[np.argmax(res.weights)][0]
    Wopt = np.zeros((400, 8))
    Wopt[:, :4] = rng.standard_normal((400, 4))
    Wopt[:, :4] *= r1 / np.linalg.norm(Wopt[:, :4], axis=1, keepdims=True)
    c = st.compare(res, Wopt)
    assert c.w2 < 0.06 and c.off_contact < 1e-3
    # the stuck configuration: every neuron at the origin is stationary, far from optimal
    assert st.certificate(D, np.zeros((5, 8)), lam) > 0.1


def test_exercise_multiplier_for_relu(rng):
    """Chapter 3 exercise: for ReLU, lambda = -lam * int |theta|^2 d rho*, and lambda = 0 if lam = 0.
    On a radial grid of spacing h the scaling theta -> s theta is only available in steps, and the
    identity holds up to lam * h * r_max."""
    p = mf.problems.AnisotropicGaussians(20, 10, 0.5)
    lam, r_max = 0.03, 2.0
    for n_r in (50, 200):
        D = st.reduced_dictionary(p, st.polar_grid(r_max, n_r, 11), n_quad=10)
        res = st.solve(D, lam=lam)
        err = abs(res.multiplier + lam * res.weights @ D.sq_norm[res.support])
        assert err < lam * (r_max / n_r) * r_max
        assert abs(st.solve(D, lam=0.0).multiplier) < 1e-12


def test_relu_minimiser_without_weight_decay_depends_only_on_the_mean_radius():
    """Chapter 3, Figure 3.2: without weight decay the anisotropic optimum lives on the ray r2 = 0,
    where a ReLU network depends on the radial law only through its mean; the solver may put an
    atom at the grid's edge, but a grid reaching further (same spacing) changes neither the risk
    nor the mean radius, and the support stays on r2 = 0."""
    p = mf.problems.AnisotropicGaussians(20, 10, 0.5)
    res = [st.solve(st.reduced_dictionary(p, st.polar_grid(r_max, n_r, 6), n_quad=8), lam=0.0)
           for r_max, n_r in ((2.0, 40), (3.0, 60))]
    for r in res:
        assert (r.atoms[:, 1] == 0).all() and r.gap < 1e-12
    assert abs(res[0].risk - res[1].risk) < 1e-12
    means = [r.weights @ r.atoms[:, 0] for r in res]
    assert abs(means[0] - means[1]) < 1e-8


def test_polar_grid():
    G = st.polar_grid(2.0, 4, 5)
    assert G.shape == (21, 2) and (G >= 0).all() and np.allclose(np.hypot(*G[1:].T).max(), 2.0)
    F = st.polar_grid(1.0, 2, 8, full_circle=True, zero=False)
    assert F.shape == (16, 2) and np.allclose(F.sum(0), 0)


# --- validation --------------------------------------------------------------------------------
def test_value_errors():
    V, U = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="V"):
        st.solve_qp(np.zeros(0), np.zeros((0, 0)))
    with pytest.raises(ValueError, match="U"):
        st.solve_qp(V, np.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        st.solve_qp(V, np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="V"):
        st.solve_qp([0.0, np.nan, 1.0], U)
    with pytest.raises(ValueError, match="tol"):
        st.solve_qp(V, U, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        st.solve_qp(V, U, max_iter=0)
    with pytest.raises(ValueError, match="V"):
        st.two_atom_optimum(np.zeros(3), np.eye(2))
    ag = mf.problems.AnisotropicGaussians(4, 2, 0.5)
    with pytest.raises(TypeError, match="problem"):
        st.reduced_dictionary(teacher()[0], np.ones((2, 2)))
    with pytest.raises(ValueError, match="R"):
        st.reduced_dictionary(ag, np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        st.reduced_dictionary(ag, -np.ones((2, 2)))
    with pytest.raises(ValueError, match="d == s0"):
        st.reduced_dictionary(mf.problems.AnisotropicGaussians(3, 3, 0.5), np.ones((2, 2)))
    with pytest.raises(ValueError, match="n_quad"):
        st.reduced_dictionary(ag, np.ones((2, 2)), n_quad=1)
    with pytest.raises(TypeError, match="problem"):
        st.explicit_dictionary("relu", np.ones((2, 2)))
    with pytest.raises(ValueError, match="columns"):
        st.explicit_dictionary(ag, np.ones((2, 3)))
    with pytest.raises(ValueError, match="r_max"):
        st.polar_grid(0.0, 3, 3)
    with pytest.raises(ValueError, match="n_radii"):
        st.polar_grid(1.0, 0, 3)
    with pytest.raises(ValueError, match="n_angles"):
        st.polar_grid(1.0, 2, 0)
    D = st.reduced_dictionary(ag, st.polar_grid(1.0, 2, 3))
    with pytest.raises(ValueError, match="lam"):
        st.solve(D, lam=-1.0)
    with pytest.raises(TypeError, match="dictionary"):
        st.solve("D")
    res = st.solve(D)
    with pytest.raises(TypeError, match="result"):
        st.compare(D, np.ones((2, 4)))
    with pytest.raises(ValueError, match="columns"):
        st.compare(res, np.ones((2, 3)))
    with pytest.raises(ValueError, match="lam"):
        st.certificate(D, np.ones((2, 4)), lam=-0.1)
    with pytest.raises(TypeError, match="dictionary"):
        st.certificate(res, np.ones((2, 4)))


def test_exercise_iid_sampling_excess(rng):
    """Chapter 3 exercise: for N i.i.d. neurons from rho, E R(rho_N) = R(rho) + (int U(t,t) - iint U) / N."""
    d, s0, N, M = 6, 3, 5, 4000
    p = mf.problems.AnisotropicGaussians(d, s0, 0.5)
    R = np.array([[0.8, 0.1], [0.3, 0.6]])
    w = np.array([0.7, 0.3])
    D = st.reduced_dictionary(p, R, n_quad=12)
    R_rho = D.Ey2 + 2 * w @ D.V + w @ D.U @ w
    diag = np.diag(p.U(rep_vectors(p, R)))
    predicted = R_rho + (w @ diag - w @ D.U @ w) / N
    atoms = rng.choice(2, size=(M, N), p=w)
    u1 = rng.standard_normal((M, N, s0))
    u2 = rng.standard_normal((M, N, d - s0))
    u1 /= np.linalg.norm(u1, axis=2, keepdims=True)
    u2 /= np.linalg.norm(u2, axis=2, keepdims=True)
    W = np.concatenate([R[atoms, 0][..., None] * u1, R[atoms, 1][..., None] * u2], axis=2)
    risks = np.array([p.risk(Wm) for Wm in W])
    se = risks.std(ddof=1) / np.sqrt(M)
    assert abs(risks.mean() - predicted) <= Z * se
    assert predicted - R_rho > 10 * se         # the 1/N term is resolved, so the check has teeth
