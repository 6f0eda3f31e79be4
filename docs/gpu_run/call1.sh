#!/bin/bash
# Device call 1: the training-throughput benchmark on the H200 (JAX backend).
set -o pipefail
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $OUT/timeline.txt; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
stamp installed
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv > $OUT/gpu.txt 2>&1
python3 -c "import jax, jaxlib, keras, numpy; print(jax.__version__, jaxlib.__version__, keras.__version__, numpy.__version__, jax.devices())" 2>&1 | tee -a $OUT/gpu.txt
nproc >> $OUT/gpu.txt
B="python3 benchmarks/train_throughput.py --preset market --workers 16 --data /tmp/market --cache-dir /tmp/cache --no-progress --steps 30 --warmup-steps 3 --device-resident"
run() { # name, timeout, args...
  local name=$1 limit=$2; shift 2
  stamp "start $name"
  timeout $limit $B "$@" --json $OUT/$name.json 2>&1 | grep -v "Warning\|warnings.warn" | tee $OUT/$name.log
  stamp "end $name rc=$?"
}
run r50_fp32 200 --backbones resnet50
run r50_bf16 170 --backbones resnet50 --mixed-precision --extra-batch-sizes 128 256
run mild_fp32 120 --backbones mildnet
left=$(( 575 - ( $(date +%s) - T0 ) )); [ $left -lt 30 ] && left=30
run mild_bf16 $left --backbones mildnet --mixed-precision --extra-batch-sizes 256
stamp done
