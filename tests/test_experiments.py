"""mflib.experiments: sweeps on a real dask.distributed LocalCluster (2 worker processes), results
that survive killed workers, killed runs and damaged files, and equal a serial run bit for bit."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mflib import experiments as ex

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        yield c


def _log(store: Path) -> list[list[str]]:
    """tasks.log as [event, key, host, pid, ...] rows."""
    path = store / "tasks.log"
    if not path.exists():
        return []
    return [line.split()[1:] for line in path.read_text().splitlines() if line.strip()]


def _reference(name, recs):
    return [ex.compute(name, r) for r in recs]


def _assert_store_equals(name, recs, store, reference):
    for rec, ref in zip(recs, reference, strict=True):
        arrays, meta = ex.read_result(store, ex.task_key(name, rec))
        assert meta["record"] == ex._canonical_record(rec)
        assert arrays.keys() == ref.keys()
        for k in ref:
            np.testing.assert_array_equal(arrays[k], ref[k], err_msg=k)


# ----------------------------------------------------------------------------------------------
def test_keys_records_and_store(tmp_path):
    rec = {"n": 10, "sigma": 1.0, "seed": 3}
    key = ex.task_key("synthetic", rec)
    assert len(key) == 32 and key == ex.task_key("synthetic", dict(reversed(list(rec.items()))))
    assert key == ex.task_key("synthetic", {"n": np.int64(10), "sigma": np.float64(1.0), "seed": 3})
    assert key != ex.task_key("synthetic", dict(rec, seed=4))
    assert key != ex.task_key("synthetic-slow", rec)          # the sweep name is part of the key
    with pytest.raises(ValueError, match="seed"):
        ex.task_key("synthetic", {"n": 10})
    with pytest.raises(ValueError, match="registered sweep"):
        ex.get("no-such-sweep")
    with pytest.raises(TypeError, match="JSON scalar"):
        ex.task_key("synthetic", dict(rec, n=[1, 2]))
    arrays = ex.compute("synthetic", rec)
    path = ex.write_result(tmp_path, key, arrays, {"note": "x"})
    assert path == tmp_path / "tasks" / f"{key}.npz" and not list(path.parent.glob(".tmp-*"))
    back, meta = ex.read_result(tmp_path, key)
    assert meta["key"] == key and meta["note"] == "x" and back.keys() == arrays.keys()
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
    # seeds: same record, same result; another seed, another sample
    np.testing.assert_array_equal(ex.compute("synthetic", rec)["hist"], arrays["hist"])
    assert ex.compute("synthetic", dict(rec, seed=4))["mean"] != arrays["mean"]
    assert ex._parse_only("0,3,5-7", 10) == [0, 3, 5, 6, 7]
    with pytest.raises(ValueError, match="only"):
        ex._parse_only("9-10", 10)


def test_sweep_on_cluster_matches_serial_and_reruns_nothing(tmp_path, client):
    recs = ex.records("synthetic", "small")
    s = ex.run("synthetic", "small", results=tmp_path / "dask", client=client)
    assert s.complete and s.computed == len(recs) == 6 and s.already_done == 0
    assert s.dataset == tmp_path / "dask" / "synthetic" / "synthetic-small.nc" and s.dataset.exists()
    serial = ex.run("synthetic", "small", results=tmp_path / "serial", serial=True)
    assert serial.complete and serial.computed == 6
    store = tmp_path / "dask" / "synthetic"
    _assert_store_equals("synthetic", recs, store, _reference("synthetic", recs))
    a = ex.load("synthetic", "small", results=tmp_path / "dask")
    b = ex.load("synthetic", "small", results=tmp_path / "serial")
    assert dict(a.sizes) == {"sigma": 3, "seed": 2, "bin": 8, "step": 5}
    assert a.attrs["n"] == 1000 and a.attrs["scale"] == "small" and bool(a["done"].all())
    assert a.drop_vars("elapsed_s").identical(b.drop_vars("elapsed_s").assign_attrs(a.attrs))
    x = ex.compute("synthetic", {"n": 1000, "sigma": 2.0, "seed": 1})
    assert float(a["mean"].sel(sigma=2.0, seed=1)) == x["mean"]
    # a second run finds everything stored and starts nothing
    n_log = len(_log(store))
    again = ex.run("synthetic", "small", results=tmp_path / "dask", client=client)
    assert again.complete and again.computed == 0 and again.already_done == 6
    assert len(_log(store)) == n_log


def test_killed_worker_loses_nothing(tmp_path, client):
    recs = ex.records("synthetic-slow", "small")             # 6 tasks sleeping 0.4 s
    store = tmp_path / "synthetic-slow"
    pids = set(client.run(os.getpid).values())
    out = {}
    th = threading.Thread(target=lambda: out.update(s=ex.run("synthetic-slow", "small", results=tmp_path,
                                                              client=client)))
    th.start()
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        started = [row for row in _log(store) if row[0] == "start"]
        if started:
            victim = (started[0][1], int(started[0][3]))
        else:
            time.sleep(0.02)
    assert victim is not None, "no task started"
    key, pid = victim
    assert pid in pids and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)                              # mid-task: it sleeps 0.4 s
    th.join(60)
    assert not th.is_alive()
    s = out["s"]
    assert s.complete and not s.failed and s.computed == 6
    rows = _log(store)
    assert ["done", key] not in [r[:2] for r in rows if int(r[3]) == pid]   # the killed attempt
    assert sum(r[:2] == ["start", key] for r in rows) == 2                  # ... was re-run
    _assert_store_equals("synthetic-slow", recs, store, _reference("synthetic", recs))


def test_interrupted_run_resumes_without_recomputation(tmp_path, client):
    psutil = pytest.importorskip("psutil")
    recs = ex.records("synthetic-slow", "paper")             # 20 tasks sleeping 0.4 s
    store = tmp_path / "synthetic-slow"
    tasks = store / "tasks"
    env = dict(os.environ, MFLIB_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "mflib.experiments", "run", "synthetic-slow",
                             "--scale", "paper", "--workers", "2", "--results", str(tmp_path)],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(_results(tasks)) < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                   # the run and its worker processes
        proc.wait(10)
    # nothing of the killed run survives to write more results
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == proc.pid]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive
    # (a writer killed mid-write leaves a .tmp-*.npz, which is never read as a result)
    finished = {p.stem: (p.stat().st_ino, p.stat().st_mtime_ns) for p in _results(tasks)}
    k = len(finished)
    assert 4 <= k < len(recs)
    n_log = len(_log(store))
    s = ex.run("synthetic-slow", "paper", results=tmp_path, client=client)
    assert s.complete and s.already_done == k and s.computed == len(recs) - k
    started = [r[1] for r in _log(store)[n_log:] if r[0] == "start"]
    assert len(started) == len(recs) - k and not set(started) & set(finished)
    for key, stamp in finished.items():                      # untouched files
        p = tasks / f"{key}.npz"
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp
    _assert_store_equals("synthetic-slow", recs, store, _reference("synthetic", recs))
    assert ex.load("synthetic-slow", "paper", results=tmp_path)["done"].all()


def _results(tasks: Path) -> list[Path]:
    return [p for p in tasks.glob("*.npz") if not p.name.startswith(".")]


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_corrupt_and_truncated_results_are_recomputed(tmp_path, client, capsys):
    recs = ex.records("synthetic", "small")
    ex.run("synthetic", "small", results=tmp_path, serial=True)
    store = tmp_path / "synthetic"
    paths = [ex._task_file(store, ex.task_key("synthetic", r)) for r in recs]
    # 0: truncated (a writer killed without the atomic rename would leave this)
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])
    # 1: loads, but an array was changed after the checksum was taken
    arrays, meta = ex.read_result(store, paths[1].stem)
    arrays["mean"] = arrays["mean"] + 1.0
    np.savez(paths[1], **arrays, __meta__=np.array(ex._canonical_json(meta)))
    # 2: garbage; 3: another task's (valid) file under this key
    paths[2].write_bytes(b"not a result")
    paths[3].write_bytes(paths[4].read_bytes())
    for i in range(4):
        with pytest.raises(ex.CorruptResult):
            ex.read_result(store, paths[i].stem)
    st = ex.status("synthetic", "small", results=tmp_path)
    assert st["done"] == 2 and st["corrupt"] == [0, 1, 2, 3]
    assert ex.main(["status", "synthetic", "--scale", "small", "--results", str(tmp_path)]) == 1
    assert "corrupt" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError):                  # never read as results
        ex.assemble("synthetic", recs, store)
    s = ex.run("synthetic", "small", results=tmp_path, client=client)
    assert s.complete and s.computed == 4 and sorted(s.corrupt) == [0, 1, 2, 3]
    _assert_store_equals("synthetic", recs, store, _reference("synthetic", recs))


def test_cli_list_status_run(tmp_path, capsys):
    assert ex.main(["list"]) == 0
    assert "chaos-paper" in capsys.readouterr().out
    args = ["--scale", "small", "--results", str(tmp_path)]
    assert ex.main(["status", "synthetic", *args]) == 1
    out = capsys.readouterr().out
    assert "0/6 done" in out and "missing: 6 (indices 0-5)" in out
    assert ex.main(["run", "synthetic", *args, "--serial", "--only", "1,3"]) == 0
    assert "2/2 done" in capsys.readouterr().out
    assert ex.main(["status", "synthetic", *args]) == 1
    assert "missing: 4 (indices 0,2,4-5)" in capsys.readouterr().out
    assert ex.main(["run", "synthetic", *args, "--serial"]) == 0
    out = capsys.readouterr().out
    assert "6/6 done (2 already stored, 4 computed" in out and "synthetic-small.nc" in out
    assert ex.main(["status", "synthetic", *args]) == 0
    # MFLIB_RESULTS is the default root
    env = dict(os.environ, MFLIB_RESULTS=str(tmp_path), MFLIB_PROGRESS="0")
    r = subprocess.run([sys.executable, "-m", "mflib.experiments", "status", "synthetic", "--scale",
                        "small"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "6/6 done" in r.stdout


def test_slurm_job_script_is_generated_without_submitting():
    pytest.importorskip("dask_jobqueue")
    cluster = ex.slurm_cluster(cores=4, memory="16GB", walltime="02:30:00", queue="short",
                               account="myproject", job_extra_directives=["--exclusive"],
                               scheduler_options={"dashboard_address": ":0"})
    try:
        script = cluster.job_script()
        assert len(cluster.workers) == 0                   # nothing submitted
    finally:
        cluster.close()
    lines = script.splitlines()
    for want in ["#SBATCH -p short", "#SBATCH -A myproject", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=15G", "#SBATCH -t 02:30:00", "#SBATCH --exclusive"]:
        assert want in lines, (want, script)
    assert "--nworkers 4" in script and "--nthreads 1" in script and "--memory-limit 3.73GiB" in script


def test_chaos_paper_grids_and_task():
    small, paper = ex.records("chaos-paper", "small"), ex.records("chaos-paper", "paper")
    assert len(small) == 18 and len(paper) == 54
    assert sorted({r["N"] for r in paper}) == [100, 500, 1000, 5000, 10000, 50000]
    assert {r["width_exponent"] for r in paper} == {0.5, 0.75, 1.0}
    assert {(r["T"], r["M"], r["base_step"], r["alpha"], r["data"]) for r in paper} == {
        (100.0, 100, 1.0, 0.0, "mnist")}
    # one small task on scikit-learn's digits (no download): shapes, ranges, determinism
    rec = dict(small[0], N=6, T=8.0, M=20, data="digits", quantiles=4, fine_quantiles=8)
    out = ex.compute("chaos-paper", rec)
    assert out["q_all"].shape == (4, 640) and out["q_shown"].shape == (8, 4)
    assert int(out["n_steps"]) == int(np.floor(8.0 * np.sqrt(6)))      # T / N^(width_exponent - 1)
    assert np.all(np.diff(out["q_all"], axis=0) >= 0)
    for k in ("acc_train", "acc_test", "acc_train_avg", "acc_test_avg"):
        assert 0.0 <= out[k] <= 1.0
    assert out["acc_test"] > 0.8                              # 19 steps: chance is 0.1
    again = ex.compute("chaos-paper", rec)
    for k in out:
        np.testing.assert_array_equal(again[k], out[k])


def test_marginal_w2_matches_exact_for_equal_sizes():
    from mflib import transport

    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((64, 3)), 1.5 + 2 * rng.standard_normal((64, 3))
    qa = ex._quantiles_sorted(np.sort(A, axis=0), 64)
    qb = ex._quantiles_sorted(np.sort(B, axis=0), 64)
    np.testing.assert_allclose(ex.marginal_w2(qa, qb), transport.w2_coordinates(A, B), rtol=1e-12)


def test_chaos_mnist_grid_and_task():
    small = ex.records("chaos-mnist", "small")
    groups = [r["group"] for r in small]
    assert {g: groups.count(g) for g in set(groups)} == {
        "widths": 12, "streams": 3, "inits": 2, "gamma": 2, "lownoise": 5, "table": 25}
    assert len({ex.task_key("chaos-mnist", r) for r in small}) == len(small)   # no duplicate task
    table = [r for r in small if r["group"] == "table"]
    assert {(r["seed"], r["stream"]) for r in table} == {(s, s) for s in range(5)}   # paired seeds
    # stream == seed is chaos-paper's task: same run, same summaries (digits, no download)
    paper_rec = dict(ex.records("chaos-paper", "small")[0], N=6, T=8.0, M=20, data="digits",
                     quantiles=4, fine_quantiles=8)
    rec = dict(small[0], N=6, T=8.0, M=20, data="digits", quantiles=4, fine_quantiles=8,
               width_exponent=paper_rec["width_exponent"], eval_train=True)
    a, b = ex.compute("chaos-mnist", rec), ex.compute("chaos-paper", paper_rec)
    for k in ("acc_test", "acc_train_avg", "n_steps", "q_shown", "move_sq"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["q_lattice"].shape == (4, 250) and a["correct_test"].shape == (359,)
    assert a["correct_test"].mean() == a["acc_test"]
    # another batch stream changes the run, not the initial weights' summary at T = 0
    other = ex.compute("chaos-mnist", dict(rec, stream=1, eval_train=False))
    assert not np.array_equal(other["q_shown"], a["q_shown"]) and np.isnan(other["acc_train"])


def test_chaos_mnist_wide_continues_the_small_widths():
    """chaos-mnist-wide is chaos-mnist's widths group (same base record) at larger N only, so the
    chapter can put both files on one width axis; chaos-mnist's own records are untouched."""
    small = [r for r in ex.records("chaos-mnist", "small") if r["group"] == "widths"]
    wide = ex.records("chaos-mnist-wide", "small")
    assert sorted({r["N"] for r in small}) == [100, 250, 700, 2000]
    assert sorted((r["N"], r["width_exponent"]) for r in wide if r["group"] == "widths") == [
        (N, b) for N in (5000, 10000) for b in (0.5, 0.75, 1.0)]
    strip = [{k: v for k, v in r.items() if k != "N"} for r in small]
    assert all({k: v for k, v in r.items() if k != "N"} in strip
               for r in wide if r["group"] == "widths")
    # beta = 1 replicates: chaos-mnist's inits (seed 1) and streams (stream 1) runs at N = 2000,
    # continued to 5000 and 10^4 with nothing else changed
    reps = [r for r in wide if r["group"] != "widths"]
    assert sorted((r["group"], r["N"]) for r in reps) == [
        (g, N) for g in ("inits", "streams") for N in (5000, 10000)]
    controls = [{k: v for k, v in r.items() if k != "N"}
                for r in ex.records("chaos-mnist", "small")
                if r["group"] in ("inits", "streams") and r["width_exponent"] == 1.0]
    assert len(controls) == 2
    assert all({k: v for k, v in r.items() if k != "N"} in controls for r in reps)
    assert len({ex.task_key("chaos-mnist-wide", r) for r in wide}) == len(wide) == 10
    paper = ex.records("chaos-mnist-wide", "paper")
    assert sorted({r["N"] for r in paper}) == [5000, 10000, 20000, 50000]
    assert all(r["T"] == 10.0 for r in paper)
    assert ex.get("chaos-mnist-wide").task is ex.get("chaos-mnist").task


@pytest.mark.parametrize("name", ["chaos-mnist", "chaos-mnist-wide", "chaos-mnist-50k",
                                  "chaos-mnist-t100"])
def test_book_copies_are_the_current_grids(name):
    """Chapter 7 reads book/data copies of the small sweeps: each must hold exactly the records of
    the registered small grid at the current code version (a changed grid or task version makes
    the copy stale, and this fails until the sweep is rerun and copied)."""
    path = Path(__file__).resolve().parent.parent / "book" / "data" / f"{name}-small.nc"
    ds = ex.load(str(path))
    sweep = ex.get(name)
    assert ds.attrs["keys_sha256"] == ex._keys_digest(sweep, ex.records(name, "small"))
    assert int(ds.attrs["tasks_done"]) == int(ds.attrs["tasks_total"]) == ds.sizes["task"]
    for key in ("command_line", "wall_clock", "machine", "cpu_user_s"):
        assert key in ds.attrs, key


def test_chaos_mnist_50k_continues_the_wide_series():
    """chaos-mnist-50k is chaos-mnist-wide's records at N = 50,000 (same task, base record and
    draws), so its runs extend the same nested series."""
    wide = [dict(r, N=50000) for r in ex.records("chaos-mnist-wide", "small") if r["N"] == 10000]
    big = ex.records("chaos-mnist-50k", "small")
    assert all(r in wide for r in big) and len(big) == 5
    assert {r["width_exponent"] for r in big if r["group"] == "widths"} == {0.5, 0.75, 1.0}
    assert ex.records("chaos-mnist-50k", "paper") == big
    assert ex.get("chaos-mnist-50k").task is ex.get("chaos-mnist").task


def test_chaos_mnist_t100_is_the_series_at_the_papers_horizon():
    """chaos-mnist-t100 is chaos-mnist's records (same task, base record, draws) with T = 100: the
    widths series for every beta up to 10^4 and at 5 10^4 for beta = 0.75 and 1, the beta = 1
    replicate draws at every width, and the low-noise control; paper adds beta = 0.5 at 5 10^4."""
    t100 = ex.records("chaos-mnist-t100", "small")
    assert all(r["T"] == 100.0 for r in t100)
    assert ex.get("chaos-mnist-t100").task is ex.get("chaos-mnist").task
    at10 = [dict(r, T=10.0) for r in t100]
    known = (ex.records("chaos-mnist", "small") + ex.records("chaos-mnist-wide", "paper")
             + ex.records("chaos-mnist-50k", "small"))
    # every run is a stored T = 10 record's twin up to N (low-noise: chaos-mnist's M = 1600)
    strip = [{k: v for k, v in r.items() if k != "N"} for r in known]
    assert all({k: v for k, v in r.items() if k != "N"} in strip for r in at10)
    widths = sorted((r["N"], r["width_exponent"]) for r in t100 if r["group"] == "widths")
    assert widths == [(N, b) for N in (100, 1000, 10000) for b in (0.5, 0.75, 1.0)] + [
        (50000, 0.75), (50000, 1.0)]
    for g in ("inits", "streams"):
        assert sorted(r["N"] for r in t100 if r["group"] == g) == [100, 1000, 10000, 50000]
        assert all(r["width_exponent"] == 1.0 for r in t100 if r["group"] == g)
    assert sorted((r["N"], r["M"]) for r in t100 if r["group"] == "lownoise") == [
        (1000, 1600), (10000, 1600)]
    assert len({ex.task_key("chaos-mnist-t100", r) for r in t100}) == len(t100) == 21
    paper = ex.records("chaos-mnist-t100", "paper")
    assert (50000, 0.5) in {(r["N"], r["width_exponent"]) for r in paper if r["group"] == "widths"}
