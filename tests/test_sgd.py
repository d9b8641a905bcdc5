"""Tests of mflib.sgd: the fast engine against the plain reference loop, the SGD drift against
-eps grad Psi, the Langevin noise's law, the records, determinism, divergence and input checks.

Monte Carlo tolerances are 5 standard errors estimated from the samples themselves.
"""

import numpy as np
import pytest

import mflib as mf
from mflib import sgd

D, S0, N = 10, 3, 16


@pytest.fixture(scope="module")
def problem():
    return mf.problems.AnisotropicGaussians(D, S0, 0.5)


@pytest.fixture(scope="module")
def W0():
    return np.random.default_rng(1).standard_normal((N, D)) * 0.8 / np.sqrt(D)


# ---------------------------------------------------------------------------------------------
# The fast engine follows the reference loop on the same random stream.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(),
    dict(batch=4),
    dict(batch=3),                          # 3 does not divide CHUNK: batches straddle chunks
    dict(lam=0.3),
    dict(batch=4, lam=0.3),                 # two steps per sub-block of the kernel, with ridge
    dict(batch=3, lam=0.3),                 # sub-blocks of 6 rows (not the 8-row fast path)
    dict(beta=50.0),
    dict(batch=2, lam=0.2, beta=20.0),
], ids=["b1", "b4", "b3", "lam", "b4-lam", "b3-lam", "beta", "b2-lam-beta"])
def test_fast_matches_reference(problem, W0, kw):
    steps = 3000
    # With noise, pathwise agreement needs the per-step noise stream (the block engine is exact in
    # law only: test_block_noise_in_law).
    a = sgd.run(problem, W0, 0.05, steps, rng=np.random.default_rng(7), record_every=700,
                **kw, **(dict(_noise="step") if "beta" in kw else {}))
    b = sgd.run_reference(problem, W0, 0.05, steps, rng=np.random.default_rng(7), record_every=700,
                          **kw)
    assert np.abs(a.W - b.W).max() <= 1e-10
    assert np.abs(a.risk - b.risk).max() <= 1e-10
    np.testing.assert_array_equal(a.steps, b.steps)
    # The run moved: the comparison is not between two copies of W0.
    assert np.abs(a.W - W0).max() > 0.1


@pytest.mark.parametrize("activation, steps, batch", [
    ("tanh", 800, 2), ("sigmoid", 800, 2), ("truncated_relu", 800, 2), ("custom", 800, 2),
    ("relu", 2500, 4),     # 10^4 samples: three data chunks, drawn ahead by the helper thread
])
def test_fast_matches_reference_teacher_student(W0, activation, steps, batch):
    if activation == "custom":   # not a built-in: the NumPy fallback of the blocked scheme
        activation = mf.activations.Activation("softplus", lambda t: np.logaddexp(0.0, t),
                                               lambda t: 0.5 * (1.0 + np.tanh(t / 2)))
    rng = np.random.default_rng(3)
    teacher = mf.problems.TeacherStudent(rng.standard_normal((2, D)), noise_std=0.1,
                                         activation=activation)
    kw = dict(batch=batch, lam=0.1)
    a = sgd.run(teacher, W0, 0.1, steps, rng=np.random.default_rng(5), **kw)
    b = sgd.run_reference(teacher, W0, 0.1, steps, rng=np.random.default_rng(5), **kw)
    assert np.abs(a.W - b.W).max() <= 1e-10
    assert np.abs(a.W - W0).max() > 0.01


def test_fast_matches_reference_mmn():
    """Chapter 4's non-monotone activation on its compiled path: the same trajectory as the
    reference loop (d = s0 = 40, Delta = 0.8, kappa = 0.8, as the chapter's law of r), neurons
    crossing all three kinks."""
    p = mf.problems.AnisotropicGaussians(40, 40, 0.8, activation="mmn")
    W0 = p.init_weights(60, 0.8, np.random.default_rng(0))
    kw = dict(batch=2, lam=0.05)
    a = sgd.run(p, W0, 2e-4, 3000, rng=np.random.default_rng(5), **kw)
    b = sgd.run_reference(p, W0, 2e-4, 3000, rng=np.random.default_rng(5), **kw)
    assert np.abs(a.W - b.W).max() <= 1e-10
    r0, r1 = np.linalg.norm(W0, axis=1), np.linalg.norm(a.W, axis=1)
    assert np.abs(r1 - r0).max() > 0.05


@pytest.mark.parametrize("name", ["relu", "truncated_relu", "sigmoid", "tanh", "mmn"])
def test_compiled_activation_equals_numpy(name):
    """The compiled kernels' sigma and sigma' are the activation's own, on both sides of every
    kink and exactly at it (mmn: 0, 0.5, 1.5, where sigma' is one-sided)."""
    act = mf.activations.get(name)
    code = sgd._act_code(act)
    assert code != sgd._GENERIC
    kinks = [0.0, 0.5, 1.0, 1.5]
    t = np.concatenate([np.linspace(-3, 3, 601)] + [[k - 1e-12, k, k + 1e-12] for k in kinks])
    if name != "relu":      # ReLU's sums and coefficients are specialised, not scalar calls
        s = np.array([sgd._sigma_scalar(v, code) for v in t])
        np.testing.assert_allclose(s, act.sigma(t), rtol=1e-15, atol=1e-15)
    if name in ("truncated_relu", "mmn"):     # piecewise constant: exactly the same values
        ds = np.array([sgd._dsigma_scalar(v, code) for v in t])
        np.testing.assert_array_equal(ds, act.dsigma(t))
    elif name != "relu":                      # cosh(t)**2 against cosh(t) * cosh(t)
        ds = np.array([sgd._dsigma_scalar(v, code) for v in t])
        np.testing.assert_allclose(ds, act.dsigma(t), rtol=1e-14, atol=0)


def test_result_independent_of_block_and_records(problem, W0):
    ref = sgd.run(problem, W0, 0.05, 1000, rng=np.random.default_rng(2), record_risk=False)
    for kw in (dict(block=1), dict(block=7), dict(block=200), dict(n_log=15), dict(record_every=33)):
        out = sgd.run(problem, W0, 0.05, 1000, rng=np.random.default_rng(2), record_risk=False, **kw)
        assert np.abs(out.W - ref.W).max() <= 1e-12, kw


def test_float32_close_to_float64(problem, W0):
    """float32 round-off u = 6e-8 per operation; over S steps it accumulates like a random walk,
    sqrt(S) u |w| ~ 3e-6 |w| at S = 3000 (measured: 2.7e-7). The tolerance, 20 sqrt(S) u |w|,
    leaves room for the dynamics' amplification of perturbations but is 100 times smaller than
    the change of W over the run, so a float32 path that computed something else would fail."""
    steps = 3000
    a = sgd.run(problem, W0, 0.05, steps, rng=np.random.default_rng(7), record_every=500)
    b = sgd.run(problem, W0, 0.05, steps, rng=np.random.default_rng(7), record_every=500,
                dtype=np.float32)
    assert b.W.dtype == np.float32
    u = np.finfo(np.float32).eps
    tol = 20 * np.sqrt(steps) * u * np.abs(a.W).max()
    assert np.abs(a.W - b.W).max() <= tol
    assert np.abs(a.risk - b.risk).max() <= tol
    assert np.abs(a.W - W0).max() > 100 * tol


# ---------------------------------------------------------------------------------------------
# The law of one step: drift -eps grad Psi_lam, Langevin noise sqrt(2 eps / beta) g.
# ---------------------------------------------------------------------------------------------
def _one_step_increments(problem, W, eps, reps, **kw):
    return np.array([(sgd.run(problem, W, eps, 1, rng=np.random.default_rng(s), record_risk=False,
                              **kw).W - W) / eps for s in range(reps)])


@pytest.mark.parametrize("kw, reps", [(dict(), 2000), (dict(batch=16), 300),
                                      (dict(lam=0.7, beta=200.0), 1500)], ids=["b1", "b16", "lam-beta"])
def test_mean_drift_is_minus_grad_Psi(kw, reps):
    """E[(w' - w) / eps] = -grad Psi(w; rho_N) - lam w (exact for one step); mean over `reps`
    independent one-step runs from the same W, within 5 standard errors in every coordinate."""
    p = mf.problems.AnisotropicGaussians(4, 2, 0.6)
    W = np.random.default_rng(0).standard_normal((5, 4))
    inc = _one_step_increments(p, W, 0.1, reps, **kw)
    expected = -p.grad_Psi(W, W) - kw.get("lam", 0.0) * W
    se = inc.std(axis=0, ddof=1) / np.sqrt(reps)
    z = (inc.mean(axis=0) - expected) / se
    assert np.abs(z).max() < 5.0
    # Power: the drift is resolved (the test would see a wrong factor or sign).
    assert np.abs(expected / se).max() > 10.0


def test_noise_is_white_with_variance_2eps_over_beta():
    """Zero-signal setting: sigma = 0 (so no gradient), lam = 0. Then the increments are the noise
    alone, and must be i.i.d. N(0, 2 eps / beta) across neurons, coordinates and steps."""
    zero = mf.activations.Activation("zero", lambda t: 0.0 * t, lambda t: 0.0 * t)
    p = mf.problems.TeacherStudent(np.ones((1, 4)), activation=zero)
    eps, beta, steps = 0.01, 4.0, 2000
    W0 = np.zeros((3, 4))
    traj = sgd.run(p, W0, eps, steps, beta=beta, rng=np.random.default_rng(11), record_every=1,
                   snapshots=True, record_risk=False)
    inc = np.diff(traj.snapshots, axis=0).reshape(steps, -1)      # (steps, N * d)
    var = 2 * eps / beta
    n = inc.shape[0]
    # mean 0
    assert np.abs(inc.mean(axis=0)).max() < 5 * np.sqrt(var / n)
    # covariance across neurons and coordinates: var * I (entrywise SE var / sqrt(n), diag sqrt 2)
    C = inc.T @ inc / n
    off = C - np.diag(np.diag(C))
    assert np.abs(np.diag(C) - var).max() < 5 * var * np.sqrt(2 / n)
    assert np.abs(off).max() < 5 * var / np.sqrt(n)
    # independence across steps: lag-1 cross-covariance ~ 0
    L = inc[1:].T @ inc[:-1] / (n - 1)
    assert np.abs(L).max() < 5 * var / np.sqrt(n - 1)


# ---------------------------------------------------------------------------------------------
# Records, determinism, W0 untouched.
# ---------------------------------------------------------------------------------------------
def test_records(problem, W0):
    eps = 0.02
    traj = sgd.run(problem, W0, eps, 10, rng=np.random.default_rng(0), record_every=3, snapshots=True)
    np.testing.assert_array_equal(traj.steps, [0, 3, 6, 9, 10])
    assert traj.t[0] == 0.0 and traj.t[-1] == pytest.approx(10 * eps)
    np.testing.assert_allclose(traj.t, traj.steps * eps)
    assert traj.risk[0] == pytest.approx(problem.risk(W0), abs=1e-14)
    assert traj.risk[-1] == pytest.approx(problem.risk(traj.W), abs=1e-14)
    np.testing.assert_array_equal(traj.snapshots[0], W0)
    np.testing.assert_array_equal(traj.snapshots[-1], traj.W)
    assert traj.snapshots.shape == (5, N, D)
    log = sgd.run(problem, W0, eps, 1000, rng=np.random.default_rng(0), n_log=6)
    assert log.steps[0] == 0 and log.steps[-1] == 1000 and np.all(np.diff(log.steps) > 0)
    bar = sgd.run(problem, W0, eps, 100, rng=np.random.default_rng(0), progress=True)
    np.testing.assert_array_equal(bar.W, sgd.run(problem, W0, eps, 100, rng=np.random.default_rng(0)).W)
    zero = sgd.run(problem, W0, eps, 0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(zero.steps, [0])
    np.testing.assert_array_equal(zero.W, W0)


@pytest.mark.parametrize("kw", [dict(), dict(beta=10.0, lam=0.1), dict(dtype=np.float32)])
def test_W0_untouched_and_deterministic(problem, W0, kw):
    W0c = W0.copy()
    a = sgd.run(problem, W0, 0.05, 300, rng=np.random.default_rng(4), **kw)
    b = sgd.run(problem, W0, 0.05, 300, rng=np.random.default_rng(4), **kw)
    c = sgd.run(problem, W0, 0.05, 300, rng=np.random.default_rng(5), **kw)
    np.testing.assert_array_equal(W0, W0c)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.risk, b.risk)
    assert np.abs(a.W - c.W).max() > 1e-3
    assert a.W is not W0


# ---------------------------------------------------------------------------------------------
# Divergence and input checks.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", [sgd.run, sgd.run_reference])
@pytest.mark.parametrize("kw", [dict(), dict(beta=1.0)])
def test_divergence_names_step(problem, W0, engine, kw):
    with pytest.raises(mf.runs.DivergenceError, match=r"step \d+.*smaller eps"):
        with np.errstate(all="ignore"):
            engine(problem, W0, 100.0, 500, rng=np.random.default_rng(0), **kw)


@pytest.mark.parametrize("engine", [sgd.run, sgd.run_reference])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "truncated_relu", "relu"])
def test_divergence_of_bounded_activations_by_gain(engine, activation):
    """Issue 20: tanh at eps = 10 used to return normally (bounded activations cannot blow up:
    the weights are thrown into saturation). The steps' gain eps/B |x|^2 mean sigma'^2 is far
    above GAIN_MAX = 2: a DivergenceError at the first steps, with a suggested eps; at eps = 0.05
    (gain about 0.3) the same run goes through."""
    p = mf.problems.AnisotropicGaussians(6, 2, 0.5, activation=activation)
    W0 = 0.3 * np.random.default_rng(0).standard_normal((5, 6))
    with pytest.raises(mf.runs.DivergenceError, match="over-corrected") as e:
        engine(p, W0, eps=10.0, steps=2000, rng=np.random.default_rng(1), record_every=500)
    assert e.value.step < 10 and "e.g. 1" in e.value.advice
    tr = engine(p, W0, eps=0.05, steps=2000, rng=np.random.default_rng(1), record_every=500)
    assert np.all(np.isfinite(tr.risk))


def test_gain_average_and_threshold():
    """The gain check is an exponential average over GAIN_STEPS steps against GAIN_MAX: one step
    of gain 2 * GAIN_STEPS - 1 alone does not trip it, 2 * GAIN_STEPS + 1 does; a gain of 2.5
    held trips it after a few steps, 1.9 held never does."""
    for g, trips in ((2 * sgd.GAIN_STEPS - 1, False), (2 * sgd.GAIN_STEPS + 1, True)):
        assert sgd._gain_update(np.zeros(2), float(g)) is trips
    for g, trips in ((2.5, True), (1.9, False)):
        state = np.zeros(2)
        assert any(sgd._gain_update(state, g) for _ in range(200)) is trips


@pytest.mark.parametrize("kw, exc, word", [
    (dict(eps=0.0), ValueError, "eps"),
    (dict(eps=-1.0), ValueError, "eps"),
    (dict(steps=-1), ValueError, "steps"),
    (dict(lam=-0.1), ValueError, "lam"),
    (dict(beta=0.0), ValueError, "beta"),
    (dict(beta=-2.0), ValueError, "beta"),
    (dict(batch=0), ValueError, "batch"),
    (dict(W0=np.zeros((4, D + 1))), ValueError, "W0"),
    (dict(W0=np.zeros((0, D))), ValueError, "W0"),
    (dict(W0=np.zeros(D)), ValueError, "W0"),
    (dict(W0=np.full((4, D), np.nan)), ValueError, "W0"),
    (dict(rng=0), TypeError, "rng"),
    (dict(rng=np.random.RandomState(0)), TypeError, "rng"),
    (dict(steps=2.5), TypeError, "steps"),
    (dict(dtype=np.int32), ValueError, "dtype"),
    (dict(block=0), ValueError, "block"),
    (dict(threads=0), ValueError, "threads"),
    (dict(record_every=0), ValueError, "record_every"),
    (dict(record_every=2, n_log=3), ValueError, "record_every"),
])
def test_bad_inputs(problem, W0, kw, exc, word):
    args = dict(problem=problem, W0=W0, eps=0.1, steps=10, rng=np.random.default_rng(0)) | kw
    with pytest.raises(exc, match=word):
        sgd.run(**args)
    with pytest.raises(TypeError, match="problem"):
        sgd.run("not a problem", W0, 0.1, 10, rng=np.random.default_rng(0))
