"""mflib.datasets: shapes, norms, laws, determinism and validation."""

from __future__ import annotations

import numpy as np
import pytest

from mflib import datasets


def test_sphere_and_lifted_circle():
    P = datasets.lifted_circle(np.linspace(0, 6, 9))
    assert P.shape == (9, 3) and np.allclose(np.linalg.norm(P, axis=1), 1.0)
    np.testing.assert_allclose(P[:, 2], 1 / np.sqrt(2.0), rtol=1e-15)
    S = datasets.sphere(7, 4, np.random.default_rng(0))
    assert S.shape == (7, 4) and np.allclose(np.linalg.norm(S, axis=1), 1.0)
    np.testing.assert_array_equal(S, datasets.sphere(7, 4, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="phi must be a 1-D"):
        datasets.lifted_circle(np.ones((2, 2)))
    with pytest.raises(ValueError, match="n must be >= 1"):
        datasets.sphere(0, 3, np.random.default_rng(0))


def test_sphere_is_uniform():
    # Uniform on S^{d-1}: E x = 0 and E x x^T = I/d; check both within 5 standard errors.
    n, d = 40_000, 3
    X = datasets.sphere(n, d, np.random.default_rng(1))
    assert np.all(np.abs(X.mean(axis=0)) < 5 * np.sqrt(1 / d / n))
    second = X.T @ X / n
    se = np.sqrt((X[:, :, None] * X[:, None, :]).var(axis=0) / n)
    assert np.all(np.abs(second - np.eye(d) / d) < 5 * se)


def test_synthetic_1d():
    X, y = datasets.synthetic_1d(5)
    np.testing.assert_allclose(X[:, 1], 1.0)
    np.testing.assert_allclose(X[:, 0], np.linspace(-2, 2, 5))
    np.testing.assert_allclose(y, 0.5 * np.sin(np.pi * np.linspace(-2, 2, 5) / 2))
    _, y2 = datasets.synthetic_1d(4, target=lambda x: x**2)
    np.testing.assert_allclose(y2, np.linspace(-2, 2, 4) ** 2)
    with pytest.raises(ValueError):
        datasets.synthetic_1d(1)


def test_digits():
    Xtr, ytr, Xte, yte = datasets.digits(rng=np.random.default_rng(0))
    assert Xtr.shape == (1438, 64) and Xte.shape == (359, 64)
    assert abs(Xtr.mean()) < 1e-12 and Xtr.std() == pytest.approx(1.0)
    assert set(np.unique(ytr)) == set(range(10))
    assert np.ptp(Xtr[:, 0]) == 0.0 and Xtr[0, 0] < 0        # the blank corner pixel acts as a bias
    Xtr2, *_ = datasets.digits(rng=np.random.default_rng(0))
    np.testing.assert_array_equal(Xtr, Xtr2)
    with pytest.raises(ValueError):
        datasets.digits(test_size=1.0, rng=np.random.default_rng(0))


def test_standardize_uses_the_training_moments():
    rng = np.random.default_rng(0)
    train, test = 3.0 + 2.0 * rng.standard_normal((50, 4)), rng.standard_normal((7, 4))
    a, b = datasets.standardize(train, test, dtype=np.float64)
    assert abs(a.mean()) < 1e-12 and abs(a.std() - 1.0) < 1e-12
    np.testing.assert_allclose(b, (test - train.mean()) / train.std(), rtol=1e-13)
    (c,) = datasets.standardize(train)
    assert c.dtype == np.float32
    with pytest.raises(ValueError, match="zero standard deviation"):
        datasets.standardize(np.ones((3, 3)))
    with pytest.raises(TypeError, match="train"):
        datasets.standardize(np.arange(6))
