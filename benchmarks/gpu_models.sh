#!/usr/bin/env bash
# The GPU run for every model: kernel parity tests, then training-step benchmarks.
# Writes its logs to $OUT (or ./gpu_out). Usage on the GPU machine: bash benchmarks/gpu_models.sh
set -u
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -m pytest -m gpu -q -rs tests/test_models_*.py tests/test_kernels_*.py 2>&1 | tee "$OUT/gpu_tests.log"
for preset in small paper; do
  timeout 200 python3 benchmarks/bench_models.py --preset "$preset" 2>&1 | tee -a "$OUT/bench_models.md"
done
