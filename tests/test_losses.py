"""mflib.losses: values and derivatives by hand and by finite differences, accuracy, validation."""

from __future__ import annotations

import numpy as np
import pytest

from mflib import chaos, losses


def test_loss_value_and_derivative():
    f = np.array([[0.0, np.log(3.0)], [2.0, 2.0]])
    np.testing.assert_allclose(losses.loss_value(f, np.array([1, 0]), "cross_entropy"),
                               [-np.log(0.75), np.log(2.0)], atol=1e-14)
    np.testing.assert_allclose(losses.loss_derivative(f, np.array([1, 0]), "cross_entropy"),
                               [[0.25, -0.25], [-0.5, 0.5]], atol=1e-14)
    np.testing.assert_allclose(losses.loss_derivative(f[:, :1], np.array([1.0, 1.0])), [[-2.0], [2.0]])
    np.testing.assert_allclose(losses.loss_value(f[:, :1], np.array([1.0, 1.0])), [1.0, 1.0])
    with pytest.raises(ValueError):
        losses.loss_value(f, np.array([0, 2]), "cross_entropy")     # label out of range
    with pytest.raises(ValueError):
        losses.loss_value(f, np.array([0.0, 1.0]), "cross_entropy")  # not integer labels
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.loss_value(f, np.array([0, 1]), "hinge")
    with pytest.raises(ValueError, match="C >= 2"):
        losses.loss_value(f[:, :1], np.array([0, 0]), "cross_entropy")
    with pytest.raises(ValueError, match="shape"):
        losses.loss_value(f, np.array([1.0, 1.0]))                  # C = 2 needs (n, 2) targets


@pytest.mark.parametrize("loss", losses.LOSSES)
def test_derivative_is_the_gradient_of_the_value(loss):
    rng = np.random.default_rng(3)
    f = rng.standard_normal((6, 3)) * 3.0
    y = rng.integers(0, 3, 6) if loss == "cross_entropy" else rng.standard_normal((6, 3))
    g = losses.loss_derivative(f, y, loss)
    h = 1e-6
    for c in range(3):
        e = np.zeros(3)
        e[c] = h
        fd = (losses.loss_value(f + e, y, loss) - losses.loss_value(f - e, y, loss)) / (2 * h)
        np.testing.assert_allclose(g[:, c], fd, atol=1e-7)


def test_unchecked_kernels_take_leading_axes():
    rng = np.random.default_rng(4)
    f = rng.standard_normal((2, 5, 3)) * 50.0                 # large outputs: softmax must not overflow
    y = rng.integers(0, 3, 5)
    v = losses.per_sample(f, y, "cross_entropy")
    g = losses.derivative(f, y, "cross_entropy")
    assert v.shape == (2, 5) and g.shape == (2, 5, 3) and np.all(np.isfinite(v))
    for r in range(2):
        np.testing.assert_allclose(v[r], losses.loss_value(f[r], y, "cross_entropy"), rtol=1e-14)
        np.testing.assert_allclose(g[r], losses.loss_derivative(f[r], y, "cross_entropy"), atol=1e-15)
    np.testing.assert_allclose(losses.softmax(f).sum(axis=-1), 1.0, rtol=1e-14)


def test_accuracy_of_outputs():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 3))
    W = rng.standard_normal((4, 3, 6))                     # R = 4 runs, N = 3, p = 2 * 3
    f = chaos.outputs(X, W)
    y = f[0].argmax(axis=1)
    acc = losses.accuracy(f, y)
    assert acc.shape == (4,) and acc[0] == 1.0
    assert losses.accuracy(f[0], y) == 1.0
    assert losses.accuracy(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0])) == 0.5
    with pytest.raises(ValueError):
        losses.accuracy(f, y[:3])
    with pytest.raises(ValueError):
        losses.accuracy(f[0, 0], y)
