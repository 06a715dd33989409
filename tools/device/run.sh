#!/bin/bash
# A GPU stage of the default model in one call of the device tool (tools/device/README.md): unpack
# the crops, probe the training rate, train for the time left, export the model as float16 halves
# under $OUT. CONFIG: the stage (default: stage 19's); BUDGET: seconds this script may take in
# all; EXTRA: more KEY=VALUE overrides.
set -u -o pipefail
T0=$SECONDS; BUDGET=${BUDGET:-480}; PROBE_STEPS=${PROBE_STEPS:-60}; BATCH=${BATCH:-512}
CONFIG=${CONFIG:-configs/default-model-stage19.yaml}
T=tools/device; G=.gpu  # the scripts, and what pack.py and the README's downloads put there
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
say() { echo "[$((SECONDS - T0))s] $*" | tee -a "$OUT/run.log"; }
if [ -z "${LOCAL:-}" ]; then  # the GPU machine: its transformers is older, some packages are absent
  mkdir -p /tmp/site && tar xJf $G/transformers-*.tar.xz -C /tmp/site || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $G/*.whl || exit 1
  python3 $T/stubs.py /tmp/site || exit 1
  export PYTHONPATH=$PWD/src:/tmp/site
  LM=/usr/share/texmf/fonts/opentype/public/lm; mkdir -p $LM && cp $G/fonts/*.otf $LM/
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/run.log"
fi
export PYTHONUNBUFFERED=1
python3 -c "import os, torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
  'cuda', torch.cuda.is_available(), 'cores', len(os.sched_getaffinity(0)))" | tee -a "$OUT/run.log" || exit 1
python3 $T/unpack.py $G/data out/default-model/data | tee -a "$OUT/run.log" || exit 1
mkdir -p out/default-model/data/regions-heldout && cp $G/heldout.tar out/default-model/data/regions-heldout/
TRAIN="python3 $T/train.py $CONFIG"
say "probe: $PROBE_STEPS steps (renders the synthetic sources first)"
P0=$SECONDS; rm -rf /tmp/probe  # a throwaway run, there only for its rate
timeout 240 $TRAIN output_dir=/tmp/probe optim.max_steps=$PROBE_STEPS log_every=10 eval.every=0 \
  eval.samples=64 eval.decode_samples=64 ${EXTRA:-} > "$OUT/probe.log" 2>&1 \
  || { tail -40 "$OUT/probe.log"; say "probe failed"; exit 1; }
read -r RATE WAIT <<< "$(python3 -c "
import json, statistics
rows = [json.loads(line) for line in open('/tmp/probe/metrics.jsonl') if 'train/samples_per_s' in line]
steady = rows[1:] or rows  # the first window holds the start-up
print(*(statistics.median(r[key] for r in steady) for key in ('train/samples_per_s', 'train/data_wait')))")"
[ -n "$WAIT" ] || { say "no rate in the probe's metrics"; exit 1; }
say "probe took $((SECONDS - P0))s; steady rate $RATE samples/s, waiting for data $WAIT of the time"
LEFT=$((BUDGET - (SECONDS - T0) - 75))  # start-up, evaluations, checkpoints, export
STEPS=$(python3 -c "print(max(50, int($LEFT * $RATE * 0.92 / $BATCH) // 50 * 50))")
say "main run: $STEPS steps in ~${LEFT}s"
timeout $((BUDGET - (SECONDS - T0) - 25)) $TRAIN optim.max_steps=$STEPS ${EXTRA:-} > "$OUT/train.log" 2>&1 \
  || say "main run ended early (status $?)"
say "main run done"
grep -a "held-out\|->" "$OUT/train.log" | tail -12
RUN_DIR=$(python3 -c "import sys; sys.path[:0] = ['src']
from vary.training.config import load_train_config; print(load_train_config('$CONFIG', []).output_dir)") || exit 1
python3 $T/export.py "$RUN_DIR" "$OUT" || exit 1
say "all done"
