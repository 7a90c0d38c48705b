#!/usr/bin/env bash
# Train calibration candidates for `small` side by side on one GPU, one process (one pack) each.
#   bash benchmarks/calibration/run_candidates.sh benchmarks/calibration/stage1.txt [ROOT]
# Each non-comment line of the file: LABEL PER_CELL TRAIN_TASKS MODELS BATCH EPOCHS LRS SEEDS
# (TRAIN_TASKS, MODELS and LRS comma separated; MODELS as `mqarbench run --model` takes them).
# PRESET=tiny checks the script on a CPU. Runs go to ROOT/LABEL (default mqar_runs/cal), logs to ROOT/LABEL.log; then
# `python benchmarks/calibration/summarize.py ROOT` prints the table.
set -u
FILE="$1"; ROOT="${2:-mqar_runs/cal}"; mkdir -p "$ROOT"
pids=()
# a timeout or Ctrl-C stops every candidate, then the table of the runs that finished is printed
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
while read -r label per_cell tasks models batch epochs lrs seeds; do
  case "$label" in ''|'#'*) continue;; esac
  dir="/tmp/cal_tasks/$per_cell-${tasks//,/-}"
  [ -d "$dir" ] || python3 benchmarks/calibration/make_tasks.py --out "$dir" --per-cell "$per_cell" --train ${tasks//,/ }
  # datasets first, one candidate at a time: candidates sharing a tasks copy share its datasets
  MQARBENCH_TASKS_DIR="$dir" mqarbench data build --suite calib --preset "${PRESET:-small}" > /dev/null
  MQARBENCH_TASKS_DIR="$dir" mqarbench run --model "$models" --suite calib --preset "${PRESET:-small}" \
    --batch-size "$batch" --epochs "$epochs" --lr ${lrs//,/ } --seeds "$seeds" \
    --out "$ROOT/$label" --no-site > "$ROOT/$label.log" 2>&1 &
  pids+=($!)
done < "$FILE"
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
python3 benchmarks/calibration/summarize.py "$ROOT"
exit $rc
