"""mflib.compare: SGD against the PDE (chapter 4)."""

import numpy as np
import pytest

import mflib as mf
from mflib import compare, pde


def test_sgd_gap(rng):
    p = mf.problems.AnisotropicGaussians(10, 4, 0.5)
    red = pde.ReducedAnisotropic(p, n_cos=(12, 12))
    R0, w0 = pde.gaussian_init(red, 0.8, 12)
    ref = pde.GridSolver(red, h=0.1, r_max=(1.5, 1.2)).run(R0, w0, T=1.0, dt=0.05, n_records=101)
    g = compare.sgd_gap(p, ref.t, ref.risk, 200, 1e-3, 1.0, 0.8, rng)
    assert 0 < g < 0.1
    with pytest.raises(ValueError, match="eps"):
        compare.sgd_gap(p, ref.t, ref.risk, 200, 0.0, 1.0, 0.8, rng)


@pytest.mark.parametrize("d, s0", [(6, 3), (5, 5)])
def test_self_term_is_the_gap_between_R_N_and_the_reduced_risk(d, s0):
    """Averaged over uniform directions at fixed radii, R_N(w) minus the reduced risk of the same
    radii is the self-term alone (the cross terms average to 0): a Monte Carlo check."""
    p = mf.problems.AnisotropicGaussians(d, s0, 0.5)
    red = pde.ReducedAnisotropic(p, n_cos=(16, 16))
    rng = np.random.default_rng(3)
    N = 5
    R = red.radii(np.abs(rng.normal(0.7, 0.2, size=(N, 2)))[:, : 1 if s0 == d else 2])
    w = np.full(N, 1 / N)
    gaps = np.array([p.risk(red.embed(R, rng)) for _ in range(4000)]) - red.risk(R, w)
    st = compare.self_term(red, R)
    assert abs(st) > 5 * gaps.std() / np.sqrt(gaps.size)       # not trivially 0
    assert abs(gaps.mean() - st) < 4 * gaps.std() / np.sqrt(gaps.size)


def test_self_term_relu_closed_form():
    """For ReLU U(w, w) = sum_pm A_pm / 4 (E relu(u)^2 = A / 2, classes weighted 1/2)."""
    p = mf.problems.AnisotropicGaussians(8, 3, 0.4)
    red = pde.ReducedAnisotropic(p)
    R = np.array([[0.5, 0.3], [1.0, 0.2], [0.2, 0.9]])
    A = [(1 + s * 0.4) ** 2 * R[:, 0] ** 2 + R[:, 1] ** 2 for s in (1, -1)]
    ubar = np.diag(red.UBar(R))
    expect = ((A[0] + A[1]) / 4 - ubar).sum() / 9
    assert compare.self_term(red, R) == pytest.approx(expect, rel=1e-9)


def test_linear_fit_recovers_a_line_and_covers_the_truth():
    rng = np.random.default_rng(0)
    x = np.array([1.0, 2, 3, 4, 5])
    se = np.full(5, 0.05)
    hits = 0
    for _ in range(400):
        y = 0.8 + 0.3 * x + se * rng.standard_normal(5)
        f = mf.fitting.linear_fit(x, y, se)
        hits += f.intercept_ci[0] <= 0.8 <= f.intercept_ci[1]
    assert 0.9 < hits / 400 < 0.99
    f = mf.fitting.linear_fit(x, 0.8 + 0.3 * x, se)
    assert f.intercept == pytest.approx(0.8) and f.slope == pytest.approx(0.3)
    with pytest.raises(ValueError, match="y_se"):
        mf.fitting.linear_fit(x, x, -se)
    with pytest.raises(ValueError, match="x"):
        mf.fitting.linear_fit(x[:3], x[:3], se[:3])


def test_mmn_activation_interpolates_its_nodes():
    act = mf.activations.get("mmn")
    t = np.array([-1.0, 0.0, 0.25, 0.5, 1.0, 1.5, 3.0])
    assert np.allclose(act(t), [-2.5, -2.5, -3.25, -4.0, 1.75, 7.5, 7.5])
    h = 1e-6
    for u in [-0.7, 0.2, 0.9, 2.0]:
        assert act.derivative(np.array([u]))[0] == pytest.approx(
            (act(np.array([u + h]))[0] - act(np.array([u - h]))[0]) / (2 * h), abs=1e-6)
