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
