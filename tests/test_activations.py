"""Activations: values, derivatives against finite differences, lookup and validation."""

import numpy as np
import pytest

import mflib as mf

ACTS = ["relu", "truncated_relu", "sigmoid", "tanh", "identity", "bump"]


@pytest.mark.parametrize("name", ACTS)
def test_derivative_matches_central_difference(name):
    act = mf.activations.get(name)
    t = np.linspace(-3, 3, 601)
    t = t[np.all(np.abs(t[:, None] - np.array(act.kinks or [99.0])[None, :]) > 1e-3, axis=1)]
    h = 1e-6
    fd = (act(t + h) - act(t - h)) / (2 * h)
    np.testing.assert_allclose(act.derivative(t), fd, atol=1e-8)


def test_truncated_relu_values():
    tr = mf.activations.truncated_relu
    np.testing.assert_array_equal(tr(np.array([-1.0, 0.0, 0.25, 1.0, 3.0])), [0, 0, 0.25, 1, 1])
    assert tr.kinks == (0.0, 1.0)


def test_sigmoid_normalisation_is_half_of_one_plus_tanh():
    s = mf.activations.sigmoid
    t = np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(s(t), 1 / (1 + np.exp(-2 * t)), rtol=1e-15)


def test_user_supplied_activation_is_accepted_and_sorted():
    sq = mf.activations.Activation("square", lambda t: t**2, lambda t: 2 * t, kinks=(1.0, -1.0))
    assert mf.activations.get(sq) is sq
    assert sq.kinks == (-1.0, 1.0)
    p = mf.problems.AnisotropicGaussians(3, 2, 0.3, activation=sq)
    # E[(w.x)^2] under N(0, Sigma) is w^T Sigma w; V = -(1/2)(A_+ - A_-)
    w = np.array([[0.5, -1.0, 2.0]])
    A_plus = (1.3**2) * (0.25 + 1.0) + 4.0
    A_minus = (0.7**2) * (0.25 + 1.0) + 4.0
    np.testing.assert_allclose(p.V(w), [-(A_plus - A_minus) / 2], rtol=1e-12)


def test_lookup_errors():
    with pytest.raises(ValueError, match="activation must be one of"):
        mf.activations.get("softplus")
    with pytest.raises(TypeError, match="activation"):
        mf.activations.get(3)
    with pytest.raises(TypeError, match="callables"):
        mf.activations.Activation("bad", 1, 2)


def test_bump_activation_derivative_and_values():
    bump = mf.activations.bump
    assert mf.activations.get("bump") is bump
    t = np.linspace(-2.3, 2.3, 2001)
    t = t[np.min(np.abs(t[:, None] - np.array(bump.kinks)), axis=1) > 1e-3]
    h = 1e-6
    assert np.allclose(bump.derivative(t), (bump(t + h) - bump(t - h)) / (2 * h), atol=1e-6)
    assert bump(np.array([0.0, 0.25, 0.5, 1.5, 7.0])).tolist() == [-1.0, 0.0, -1.0, 1.0, 1.0]


def test_identity_activation():
    ident = mf.activations.get("identity")
    assert ident is mf.activations.identity and ident.kinks == ()
    t = np.array([-2.0, 0.0, 3.5])
    np.testing.assert_array_equal(ident(t), t)
    np.testing.assert_array_equal(ident.derivative(t), np.ones(3))
