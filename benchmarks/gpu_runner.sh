#!/usr/bin/env bash
# Runner speed on one GPU at preset `small`, in under 9.5 minutes, every step saving what it finished:
#   1. calibration: mamba and pythia trained on `standard` (lr grid of `small`), scored on
#      standard / last / shuffle (in-domain must reach 85);
#   2. one short run per model (1 epoch on `shuffle`): where a run's time goes
#      (training / data / evaluation / overhead) and training tokens/s;
#   3. `mqarbench run --model all --suite main` for the time left, 4 runs sharing the GPU;
# with GPU utilization sampled every 500 ms throughout. At most 8 files land in $OUT.
# Run after the wheels and `pip install -e .`:  OUT=gpu_out bash benchmarks/gpu_runner.sh
set -u
OUT="${OUT:-gpu_out}"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MQARBENCH_DATA_DIR="$PWD/bench_data"
RUNS="$PWD/bench_runs"; START=$(date +%s)
left() { echo $(( 560 - ($(date +%s) - START) )); }

nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 > "$OUT/gpu_util.csv" &
SMI=$!
{ nvidia-smi; python -c "import torch; print(torch.__version__, torch.version.cuda)"; mqarbench models list 2>&1;
  pip list 2>/dev/null | grep -iE "mamba|causal|flash|triton|torch|ray"; } > "$OUT/env.txt" 2>&1

# A suite of one train task: standard, tested on the three placements.
TASKS="$PWD/bench_tasks"; rm -rf "$TASKS"; cp -r tasks "$TASKS"
cat > "$TASKS/suites/calibration.yaml" <<'YAML'
name: calibration
description: "Preset calibration: train on standard, test on every placement."
experiments:
  - {name: Standard-Standard, train: standard, test: standard, table: table1}
  - {name: Standard-Last, train: standard, test: last, table: table1}
  - {name: Standard-Shuffle, train: standard, test: shuffle, table: table1}
YAML

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "### $name (limit ${limit}s): $*" >> "$OUT/steps.log"
  timeout "$limit" "$@" >> "$OUT/steps.log" 2>&1
  echo "### $name rc=$? in $(( $(date +%s) - t0 ))s" >> "$OUT/steps.log"
}

step data 60 mqarbench data build --suite main --preset small
step calibration 240 env MQARBENCH_TASKS_DIR="$TASKS" mqarbench run --model mamba,pythia \
  --suite calibration --preset small --workers-per-gpu 4 --out "$RUNS" --no-site
for model in pythia hyena rwkv mamba mamba_2x_state mamba_4x_state global_mamba; do
  step "probe-$model" 25 mqarbench train --model "$model" --task shuffle --preset small --epochs 1 \
    --lr 1e-2 --out "$RUNS-probe"
done
remaining=$(( $(left) - 15 ))
[ "$remaining" -gt 30 ] && step main "$remaining" mqarbench run --model all --suite main --preset small \
  --workers-per-gpu 4 --out "$RUNS" --no-site

kill "$SMI" 2>/dev/null
tar czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='*.sha256' "$(basename "$RUNS")" "$(basename "$RUNS")-probe" 2>/dev/null
python benchmarks/bench_runner.py "$RUNS" "$RUNS-probe" --gpu-util "$OUT/gpu_util.csv" > "$OUT/summary.md" 2>&1
cat "$OUT/summary.md"; tail -5 "$OUT/steps.log"
