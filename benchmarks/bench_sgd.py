"""Speed of one-pass SGD: mflib.sgd.run against the loops a researcher would write, and against
the machine's limit, measured side by side in one run.

Problem: AnisotropicGaussians(d=320, s0=60, delta=0.5), ReLU, N=800 neurons, batch 1, eps=2e-4,
W0 ~ N(0, 0.8^2 I_d / d). Every loop runs the same update on the same data stream (drawn with
problem.sample in chunks of mflib.sgd.CHUNK, the sampling cost included in every loop), and the
script checks that they end at the same weights before it times them.

Loops timed (microseconds per step, min and median over --repeats runs of --steps steps, after a
warm-up run; repeats are interleaved across loops so that load from other processes spreads
evenly):
  * mflib.sgd.run, float64 and float32, with NumPy's BLAS at 1 and 2 threads;
  * the plain NumPy loop (h = W @ x; W += eps * r * np.outer(relu'(h), x)), float64;
  * the PyTorch loop (CPU, torch.no_grad, manual update), float32, at 1 and 2 threads, in two
    spellings: W += torch.outer(...) and W.addr_(...). Skipped (and said so) without torch.
The limit, measured here too: reading W once per step (the gemv W @ x: the floor of any loop that
updates W one step at a time), and the matrix-multiply rate (4 N d flops per step is the floor of
the blocked engine's two products), plus the data sampling that every loop pays.
Noisy SGD (beta given): mflib's cost per step and the cost of drawing its N d normals alone.

Run:  python benchmarks/bench_sgd.py [--steps 3000] [--repeats 3] [--out FILE]
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
# Timing helpers.
# ---------------------------------------------------------------------------------------------
def best_of(f, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts))


def machine_limits(problem, W0, reps):
    rng = np.random.default_rng(0)
    out = {}
    x = rng.standard_normal(D)
    for dt in (np.float64, np.float32):
        W, xd = W0.astype(dt), x.astype(dt)
        with threadpool_limits(1, user_api="blas"):
            out[f"read W once (gemv W @ x), {np.dtype(dt).name}"] = best_of(
                lambda W=W, xd=xd: W @ xd, 200 * reps)
    K = mf.sgd.BLOCK_ROWS
    Xb = rng.standard_normal((K, D))
    H = np.empty((K, N))
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            t = best_of(lambda: np.matmul(Xb, W0.T, out=H), 20 * reps)
        rate = 2 * K * N * D / t[0]
        out[f"gemm rate, float64, {threads} thread(s) [GFLOP/s]"] = rate / 1e9
        out[f"4 N d flops at that rate, {threads} thread(s)"] = (4 * N * D / rate,) * 2
    t = best_of(lambda: problem.sample(CHUNK, rng), 3 * reps)
    out["data: problem.sample, per sample"] = (t[0] / CHUNK, t[1] / CHUNK)
    return out


def machine_header(args):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
                     for i in threadpool_info() if i["user_api"] == "blas")
    return [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: nproc = {os.cpu_count()}, CPU: {cpu}, load average at start: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"python {platform.python_version()}, numpy {np.__version__}, numba "
        f"{__import__('numba').__version__}, torch {torch.__version__ if torch else 'not installed'}",
        f"BLAS: {blas}",
        f"command: python benchmarks/bench_sgd.py --steps {args.steps} --repeats {args.repeats}",
        f"problem: AnisotropicGaussians(d={D}, s0={S0}, delta={DELTA}), ReLU, N={N}, batch 1, "
        f"eps={EPS:g}; {args.steps} steps per run after a warm-up; min / median of {args.repeats}",
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--noisy-steps", type=int, default=200)
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args(argv)

    problem = mf.problems.AnisotropicGaussians(D, S0, DELTA)
    W0 = np.random.default_rng(2026).standard_normal((N, D)) * KAPPA / np.sqrt(D)
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
    times = {(name, threads): [] for name, _, threads, _ in loops}
    cpu = {(name, threads): [] for name, _, threads, _ in loops}
    for rep in range(args.repeats):
        for name, f, threads, _ in loops:
            t, c = time.perf_counter(), time.process_time()
            f(problem, W0, args.steps, 100 + rep, threads)
            times[(name, threads)].append((time.perf_counter() - t) / args.steps)
            cpu[(name, threads)].append((time.process_time() - c) / args.steps)
    us = {key: (min(v) * 1e6, float(np.median(v)) * 1e6) for key, v in times.items()}

    # 3. Machine limits and noisy SGD.
    lim = machine_limits(problem, W0, args.repeats)
    g = np.empty((N, D))
    rng = np.random.default_rng(1)
    t_normals = best_of(lambda: rng.standard_normal(out=g), 10 * args.repeats)

    def noisy():
        mf.sgd.run(problem, W0, EPS, args.noisy_steps, beta=1e4, rng=np.random.default_rng(3),
                   record_risk=False, progress=False)
    noisy()
    t_noisy = best_of(noisy, args.repeats)
    t_risk = best_of(lambda: problem.risk(W0), args.repeats)

    out = ["", check, "",
           f"{'loop':<42}{'threads':>8}{'us/step min':>14}{'median':>10}{'CPU us/step':>14}"]
    for (name, threads), (tmin, tmed) in us.items():
        out.append(f"{name:<42}{threads:>8}{tmin:>14.1f}{tmed:>10.1f}"
                   f"{min(cpu[(name, threads)]) * 1e6:>14.1f}")
    out.append("(wall-clock times; CPU time is summed over threads, spin-waiting included)")
    if torch is None:
        out.append("PyTorch loops: skipped, torch is not installed "
                   "(pip install -r requirements-bench.txt in a separate venv)")
    out += ["", "machine limits (measured now, same process)"]
    for name, v in lim.items():
        if "GFLOP" in name:
            out.append(f"  {name:<56}{v:>10.1f}")
        else:
            out.append(f"  {name:<56}{v[0] * 1e6:>10.1f} us (median {v[1] * 1e6:.1f})")
    out += ["", "noisy SGD (beta given): N d = 256000 normals per step",
            f"  mflib.sgd.run with beta, float64, 1 thread       {t_noisy[0] / args.noisy_steps * 1e6:10.1f}"
            f" us/step (median {t_noisy[1] / args.noisy_steps * 1e6:.1f})",
            f"  drawing the N d normals alone (standard_normal)  {t_normals[0] * 1e6:10.1f}"
            f" us/step (median {t_normals[1] * 1e6:.1f})",
            f"  share of the noisy step spent drawing normals    "
            f"{t_normals[0] / (t_noisy[0] / args.noisy_steps):10.0%}",
            f"exact population risk (one record), float64        {t_risk[0] * 1e3:10.1f} ms"]

    best = {}
    for (name, threads), (tmin, _) in us.items():
        fam = name.split(" (")[0]
        if tmin < best.get(fam, (np.inf,))[0]:
            best[fam] = (tmin, threads)
    m64 = best["mflib.sgd.run float64"]
    m32 = best["mflib.sgd.run float32"]
    read = lim["read W once (gemv W @ x), float64"][0] * 1e6
    flops = min(v[0] for k, v in lim.items() if k.startswith("4 N d")) * 1e6
    data = lim["data: problem.sample, per sample"][0] * 1e6
    m64_1 = us[("mflib.sgd.run float64", 1)][0]
    out += ["", "ratios (min times, each loop at its best thread count)"]
    if "PyTorch loop float32" in best:
        pt = best["PyTorch loop float32"]
        out += [f"  PyTorch float32 ({pt[1]} thr) / mflib float64 ({m64[1]} thr) = {pt[0] / m64[0]:6.1f}x"
                f"   (target >= 6x)",
                f"  PyTorch float32 ({pt[1]} thr) / mflib float32 ({m32[1]} thr) = {pt[0] / m32[0]:6.1f}x"]
    else:
        out.append("  PyTorch ratios: not measured (torch not installed)")
    npl = best["NumPy loop float64"]
    out += [f"  NumPy loop float64 / mflib float64                 = {npl[0] / m64[0]:6.1f}x",
            f"  mflib float64 (1 thr) / read W once (gemv, 1 thr)   = {m64_1 / read:6.2f}"
            f"   (target <= 1.5)",
            f"  mflib float64 ({m64[1]} thr) / read W once (gemv, 1 thr)   = {m64[0] / read:6.2f}",
            f"  mflib float64 ({m64[1]} thr) / (4Nd flops at best gemm rate + data) = "
            f"{m64[0] / (flops + data):6.2f}",
            f"  noisy / noiseless step, mflib float64 (1 thr)     = "
            f"{t_noisy[0] / args.noisy_steps * 1e6 / m64_1:6.0f}x",
            f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"]
    print("\n".join(out), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines + out) + "\n")


if __name__ == "__main__":
    main()
