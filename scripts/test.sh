#!/usr/bin/env bash
# The test suite, as `make test` runs it (and CI through .ci/run): lint, the slow "it learns" and
# book-batch test, nbval, unit tests under TensorFlow, then the backend-agnostic part under JAX.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

step "ruff"
$BIN/ruff check tripletlib tests benchmarks data_scripts

# The book first: the longest step (five rows of 400 steps from the label-free start; its time is in
# docs/benchmarks.md, "The book on the ci profile").
step "slow test: the ci-profile book batch (every row trained, tables, figures)"
KERAS_BACKEND=tensorflow $BIN/python -m pytest tests -m "slow and not smoke" -q

# Two notebooks at a time (pytest-xdist, one notebook per worker): they only read the rows that the
# batch above trained into results/ci. Without those rows, two notebooks could train the same row
# into the same folder at once: run nbval without -n then.
step "notebooks (nbval, outputs of the ci profile)"
KERAS_BACKEND=tensorflow $BIN/python -m pytest --nbval-lax --sanitize-with book/sanitize.cfg \
    book -q -p no:cacheprovider -n 2 --dist loadscope

# Two test files at a time (pytest-xdist): most unit tests wait on Python (building and tracing
# small networks) more than on the cores; every test writes under its own tmp_path.
step "unit tests, KERAS_BACKEND=tensorflow"
KERAS_BACKEND=tensorflow $BIN/python -m pytest tests -m "not slow" -q -n 2 --dist loadfile

step "losses, augmentation, one training step, two devices, bf16 and the CPU recipe, KERAS_BACKEND=jax"
KERAS_BACKEND=jax $BIN/python -m pytest tests/test_losses.py tests/test_augment.py \
    tests/test_backend_step.py tests/test_devices.py tests/test_cpu_recipe.py \
    tests/test_hardware_settings.py -q -n 2 --dist loadfile

# The prepared GPU command at its tiny size on the CPU under JAX: environment, data,
# the gpu book's notebook 00 and two epochs of the timed row. The other `smoke` test (the thesis
# profile's whole book) runs in `make smoke` only.
step "scripts/gpu_run.py --tiny under JAX"
$BIN/python -m pytest tests/test_thesis_smoke.py -m smoke -k prepared_gpu_script -q
