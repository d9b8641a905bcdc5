"""Tests for mflib.ntk: empirical NTK against finite differences and its Monte Carlo limit, the
kernel-time bookkeeping of gradient descent, the linearised closed form against ODE integration,
width scalings, and every error path."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import mflib as mf
from mflib import datasets, ntk
from mflib.fitting import loglog_fit

SIGMAS = 5.0


def _small(N=5, d=3, n=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    a, W = ntk.init(N, d, rng)
    y = rng.standard_normal(n)
    return X, y, a, W


def _fd_jacobian(X, a, W, scaling, trained, step=1e-6):
    """Central differences of mflib.network.forward in the trained variables."""
    g = ntk.gamma(W.shape[0], scaling)
    ua = 1.0 if trained == "a_bar" else 1.0 / g            # d a_bar = d a / gamma
    cols = []
    for k in range(a.size):
        e = np.zeros_like(a)
        e[k] = step * ua
        cols.append((mf.network.forward(X, W, a=a + e, scaling=scaling)
                     - mf.network.forward(X, W, a=a - e, scaling=scaling)) / (2 * step))
    for k in range(W.size):
        E = np.zeros(W.size)
        E[k] = step
        E = E.reshape(W.shape)
        cols.append((mf.network.forward(X, W + E, a=a, scaling=scaling)
                     - mf.network.forward(X, W - E, a=a, scaling=scaling)) / (2 * step))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("scaling", ["ntk", "mean_field"])
@pytest.mark.parametrize("trained", ["a_bar", "a"])
def test_empirical_ntk_against_finite_differences(scaling, trained):
    X, _, a, W = _small()
    Z = np.random.default_rng(9).standard_normal((3, 3))
    J = _fd_jacobian(X, a, W, scaling, trained)
    Jz = _fd_jacobian(Z, a, W, scaling, trained)
    c = ntk.time_factor(W.shape[0], scaling, trained)
    assert np.allclose(ntk.jacobian(X, a, W, scaling, trained), J, atol=1e-8)
    E = ntk.empirical_ntk(X, a, W, scaling, trained)
    assert np.allclose(E.K, c * J @ J.T, atol=1e-8)
    assert np.allclose(E.K, E.Ka + E.Kw)
    # the split: second-layer columns give Ka, first-layer columns give Kw
    N = a.size
    assert np.allclose(E.Ka, c * J[:, :N] @ J[:, :N].T, atol=1e-8)
    assert np.allclose(E.Kw, c * J[:, N:] @ J[:, N:].T, atol=1e-8)
    Ez = ntk.empirical_ntk(Z, a, W, scaling, trained, Y=X)
    assert np.allclose(Ez.K, c * Jz @ J.T, atol=1e-8)
    assert np.array_equal(E.K, E.K.T)


def test_empirical_ntk_is_the_lecture_gram_matrix():
    """trained="a": K = Ka(w) + Kw(a) with the lecture's a_k = gamma a_bar_k."""
    X, _, a, W = _small(N=7)
    g = ntk.gamma(7, "ntk")
    S = np.maximum(X @ W.T, 0.0)
    D = (X @ W.T > 0).astype(float)
    Ka = S @ S.T / 7
    Kw = ((D * (g * a) ** 2) @ D.T / 7) * (X @ X.T)
    E = ntk.empirical_ntk(X, a, W, "ntk", "a")
    assert np.allclose(E.Ka, Ka) and np.allclose(E.Kw, Kw)
    # and the initial kernel for trained="a_bar" does not depend on the scaling
    assert np.allclose(ntk.empirical_ntk(X, a, W, "ntk").K, ntk.empirical_ntk(X, a, W, "mean_field").K)


@pytest.mark.parametrize("trained", ["a_bar", "a"])
def test_empirical_ntk_converges_to_limit_kernel(trained):
    """Entrywise Monte Carlo check of the infinite-width Gram matrix with N = 1e6 neurons."""
    rng = np.random.default_rng(3)
    X = datasets.sphere(5, 4, rng)
    N = 1_000_000
    a, W = ntk.init(N, 4, rng)
    H = X @ W.T
    S, D = np.maximum(H, 0.0), (H > 0).astype(float)
    c2 = 1.0 if trained == "a_bar" else 0.0
    # per-neuron contributions g_k(x_i, x_j), (n, n, N) is too big: accumulate moments instead
    m1 = (S @ S.T + c2 * (D * a**2) @ D.T * (X @ X.T)) / N
    # exact second moment of g = s_i s_j + c2 a^2 d_i d_j G_ij, using d = 1{s > 0}
    G = X @ X.T
    SD = S * D
    m2 = ((S**2) @ (S**2).T + 2 * c2 * (SD * a**2) @ SD.T * G
          + c2 * (D * a**4) @ D.T * G**2) / N
    se = np.sqrt(np.maximum(m2 - m1**2, 0.0) / N)
    lim = ntk.limit_kernel(X, trained=trained)
    assert np.all(np.abs(m1 - lim) <= SIGMAS * se + 1e-12)
    if trained == "a_bar":
        E = ntk.empirical_ntk(X, a[:20000], W[:20000])
        assert np.linalg.norm(E.K - lim) < 0.2 * np.linalg.norm(lim)


def test_time_factor_and_gamma():
    assert ntk.gamma(100, "ntk") == pytest.approx(0.1)
    assert ntk.gamma(100, "mean_field") == pytest.approx(0.01)
    assert ntk.time_factor(100, "ntk", "a_bar") == pytest.approx(1.0)
    assert ntk.time_factor(100, "mean_field", "a_bar") == pytest.approx(100.0)
    assert ntk.time_factor(100, "mean_field", "a") == pytest.approx(0.01)


@pytest.mark.parametrize("scaling", ["ntk", "mean_field"])
@pytest.mark.parametrize("trained", ["a_bar", "a"])
def test_gd_step_is_the_ntk_evolution(scaling, trained):
    """h(X; s+ds) = h(X; s) - (ds/n) K e + O(ds^2): kernel time is the time of dh/ds = -K e / n."""
    X, y, a, W = _small(N=6, n=5, seed=4)
    n = X.shape[0]
    E = ntk.empirical_ntk(X, a, W, scaling, trained).K
    e0 = ntk.output(X, a, W, scaling) - y
    errs = []
    for ds in (1e-3, 5e-4):
        r = ntk.train(X, y, a, W, scaling, ds=ds, steps=1, trained=trained, record_every=1)
        errs.append(np.abs(r.h[1] - (r.h[0] - ds / n * E @ e0)).max())
    assert errs[0] < 1e-4 * np.abs(e0).max()
    assert 3.0 < errs[0] / errs[1] < 5.0                        # second order in ds


@pytest.mark.parametrize("trained", ["a_bar", "a"])
def test_gd_step_matches_network_risk_gradient(trained):
    X, y, a, W = _small(N=8, n=6, seed=2)
    scaling, ds = "mean_field", 0.3
    N = a.size
    G = mf.network.risk_gradient(X, y, W, a=a, scaling=scaling)       # gradient of 2 R_S
    c = ntk.time_factor(N, scaling, trained)
    ca = ntk.time_factor(N, scaling, "a_bar")                         # a_bar moves at this rate
    r = ntk.train(X, y, a, W, scaling, ds=ds, steps=1, trained=trained)
    assert np.allclose(r.a_bar, a - ds * ca * 0.5 * G.a, atol=1e-13)
    assert np.allclose(r.W, W - ds * c * 0.5 * G.W, atol=1e-13)
    assert r.risk[0] == pytest.approx(ntk.risk(X, y, a, W, scaling), rel=1e-13)
    assert r.risk[0] == pytest.approx(0.25 * np.mean(G.residual**2) * 2, rel=1e-13)


def test_train_records_and_monotone_risk():
    X, y, a, W = _small(N=30, n=10, seed=5)
    Xt = np.random.default_rng(0).standard_normal((4, 3))
    r = ntk.train(X, y, a, W, "mean_field", ds=0.05, steps=200, record_every=10, X_test=Xt)
    assert r.s[0] == 0 and r.s[-1] == pytest.approx(10.0) and r.s.size == 21
    assert np.all(np.diff(r.risk) <= 1e-15)                          # gradient descent, small step
    assert r.move_a_bar[0] == 0 and r.move_w[0] == 0 and r.dist[0] == 0 and r.kernel_change[0] == 0
    assert np.allclose(r.move_a, r.gamma * r.move_a_bar)
    assert np.allclose(r.h_test[-1], ntk.output(Xt, r.a_bar, r.W, "mean_field"))
    assert np.allclose(r.h[-1], ntk.output(X, r.a_bar, r.W, "mean_field"))
    dist = np.sqrt(r.gamma**2 * np.sum((r.a_bar - a) ** 2) + np.sum((r.W - W) ** 2))
    assert r.dist[-1] == pytest.approx(dist)
    K1 = ntk.empirical_ntk(X, r.a_bar, r.W, "mean_field").K
    assert r.kernel_change[-1] == pytest.approx(np.linalg.norm(K1 - ntk.empirical_ntk(X, a, W).K))
    again = ntk.train(X, y, a, W, "mean_field", ds=0.05, steps=200, record_every=10, X_test=Xt)
    assert np.array_equal(again.h, r.h)                              # deterministic
    assert np.array_equal(a, _small(N=30, n=10, seed=5)[2])          # inputs untouched


def test_divergence():
    X, y, a, W = _small(N=10, n=8, seed=1)
    with pytest.raises(mf.runs.DivergenceError, match="smaller ds"):
        ntk.train(10 * X, y, a, W, "ntk", ds=50.0, steps=400, record_every=1)


def _random_psd(n, rank, rng):
    A = rng.standard_normal((n, rank))
    return A @ A.T


@pytest.mark.parametrize("ds", [None, 0.25])
def test_linearised_closed_form_against_ode(ds):
    rng = np.random.default_rng(7)
    n, m = 6, 3
    K0 = _random_psd(n, n - 1, rng)                                  # one zero eigenvalue
    Kx = rng.standard_normal((m, n))
    h0, y, hx0 = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(m)
    s = np.arange(0, 41) * 0.25
    lin = ntk.linearised(K0, h0, y, s, K0_test=Kx, h0_test=hx0, ds=ds)
    if ds is None:
        def rhs(_, z):
            e = z[:n] - y
            return np.concatenate([-K0 @ e / n, -Kx @ e / n])
        sol = solve_ivp(rhs, (0, s[-1]), np.concatenate([h0, hx0]), t_eval=s, rtol=1e-11, atol=1e-12,
                        method="DOP853")
        ref = sol.y.T
    else:
        z, ref = np.concatenate([h0, hx0]), []
        for _ in s:
            ref.append(z.copy())
            e = z[:n] - y
            z = z - ds / n * np.concatenate([K0 @ e, Kx @ e])
        ref = np.array(ref)
    assert np.allclose(lin.train, ref[:, :n], atol=1e-8)
    assert np.allclose(lin.test, ref[:, n:], atol=1e-8)
    assert np.allclose(lin.train[0], h0)


def test_linearised_model_in_parameter_space():
    """Integrate the linear ODE for the parameters, d theta/ds = -c J^T (h_lin - y)/n, and compare
    h_lin = h0 + J (theta - theta0) on training and test inputs with the kernel closed form."""
    X, y, a, W = _small(N=4, d=2, n=5, seed=8)
    Xt = np.random.default_rng(1).standard_normal((3, 2))
    for scaling, trained in (("ntk", "a_bar"), ("mean_field", "a_bar"), ("ntk", "a")):
        N, n = a.size, X.shape[0]
        c = ntk.time_factor(N, scaling, trained)
        J = ntk.jacobian(X, a, W, scaling, trained)
        Jt = ntk.jacobian(Xt, a, W, scaling, trained)
        h0, ht0 = ntk.output(X, a, W, scaling), ntk.output(Xt, a, W, scaling)
        s = np.linspace(0, 30, 7)
        sol = solve_ivp(lambda _, p, c=c, J=J, h0=h0, n=n: -c * J.T @ (h0 + J @ p - y) / n, (0, 30),
                        np.zeros(J.shape[1]), t_eval=s, rtol=1e-11, atol=1e-13, method="DOP853")
        P = sol.y.T
        K0 = ntk.empirical_ntk(X, a, W, scaling, trained).K
        Kt = ntk.empirical_ntk(Xt, a, W, scaling, trained, Y=X).K
        lin = ntk.linearised(K0, h0, y, s, K0_test=Kt, h0_test=ht0)
        assert np.allclose(lin.train, h0 + P @ J.T, atol=1e-7)
        assert np.allclose(lin.test, ht0 + P @ Jt.T, atol=1e-7)


def test_predictor_interpolates_and_is_the_long_time_limit():
    rng = np.random.default_rng(2)
    X = datasets.sphere(12, 5, rng)
    Xt = datasets.sphere(4, 5, rng)
    y = rng.standard_normal(12)
    for trained in ("a_bar", "a"):
        assert np.allclose(ntk.ntk_predictor(X, y, X, trained=trained), y, atol=1e-8)
        K0 = ntk.limit_kernel(X, trained=trained)
        lin = ntk.linearised(K0, np.zeros(12), y, [1e9], K0_test=ntk.limit_kernel(Xt, X, trained),
                             h0_test=np.zeros(4))
        assert np.allclose(lin.test[0], ntk.ntk_predictor(X, y, Xt, trained=trained), atol=1e-6)
    ridge = ntk.ntk_predictor(X, y, Xt, ridge=0.1)
    K0 = ntk.limit_kernel(X)
    coef = np.linalg.solve(K0 + 0.1 * 12 * np.eye(12), y)
    assert np.allclose(ridge, ntk.limit_kernel(Xt, X) @ coef)


def test_symmetric_init_and_seeds():
    rng = np.random.default_rng(0)
    a, W = ntk.init(10, 3, rng, symmetric=True)
    X = rng.standard_normal((5, 3))
    assert np.allclose(ntk.output(X, a, W), 0.0, atol=1e-15)
    a1, W1 = ntk.init(10, 3, np.random.default_rng(4))
    a2, W2 = ntk.init(10, 3, np.random.default_rng(4))
    assert np.array_equal(a1, a2) and np.array_equal(W1, W2)


def _circle(n=20):
    phi = 2 * np.pi * (np.arange(n) + 0.5) / n
    return datasets.lifted_circle(phi), np.sin(2 * phi)


def test_lazy_versus_mean_field_width_scaling():
    """Per-neuron movement: O(N^-1/2) in the NTK scaling, O(1) in the mean-field scaling."""
    X, y = _circle()
    Ns = np.array([100, 400, 1600, 6400])
    slopes = {}
    for scaling in ("ntk", "mean_field"):
        rw, kc = [], []
        for N in Ns:
            a, W = ntk.init(int(N), 3, np.random.default_rng(int(N)))
            r = ntk.train(X, y, a, W, scaling, ds=0.5, steps=100, n_log=3)
            rw.append(r.rms_w[-1])
            kc.append(r.kernel_change[-1])
        slopes[scaling] = (loglog_fit(Ns, rw).slope, loglog_fit(Ns, kc).slope)
    assert slopes["ntk"][0] == pytest.approx(-0.5, abs=0.15)
    assert slopes["mean_field"][0] == pytest.approx(0.0, abs=0.1)
    assert slopes["ntk"][1] < -0.5 and abs(slopes["mean_field"][1]) < 0.15


def test_exercise_lecture_flow_is_lazy_for_gamma_one_over_N():
    """Chapter 6, exercise 1: the lecture's flow (trained="a") with gamma = 1/N moves a_bar by O(1)
    but w only by O(N^-2); with gamma = 1/sqrt(N), |a_k(t) - a_k(0)| = O(1/N)."""
    X, y = _circle()
    Ns = np.array([100, 400, 1600, 6400])
    ra, rw, ma = [], [], []
    for N in Ns:
        a, W = ntk.init(int(N), 3, np.random.default_rng(int(N)))
        r = ntk.train(X, y, a, W, "mean_field", ds=0.5, steps=100, trained="a", n_log=3,
                      track_kernel=False)
        ra.append(r.rms_a_bar[-1])
        rw.append(r.rms_w[-1])
        r = ntk.train(X, y, a, W, "ntk", ds=0.5, steps=100, trained="a", n_log=3, track_kernel=False)
        ma.append(r.move_a[-1])
    assert loglog_fit(Ns, ra).slope == pytest.approx(0.0, abs=0.1)
    assert loglog_fit(Ns, rw).slope == pytest.approx(-2.0, abs=0.1)
    assert loglog_fit(Ns, ma).slope == pytest.approx(-1.0, abs=0.2)


def test_lambda_min_and_width_condition():
    assert ntk.lambda_min(np.diag([3.0, 0.5, 2.0])) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1_000_000, 3))
    s4 = np.sum(np.abs(w), axis=1) ** 4
    assert abs(ntk.l1_moment(3) - s4.mean()) < SIGMAS * s4.std() / 1000.0
    assert ntk.l1_moment(1) == pytest.approx(3.0)
    wc = ntk.width_condition(n=10, d=2, lambda_S=0.1, R0=0.5, delta=0.1)
    t1 = 32 * 10**4 * ntk.l1_moment(2) / (0.01 * 0.1)
    assert wc.terms[0] == pytest.approx(t1)
    assert wc.terms[1] == pytest.approx(4 * np.sqrt(2) * 2 * 10 * np.sqrt(0.5) / 0.1)
    c3 = 256 * np.sqrt(2) * 8 * 100 * np.sqrt(0.5) / 0.01
    assert wc.N_min >= max(wc.terms) * (1 - 1e-9)
    assert wc.N_min >= c3 * np.log(4 * wc.N_min * 3 / 0.1) * (1 - 1e-9)    # fixed point reached
    assert ntk.width_condition(10, 2, 0.05, 0.5).N_min > wc.N_min


def test_helpers():
    assert mf.ntk is ntk


def test_errors():
    X, y, a, W = _small()
    with pytest.raises(ValueError, match="scaling"):
        ntk.gamma(10, "xavier")
    with pytest.raises(ValueError, match="N must be >= 1"):
        ntk.gamma(0)
    with pytest.raises(ValueError, match="trained"):
        ntk.time_factor(10, "ntk", "w")
    with pytest.raises(ValueError, match="N must be even"):
        ntk.init(5, 2, np.random.default_rng(0), symmetric=True)
    with pytest.raises(TypeError, match="Generator"):
        ntk.init(4, 2, 0)
    with pytest.raises(ValueError, match="X must have d = 3"):
        ntk.empirical_ntk(np.ones((4, 2)), a, W)
    with pytest.raises(ValueError, match="a_bar must have shape"):
        ntk.empirical_ntk(X, a[:3], W)
    with pytest.raises(ValueError, match="Y must have d = 3"):
        ntk.empirical_ntk(X, a, W, Y=np.ones((2, 2)))
    with pytest.raises(ValueError, match="W must have at least one row"):
        ntk.empirical_ntk(X, np.ones(0), np.ones((0, 3)))
    with pytest.raises(ValueError, match="trained"):
        ntk.jacobian(X, a, W, trained="b")
    with pytest.raises(ValueError, match="square"):
        ntk.lambda_min(np.ones((2, 3)))
    with pytest.raises(ValueError, match="symmetric"):
        ntk.lambda_min(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="y must have shape"):
        ntk.train(X, y[:2], a, W)
    with pytest.raises(ValueError, match="ds must be >"):
        ntk.train(X, y, a, W, ds=0.0)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        ntk.train(X, y, a, W, steps=-1)
    with pytest.raises(ValueError, match="scaling"):
        ntk.train(X, y, a, W, scaling="sp")
    with pytest.raises(ValueError, match="trained"):
        ntk.train(X, y, a, W, trained="both")
    with pytest.raises(ValueError, match="X_test must have d = 3"):
        ntk.train(X, y, a, W, X_test=np.ones((2, 5)))
    with pytest.raises(ValueError, match="at most one of record_every, n_log"):
        ntk.train(X, y, a, W, record_every=2, n_log=3)
    K0 = np.eye(4)
    with pytest.raises(ValueError, match="K0 must be a non-empty square"):
        ntk.linearised(np.ones((4, 3)), y, y, [1.0])
    with pytest.raises(ValueError, match="h0 must have shape"):
        ntk.linearised(K0, y[:3], y, [1.0])
    with pytest.raises(ValueError, match="s must be"):
        ntk.linearised(K0, y, y, [-1.0])
    with pytest.raises(ValueError, match="both K0_test and h0_test"):
        ntk.linearised(K0, y, y, [1.0], K0_test=np.ones((2, 4)))
    with pytest.raises(ValueError, match="K0_test must have shape"):
        ntk.linearised(K0, y, y, [1.0], K0_test=np.ones((2, 3)), h0_test=np.ones(2))
    with pytest.raises(ValueError, match="multiple of ds"):
        ntk.linearised(K0, y, y, [0.3], ds=0.25)
    with pytest.raises(ValueError, match="X_test must have d"):
        ntk.ntk_predictor(X, y, np.ones((2, 2)))
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        ntk.ntk_predictor(X, y, X, ridge=-1.0)
    with pytest.raises(ValueError, match="delta must be < 1"):
        ntk.width_condition(10, 2, 0.1, 0.5, delta=1.0)
    with pytest.raises(ValueError, match="lambda_S must be > 0"):
        ntk.width_condition(10, 2, 0.0, 0.5)


def test_sweep_widths_summarises_train():
    X, y = _circle(10)
    sw = ntk.sweep_widths(X, y, [20, 80], "ntk", ds=0.5, steps=30, seeds=2, seed=3, n_log=4)
    assert sw.N.tolist() == [20, 80] and sw.risk.shape == sw.risk_lin.shape == (2, sw.s.size)
    mw, dKa = [], []
    for j in range(2):                                   # the same runs, by hand
        a0, W0 = ntk.init(20, 3, np.random.default_rng([3, 20, j]))
        r = ntk.train(X, y, a0, W0, "ntk", ds=0.5, steps=30, n_log=4)
        mw.append(r.move_w[-1])
        dKa.append(np.linalg.norm(ntk.empirical_ntk(X, r.a_bar, r.W).Ka - ntk.empirical_ntk(X, a0, W0).Ka))
        if j == 0:
            assert np.array_equal(r.h, sw.runs[0].h) and np.array_equal(sw.init[0][1], W0)
            lin = ntk.linearised(ntk.empirical_ntk(X, a0, W0).K, r.h[0], y, r.s, ds=0.5).train
            assert np.allclose(sw.risk_lin[0], 0.5 * np.mean((lin - y) ** 2, axis=1))
            assert sw.lin_gap[0] >= 0 and sw.risk_lin[0, 0] == pytest.approx(sw.risk[0, 0])
    assert sw.move_w[0] == pytest.approx(np.mean(mw)) and sw.dKa[0] == pytest.approx(np.mean(dKa))
    for bad in ([], [0, 10], [1.5, 3.0], [[10]]):
        with pytest.raises(ValueError, match="Ns must be"):
            ntk.sweep_widths(X, y, bad)
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        ntk.sweep_widths(X, y, [10], seeds=0)


def test_lambda_min_fluctuations():
    X = datasets.sphere(8, 4, np.random.default_rng(0))
    L = ntk.lambda_min_fluctuations(X, [4, 50, 2000], draws=10, seed=1)
    assert L.lam_S == pytest.approx(ntk.lambda_min(mf.kernels.relu_kernel(X)))
    assert L.bias[0] == pytest.approx(-L.lam_S) and L.std[0] < 1e-12 * L.lam_S   # rank <= N < n
    assert np.all(L.bias < SIGMAS * L.std / np.sqrt(10))            # Jensen: E lambda_hat <= lambda_S
    assert L.bias[1] < -SIGMAS * L.std[1] / np.sqrt(10)               # ... and visibly so at N = 50
    assert abs(L.bias[-1]) < abs(L.bias[1]) and L.std[-1] < L.std[1]
    lam = [ntk.lambda_min(ntk.empirical_ntk(X, *ntk.init(50, 4, np.random.default_rng([1, 50, j])),
                                            trained="a").Ka) for j in range(10)]
    assert L.bias[1] == pytest.approx(np.mean(lam) - L.lam_S)
    assert L.std[1] == pytest.approx(np.std(lam, ddof=1))
    Lb = ntk.lambda_min_fluctuations(X, [50], draws=3, trained="a_bar")
    assert Lb.lam_S == pytest.approx(ntk.lambda_min(mf.kernels.ntk_kernel(X)))
    with pytest.raises(ValueError, match="draws must be >= 2"):
        ntk.lambda_min_fluctuations(X, [10], draws=1)
    with pytest.raises(ValueError, match="Ns must be"):
        ntk.lambda_min_fluctuations(X, [0])
    with pytest.raises(ValueError, match="trained"):
        ntk.lambda_min_fluctuations(X, [10], trained="w")


def test_generalisation_curve():
    def link(z):
        return np.maximum(z, 0.0)

    G = ntk.generalisation_curve(link, 4, [8, 16], N=16, ds=0.5, steps=20, seeds=2, n_test=50, seed=2)
    assert G.mean_field.shape == G.ntk.shape == G.alignment.shape == G.train_error.shape == (2, 2)
    assert np.all(G.mean_field > 0) and np.all(G.ntk > 0) and np.all((G.alignment > 0) & (G.alignment <= 1))
    # the NTK entry is the kernel predictor on the same data
    rng = np.random.default_rng([2, 1, 8, 0])
    X = datasets.sphere(8, 4, rng)
    Xt = datasets.sphere(50, 4, np.random.default_rng([2, 0]))
    u = np.eye(4)[0]
    y, yt = link(2.0 * X @ u), link(2.0 * Xt @ u)
    f = ntk.ntk_predictor(X, y, Xt)
    assert G.ntk[0, 0] == pytest.approx(np.sum((f - yt) ** 2) / np.sum(yt**2))
    with pytest.raises(TypeError, match="link must be a callable"):
        ntk.generalisation_curve(3.0, 4, [8])
    with pytest.raises(ValueError, match="ns must be"):
        ntk.generalisation_curve(link, 4, [0, 8])
    with pytest.raises(ValueError, match="N must be >= 1"):
        ntk.generalisation_curve(link, 4, [8], N=0)


def _psd_with_spectrum(lams, rng):
    Q, _ = np.linalg.qr(rng.standard_normal((len(lams), len(lams))))
    return (Q * np.asarray(lams)) @ Q.T


@pytest.mark.parametrize("tiny", [0.0, 1e-17, -1e-17, 1e-13, 1e-10, 1e-7])
@pytest.mark.parametrize("ds", [None, 0.25])
def test_linearised_small_eigenvalues_against_van_loan(tiny, ds):
    """Oracle without diagonalisation: the flow's phi(K) = int_0^s e^{-K u/n} du / n is the top-right
    block of expm([[-K/n, I/n], [0, 0]] s) (Van Loan 1978); gradient descent's is the exact sum
    sum_{j<k} (I - K h)^j h of matrix powers. Tolerance 1e-9 for eigenvalues from exactly 0 through
    +-round-off to small resolvable ones (the naive (1 - e^{-lam s/n})/lam is O(1) wrong at +1e-17)."""
    from scipy.linalg import expm
    rng = np.random.default_rng(11)
    n, m = 7, 3
    K0 = _psd_with_spectrum([tiny, 1e-13, 1e-10, 1e-7, 0.3, 1.0, 2.5], rng)
    K0 = 0.5 * (K0 + K0.T)
    Kx = rng.standard_normal((m, n))
    h0, y, hx0 = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(m)
    s = np.array([0.0, 0.5, 3.0, 40.0])
    lin = ntk.linearised(K0, h0, y, s, K0_test=Kx, h0_test=hx0, ds=ds)
    I, Z = np.eye(n), np.zeros((n, n))
    for i, si in enumerate(s):
        if ds is None:
            E = expm(np.block([[-K0 / n, I / n], [Z, Z]]) * si)
            decay, phi = E[:n, :n], E[:n, n:]
        else:
            h, P, phi = ds / n, np.eye(n), np.zeros((n, n))
            for _ in range(int(round(si / ds))):
                phi += P * h
                P = P @ (I - h * K0)
            decay = P
        r0 = h0 - y
        np.testing.assert_allclose(lin.train[i], y + decay @ r0, rtol=0, atol=1e-9)
        np.testing.assert_allclose(lin.test[i], hx0 - Kx @ (phi @ r0), rtol=0, atol=1e-9)


def test_linearised_rejects_indefinite_kernel():
    with pytest.raises(ValueError, match="positive semi-definite"):
        ntk.linearised(np.diag([1.0, -0.5]), np.zeros(2), np.ones(2), [1.0])


def test_linear_convergence_rate_is_lambda_min_at_large_width():
    """The lecture's flow on well-conditioned data: at N >> n the measured late-time rate is
    lambda_min of the (nearly frozen) Gram matrix, the bound exp(-lambda_S s/n) holds, and
    lambda_min(K(0)) is close to lambda_S."""
    rng = np.random.default_rng(0)
    X = datasets.sphere(6, 6, rng)
    y = rng.standard_normal(6)
    L = ntk.linear_convergence(X, y, [2000], seeds=2, ds=2.0, steps=600, n_records=31)
    assert L.lam_S == pytest.approx(ntk.lambda_min(mf.kernels.relu_kernel(X)))
    assert L.risk.shape == (1, 2, L.s.size) and L.s[-1] == pytest.approx(1200.0)
    assert np.all(L.bound)
    assert np.allclose(L.lamT, L.lam0, rtol=1e-2)                   # lazy: the kernel stays put
    assert np.all(np.abs(L.lam0 / L.lam_S - 1) < 0.2)
    ratio = L.rate / L.lamT
    assert np.all((ratio > 0.999) & (ratio < 1.05)), ratio            # slowest mode, from above
    again = ntk.linear_convergence(X, y, [2000], seeds=2, ds=2.0, steps=600, n_records=31)
    assert np.array_equal(again.risk, L.risk)


def test_linear_convergence_rate_of_a_single_mode():
    """With the time step the rate inverts exactly: a network whose residual decays by a constant
    factor per step is read as the eigenvalue (n/ds)(1 - sqrt(q)); check against GD on the
    linearised model with the empirical kernel of a very wide network."""
    rng = np.random.default_rng(1)
    X = datasets.sphere(4, 5, rng)
    y = rng.standard_normal(4)
    L = ntk.linear_convergence(X, y, [4000], seeds=2, ds=1.5, steps=300, n_records=21)
    a0, W0 = ntk.init(4000, 5, np.random.default_rng([0, 4000, 0]))
    E = ntk.empirical_ntk(X, a0, W0, "ntk", "a").K
    lin = ntk.linearised(E, ntk.output(X, a0, W0), y, L.s, ds=1.5)
    risk_lin = 0.5 * np.mean((lin.train - y) ** 2, axis=1)
    assert np.allclose(L.risk[0, 0], risk_lin, rtol=2e-2)
    assert L.rate[0, 0] == pytest.approx(ntk.lambda_min(E), rel=1e-4)   # R_S falls 1e-18


def test_sweep_widths_keeps_replicates():
    X, y = _circle(12)
    sw = ntk.sweep_widths(X, y, [20, 40], "ntk", steps=20, seeds=3, n_log=4)
    for k, v in sw.replicates.items():
        assert v.shape == (2, 3)
        assert np.allclose(getattr(sw, k), v.mean(axis=1))
    assert len(set(np.round(sw.replicates["rms_w"][0], 12))) == 3   # independent initialisations


def test_generalisation_curve_with_bias():
    link = np.tanh
    G = ntk.generalisation_curve(link, 3, [8], N=6, steps=5, n_test=20, bias=True)
    H = ntk.generalisation_curve(link, 3, [8], N=6, steps=5, n_test=20)
    assert G.mean_field.shape == (1, 1) and np.all(np.isfinite(G.ntk))
    assert not np.allclose(G.ntk, H.ntk)                             # the lifted kernel differs
    with pytest.raises(TypeError, match="bias"):
        ntk.generalisation_curve(link, 3, [8], N=6, steps=5, n_test=20, bias="yes")
