# One command sets up and runs the main job; one sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
RESULTS ?= results

.PHONY: book lab test smoke lint notebook-outputs clean-results

$(BIN)/tripletlib: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[book,dev,jax]"
	touch $(BIN)/tripletlib

## The main job: the whole book on the default (cpu) profile, results under results/.
book: $(BIN)/tripletlib
	$(BIN)/tripletlib book --profile $(PROFILE) --out $(RESULTS)

## Open the book in JupyterLab (jupyterlab comes with the `book` extra); notebooks run from book/.
## As root (most containers) JupyterLab needs --allow-root.
lab: $(BIN)/tripletlib
	$(BIN)/jupyter lab --notebook-dir=book $$(test "$$(id -u)" = 0 && echo --allow-root)

## The tests: unit tests, both backends, the notebooks (nbval) and the ci-profile book batch.
test: $(BIN)/tripletlib
	bash scripts/test.sh

## The GPU paths at a tiny size on the CPU under JAX: the thesis-profile book (too long for
## `make test`; docs/benchmarks.md has its time) and scripts/gpu_run.py --tiny (`make test` runs it too).
smoke: $(BIN)/tripletlib
	KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m pytest tests -m smoke -q

lint: $(BIN)/tripletlib
	$(BIN)/ruff check tripletlib tests benchmarks data_scripts

## Re-execute the committed notebooks in place on the ci profile (their outputs are what readers see);
## the kernel's own log lines are quietened as `tripletlib book` does.
notebook-outputs: $(BIN)/tripletlib
	cd book && for notebook in [0-9][0-9]_*.ipynb; do \
		TF_CPP_MIN_LOG_LEVEL=3 ../$(BIN)/python -c 'import sys, papermill; papermill.execute_notebook( \
			sys.argv[1], sys.argv[1], cwd=".", kernel_name="python3", \
			extra_arguments=["--IPKernelApp.log_level=CRITICAL"])' $$notebook || exit 1; done
