"""How the reduced PDE solver's cost grows as its grid is refined (chapter 4's solver).

Usage: python benchmarks/bench_pde.py [--out benchmarks/results/bench_pde.txt]

Problem: chapter 4's anisotropic Gaussians (d = 320, s0 = 60, Delta = 0.5, ReLU), reduced to the law
of the two radii (mflib.pde.ReducedAnisotropic), 24 x 24 quantile particles from kappa = 0.8, run to
t = 4 by mflib.pde.GridSolver with dt = h (Heun), as chapter 4 does, for h = 0.2, 0.1, 0.05, 0.025.
For each h: the set-up (the potential and the interaction matrix K at the grid nodes, computed once),
the run, the number of nodes M_g, the numerical rank of K kept, and the change of the risk curve from
the previous h (the solver is second order: the change falls about 4x per halving). Best of 3.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from timing import best_of, cpu_model  # noqa: E402

import mflib as mf  # noqa: E402
from mflib import pde  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
HS = (0.2, 0.1, 0.05, 0.025)
T, KAPPA, R_MAX = 4.0, 0.8, (1.3, 1.1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks/results/bench_pde.txt")
    args = ap.parse_args()
    red = pde.ReducedAnisotropic(mf.problems.AnisotropicGaussians(320, 60, 0.5))
    R0, w0 = pde.gaussian_init(red, KAPPA, 24)
    lines = [f"date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
             f"machine: nproc = {os.cpu_count()}, CPU: {cpu_model()}, "
             f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
             "command: python benchmarks/bench_pde.py",
             f"workload: d = 320, s0 = 60, Delta = 0.5, ReLU; 24 x 24 quantile particles, kappa = {KAPPA}, "
             f"t = 0 -> {T}, dt = h (Heun), r_max = {R_MAX}; best of 3",
             "",
             f"{'h':>6} {'nodes':>6} {'rank K':>6} {'steps':>6} {'set-up s':>9} {'run s':>8} "
             f"{'ms/step':>8} {'change of risk curve':>21}"]
    prev = None
    n_rec = int(T / HS[0]) + 1
    for h in HS:
        setup = best_of(lambda h=h: pde.GridSolver(red, h=h, r_max=R_MAX), 3)[0]
        solver = pde.GridSolver(red, h=h, r_max=R_MAX)
        out = {}

        def run(solver=solver, h=h, out=out):
            out["sol"] = solver.run(R0, w0, T=T, dt=h, n_records=n_rec, progress=False)

        t_run = best_of(run, 3)[0]
        risk = out["sol"].risk
        steps = int(np.ceil(T / h - 1e-9))
        change = "" if prev is None else f"{np.abs(risk - prev).max():.1e}"
        lines.append(f"{h:>6} {len(solver.Vn):>6} {solver.rank:>6} {steps:>6} {setup:>9.3f} {t_run:>8.3f} "
                     f"{1e3 * t_run / steps:>8.2f} {change:>21}")
        prev = risk
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
