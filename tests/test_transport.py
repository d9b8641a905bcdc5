"""mflib.transport against brute force, against each other and against closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import mflib as mf

T = mf.transport


def brute_force_w2_squared(X, Y):
    """min over all n! permutations of (1/n) sum |x_i - y_pi(i)|^2."""
    n = X.shape[0]
    C = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    return min(C[np.arange(n), list(p)].mean() for p in itertools.permutations(range(n)))


@pytest.mark.parametrize("n,d", [(1, 2), (3, 1), (5, 2), (6, 3), (7, 2)])
def test_assignment_matches_brute_force(n, d):
    rng = np.random.default_rng(100 + n + d)
    for _ in range(3):
        X = rng.standard_normal((n, d))
        Y = rng.standard_normal((n, d)) + 0.5
        exact = brute_force_w2_squared(X, Y)
        assert T.w2_squared(X, Y) == pytest.approx(exact, rel=1e-12, abs=1e-14)
        assert T.w2(X, Y) == pytest.approx(np.sqrt(exact), rel=1e-12, abs=1e-14)
        assert T.w2_emd_squared(X, Y) == pytest.approx(exact, rel=1e-10, abs=1e-13)


def test_1d_input_is_d_equals_1_and_sorting_is_optimal():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(6), rng.standard_normal(6)
    exact = brute_force_w2_squared(x[:, None], y[:, None])
    assert T.w2_squared(x, y) == pytest.approx(exact, rel=1e-12)
    assert T.w2_squared(x[:, None], y[:, None]) == pytest.approx(exact, rel=1e-12)
    assert T.w2_1d_squared(x, y) == pytest.approx(exact, rel=1e-12)


def test_1d_shift_and_scaling_exact():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1000)
    # Translation: the optimal map is x -> x + c, W2 = |c| exactly.
    for c in (-2.5, 0.0, 0.3):
        assert T.w2(x, x + c) == pytest.approx(abs(c), rel=1e-12, abs=1e-12)
        assert T.w2_1d(x, x + c) == pytest.approx(abs(c), rel=1e-12, abs=1e-12)
    # Dilation about 0 with s > 0 is monotone, hence optimal: W2^2 = (1 - s)^2 mean(x^2).
    for s in (0.2, 1.0, 3.0):
        want = (1 - s) ** 2 * np.mean(x**2)
        assert T.w2_squared(x, s * x) == pytest.approx(want, rel=1e-12, abs=1e-15)
        assert T.w2_1d_squared(x, s * x) == pytest.approx(want, rel=1e-12, abs=1e-15)
    # Translation in d = 2, and the assignment finds it.
    X = rng.standard_normal((60, 2))
    c = np.array([0.4, -1.1])
    assert T.w2(X, X + c) == pytest.approx(np.linalg.norm(c), rel=1e-12)


def test_w2_1d_weighted_unequal_sizes_matches_lp():
    rng = np.random.default_rng(3)
    for n, m in [(1, 5), (7, 3), (40, 25), (13, 13)]:
        x, y = rng.standard_normal(n), 2 * rng.standard_normal(m) + 1
        a, b = rng.random(n), rng.random(m)
        lp = T.w2_emd_squared(x, y, a, b)
        assert T.w2_1d_squared(x, y, a, b) == pytest.approx(lp, rel=1e-10, abs=1e-13)
        assert T.w2_1d(x, y, a, b) == pytest.approx(T.w2_emd(x, y, a, b), rel=1e-10, abs=1e-13)
        # uniform weights by default
        assert T.w2_1d_squared(x, y) == pytest.approx(T.w2_emd_squared(x, y), rel=1e-10, abs=1e-13)


def test_w2_1d_zero_weights_and_duplicates():
    x = np.array([0.0, 5.0, 1.0, 1.0])
    a = np.array([0.5, 0.0, 0.25, 0.25])             # the atom at 5 carries no mass
    y = np.array([1.0])
    assert T.w2_1d_squared(x, y, a) == pytest.approx(0.5, abs=1e-15)
    # two point masses: W2 between delta_0 and delta_3 is 3
    assert T.w2_1d([0.0], [3.0]) == 3.0


def test_w2_1d_closed_form_two_atoms_vs_uniform_pair():
    # mu = 1/3 delta_0 + 2/3 delta_1, nu = 1/2 delta_0 + 1/2 delta_1: mass 1/6 moves by 1.
    assert T.w2_1d_squared([0, 1], [0, 1], a=[1, 2]) == pytest.approx(1 / 6, abs=1e-15)


def test_emd_unequal_sizes_d2_matches_duplicated_assignment():
    # Uniform on 3 atoms vs uniform on 6 atoms = uniform on 6 atoms with each of the 3 doubled.
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((3, 2)), rng.standard_normal((6, 2))
    assert T.w2_emd_squared(X, Y) == pytest.approx(T.w2_squared(np.repeat(X, 2, axis=0), Y), rel=1e-10)


def test_metric_properties():
    rng = np.random.default_rng(5)
    X, Y, Z = (rng.standard_normal((30, 3)) + k for k in range(3))
    assert T.w2(X, X) == 0.0
    assert T.w2(X, Y) == pytest.approx(T.w2(Y, X), rel=1e-12)
    assert T.w2(X, Z) <= T.w2(X, Y) + T.w2(Y, Z) + 1e-12
    # Permuting the rows does not change the measure.
    assert T.w2(X, Y) == pytest.approx(T.w2(X[::-1], Y[rng.permutation(30)]), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Gaussians
# ---------------------------------------------------------------------------------------------
def test_gaussian_1d_closed_form():
    for m1, s1, m2, s2 in [(0, 1, 0, 1), (1, 2, -1, 0.5), (3, 0, 0, 1)]:
        want = (m1 - m2) ** 2 + (s1 - s2) ** 2
        assert T.w2_gaussian_squared(m1, s1**2, m2, s2**2) == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert T.w2_gaussian(m1, s1**2, m2, s2**2) == pytest.approx(np.sqrt(want), rel=1e-12, abs=1e-6)


def test_gaussian_commuting_and_general_cases():
    rng = np.random.default_rng(6)
    # Diagonal covariances: sum over coordinates of the 1-D formula.
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert T.w2_gaussian_squared(m1, v1, m2, v2) == pytest.approx(want, rel=1e-12)
    assert T.w2_gaussian_squared(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(want, rel=1e-12)
    # General case against the cost of the optimal linear map T (an independent formula):
    # T = S1^{-1/2} (S1^{1/2} S2 S1^{1/2})^{1/2} S1^{-1/2}, W2^2 = |dm|^2 + tr((I - T) S1 (I - T)).
    for _ in range(5):
        A, B = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
        S1, S2 = A @ A.T + 0.1 * np.eye(4), B @ B.T + 0.1 * np.eye(4)
        lam, Q = np.linalg.eigh(S1)
        r1, r1inv = (Q * np.sqrt(lam)) @ Q.T, (Q / np.sqrt(lam)) @ Q.T
        mu, P = np.linalg.eigh(r1 @ S2 @ r1)
        Tm = r1inv @ ((P * np.sqrt(mu)) @ P.T) @ r1inv
        np.testing.assert_allclose(Tm @ S1 @ Tm, S2, rtol=1e-8, atol=1e-8)   # T pushes S1 to S2
        I = np.eye(4)
        dm = rng.standard_normal(4)
        want = dm @ dm + np.trace((I - Tm) @ S1 @ (I - Tm))
        assert T.w2_gaussian_squared(dm, S1, 0.0 * dm, S2) == pytest.approx(want, rel=1e-9)
        assert T.w2_gaussian(dm, S1, 0 * dm, S2) == pytest.approx(T.w2_gaussian(0 * dm, S2, dm, S1),
                                                                   rel=1e-9)


def _replicates(fun, R):
    vals = np.array([fun(r) for r in range(R)])
    return vals.mean(), vals.std(ddof=1) / np.sqrt(R)


def test_large_samples_1d_against_gaussian_closed_form():
    """Empirical W2^2 between samples of N(1, 2^2) and N(-1, 0.5^2) against (m1-m2)^2 + (s1-s2)^2.

    Tolerance: 5 standard errors of the mean over R replicates, plus the noise floor (the mean
    W2^2 between two independent samples of one law, which bounds the upward bias of the
    empirical estimate; it is O(log log n / n) here).
    """
    rng = np.random.default_rng(7)
    n, R = 20000, 20
    m1, s1, m2, s2 = 1.0, 2.0, -1.0, 0.5
    exact = T.w2_gaussian_squared(m1, s1**2, m2, s2**2)
    mean, se = _replicates(lambda r: T.w2_1d_squared(m1 + s1 * rng.standard_normal(n),
                                                     m2 + s2 * rng.standard_normal(n)), R)
    floor, _ = _replicates(lambda r: T.w2_1d_squared(s1 * rng.standard_normal(n),
                                                     s1 * rng.standard_normal(n)), R)
    assert abs(mean - exact) <= 5 * se + floor, (mean, exact, se, floor)
    assert floor < 0.01 * exact                       # the check is sharp: the floor is small


def test_large_samples_2d_assignment_against_bures_wasserstein():
    """Assignment W2^2 between samples of two correlated 2-D Gaussians vs the Bures-Wasserstein value.

    Same tolerance rule as the 1-D test (5 standard errors + the two-sample noise floor, here
    O(log n / n) because d = 2 is the critical dimension).
    """
    rng = np.random.default_rng(8)
    n, R = 400, 8
    m1, m2 = np.array([0.0, 0.0]), np.array([1.5, -0.5])
    S1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    S2 = np.array([[0.5, -0.2], [-0.2, 1.5]])
    L1, L2 = np.linalg.cholesky(S1), np.linalg.cholesky(S2)
    exact = T.w2_gaussian_squared(m1, S1, m2, S2)
    draw = lambda m, L: m + rng.standard_normal((n, 2)) @ L.T   # noqa: E731
    mean, se = _replicates(lambda r: T.w2_squared(draw(m1, L1), draw(m2, L2)), R)
    floor1, _ = _replicates(lambda r: T.w2_squared(draw(m1, L1), draw(m1, L1)), R // 2)
    floor2, _ = _replicates(lambda r: T.w2_squared(draw(m2, L2), draw(m2, L2)), R // 2)
    floor = 0.5 * (floor1 + floor2)
    assert abs(mean - exact) <= 5 * se + floor, (mean, exact, se, floor)
    # The estimator must be far from a wrong answer (e.g. forgetting the covariance term).
    assert abs(mean - np.sum((m1 - m2) ** 2)) > 5 * se + floor


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def test_errors():
    with pytest.raises(ValueError, match="X and Y"):
        T.w2(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="X and Y"):
        T.w2_squared(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="same dimension"):
        T.w2(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="same dimension"):
        T.w2_emd(np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="X"):
        T.w2(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="X"):
        T.w2(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        T.w2([0.0, np.nan], [0.0, 1.0])
    with pytest.raises(ValueError, match="x"):
        T.w2_1d(np.zeros((2, 2)), [0.0])
    with pytest.raises(ValueError, match="x and y"):
        T.w2_1d([], [0.0])
    with pytest.raises(ValueError, match="a"):
        T.w2_1d([0.0, 1.0], [0.0], a=[1.0, -1.0])
    with pytest.raises(ValueError, match="b"):
        T.w2_1d([0.0, 1.0], [0.0], b=[0.0])
    with pytest.raises(ValueError, match="b"):
        T.w2_emd([0.0, 1.0], [0.0, 2.0], b=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="S1"):
        T.w2_gaussian([0.0, 0.0], 1.0, [0.0, 0.0], np.eye(2))
    with pytest.raises(ValueError, match="S2"):
        T.w2_gaussian(0.0, 1.0, 0.0, -1.0)
    with pytest.raises(ValueError, match="S1"):
        T.w2_gaussian([0.0, 0.0], [[1.0, 2.0], [0.0, 1.0]], [0.0, 0.0], np.eye(2))
    with pytest.raises(ValueError, match="S2"):
        T.w2_gaussian([0.0, 0.0], np.eye(2), [0.0, 0.0], np.eye(3))
    with pytest.raises(ValueError, match="m1 and m2"):
        T.w2_gaussian([0.0, 0.0], np.eye(2), [0.0, 0.0, 0.0], np.eye(3))
    with pytest.raises(ValueError, match="S1"):
        T.w2_gaussian([0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0], np.eye(2))


@pytest.mark.parametrize("delta", [1e-4, 1e-7, 1e-10])
def test_w2_gaussian_close_covariances_no_cancellation(delta):
    """S2 = (1 + delta)^2 S1: exactly W2 = delta sqrt(tr S1). The textbook difference of traces
    has a floor near 1e-8 sqrt(tr S1) (all digits lost at delta = 1e-10); the sum-of-squares form
    keeps 1e-5 relative accuracy there."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((5, 5))
    S = X @ X.T + 0.1 * np.eye(5)
    w = mf.transport.w2_gaussian(np.zeros(5), S, np.zeros(5), S * (1 + delta) ** 2)
    assert w == pytest.approx(delta * np.sqrt(np.trace(S)), rel=1e-5)


def test_psd_sqrt_closed_forms_and_eigh():
    rng = np.random.default_rng(16)
    for p in (1, 2, 4):
        A = rng.standard_normal((10, p, p))
        S = A @ np.swapaxes(A, 1, 2)
        R = T.psd_sqrt(S)
        np.testing.assert_allclose(R @ R, S, atol=1e-10)
        np.testing.assert_allclose(R, np.swapaxes(R, 1, 2), atol=1e-12)
    np.testing.assert_allclose(T.psd_sqrt(np.zeros((3, 2, 2))), 0.0)
    np.testing.assert_allclose(T.psd_sqrt(np.diag([4.0, 0.0])), np.diag([2.0, 0.0]), atol=1e-15)
    with pytest.raises(ValueError):
        T.psd_sqrt(np.zeros((2, 3)))
    # the 2 x 2 closed form agrees with the eigendecomposition (the route for p > 2)
    A = rng.standard_normal((50, 2, 2))
    S = A @ np.swapaxes(A, 1, 2)
    lam, Q = np.linalg.eigh(S)
    np.testing.assert_allclose(T.psd_sqrt(S), (Q * np.sqrt(lam)[:, None, :]) @ np.swapaxes(Q, 1, 2),
                               atol=1e-12)


def test_w2_coordinates():
    rng = np.random.default_rng(21)
    A = rng.standard_normal((40, 3))
    np.testing.assert_allclose(T.w2_coordinates(A, A + [1.0, -2.0, 0.0]), [1.0, 2.0, 0.0], atol=1e-12)
    B = rng.standard_normal((25, 3))
    w = T.w2_coordinates(A, B)
    np.testing.assert_allclose(w, [T.w2_1d(A[:, j], B[:, j]) for j in range(3)])
    with pytest.raises(ValueError):
        T.w2_coordinates(A, B[:, :2])
