"""Speed of chapter 7's chaos engine (mflib.chaos.sgd) against its matrix-multiply limit and against
the paper's own PyTorch training loop, measured side by side in one run; and the cost of the paper
grid (mflib.experiments' chaos-paper sweep) on this machine.

Workload: De Bortoli, Durmus, Fontaine and Simsekli (2020) on MNIST-shaped data: d = 784 inputs,
C = 10 classes, N = 10^4 neurons, batch M = 100, cross-entropy, ReLU, step base_step * N^beta
(width_exponent 0.75 here; the value does not change the cost). In mflib a neuron is C ReLU units,
one per class, with the output fixed to 1/N (mflib.chaos's module docstring), so one step is two
large products with N C = 10^5 hidden units:
  forward          H = X_b W^T        (M x d) (d x N C)     2 M d N C flops
  weight gradient  A^T X_b            (N C x M) (M x d)      2 M d N C flops
plus the output layer (the sum of relu(H) over neurons and its transpose in the backward pass,
2 M N C flops each, 0.1 % of the total), i.e. the three products of one step.

Rows timed (seconds per step, min and median of --repeats runs of --steps steps, after a warm-up):
  (a) the two large products alone (np.matmul with out= into buffers allocated once); their
      GFLOP/s is the rate the other rows are held to;
  (b) mflib's step: chaos._Step, the inner step of chaos.sgd (in place, no (N, p) temporary), and
      chaos.sgd itself per step (median over repeats of (time of 1 + 2 s steps - time of 1 step) / 2 s,
      the two runs interleaved: its setup is not a step); before them, the
      straightforward step that chaos.sgd took until this benchmark was written (_grad_core, then
      W -= lr * g), as the "before" figure;
  (c) the paper's PyTorch loop (github.com/fonfonx/MeanFieldSGD, models.py and main.py: nn.Linear
      layers without bias, ReLU, output divided by the width, optim.SGD, nn.CrossEntropyLoss,
      zero_grad / forward / backward / step), written here in a minimal faithful form. Its hidden
      width is N C = 10^5, so that its two large products have exactly mflib's shapes (the same
      workload; its trainable 10 x N C output layer adds 0.1 % of the flops).
Each in float64 and float32, with BLAS (and torch) at 1 thread (mflib.runs.blas_threads, what
chaos.sgd uses) and at 2 threads (the machine's natural setting). Every step first checks that
mflib's in-place step and the straightforward step agree after a few steps.

Run:  python benchmarks/bench_chaos.py [--N 10000] [--steps 3] [--repeats 3] [--out FILE]
(torch: pip install -r requirements-bench.txt; without it the PyTorch rows say they are skipped).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import sys

import numpy as np
from threadpoolctl import threadpool_info
from timing import best_of, cpu_model

import mflib.chaos as ch
from mflib import activations, experiments, runs

try:
    import torch
except ImportError:   # the script still runs; the PyTorch rows say why they are missing
    torch = None

D, C, M, BETA, BASE_STEP = 784, 10, 100, 0.75, 1.0
GEMM = "(a) two large products (np.matmul, out=)"
BEFORE = "(b) straightforward step (before)"
STEP = "(b) mflib step, in place (chaos._Step)"
SGD = "(b) chaos.sgd, per step (1 BLAS thread)"
AVG = "    running average W_sum += W (average_from)"
TORCH = "(c) paper's PyTorch loop, width N C"


def _problem(N, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D)).astype(dtype)
    y = rng.integers(0, C, n)
    W0 = (0.05 * rng.standard_normal((N, C * D), dtype=np.float32)).astype(dtype)
    return X, y, W0


def _batches(n, steps, seed=1):
    return np.random.default_rng(seed).integers(0, n, size=(steps, M))


# ---------------------------------------------------------------------------------------------
# (a) the two large products alone
# ---------------------------------------------------------------------------------------------
def gemm_loop(X, W, idx):
    N = W.shape[0]
    H = np.empty((M, N * C), dtype=W.dtype)
    g = np.empty((N * C, D), dtype=W.dtype)
    W2 = W.reshape(N * C, D)

    def run():
        for i in idx:
            Xb = X[i]
            np.matmul(Xb, W2.T, out=H)
            np.matmul(H.T, Xb, out=g)
    return run


# ---------------------------------------------------------------------------------------------
# (b) mflib: the straightforward step, the in-place step, chaos.sgd
# ---------------------------------------------------------------------------------------------
def reference_steps(X, y, W, idx, sched):
    """The step chaos.sgd took before: batched _grad_core, then W -= lr * g (allocates (N, p)s)."""
    relu = activations.get("relu")
    W3 = W[None]
    for k, i in enumerate(idx):
        g, _ = ch._grad_core(X[i][None], y[i][None], W3, C, relu, "cross_entropy", sched.N)
        W3 -= W.dtype.type(sched.step(k)) * g
    return W


def inplace_steps(X, y, W, idx, sched):
    step = ch._Step(W[None], M, C, activations.get("relu"), "cross_entropy", sched.N)
    Xb = np.empty((1, M, D), dtype=X.dtype)
    for k, i in enumerate(idx):
        step(W[None], np.take(X, i[None], axis=0, out=Xb), y[i][None], W.dtype.type(sched.step(k)))
    return W


def _average(W_sum, W, steps):
    for _ in range(steps):
        W_sum += W


def sgd_call(X, y, W0, steps):
    return ch.sgd(W0, X, y, base_step=BASE_STEP, width_exponent=BETA, M=M, steps=steps,
                  loss="cross_entropy", activation="relu", dtype=W0.dtype.type,
                  rng=np.random.default_rng(3), progress=False)


# ---------------------------------------------------------------------------------------------
# (c) the paper's PyTorch loop (minimal faithful version of MeanFieldSGD's main.py / models.py)
# ---------------------------------------------------------------------------------------------
if torch is not None:
    class TwoLayerNN(torch.nn.Module):
        def __init__(self, input_dim, width, num_classes):
            super().__init__()
            self.width = width
            self.fc = torch.nn.Sequential(torch.nn.Linear(input_dim, width, bias=False),
                                          torch.nn.ReLU(inplace=True),
                                          torch.nn.Linear(width, num_classes, bias=False))

        def forward(self, x):
            return self.fc(x.view(x.size(0), -1)) / self.width


def torch_loop(X, y, width, dtype):
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(0)
    net = TwoLayerNN(D, width, C).to(tdt)
    opt = torch.optim.SGD(net.parameters(), lr=BASE_STEP * width ** BETA, momentum=0, weight_decay=0)
    crit = torch.nn.CrossEntropyLoss(reduction="mean")
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def run(idx):
        net.train()
        for i in idx:
            it = torch.from_numpy(i)
            x, t = Xt[it], yt[it]
            opt.zero_grad()
            out = net(x)
            loss = crit(out, t)
            loss.backward()
            opt.step()
    return run


# ---------------------------------------------------------------------------------------------
def machine_header(args):
    cpu = cpu_model()
    blas = ", ".join(f"{i['internal_api']} {i['version']} ({os.path.basename(i['filepath'])}, "
                     f"{i['num_threads']} threads)" for i in threadpool_info() if i["user_api"] == "blas")
    tv = torch.__version__ if torch is not None else "not installed"
    return [f"date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
            f"machine: nproc = {os.cpu_count()}, CPU: {cpu}, load average at start: "
            f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}",
            f"python {platform.python_version()}, numpy {np.__version__}, torch {tv}",
            f"BLAS: {blas}",
            "command: python " + " ".join(sys.argv),
            f"workload: d = {D}, C = {C}, N = {args.N} (N C = {args.N * C} hidden ReLU units), "
            f"batch M = {M}, cross-entropy, width_exponent {BETA}; {args.steps} steps per run, "
            f"min / median of {args.repeats} runs after a warm-up"]


def grid_cost(t_step_f32, t_avg_f32, N_ref, lines):
    """The chaos-paper sweep at --scale paper: flops, and hours at the measured float32 speed."""
    grid = experiments.records("chaos-paper", "paper")
    flops = steps_all = neuron_steps = 0.0
    cpu_s = 0.0
    per_N = {}
    for rec in grid:
        N = rec["N"]
        n_T = max(1, ch.n_steps(rec["T"], N, rec["base_step"], rec["alpha"], rec["width_exponent"]))
        f = n_T * 4.0 * rec["M"] * D * C * N
        s = n_T * (t_step_f32 + 0.5 * t_avg_f32) * N / N_ref   # averaging over the last half
        flops += f
        steps_all += n_T
        neuron_steps += n_T * N
        cpu_s += s
        per_N.setdefault(N, [0, 0.0])
        per_N[N][0] += 1
        per_N[N][1] += s
    lines += ["",
              f"paper grid (experiments chaos-paper --scale paper): {len(grid)} tasks, "
              f"widths {sorted(per_N)}, width_exponent (0.5, 0.75, 1), "
              f"T = {grid[0]['T']:g}, batch {grid[0]['M']}, base_step {grid[0]['base_step']:g}, "
              f"{grid[0]['dtype']}, {len({r['seed'] for r in grid})} seeds",
              f"  SGD steps {steps_all:.4g}, neuron-steps {neuron_steps:.4g}, "
              f"large-product flops {flops:.4g} (4 M d C N per step)",
              f"  at the measured float32 step (1 thread, scaled linearly in N from N = {N_ref}) plus "
              f"the running average over the last half of the steps:",
              f"  {cpu_s / 3600:.1f} CPU-hours, {cpu_s / 3600 / os.cpu_count():.1f} hours of wall "
              f"time on this machine's {os.cpu_count()} cores (one single-threaded task per core)"]
    for N, (k, s) in sorted(per_N.items()):
        lines.append(f"    N = {N:>6}: {k} tasks, {s / 3600:8.2f} CPU-hours")


def measure(dtype, args, use_torch, rows, lines):
    """All rows for one dtype, at each thread count, into rows[(dtype name, threads, label)]."""
    name = np.dtype(dtype).name
    X, y, W0 = _problem(args.N, args.n, dtype)
    sched = ch.Schedule(args.N, BASE_STEP, 0.0, BETA, M)
    # agreement: in-place step vs the straightforward one, a few steps from W0
    idx = _batches(args.n, 3)
    a = reference_steps(X, y, W0.copy(), idx, sched)
    b = inplace_steps(X, y, W0.copy(), idx, sched)
    err = float(np.abs(a - b).max() / np.abs(a).max())
    lines.append(f"agreement, {name}: max |in-place - straightforward| / max |W| after 3 steps "
                 f"= {err:.2e}")
    if dtype != np.float64:                  # float32's own error: both against float64
        X64, _, W64 = _problem(args.N, args.n, np.float64)
        ref = reference_steps(X64, y, W64, idx, sched)
        m = np.abs(ref).max()
        lines.append(f"  {name}'s own error, max |W_{name} - W_float64| / max |W|: straightforward "
                     f"{np.abs(a - ref).max() / m:.2e}, in-place {np.abs(b - ref).max() / m:.2e}")
        lines.append("  (float32 paths differ from each other and from float64 mostly through ReLU "
                     "kinks: of the M N C = 1e7 preactivations per step at N = 10^4 a few lie within "
                     "float32 round-off of 0, and each flip changes one unit's gradient by a whole "
                     "sample's term)")
        del X64, W64, ref
    del a, b
    idx = _batches(args.n, args.steps, seed=2)
    for threads in args.thread_list:
        with runs.blas_threads(threads):
            if use_torch:
                torch.set_num_threads(threads)
            W = W0.copy()
            cases = [(GEMM, gemm_loop(X, W, idx)),
                     (BEFORE, functools.partial(reference_steps, X, y, W, idx, sched)),
                     (STEP, functools.partial(inplace_steps, X, y, W, idx, sched))]
            if use_torch:
                cases.append((TORCH, functools.partial(torch_loop(X, y, args.N * C, dtype), idx)))
            for _, f in cases:
                f()                                                    # warm-up
            times = {label: [] for label, _ in cases}
            for _ in range(args.repeats):        # interleaved, so that others' load spreads evenly
                for label, f in cases:
                    times[label].append(best_of(f, 1))
            for label, ts in times.items():
                wall = [w for w, _, _ in ts]
                rows[(name, threads, label)] = (min(wall) / args.steps,
                                                float(np.median(wall)) / args.steps,
                                                min(c for _, _, c in ts) / args.steps)
            del cases
            if threads != 1:                 # chaos.sgd runs its loop with 1 BLAS thread
                del W
                continue
            # chaos.sgd itself: (1 + 2 s steps) - (1 step), interleaved; median of the differences
            s2 = 2 * args.steps
            diffs = [best_of(functools.partial(sgd_call, X, y, W0, 1 + s2), 1)[0]
                     - best_of(functools.partial(sgd_call, X, y, W0, 1), 1)[0] for _ in range(args.repeats)]
            rows[(name, threads, SGD)] = (float(np.median(diffs)) / s2, float("nan"), float("nan"))
            # the running average (W_sum += W) chaos.sgd adds over the last half of the steps
            Ws = np.zeros_like(W0)

            rows[(name, threads, AVG)] = (best_of(functools.partial(_average, Ws, W0, args.steps),
                                                args.repeats)[0] / args.steps, float("nan"),
                                          float("nan"))
            del W, Ws


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=10_000, help="data points (MNIST-shaped, random)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    args.thread_list = [int(t) for t in args.threads.split(",")]
    use_torch = torch is not None and not args.no_torch
    lines = machine_header(args)
    flops = 4.0 * M * D * C * args.N
    rows = {}
    for dtype in (np.float64, np.float32):
        measure(dtype, args, use_torch, rows, lines)
    lines += ["", f"{'row':<52}{'dtype':>8}{'threads':>8}{'s/step min':>12}{'median':>9}"
              f"{'GFLOP/s':>9}{'thread CPU':>12}"]
    for (name, threads, label), (tmin, tmed, tcpu) in rows.items():
        cpu = f"{tcpu:>12.4f}" if threads == 1 and tcpu == tcpu else f"{'-':>12}"
        lines.append(f"{label:<52}{name:>8}{threads:>8}{tmin:>12.4f}{tmed:>9.4f}"
                     f"{flops / tmin / 1e9:>9.1f}{cpu}")
    lines.append("(thread CPU: CPU time of the calling thread per step, for 1-thread rows, where BLAS runs "
                 "in that thread; less sensitive than wall time to other processes on the machine)")
    lines += ["", f"ratios (min times; GFLOP/s counts the {flops:.3g} flops of the two large products)"]
    for name in ("float64", "float32"):
        for threads in args.thread_list:
            r = {label: rows.get((name, threads, label), (float("nan"),))[0]
                 for label in (GEMM, BEFORE, STEP, SGD, TORCH)}
            line = (f"  {name}, {threads} thread(s): mflib step / gemm = {r[STEP] / r[GEMM]:.2f} "
                    f"(target <= 1.3), chaos.sgd per step / gemm = {r[SGD] / r[GEMM]:.2f}, "
                    f"before / gemm = {r[BEFORE] / r[GEMM]:.2f}")
            if use_torch:
                line += f", mflib / PyTorch = {r[STEP] / r[TORCH]:.2f} (target <= 1.0)"
            lines.append(line)
            if threads == 1:
                c = {label: rows.get((name, threads, label), (0, 0, float("nan")))[2]
                     for label in (GEMM, BEFORE, STEP, TORCH)}
                line = (f"  {name}, 1 thread, by thread CPU time: mflib step / gemm = "
                        f"{c[STEP] / c[GEMM]:.2f}, before / gemm = {c[BEFORE] / c[GEMM]:.2f}")
                if use_torch:
                    line += f", mflib / PyTorch = {c[STEP] / c[TORCH]:.2f}"
                lines.append(line)
    if not use_torch:
        lines.append("  PyTorch rows skipped: torch is not installed (pip install -r requirements-bench.txt)")
    t1 = args.thread_list[0]
    grid_cost(rows[("float32", t1, STEP)][0], rows[("float32", t1, AVG)][0], args.N, lines)
    lines.append(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
