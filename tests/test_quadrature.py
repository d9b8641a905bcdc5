"""The arc-cosine pair expectation, mflib's one implementation (quadrature.arccos1), against
50-digit arithmetic, kink-aware quadrature and finite differences."""

import mpmath as mp
import numpy as np
import pytest

from mflib import activations as act
from mflib import quadrature as quad


def _k_mp(AB, C):
    with mp.workdps(60):
        AB, C = mp.mpf(float(AB)), mp.mpf(float(C))
        r = mp.sqrt(max(AB - C * C, 0))
        return float((r + (mp.pi - mp.atan2(r, C)) * C) / (2 * mp.pi))


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("gap", [0.5, 1e-2, 1e-4, 1e-8, 1e-12, 0.0])
def test_arccos1_near_parallel_and_antiparallel_full_precision(sign, gap):
    """|cos| = 1 - gap: the relative error stays at round-off level (arccos(C / sqrt(AB)) with
    clipping, the formula this replaced, was 4e-2 wrong at gap 1e-8 antiparallel)."""
    AB = np.array([1.7, 0.3, 2.0e3])
    C = sign * np.sqrt(AB) * (1.0 - gap)
    k = quad.arccos1(AB, C).k
    for i in range(AB.size):
        ref = _k_mp(AB[i], C[i])
        ks = quad.arccos1_scalar(AB[i], C[i])
        if ref == 0.0:
            assert k[i] == 0.0 and ks == 0.0
        else:
            assert abs(k[i] - ref) <= 4e-16 * ref
            assert abs(ks - ref) <= 4e-16 * ref


def test_arccos1_against_quadrature_and_derivative():
    rng = np.random.default_rng(3)
    A, B = rng.uniform(0.2, 3.0, 50), rng.uniform(0.2, 3.0, 50)
    C = rng.uniform(-1, 1, 50) * np.sqrt(A * B)
    r = quad.arccos1(A * B, C)
    ref = quad.gauss_expect_pair(act.relu.sigma, act.relu.sigma, act.relu.kinks, act.relu.kinks, A, B, C)
    np.testing.assert_allclose(r.k, ref, rtol=1e-11, atol=1e-14)
    h = 1e-6
    dC = (quad.arccos1(A * B, C + h).k - quad.arccos1(A * B, C - h).k) / (2 * h)
    np.testing.assert_allclose(r.kappa0, dC, rtol=1e-7)
    dA = (quad.arccos1((A + h) * B, C).k - quad.arccos1((A - h) * B, C).k) / (2 * h)
    np.testing.assert_allclose(r.root / (4 * np.pi * A), dA, rtol=1e-7)
    scal = np.array([quad.arccos1_scalar(a * b, c) for a, b, c in zip(A, B, C, strict=True)])
    np.testing.assert_allclose(scal, r.k, rtol=1e-15, atol=0)


def test_arccos1_degenerate_and_given_angle():
    r = quad.arccos1(np.array([0.0, 4.0, 4.0]), np.array([0.0, 2.0, -2.0]))
    assert r.k[0] == 0.0 and r.k[2] == 0.0 and r.k[1] == pytest.approx(1.0)
    theta = np.array([0.0, 1.0, np.pi - 1e-9, np.pi])
    AB = np.full(4, 2.0)
    given = quad.arccos1(AB, None, theta=theta)
    plain = quad.arccos1(AB, np.sqrt(AB) * np.cos(theta))
    np.testing.assert_allclose(given.kappa0, (np.pi - theta) / (2 * np.pi), rtol=0, atol=1e-16)
    np.testing.assert_allclose(given.k[:2], plain.k[:2], rtol=1e-15)
