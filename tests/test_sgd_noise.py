"""Noisy SGD's block engine (mflib.sgd, "Langevin noise in blocks") against the per-step loop, in law.

The block engine draws, per neuron and per block of K steps, the noise's projections on the block's
samples and its sum at the block's end (d + (K - 1) B normals) instead of K d normals, so its
trajectory differs from the per-step loop's on the same seed; what must agree is the law. Design:

* many independent runs of each engine from the same W0 (small d, N, few steps: a few seconds);
  the per-step path is ``sgd.run(..., _noise="step")``, which test_sgd.py shows equal to
  ``sgd.run_reference`` step for step;
* statistics of the final weights, per run: the mean over neurons of <w, e_1> (a signal
  coordinate), of <w, e_d> (a noise coordinate), of |w|^2 and of |<w, e_1>|;
* for each statistic two two-sample tests: Welch's t-test on the means and the Brown-Forsythe
  (Levene, median-centred) test on the spreads; 8 p-values, Bonferroni at family level ALPHA:
  a correct engine fails with probability <= ALPHA = 1e-3 over seeds (asymptotically in the
  number of runs; the seeds are fixed, so the test itself is deterministic);
* the regime makes noise move the pre-activations within a block (beta small, eps moderate: the
  noise's standard deviation sqrt(2 eps / beta) per step is comparable to |w|), so the variant that
  adds the block's noise only at the block's end (the right law for W at block ends taken alone,
  but pre-activations without noise) is wrong; it is run as a negative control and must be
  detected (smallest Bonferroni-adjusted p-value below ALPHA).

Raw p-values when this test was written (n = 1000 runs per engine; Bonferroni level 1.25e-4):
  f64, lam = 0, batch 1, 2 blocks of 32 steps: block engine smallest p = 0.11 (|w|^2 mean);
    ends-only 9e-138 (|w|^2 mean), also 5e-48 (|<w,e1>| mean), 3e-23 (<w,ed> spread);
  f32, lam = 0.5 (c = 0.9), batch 2, 6 blocks of 6 steps: block engine smallest p = 0.15;
    ends-only 7e-15 (|w|^2 mean), 4e-6 (|<w,e1>| spread), 1e-5 (|<w,e1>| mean).
"""

import math

import numpy as np
import pytest
from scipy import stats

import mflib as mf
from mflib import sgd

ALPHA = 1e-3
D, S0, N, RUNS = 4, 2, 3, 1000


def _ends_only(H, G, Xb, K, B, c, amp, rng, E, Tmp):
    """Negative control: the block's noise sum at its end (right law), none in the pre-activations."""
    S = sgd._bridge_coeffs(K, c)[0]
    rng.standard_normal(out=E, dtype=E.dtype.type)
    return amp * math.sqrt(S[K])


def _final_stats(problem, W0, seed, kw):
    W = np.array([sgd.run(problem, W0, rng=np.random.default_rng([seed, s]), record_risk=False,
                          **kw).W for s in range(RUNS)], dtype=np.float64)
    return {"<w,e1>": W[:, :, 0].mean(1), "<w,ed>": W[:, :, -1].mean(1),
            "|w|^2": (W ** 2).sum(2).mean(1), "|<w,e1>|": np.abs(W[:, :, 0]).mean(1)}


def _pvalues(a, b):
    """The 8 raw p-values (means: Welch; spreads: Brown-Forsythe) of two samples of statistics."""
    p = {}
    for k in a:
        p[k + " mean"] = stats.ttest_ind(a[k], b[k], equal_var=False).pvalue
        p[k + " spread"] = stats.levene(a[k], b[k], center="median").pvalue
    return p


@pytest.mark.parametrize("kw", [
    dict(eps=0.1, steps=64, beta=0.2, block=32),
    dict(eps=0.2, steps=36, beta=0.2, lam=0.5, batch=2, block=6, dtype=np.float32),
], ids=["f64-lam0-b1", "f32-lam-b2"])
def test_block_noise_in_law(monkeypatch, kw):
    problem = mf.problems.AnisotropicGaussians(D, S0, 0.5)
    W0 = np.random.default_rng(1).standard_normal((N, D)) * 0.5
    step_kw = {k: v for k, v in kw.items() if k not in ("block", "dtype")}
    ref = _final_stats(problem, W0, 1, step_kw | dict(_noise="step"))
    blk = _final_stats(problem, W0, 2, kw)
    monkeypatch.setattr(sgd, "_block_noise", _ends_only)
    bad = _final_stats(problem, W0, 3, kw)
    p_blk, p_bad = _pvalues(ref, blk), _pvalues(ref, bad)
    print("raw p, block engine:", {k: f"{v:.2g}" for k, v in p_blk.items()})
    print("raw p, ends only:   ", {k: f"{v:.2g}" for k, v in p_bad.items()})
    level = ALPHA / len(p_blk)                    # Bonferroni
    assert min(p_blk.values()) > level, p_blk
    assert min(p_bad.values()) < level, p_bad     # the negative control is detected
