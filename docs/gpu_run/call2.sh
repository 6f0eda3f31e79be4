#!/bin/bash
# Device call 2: training throughput on the H200 (JAX): fused vs library augmentation, fp32/bf16.
set -o pipefail
T0=$(date +%s); END=${END:-440}
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $OUT/timeline.txt; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
B="python3 benchmarks/train_throughput.py --preset market --workers 16 --data /tmp/market --cache-dir /tmp/cache --steps 20 --warmup-steps 3 --device-resident"
run() { # name, wanted seconds, args...
  local name=$1 want=$2; shift 2
  local left=$(( END - ( $(date +%s) - T0 ) ))
  [ $left -lt 40 ] && { stamp "skip $name"; return; }
  [ $want -gt $left ] && want=$left
  stamp "start $name (limit $want s)"
  timeout $want $B "$@" --json $OUT/$name.json > $OUT/$name.log 2>&1
  stamp "end $name rc=$?"
  grep -v "Warning\|warnings.warn\|it/s\]\|s/it\]\|step/s\]\|s/step\]" $OUT/$name.log | grep "|\|Augmenting\|not finite\|Error\|error" | tail -20
}
stamp "prepare data"
python3 .devrun/prepare.py > $OUT/prepare.log 2>&1
stamp "prepared rc=$?: $(tail -1 $OUT/prepare.log)"
run r50_fused_bf16 200 --backbones resnet50 --mixed-precision --augmentation fused --extra-batch-sizes 256
run r50_library_fp32 110 --backbones resnet50
run mild_fused_bf16 110 --backbones mildnet --mixed-precision --augmentation fused --extra-batch-sizes 256
run r50_fused_fp32 100 --backbones resnet50 --augmentation fused
stamp done
