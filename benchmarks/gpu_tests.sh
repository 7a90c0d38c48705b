#!/usr/bin/env bash
# The GPU test suite (`pytest -m gpu`) on a fresh machine, in one call, with its wall time.
#   OUT=gpu_out [LIMIT=480] bash benchmarks/gpu_tests.sh
# Carry `.whl/` (the wheels of /work/shared/wheels or the `cuda` extra) and the Triton cache
# (`.triton/`, or `.triton_cache.txz` as gpu_session.sh describes), whose compiled kernels and
# autotuning results let flash-linear-attention and mamba_ssm skip minutes on the next fresh machine. Tests that autotune (marked triton_autotune) run last.
# Brings back: gpu_tests.log (with --durations=0), env.txt, wall_time.txt, triton_cache.txz.part-*.
set -u
OUT="${OUT:-gpu_out}"; LIMIT="${LIMIT:-480}"; mkdir -p "$OUT" .triton
[ -f .triton_cache.txz ] && tar xJf .triton_cache.txz
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR="$PWD/.triton" TRITON_CACHE_AUTOTUNING=1 FLA_CACHE_RESULTS=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl > "$OUT/pip.log" 2>&1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >> "$OUT/pip.log" 2>&1  # the entry points
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"
  python3 -c "import fla, mamba_ssm, causal_conv1d; print('fla', fla.__version__, 'mamba_ssm', mamba_ssm.__version__)" 2>&1
  echo "triton cache files before: $(find .triton -type f | wc -l)"; } > "$OUT/env.txt" 2>&1
START=$(date +%s)
timeout -s INT "$LIMIT" python3 -m pytest -m gpu -v -rs --durations=0 tests/ > "$OUT/gpu_tests.log" 2>&1
RC=$?
echo "pytest -m gpu: rc=$RC in $(( $(date +%s) - START ))s (limit ${LIMIT}s)" | tee "$OUT/wall_time.txt"
# the whole cache: compiled kernels and autotuning results, for the next fresh machine
bash benchmarks/triton_cache_out.sh "$OUT"
tail -n 30 "$OUT/gpu_tests.log"
exit $RC
