"""Print the environment of nbval's second numerical configuration, as `NAME=value` words.

The committed notebook outputs are produced by `make notebooks` in the machine's default
configuration. `make nbval` re-executes them in another one, so that a printed digit that depends on
round-off fails CI here instead of on a reader's machine:

* NPY_DISABLE_CPU_FEATURES: every SIMD target NumPy dispatches to that this CPU supports beyond
  NumPy's baseline (e.g. X86_V3 X86_V4 AVX512_ICL on an AVX-512 machine), so NumPy's own loops
  (sums, exp, log, sin, ...) run their baseline code paths, with other rounding;
* NUMBA_CPU_NAME=generic: numba compiles mflib's kernels without the host's vector instructions and
  FMA contraction (its cache keeps one build per CPU name);
* OMP_NUM_THREADS=1 / OPENBLAS_NUM_THREADS=1 (the default is 2): another BLAS partition of the work.
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are left as the environment sets them (some processors need
them for correctness).
"""

from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

extra = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
words = ["NUMBA_CPU_NAME=generic", "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1"]
if extra:
    words.append("NPY_DISABLE_CPU_FEATURES=" + ",".join(extra))
print(" ".join(words))
