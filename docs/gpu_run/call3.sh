#!/bin/bash
# Device call 3: the book's training notebooks 03-05 through papermill on the H200 (JAX), gpu profile.
set -o pipefail
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $OUT/timeline.txt; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 MPLBACKEND=Agg
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache
stamp "book start"
timeout ${BOOK_LIMIT:-520} python3 -m tripletlib book --profile gpu --out /tmp/book --only 03 04 05 > $OUT/book.log 2>&1
stamp "book end rc=$?"
cat $OUT/book.log | tail -15
cd /tmp/book && tar czf $OUT/gpu_book.tar.gz --exclude='checkpoints' --exclude='*.weights.h5' --exclude='data' --exclude='.cache' . 2>&1 | tail -3
ls -la $OUT; stamp done
