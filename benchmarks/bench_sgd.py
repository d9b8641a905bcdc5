"""Speed of one-pass SGD: mflib.sgd.run against the loops a researcher would write, and against
the machine's limit, measured side by side in one run.

Problem: AnisotropicGaussians(d=320, s0=60, delta=0.5), ReLU, N=800 neurons, batch 1, eps=2e-4,
W0 ~ N(0, 0.8^2 I_d / d). Every loop runs the same update on the same data stream (drawn with
problem.sample in chunks of mflib.sgd.CHUNK, the sampling cost included in every loop), and the
script checks that they end at the same weights before it times them.

Loops timed (microseconds per step, min and median over --repeats runs of --steps steps, by
default 12288 = three data chunks, after a warm-up run; repeats are interleaved across loops so
that load from other processes spreads evenly):
  * mflib.sgd.run, float64 and float32, with NumPy's BLAS at 1 and 2 threads (threads=...); in
    runs longer than one chunk mflib draws the next chunk on a helper thread, which the other
    loops do not: the CPU-time ratios below add that thread's sampling cost back to mflib;
  * the plain NumPy loop (h = W @ x; W += eps * r * np.outer(relu'(h), x)), float64;
  * the PyTorch loop (CPU, torch.no_grad, manual update), float32, at 1 and 2 threads, in two
    spellings: W += torch.outer(...) and W.addr_(...). Skipped (and said so) without torch.
The limit, measured here too: reading W once per step (the gemv W @ x: the floor of any loop that
updates W one step at a time), and the matrix-multiply rate (4 N d flops per step is the floor of
the blocked engine's two products), plus the data sampling that every loop pays.
Noisy SGD (beta given): mflib's cost per step (noise drawn per block, exact in law), float64 and
float32, against the noiseless step of the same precision (target: at most 3 times) and against
the per-step noise stream (_noise="step") and the cost of drawing its N d normals alone. One exact
risk record (problem.risk: two Gram matrices by syrk and the ReLU pair sum over i <= j in SIMD
lanes) against the dense pair sum (Problem.risk: U(W).sum()), target 10 times, and its pair-sum
kernel against the scalar one (one libm atan2, and sin and cos for obtuse pairs, per pair).

Run:  python benchmarks/bench_sgd.py [--steps 12288] [--repeats 3] [--noisy-steps 4096] [--out FILE]
(with torch: pip install -r requirements-bench.txt in a separate environment; see README.md).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
from timing import best_of, cpu_model

import mflib as mf

try:
    import torch
except ImportError:   # the script still runs; the PyTorch rows say why they are missing
    torch = None

D, S0, DELTA, N, EPS, KAPPA = 320, 60, 0.5, 800, 2e-4, 0.8
CHUNK = mf.sgd.CHUNK


def _data_chunks(problem, seed):
    """The data stream of mflib.sgd.run(rng=default_rng(seed)): chunks of CHUNK samples."""
    data_rng, _ = np.random.default_rng(seed).spawn(2)
    while True:
        yield problem.sample(CHUNK, data_rng)


# ---------------------------------------------------------------------------------------------
# The loops. Each takes (problem, W0, steps, seed, threads) and returns the final weights.
# ---------------------------------------------------------------------------------------------
def mflib_loop(dtype):
    def loop(problem, W0, steps, seed, threads):
        traj = mf.sgd.run(problem, W0, EPS, steps, rng=np.random.default_rng(seed), dtype=dtype,
                          record_risk=False, progress=False, threads=threads)
        return traj.W
    return loop


def numpy_loop(problem, W0, steps, seed, threads):
    """The obvious NumPy loop, float64 (data in chunks, as for every loop)."""
    with threadpool_limits(threads, user_api="blas"):
        W = W0.copy()
        chunks = _data_chunks(problem, seed)
        k = 0
        while k < steps:
            X, Y = next(chunks)
            for x, y in zip(X[: steps - k], Y[: steps - k], strict=True):
                h = W @ x
                r = y - np.maximum(h, 0.0).mean()
                W += EPS * r * np.outer(h > 0, x)
            k += X.shape[0]
    return W


def torch_loop(spelling):
    def loop(problem, W0, steps, seed, threads):
        torch.set_num_threads(threads)
        W = torch.tensor(W0, dtype=torch.float32)
        chunks = _data_chunks(problem, seed)
        k = 0
        with torch.no_grad():
            while k < steps:
                X, Y = next(chunks)
                X = torch.from_numpy(X.astype(np.float32))
                Y = torch.from_numpy(Y.astype(np.float32))
                for j in range(min(CHUNK, steps - k)):
                    x = X[j]
                    h = W @ x
                    r = Y[j] - torch.relu(h).mean()
                    coef = EPS * r * (h > 0).to(W.dtype)
                    if spelling == "outer":
                        W += torch.outer(coef, x)
                    else:
                        W.addr_(coef, x)
                k += CHUNK
        return W.numpy().astype(np.float64)
    return loop


# ---------------------------------------------------------------------------------------------
# Machine limits.
# ---------------------------------------------------------------------------------------------
def machine_limits(problem, W0, reps):
    """Seconds per step: one read of W (gemv), 4 N d flops at the gemm rate, one sample."""
    rng = np.random.default_rng(0)
    out = {}
    x = rng.standard_normal(D)
    with threadpool_limits(1, user_api="blas"):
        for dt in (np.float64, np.float32):
            W, xd = W0.astype(dt), x.astype(dt)
            out[f"read W once (gemv W @ x), {np.dtype(dt).name}, 1 thread"] = best_of(
                lambda W=W, xd=xd: W @ xd, 200 * reps)[0]
    K = mf.sgd.BLOCK_ROWS
    Xb = rng.standard_normal((K, D))
    H = np.empty((K, N))
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            t = best_of(lambda: np.matmul(Xb, W0.T, out=H), 20 * reps)[0]
        rate = 2 * K * N * D / t
        out[f"gemm rate ({K} x {D} @ {D} x {N}), float64, {threads} thread(s) [GFLOP/s]"] = rate / 1e9
        out[f"4 N d flops at that rate, {threads} thread(s)"] = 4 * N * D / rate
    out["data: problem.sample, per sample (CPU time)"] = best_of(
        lambda: problem.sample(CHUNK, rng), 3 * reps)[2] / CHUNK
    return out


_RECORD_CODE = """
import json, sys, time
import numpy as np
import mflib as mf
D, S0, DELTA, N, KAPPA, ROUNDS = {D}, {S0}, {DELTA}, {N}, {KAPPA}, {rounds}
problem = mf.problems.AnisotropicGaussians(D, S0, DELTA)
W0 = np.random.default_rng(2026).standard_normal((N, D)) * KAPPA / np.sqrt(D)
Gs = np.stack([W0[:, :S0] @ W0[:, :S0].T, W0[:, S0:] @ W0[:, S0:].T])
coef = np.array([[(1 + DELTA) ** 2, 1.0], [(1 - DELTA) ** 2, 1.0]])
half = np.array([0.5, 0.5])
timed = {{"risk": lambda: problem.risk(W0),
         "dense": lambda: mf.problems.Problem.risk(problem, W0),
         "simd": lambda: mf.problems._relu_pair_sum_simd(Gs, coef, half),
         "scalar": lambda: mf.problems._relu_pair_sum(Gs, coef, half)}}
out = {{k: [] for k in timed}}
for f in timed.values():
    f()
for k, f in timed.items():   # one phase each
    for _ in range(ROUNDS):
        c = time.thread_time()
        f()
        out[k].append(time.thread_time() - c)
json.dump({{k: min(v) for k, v in out.items()}}, sys.stdout)
"""


def record_timings(repeats):
    """CPU seconds (min over 10 * repeats calls) of one exact risk record, the dense
    pair sum, and the SIMD and scalar pair-sum kernels alone, in a fresh process with one BLAS
    thread (as in a run: sgd.run records under one thread). A fresh process, because in this
    one, after the multi-threaded loops, the record was measured twice as slow; and ``repeats``
    fresh processes, as a check that the record's time does not depend on where its arrays land
    (it did, 7 or 14 ms, until mflib.problems._panel_workspace placed them against 4K aliasing).
    Also returns each process's record time."""
    import json
    import subprocess
    code = _RECORD_CODE.format(D=D, S0=S0, DELTA=DELTA, N=N, KAPPA=KAPPA, rounds=10 * repeats)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                      capture_output=True, text=True).stdout)
            for _ in range(repeats)]
    keys = ("risk", "dense", "simd", "scalar")
    return tuple(min(r[k] for r in runs) for k in keys), [r["risk"] for r in runs]


def machine_header(args):
    cpu = cpu_model()
    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
                     for i in threadpool_info() if i["user_api"] == "blas")
    return [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: nproc = {os.cpu_count()}, CPU: {cpu}, load average at start: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"python {platform.python_version()}, numpy {np.__version__}, numba "
        f"{__import__('numba').__version__}, torch {torch.__version__ if torch else 'not installed'}",
        f"BLAS: {blas}",
        f"command: python benchmarks/bench_sgd.py --steps {args.steps} --repeats {args.repeats} "
        f"--noisy-steps {args.noisy_steps}  (in a venv with requirements.txt and "
        f"requirements-bench.txt, see benchmarks/README.md)",
        f"problem: AnisotropicGaussians(d={D}, s0={S0}, delta={DELTA}), ReLU, N={N}, batch 1, "
        f"eps={EPS:g}; {args.steps} steps per run after a warm-up; min / median of {args.repeats}",
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3 * CHUNK)   # three data chunks per run
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--noisy-steps", type=int, default=CHUNK)   # one chunk: no data thread
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args(argv)

    problem = mf.problems.AnisotropicGaussians(D, S0, DELTA)
    W0 = np.random.default_rng(2026).standard_normal((N, D)) * KAPPA / np.sqrt(D)
    load_start = os.getloadavg()[0]
    lines = machine_header(args)
    print("\n".join(lines), flush=True)

    loops = [  # (name, function, threads, dtype tolerance for the agreement check)
        ("mflib.sgd.run float64", mflib_loop(np.float64), 1, 1e-10),
        ("mflib.sgd.run float64", mflib_loop(np.float64), 2, 1e-10),
        ("mflib.sgd.run float32", mflib_loop(np.float32), 1, 1e-4),
        ("mflib.sgd.run float32", mflib_loop(np.float32), 2, 1e-4),
        ("NumPy loop float64 (np.outer)", numpy_loop, 1, 1e-10),
    ]
    if torch is not None:
        for spelling in ("outer", "addr_"):
            for threads in (1, 2):
                loops.append((f"PyTorch loop float32 ({spelling})", torch_loop(spelling), threads, 1e-4))

    # 1. Same update, same data: every loop ends where mflib's reference loop ends.
    check_steps = 300
    ref = mf.sgd.run_reference(problem, W0, EPS, check_steps, rng=np.random.default_rng(0)).W
    for name, f, threads, tol in loops:
        err = np.abs(f(problem, W0, check_steps, 0, threads) - ref).max()
        if not err <= tol * np.abs(ref).max():
            sys.exit(f"{name} disagrees with mflib.sgd.run_reference: max |dW| = {err:.2e}")
    check = f"agreement check: all loops within tolerance of run_reference after {check_steps} steps"

    # 2. Timings, repeats interleaved across loops.
    wall = {(name, threads): [] for name, _, threads, _ in loops}
    cpu = {(name, threads): [] for name, _, threads, _ in loops}
    for rep in range(args.repeats):
        for name, f, threads, _ in loops:
            t, c = time.perf_counter(), time.thread_time()
            f(problem, W0, args.steps, 100 + rep, threads)
            wall[(name, threads)].append((time.perf_counter() - t) / args.steps * 1e6)
            cpu[(name, threads)].append((time.thread_time() - c) / args.steps * 1e6)

    # 3. Machine limits, noisy SGD (single-threaded: CPU time of this thread), one risk record.
    lim = machine_limits(problem, W0, args.repeats)
    g = np.empty((N, D))
    rng = np.random.default_rng(1)

    step_steps = 200   # the per-step noise stream is slow: fewer steps

    def noisy(steps=args.noisy_steps, **kw):
        mf.sgd.run(problem, W0, EPS, steps, beta=1e4, rng=np.random.default_rng(3),
                   record_risk=False, progress=False, **kw)
    noisy()
    noisy(dtype=np.float32)
    noisy(step_steps, _noise="step")
    t_noisy, t_noisy32, t_step, t_normals = [], [], [], []
    for _ in range(args.repeats):
        t_noisy.append(best_of(noisy, 1)[2] / args.noisy_steps * 1e6)
        t_noisy32.append(best_of(lambda: noisy(dtype=np.float32), 1)[2] / args.noisy_steps * 1e6)
        t_step.append(best_of(lambda: noisy(step_steps, _noise="step"), 1)[2] / step_steps * 1e6)
        t_normals.append(best_of(lambda: rng.standard_normal(out=g), 5)[2] * 1e6)
    (t_risk, t_dense, t_simd, t_scalar), t_risk_each = record_timings(args.repeats)
    risk_err = abs(problem.risk(W0) / mf.problems.Problem.risk(problem, W0) - 1)

    # 4. Report.
    out = ["", check, "",
           f"{'loop':<40}{'threads':>8}{'wall us/step: min':>19}{'median':>8}{'thread CPU':>12}"]
    for key in wall:
        name, threads = key
        tc = f"{min(cpu[key]):12.1f}" if threads == 1 else f"{'-':>12}"
        out.append(f"{name:<40}{threads:>8}{min(wall[key]):>19.1f}{np.median(wall[key]):>8.1f}{tc}")
    out.append("(thread CPU: CPU time of the calling thread, for single-threaded runs; it is less "
               "sensitive than wall time to other processes on the machine. mflib's data thread is "
               "not in it)")
    if torch is None:
        out.append("PyTorch loops: skipped, torch is not installed "
                   "(pip install -r requirements-bench.txt in a separate venv)")
    out += ["", "machine limits (measured now, same process; min over repeats)"]
    for name, v in lim.items():
        out.append(f"  {name:<68}{v:8.1f}" if "GFLOP" in name else f"  {name:<68}{v * 1e6:8.1f} us")
    out += ["", "noisy SGD (beta given), float64, 1 thread, CPU time (min over repeats)",
            f"  mflib.sgd.run with beta (block noise, exact in law) {min(t_noisy):10.1f} us/step "
            f"({args.noisy_steps} steps)",
            f"  per-step noise stream (_noise='step')          {min(t_step):10.1f} us/step "
            f"({step_steps} steps)",
            f"  drawing N d = {N * D} normals alone           {min(t_normals):10.1f} us/step "
            f"({min(t_normals) / min(t_step):.0%} of the per-step noisy step)",
            f"  mflib.sgd.run with beta, float32                {min(t_noisy32):10.1f} us/step "
            f"({args.noisy_steps} steps)",
            f"exact population risk, one record, 1 thread, CPU time (min over {args.repeats} fresh "
            f"processes of {10 * args.repeats} calls each)",
            f"  problem.risk (Gram panels + SIMD pair sum, i<=j) {t_risk * 1e3:7.2f} ms   "
            f"(relative difference from the dense sum: {risk_err:.0e}, bound 1e-12; each "
            f"process: {', '.join(f'{t * 1e3:.1f}' for t in t_risk_each)} ms)",
            f"  Problem.risk (dense U(W).sum())                  {t_dense * 1e3:7.2f} ms",
            f"  pair sum alone, SIMD kernel                      {t_simd * 1e3:7.2f} ms",
            f"  pair sum alone, scalar kernel (atan2 per pair)   {t_scalar * 1e3:7.2f} ms"]

    def best(prefix):
        keys = [k for k in wall if k[0].startswith(prefix)]
        k = min(keys, key=lambda k: min(wall[k]))
        return min(wall[k]), k[1]
    m64, m32, npl = best("mflib.sgd.run float64"), best("mflib.sgd.run float32"), best("NumPy")
    read = lim["read W once (gemv W @ x), float64, 1 thread"] * 1e6
    floor = (min(v for k, v in lim.items() if k.startswith("4 N d"))
             + lim["data: problem.sample, per sample (CPU time)"]) * 1e6
    m64_1 = min(wall[("mflib.sgd.run float64", 1)])
    data_us = lim["data: problem.sample, per sample (CPU time)"] * 1e6
    c64_1 = min(cpu[("mflib.sgd.run float64", 1)]) + (data_us if args.steps > CHUNK else 0.0)
    c32_1 = min(cpu[("mflib.sgd.run float32", 1)]) + (data_us if args.steps > CHUNK else 0.0)
    out += ["", "ratios (wall min, each loop at its best thread count)"]
    if torch is not None:
        for spelling in ("outer", "addr_"):
            pt = best(f"PyTorch loop float32 ({spelling})")
            out += [f"  PyTorch f32 {spelling:<6}({pt[1]} thr) / mflib f64 ({m64[1]} thr)  "
                    f"{pt[0] / m64[0]:6.1f}x   (target >= 6x)",
                    f"  PyTorch f32 {spelling:<6}({pt[1]} thr) / mflib f32 ({m32[1]} thr)  "
                    f"{pt[0] / m32[0]:6.1f}x"]
    else:
        out.append("  PyTorch ratios: not measured (torch not installed)")
    out += [f"  NumPy loop f64 ({npl[1]} thr) / mflib f64 ({m64[1]} thr)      {npl[0] / m64[0]:6.1f}x",
            f"  mflib f64 (1 thr) / read W once                   {m64_1 / read:6.2f}    (target <= 1.5)",
            f"  mflib f64 ({m64[1]} thr) / read W once                   {m64[0] / read:6.2f}",
            f"  mflib f64 ({m64[1]} thr) / (4Nd flops at best rate + data) {m64[0] / floor:6.2f}",
            "ratios (CPU time, single-threaded runs; mflib: main thread + its data thread's sampling)"]
    if torch is not None:
        for spelling in ("outer", "addr_"):
            c = min(cpu[(f"PyTorch loop float32 ({spelling})", 1)])
            out.append(f"  PyTorch f32 {spelling:<6}/ mflib f64                 {c / c64_1:6.1f}x")
    out += [f"  mflib f64 / read W once                           {c64_1 / read:6.2f}",
            f"  noisy / noiseless mflib f64 step                  {min(t_noisy) / c64_1:6.2f}x   "
            "(target <= 3)",
            f"  noisy / noiseless mflib f32 step                  {min(t_noisy32) / c32_1:6.2f}x   "
            "(target <= 3)",
            f"  per-step noise stream / noiseless step            {min(t_step) / c64_1:6.0f}x",
            f"  record speed-up: dense / compiled risk            {t_dense / t_risk:6.1f}x   "
            "(target >= 10)",
            f"  pair sum: scalar / SIMD kernel                    {t_scalar / t_simd:6.1f}x",
            f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"]
    if max(os.getloadavg()[0], load_start) > 1.5:
        out.append("NOTE: load average above 1.5 on this machine's 2 cores during the run: "
                   "absolute times are inflated and noisy; the ratios above are the robust result.")
    print("\n".join(out), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines + out) + "\n")


if __name__ == "__main__":
    main()
