#!/usr/bin/env bash
# The GPU test suite (`pytest -m gpu`) on a fresh machine, in one call, with its wall time.
#   OUT=gpu_out [LIMIT=450] bash benchmarks/gpu_tests.sh
# Carry `.whl/` or `.site.txz` (benchmarks/wheels.sh; the wheels of /work/shared/wheels or the `cuda` extra) and the Triton cache
# (`.triton_cache.txz`, see triton_cache_out.sh), whose compiled kernels and autotuning results
# let flash-linear-attention and mamba_ssm skip minutes on the next fresh machine.
# Triton compiles on one CPU core per process, so the tests that compile and autotune (marked
# triton_autotune) run in parallel processes, one per kernel family (rwkv7 in two: its kernels compile
# for minutes), beside the quick ones; each group is a plain pytest run with its own log. The groups cover every GPU test exactly once
# (checked on CPU: GROUPS_ONLY=1 bash benchmarks/gpu_tests.sh lists each group's tests).
# Brings back: gpu_tests.log (every group's log), env.txt, wall_time.txt, triton_cache.txz.part-*.
set -u
OUT="${OUT:-gpu_out}"; LIMIT="${LIMIT:-450}"
AUTOTUNE="gpu and triton_autotune"
TEST_GROUPS=("quick|gpu and not triton_autotune|"
        "rwkv7-kernels|$AUTOTUNE|rwkv7 and kernels"
        "rwkv7-models|$AUTOTUNE|rwkv7 and not kernels"
        "gla|$AUTOTUNE|gla"
        "delta|$AUTOTUNE|delta"
        "others|$AUTOTUNE|not rwkv7 and not gla and not delta")
group_args() {  # "NAME|MARK|KEYWORDS" -> $name and the group's pytest arguments in ARGS
  local mark kw; IFS='|' read -r name mark kw <<< "$1"
  ARGS=(-p no:cacheprovider -m "$mark" --basetemp="/tmp/gpu_tests_$name")
  [ -n "$kw" ] && ARGS+=(-k "$kw")
}
if [ "${GROUPS_ONLY:-0}" = 1 ]; then
  for g in "${TEST_GROUPS[@]}"; do group_args "$g"
    python3 -m pytest "${ARGS[@]}" --collect-only -q tests/ 2>/dev/null | grep '::' | sed "s/^/$name /"; done
  exit 0
fi
mkdir -p "$OUT"
# IN_SESSION=1 (gpu_session.sh's "tests" phase): the session has set up gpu_env.sh already (its
# variables are inherited) and brings the cache back itself
in_session=${IN_SESSION:-0}; logs=${GROUP_LOGS:-/tmp}  # the groups' own logs, while they run
[ "$in_session" = 0 ] && source benchmarks/gpu_env.sh > "$OUT/pip.log" 2>&1
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"
  python3 -c "import fla, mamba_ssm, causal_conv1d; print('fla', fla.__version__, 'mamba_ssm', mamba_ssm.__version__)" 2>&1
  echo "triton cache files before: $(find .triton -type f 2>/dev/null | wc -l)"; } > "$OUT/env.txt" 2>&1
START=$(date +%s)
for g in "${TEST_GROUPS[@]}"; do group_args "$g"
  # SIGINT (to pytest itself) at the limit, so that it still prints which tests passed, failed or
  # were cut; SIGKILL 30 s later if it hangs, so that the logs and the cache still come back
  ( timeout -k 30 -s INT "$LIMIT" python3 -m pytest "${ARGS[@]}" -v -rs --durations=0 tests/ \
      > "$logs/gpu_tests_$name.log" 2>&1; echo $? > "$logs/gpu_tests_$name.rc" ) &
done
wait
RC=0; : > "$OUT/gpu_tests.log"; : > "$OUT/wall_time.txt"
for g in "${TEST_GROUPS[@]}"; do name=${g%%|*}; rc=$(cat "$logs/gpu_tests_$name.rc")
  [ "$rc" = 5 ] && rc=0  # no test of the group collected (e.g. none left after a marker change)
  [ "$rc" != 0 ] && RC=$rc
  { echo "===== group $name: rc=$rc"; cat "$logs/gpu_tests_$name.log"; } >> "$OUT/gpu_tests.log"
  echo "group $name: rc=$rc, $(grep -E '^=+ .*(passed|failed|skipped|error).* in ' "$logs/gpu_tests_$name.log" | tail -1)" \
    | tee -a "$OUT/wall_time.txt"
done
echo "pytest -m gpu: rc=$RC in $(( $(date +%s) - START ))s (limit ${LIMIT}s per group)" | tee -a "$OUT/wall_time.txt"
# compiled kernels and autotuning results, for the next machine
[ "$in_session" = 0 ] && bash benchmarks/triton_cache_out.sh "$OUT"
exit $RC
