r"""Data sets: synthetic inputs and the handwritten digits (chapters 6 and 7).

Fixed training sets whose law is not one of the :mod:`mflib.problems` (those come with exact
potentials). Nothing here downloads: the digits are the 1797 images bundled with scikit-learn.

:func:`sphere`
    points uniform on the unit sphere of :math:`\mathbb R^d` (chapter 6's single-index targets,
    the law of large numbers for :math:`\lambda_{\min}`).
:func:`lifted_circle`
    the circle lifted to the unit sphere of :math:`\mathbb R^3`, chapter 6's training set.
:func:`synthetic_1d`
    a one-dimensional regression problem with a bias coordinate, chapter 7's :math:`p = 2` systems.
:func:`digits`
    scikit-learn's 8x8 digits, split and normalised like MNIST, chapter 7's classification runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .validation import as_array, check_int, check_real, check_rng

__all__ = ["sphere", "lifted_circle", "synthetic_1d", "digits"]


def sphere(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform on the unit sphere of :math:`\\mathbb R^d`, shape ``(n, d)``."""
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    G = check_rng(rng).standard_normal((n, d))
    return G / np.linalg.norm(G, axis=1, keepdims=True)


def lifted_circle(phi) -> np.ndarray:
    r"""Points of the unit circle lifted to the unit sphere of :math:`\mathbb R^3`,
    :math:`x = (\cos\varphi, \sin\varphi, 1)/\sqrt2`, shape ``(n, 3)``.

    The constant coordinate plays the role of a bias: no two such points are parallel or
    antiparallel, so the ReLU Gram matrices are positive definite (Du et al. 2019).
    """
    phi = as_array(phi, "phi", ndim=1)
    return np.stack([np.cos(phi), np.sin(phi), np.ones_like(phi)], axis=1) / np.sqrt(2.0)


def synthetic_1d(n: int = 32, target: Callable | None = None):
    r"""A one-dimensional regression problem with a bias coordinate, for :math:`p = 2` particles.

    :math:`x_i` equally spaced in :math:`[-2, 2]`, augmented to :math:`\tilde x_i = (x_i, 1)`, so
    that :math:`F(w, \tilde x) = \sigma(w_1 x + w_2)`; targets :math:`y_i = \tfrac12\sin(\pi x_i/2)`
    unless ``target`` is given. :math:`\pi` is the uniform measure on the ``n`` points.

    Returns
    -------
    X : array (n, 2), y : array (n,)
    """
    n = check_int(n, "n", minimum=2)
    x = np.linspace(-2.0, 2.0, n)
    y = 0.5 * np.sin(np.pi * x / 2) if target is None else np.asarray(target(x), dtype=float)
    return np.column_stack([x, np.ones(n)]), y


def digits(test_size: float = 0.2, rng: np.random.Generator | None = None):
    r"""scikit-learn's bundled handwritten digits (1797 images, 8x8, 10 classes), split and scaled.

    Stands in for MNIST (no download). Pixels (0..16) are normalised with the mean and standard
    deviation of all training pixels, like torchvision's MNIST normalisation, so a pixel that is
    blank in every image becomes a constant negative input that acts as a bias.

    Returns
    -------
    X_train (n_tr, 64), y_train (n_tr,), X_test (n_te, 64), y_test (n_te,)
    """
    from sklearn.datasets import load_digits

    test_size = check_real(test_size, "test_size", low=0.0, high=1.0, low_open=True, high_open=True)
    rng = check_rng(rng)
    data = load_digits()
    X, y = data.data.astype(float), data.target.astype(np.int64)
    perm = rng.permutation(y.size)
    n_te = int(round(test_size * y.size))
    te, tr = perm[:n_te], perm[n_te:]
    mean, std = X[tr].mean(), X[tr].std()
    return (X[tr] - mean) / std, y[tr], (X[te] - mean) / std, y[te]
