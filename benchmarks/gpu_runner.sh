#!/usr/bin/env bash
# Runner speed on one GPU at preset `small`: `mqarbench run --model "$MODELS" --suite main`, N runs
# sharing the GPU, with GPU utilization sampled every 500 ms; the GPU tests of the attention,
# Hyena and RWKV kernels run beside it (their timing is not reported). Runs are resumable, so a
# second call on the same machine (same ignored mqar_runs/ and mqar_data/) continues the matrix:
#   OUT=gpu_out LIMIT=560 WORKERS=8 [MODELS=all] [ONLY="id ..."] [GPU_TESTS=0] bash benchmarks/gpu_runner.sh
# Brings back (<= 8 files): steps.log, gpu_util.csv, gpu_tests.log, env.txt, runs.tgz (JSON of
# every run), summary.md (benchmarks/bench_runner.py), triton_autotune.tgz (autotuning results for the next call).
set -u
OUT="${OUT:-gpu_out}"; LIMIT="${LIMIT:-560}"; WORKERS="${WORKERS:-8}"; MODELS="${MODELS:-all}"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MQARBENCH_DATA_DIR="$PWD/mqar_data" TRITON_CACHE_DIR="$PWD/.triton"
RUNS="$PWD/mqar_runs/bench"; START=$(date +%s)
[ -f .triton_autotune.tgz ] && tar xzf .triton_autotune.tgz
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 >> "$OUT/gpu_util.csv" &
SMI=$!
{ nvidia-smi; python3 -c "import torch; print(torch.__version__, torch.version.cuda)"; mqarbench models list 2>&1;
  pip list 2>/dev/null | grep -iE "mamba|causal|flash|triton|torch|ray"; } > "$OUT/env.txt" 2>&1

TESTS=
if [ "${GPU_TESTS:-1}" = 1 ]; then  # GPU_TESTS=0: the runner alone on the GPU (for its timing)
  timeout 300 python3 -m pytest -m gpu -q -rs tests/test_kernels_others.py tests/test_models_others.py \
    > "$OUT/gpu_tests.log" 2>&1 &
  TESTS=$!
fi

echo "### main: $MODELS (limit $((LIMIT - 30))s, $WORKERS runs per GPU) started $(date -u +%FT%TZ)" >> "$OUT/steps.log"
timeout $((LIMIT - 30)) mqarbench run --model "$MODELS" --suite main --preset small --workers-per-gpu "$WORKERS" \
  --out "$RUNS" --no-site ${ONLY:+--only $ONLY} >> "$OUT/steps.log" 2>&1
echo "### main rc=$? in $(( $(date +%s) - START ))s" >> "$OUT/steps.log"

[ -n "$TESTS" ] && wait "$TESTS"; kill "$SMI" 2>/dev/null
tar czf "$OUT/runs.tgz" -C "$(dirname "$RUNS")" --exclude='*.pt' --exclude='*.sha256' --exclude='*.npz' "$(basename "$RUNS")"
# autotuning results only (kilobytes): with them a fresh machine compiles one config per kernel
find .triton -name '*.autotune.json' | tar czf "$OUT/triton_autotune.tgz" -T - 2>/dev/null
python3 benchmarks/bench_runner.py "$RUNS" --gpu-util "$OUT/gpu_util.csv" > "$OUT/summary.md" 2>&1
tail -n 25 "$OUT/summary.md"; tail -n 5 "$OUT/steps.log"
if [ -n "$TESTS" ]; then tail -n 3 "$OUT/gpu_tests.log"; fi
