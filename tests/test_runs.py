"""Tests for mflib.runs: the record grid, the recorder, DivergenceError, the BLAS thread limit."""

import pickle

import numpy as np
import pytest

from mflib import runs


# ---------------------------------------------------------------------------------------------
# record_grid
# ---------------------------------------------------------------------------------------------
def test_record_grid_every():
    np.testing.assert_array_equal(runs.record_grid(10, record_every=3), [0, 3, 6, 9, 10])
    np.testing.assert_array_equal(runs.record_grid(9, record_every=3), [0, 3, 6, 9])
    np.testing.assert_array_equal(runs.record_grid(7), [0, 7])          # default: ends only
    np.testing.assert_array_equal(runs.record_grid(0), [0])
    np.testing.assert_array_equal(runs.record_grid(5, record_every=100), [0, 5])


def test_record_grid_log_and_uniform():
    g = runs.record_grid(1000, n_log=4)
    np.testing.assert_array_equal(g, [0, 1, 10, 100, 1000])
    # n_records: uniform, rounded to the nearest step (the former hand-made grids of
    # pde.particle_flow, ReducedABW.run and sgd_abw)
    np.testing.assert_array_equal(runs.record_grid(10, n_records=4), [0, 3, 7, 10])
    np.testing.assert_array_equal(runs.record_grid(30, n_records=16), np.arange(0, 31, 2))
    np.testing.assert_array_equal(runs.record_grid(3, n_records=10), [0, 1, 2, 3])   # unique
    for steps in (0, 1, 17, 12345):
        for kw in (dict(record_every=7), dict(n_log=9), dict(n_records=9), {}):
            g = runs.record_grid(steps, **kw)
            assert g[0] == 0 and g[-1] == steps and np.all(np.diff(g) > 0), (steps, kw)


@pytest.mark.parametrize("kw, word", [
    (dict(record_every=2, n_log=3), "at most one"),
    (dict(n_log=3, n_records=4), "at most one"),
    (dict(record_every=0), "record_every"),
    (dict(n_log=1), "n_log"),
    (dict(n_records=1), "n_records"),
])
def test_record_grid_errors(kw, word):
    with pytest.raises(ValueError, match=word):
        runs.record_grid(10, **kw)
    with pytest.raises(ValueError, match="steps"):
        runs.record_grid(-1)


# ---------------------------------------------------------------------------------------------
# Recorder
# ---------------------------------------------------------------------------------------------
def _euler(grid, dt, x0=1.0, rate=-1.0, tick=True):
    """x' = rate x by explicit Euler, recorded on the grid with the loop shape of the module."""
    x = np.array([x0, 2 * x0])
    with runs.Recorder(grid, dt, progress=False) as rec:
        for k0, k1 in rec.spans():
            for _ in range(k0, k1):
                x = x + dt * rate * x
                if tick:
                    rec.tick()
            rec.check(x)
            rec.record(x=x, first=float(x[0]), none=None)
    return rec, x


def test_recorder_walks_the_grid_and_records():
    grid = runs.record_grid(20, record_every=6)
    rec, x = _euler(grid, 0.1)
    np.testing.assert_array_equal(rec.recorded, [0, 6, 12, 18, 20])
    np.testing.assert_array_equal(rec.steps, grid)
    np.testing.assert_allclose(rec.t, grid * 0.1)
    np.testing.assert_allclose(rec.array("first"), 0.9 ** grid, rtol=1e-14)
    assert rec.array("x").shape == (5, 2)
    np.testing.assert_array_equal(rec.array("x")[-1], x)
    assert rec.array("none") is None
    assert rec.list("first")[0] == 1.0
    # the same trajectory whatever the grid (records do not touch the state)
    _, x2 = _euler(runs.record_grid(20, n_log=5), 0.1, tick=False)
    np.testing.assert_array_equal(x, x2)


def test_recorder_copies_arrays_and_spans():
    grid = np.array([0, 2, 5])
    W = np.zeros(3)
    with runs.Recorder(grid, 0.5) as rec:
        spans = []
        for k0, k1 in rec.spans():
            spans.append((k0, k1))
            W += 1                      # in place: the records must be copies
            rec.record(W=W)
    assert spans == [(0, 0), (0, 2), (2, 5)]
    np.testing.assert_array_equal(rec.array("W")[:, 0], [1, 2, 3])
    assert rec.time(4) == 2.0


def test_recorder_nonuniform_times_and_errors():
    times = np.array([0.0, 0.1, 0.3, 0.35])
    with runs.Recorder([0, 2, 3], times=times) as rec:
        for _ in rec.spans():
            rec.record(v=1)
    np.testing.assert_array_equal(rec.t, [0.0, 0.3, 0.35])
    with pytest.raises(ValueError, match="grid"):
        runs.Recorder([1, 2])
    with pytest.raises(ValueError, match="grid"):
        runs.Recorder([0, 2, 2])
    with runs.Recorder([0, 1]) as rec, pytest.raises(RuntimeError, match="already recorded"):
        for _ in rec.spans():
            rec.record(v=1)
            rec.record(v=2)


def test_recorder_check_raises_divergence_error_naming_step_and_time():
    rec = runs.Recorder([0, 5, 10], dt=0.25, where="the test flow", advice="try a smaller dt")
    with rec:
        with pytest.raises(runs.DivergenceError) as info:
            for _, k1 in rec.spans():
                rec.check(np.array([1.0, np.inf if k1 == 5 else 0.0]))
    e = info.value
    assert (e.step, e.time, e.advice) == (5, 1.25, "try a smaller dt")
    assert "the test flow diverged at step 5 (t = 1.25)" in str(e)
    assert str(e).endswith("Try a smaller dt.")
    assert isinstance(e, FloatingPointError)          # old `except FloatingPointError` still works
    rec.check(np.array([1e3]), limit=1e4)             # within the limit
    with pytest.raises(runs.DivergenceError, match="step 7 .*exceeded 1e"):
        rec.check(np.array([1e5]), limit=1e4, step=7)
    with pytest.raises(runs.DivergenceError, match="exceeded"):
        rec.check(np.array([np.nan]), limit=1e4)


def test_divergence_error_pickles():
    e = runs.DivergenceError(3, 0.3, "reduce eps", what="boom", where="SGD")
    f = pickle.loads(pickle.dumps(e))
    assert type(f) is runs.DivergenceError
    assert (f.step, f.time, f.advice, f.what, f.where) == (3, 0.3, "reduce eps", "boom", "SGD")
    assert str(f) == str(e) == "SGD diverged at step 3 (t = 0.3): boom. Reduce eps."


def test_blas_threads():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas_threads()
    with runs.blas_threads(1):
        assert blas_threads() <= {1}
    assert blas_threads() == before
    with runs.blas_threads(None):
        assert blas_threads() == before
    with pytest.raises(ValueError, match="threads"):
        runs.blas_threads(0)


# ---------------------------------------------------------------------------------------------
# Every time-stepping routine raises the one DivergenceError on a diverging input
# ---------------------------------------------------------------------------------------------
def _sgd_case(engine):
    import mflib as mf
    p = mf.problems.AnisotropicGaussians(10, 4, 0.5)
    W0 = p.init_weights(20, 0.8, np.random.default_rng(0))
    return lambda: engine(p, W0, 100.0, 500, rng=np.random.default_rng(1)), "smaller eps"


def _ntk_case():
    from mflib import ntk
    rng = np.random.default_rng(1)
    X = rng.standard_normal((8, 3))
    a, W = ntk.init(10, 3, rng)
    return lambda: ntk.train(10 * X, np.sin(X[:, 0]), a, W, "ntk", ds=50.0, steps=400), "smaller ds"


def _grid_case():
    from mflib import pde, problems
    red = pde.ReducedAnisotropic(problems.AnisotropicGaussians(6, 3, 0.5), n_cos=(6, 6))
    R0, w0 = pde.gaussian_init(red, 1.0, 4)
    S = pde.GridSolver(red, h=0.1, r_max=(2.0, 1.6))
    return lambda: S.run(R0, w0, T=1000.0, dt=100.0), "smaller dt"


def _particle_case(scheme):
    from mflib import jko, problems
    p = problems.AnisotropicGaussians(3, 1, 0.5)
    W0 = 0.3 * np.random.default_rng(0).standard_normal((12, 3)) + [1.0, 0.0, 0.0]
    return lambda: jko.particle_flow(p, W0, 1e4, 50, scheme=scheme), "smaller tau"


def _reduced_flow_case():
    from mflib import pde, problems, reduced
    p = problems.AnisotropicGaussians(10, 10, 0.8)
    r0, q0 = pde.gaussian_init(pde.ReducedAnisotropic(p), 0.8, 20)
    P0 = np.stack([np.ones(20), np.zeros(20), r0[:, 0]], axis=1)
    return lambda: reduced.ReducedABW(p).run(P0, q0, T=1e6, dt=1e5), "smaller dt"


def _sgd_abw_case():
    from mflib import problems, reduced
    p = problems.AnisotropicGaussians(10, 4, 0.5)
    W0 = p.init_weights(20, 0.8, np.random.default_rng(0))
    return (lambda: reduced.sgd_abw(p, np.ones(20), np.zeros(20), W0, eps=1e3, steps=5000,
                                    rng=np.random.default_rng(1), n_records=3,
                                    record_risk=False), "smaller eps")


def _chaos_sgd_case():
    from mflib import chaos, datasets
    X, y = datasets.synthetic_1d(8)
    W0 = np.random.default_rng(0).standard_normal((5, 2))
    return (lambda: chaos.sgd(W0, X, y, base_step=1e6, width_exponent=1.0, steps=600,
                              rng=np.random.default_rng(1)), "smaller base_step")


def _chaos_coupled_case():
    from mflib import chaos, datasets
    X, y = datasets.synthetic_1d(8)
    W0 = np.random.default_rng(0).standard_normal((16, 2))
    return (lambda: chaos.coupled(W0, [4], 2, X, y, base_step=1.0, width_exponent=1.0, T=1e6,
                                  dt=1e4, activation="relu", rng=np.random.default_rng(1)),
            "smaller dt")


@pytest.mark.parametrize("case", [
    "sgd.run", "sgd.run_reference", "ntk.train", "pde.GridSolver.run",
    "jko.particle_flow(explicit)", "jko.particle_flow(heun)", "reduced.ReducedABW.run",
    "reduced.sgd_abw", "chaos.sgd", "chaos.coupled"])
def test_every_routine_raises_divergence_error_naming_step_time_and_advice(case):
    # (The implicit schemes, jko.particle_flow(scheme="implicit") and jko.fokker_planck_1d, and
    # FokkerPlanck1D.run's steps at the positivity limit do not blow up: their failure mode is a
    # ConvergenceError of the inner solver. They check their state all the same.)
    from mflib import sgd
    make = {
        "sgd.run": lambda: _sgd_case(sgd.run),
        "sgd.run_reference": lambda: _sgd_case(sgd.run_reference),
        "ntk.train": _ntk_case,
        "pde.GridSolver.run": _grid_case,
        "jko.particle_flow(explicit)": lambda: _particle_case("explicit"),
        "jko.particle_flow(heun)": lambda: _particle_case("heun"),
        "reduced.ReducedABW.run": _reduced_flow_case,
        "reduced.sgd_abw": _sgd_abw_case,
        "chaos.sgd": _chaos_sgd_case,
        "chaos.coupled": _chaos_coupled_case,
    }[case]
    call, advice = make()
    with np.errstate(all="ignore"), pytest.raises(runs.DivergenceError) as info:
        call()
    e = info.value
    assert isinstance(e, FloatingPointError)
    assert e.step >= 1 and np.isfinite(e.time) and e.time > 0
    assert advice in e.advice
    assert f"diverged at step {e.step} (t = " in str(e) and advice in str(e)
