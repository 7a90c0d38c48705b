#!/usr/bin/env bash
# The GPU run for every model: training-step benchmarks and kernel parity tests.
# Writes its logs to $OUT (or ./gpu_out). Usage on the GPU machine: bash benchmarks/gpu_models.sh
# Each stage has its own time limit so that one slow stage (Triton autotuning) cannot starve the rest.
set -u
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1 TRITON_CACHE_DIR="$PWD/.triton"  # carry .triton/ to reuse autotuning
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
bench() {  # preset, seconds, families...
  local preset=$1 limit=$2; shift 2
  timeout "$limit" python3 benchmarks/bench_models.py --preset "$preset" "${@/#/--family=}" \
    2>&1 | tee -a "$OUT/bench_models.md"
}
bench small 75 mamba
bench paper 75 mamba
timeout 220 python3 -m pytest -m gpu -q -rs tests/test_models_*.py tests/test_kernels_*.py \
  2>&1 | tee "$OUT/gpu_tests.log"
bench small 90 pythia hyena rwkv
bench paper 90 pythia hyena rwkv
# the five newer recurrent models; first-use autotuning (the "first step s" column) is long in a fresh .triton/
bench small 240 mamba2 fla
bench paper 240 mamba2 fla
