"""The SIMD ReLU pair sum behind Problem.risk: its atan2 within 2 ulp of the library's, its arc-cosine
k within 1e-14 relative of quadrature.arccos1_scalar, the pair sum within 1e-13 relative of the
scalar kernel, and the risk within 1e-12 relative of the dense U(W).sum()."""

import math

import numpy as np
import pytest

import mflib as mf
from mflib import problems, quadrature


def _vectorised(f):
    """A numba loop over arrays calling f elementwise (as the risk kernel does)."""
    import numba

    @numba.njit(error_model="numpy")
    def loop(a, b, out):
        for i in range(a.size):
            out[i] = f(a[i], b[i])
    return loop


def test_atan2_simd_within_two_ulp(rng):
    n = 200_000
    y = np.abs(rng.standard_normal(n)) * 10.0 ** rng.uniform(-8, 8, n)
    x = rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)
    # the reduction's break points and reflections: y = |x|, y/|x| = 0.66, y or x = 0
    edge_y = np.array([1.0, 1.0, 0.66, 1.0, 0.0, 0.0, 1.0, 1.0, 1e-300, 1.0, 3.0, 3.0])
    edge_x = np.array([1.0, -1.0, 1.0, 0.66, 1.0, -1.0, 0.0, -0.0, 1.0, 1e-300, -1e-300, 7.0])
    y, x = np.concatenate([y, edge_y]), np.concatenate([x, edge_x])
    got = np.empty_like(y)
    _vectorised(quadrature._atan2_simd)(y, x, got)
    ref = np.arctan2(y, x)
    keep = ~((y == 0) & (x == 0))
    ulp = np.abs(got - ref)[keep] / np.spacing(np.abs(ref[keep]))
    assert ulp.max() <= 2.0, ulp.max()          # Cephes: 1.8e-16 relative on |v| <= 0.66
    assert np.mean(ulp > 1.0) < 1e-4             # 2 of 2 million in a trial run
    assert quadrature._atan2_simd(0.0, 0.0) == 0.0


def _pairs(rng, n):
    A, B = 10.0 ** rng.uniform(-3, 3, n), 10.0 ** rng.uniform(-3, 3, n)
    cos = rng.uniform(-1, 1, n)
    m = n // 5
    cos[:m] = -1 + 10.0 ** rng.uniform(-17, 0, m)         # nearly antiparallel (series branch)
    cos[m:2 * m] = 1 - 10.0 ** rng.uniform(-17, 0, m)     # nearly parallel
    cos[2 * m:3 * m] = -np.cos(rng.uniform(0.45, 0.55, m))  # around the branch point phi = 1/2
    cos[-4:] = [-1.0, 1.0, 0.0, -0.0]
    AB = A * B
    return AB, np.sqrt(AB) * cos, np.sqrt(A) * np.sqrt(B)


def testarccos1_simd_agrees_with_arccos1_scalar(rng):
    AB, C, sq = _pairs(rng, 50_000)
    ref = np.array([quadrature.arccos1_scalar(a, c) for a, c in zip(AB, C, strict=True)])
    import numba

    @numba.njit(error_model="numpy")
    def loop(AB, C, sq, out):
        for i in range(AB.size):
            out[i] = quadrature.arccos1_simd(AB[i], C[i], sq[i])
    got = np.empty_like(AB)
    loop(AB, C, sq, got)
    assert np.all(got >= 0)
    big = ref > 1e-300
    rel = np.abs(got[big] - ref[big]) / ref[big]
    assert rel.max() <= 1e-14, rel.max()
    assert np.all(np.abs(got[~big]) <= 1e-300)
    assert quadrature.arccos1_simd(0.0, 0.0, 0.0) == 0.0
    # the scalar and vectorised formulas side by side on one pair, for a reader
    assert math.isclose(quadrature.arccos1_simd(2.0, 0.3, math.sqrt(2.0)),
                        quadrature.arccos1_scalar(2.0, 0.3), rel_tol=1e-15)


def _grams(rng, N, n_g, special):
    d = 5 * n_g
    W = rng.standard_normal((N, d)) / np.sqrt(d)
    if special:   # duplicated, nearly parallel, antiparallel and zero neurons
        b = W[:6]
        W = np.concatenate([b, b, b + 1e-9 * rng.standard_normal(b.shape), -b, np.zeros((2, d)), W])
    Gs = np.stack([W[:, 5 * g:5 * g + 5] @ W[:, 5 * g:5 * g + 5].T for g in range(n_g)])
    return Gs


@pytest.mark.parametrize("n_g,n_c", [(1, 1), (2, 2), (2, 1), (3, 2), (1, 3)])
@pytest.mark.parametrize("special", [False, True])
def test_simd_pair_sum_equals_scalar_kernel(rng, n_g, n_c, special):
    Gs = _grams(rng, 203, n_g, special)
    coef = rng.uniform(0.2, 2.0, (n_c, n_g))
    weights = rng.dirichlet(np.ones(n_c))
    ref = problems._relu_pair_sum(Gs, coef, weights)
    got = problems._relu_pair_sum_simd(Gs, coef, weights)
    assert abs(got - ref) <= 1e-13 * abs(ref), (got, ref)


def test_risk_at_benchmark_size_equals_dense(rng):
    """N = 800, d = 320 (the benchmark's setting), at initialisation and after concentrating the
    neurons (many nearly parallel pairs)."""
    p = mf.problems.AnisotropicGaussians(320, 60, 0.5)
    W = p.init_weights(800, 1.0, rng)
    for V in (W, W[:1] + 0.05 * W):
        fast, dense = p.risk(V), mf.problems.Problem.risk(p, V)
        assert abs(fast - dense) <= 1e-12 * abs(dense), (fast, dense)
