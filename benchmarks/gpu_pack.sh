#!/usr/bin/env bash
# Packed training on one GPU: install, the GPU parity tests of the pack, the step-throughput
# benchmark (eager run vs K graphed members), then optionally a run matrix packed.
#   OUT=gpu_out MODELS=mamba,pythia PACKS=1,8,24 [TESTS=1] [MATRIX="--model mamba --suite main --seeds 3"] bash benchmarks/gpu_pack.sh
# Brings back: env.txt, pack_tests.log, bench_pack.md, matrix.log, runs.tgz, summary.md, gpu_util.csv, triton.tgz
set -u
OUT="${OUT:-gpu_out}"; mkdir -p "$OUT"
source benchmarks/gpu_env.sh > /dev/null 2>&1
{ nvidia-smi; python3 -c "import torch; print(torch.__version__, torch.version.cuda)"; } > "$OUT/env.txt" 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 >> "$OUT/gpu_util.csv" &
SMI=$!
START=$(date +%s)
if [ "${TESTS:-1}" = 1 ]; then
  timeout "${TEST_LIMIT:-240}" python3 -m pytest -m gpu -q -rs tests/test_runner_pack.py ${TEST_K:+-k "$TEST_K"} \
    --durations=10 > "$OUT/pack_tests.log" 2>&1
  echo "pack tests rc=$? at $(( $(date +%s) - START ))s"; tail -n 15 "$OUT/pack_tests.log"
fi
if [ -n "${MODELS:-}" ]; then
  timeout "${BENCH_LIMIT:-300}" python3 benchmarks/bench_pack.py --models "$MODELS" --packs "${PACKS:-1,8,24}" \
    > "$OUT/bench_pack.md" 2>&1
  echo "bench rc=$? at $(( $(date +%s) - START ))s"; cat "$OUT/bench_pack.md"
fi
if [ -n "${MATRIX:-}" ]; then
  RUNS="$PWD/mqar_runs/pack"
  echo "### mqarbench run $MATRIX --preset small ${RUN_ARGS:-} started $(date -u +%FT%TZ)" >> "$OUT/matrix.log"
  T0=$(date +%s)
  timeout "${MATRIX_LIMIT:-500}" mqarbench run $MATRIX --preset small --out "$RUNS" --no-site ${RUN_ARGS:-} >> "$OUT/matrix.log" 2>&1
  echo "### rc=$? in $(( $(date +%s) - T0 ))s" >> "$OUT/matrix.log"
  tar czf "$OUT/runs.tgz" -C "$(dirname "$RUNS")" --exclude='*.pt' --exclude='*.sha256' --exclude='*.npz' "$(basename "$RUNS")"
  python3 benchmarks/bench_runner.py "$RUNS" --gpu-util "$OUT/gpu_util.csv" > "$OUT/summary.md" 2>&1
  tail -n 8 "$OUT/matrix.log"; tail -n 30 "$OUT/summary.md"
fi
kill "$SMI" 2>/dev/null
find .triton -name '*.autotune.json' 2>/dev/null | tar czf "$OUT/triton.tgz" -T - 2>/dev/null
exit 0
