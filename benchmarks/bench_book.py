"""Time the execution of every chapter notebook listed in _toc.yml (as CI executes them).

Usage: python benchmarks/bench_book.py [--out benchmarks/results/book_times.json]

Each notebook is executed once in a fresh kernel with MFLIB_PROGRESS=0, exactly as nbval does;
the wall-clock time per notebook and the machine's description are written as JSON, which the
book's appendix page plots.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.date.today().isoformat()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks/results/book_times.json")
    args = ap.parse_args()
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    notebooks = subprocess.run([sys.executable, str(ROOT / ".ci/toc_notebooks.py")], capture_output=True,
                               text=True, check=True).stdout.split()
    os.environ["MFLIB_PROGRESS"] = "0"
    times = {}
    for nb_path in notebooks:
        nb = nbformat.read(ROOT / nb_path, as_version=4)
        ep = ExecutePreprocessor(timeout=600, kernel_name="python3")
        t0 = time.perf_counter()
        ep.preprocess(nb, {"metadata": {"path": str(ROOT / "book")}})
        times[pathlib.Path(nb_path).stem] = round(time.perf_counter() - t0, 1)
        print(f"{nb_path:32s} {times[pathlib.Path(nb_path).stem]:7.1f} s", flush=True)
    result = {"machine": machine(), "seconds": times,
              "command": "python benchmarks/bench_book.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"total {sum(times.values()):.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
