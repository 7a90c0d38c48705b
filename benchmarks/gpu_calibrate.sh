#!/usr/bin/env bash
# Calibration of preset `small` on one GPU: mamba and pythia trained on `standard`, scored on
# standard / last / shuffle (the positional suite's first row), plus the GPU tests of the
# attention, Hyena and RWKV kernels. Logs and results go to $OUT.
set -u
OUT="${OUT:-gpu_out}"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -lms 1000 > "$OUT/gpu_util.csv" &
for model in mamba pythia; do
  timeout 420 mqarbench run --model "$model" --suite positional --preset small --lr 1e-2 3e-3 \
    --out "runs_$model" --data-dir data --no-site > "$OUT/run_$model.log" 2>&1 &
  pids="${pids:-} $!"
  sleep 20   # the first builds the datasets
done
timeout 200 python3 -m pytest -m gpu -q -rs tests/test_kernels_others.py tests/test_models_others.py \
  > "$OUT/gpu_tests_others.log" 2>&1
wait $pids
tar czf "$OUT/results.tgz" runs_*/runs/*/results.json runs_*/runs/*/run.json 2>/dev/null
tail -n 30 "$OUT"/run_*.log "$OUT/gpu_tests_others.log"
