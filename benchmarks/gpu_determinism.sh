#!/usr/bin/env bash
# Deterministic training on one GPU, in the background (setsid), polled by gpu_session.sh:
# which parameters' gradients vary between identical steps (every built-in model, the libraries'
# kernels, MQARBENCH_DETERMINISTIC=0, and the default deterministic ones), the GPU tests of tests/test_determinism.py, each of two seeds of
# mamba and global_mamba (TWICE; models joined by commas train as one pack) trained twice side by
# side with the default (deterministic) kernels (their results must be equal), then graphed epoch
# times with and without determinism on the idle GPU.
# GPU_TESTS: the GPU test files (default tests/test_determinism.py), GPU_K a -k expression, TEST_LIMIT their seconds (300); GRADS=0 / EPOCHS=0 leave out the gradient table / the epoch times; SOLO=1 also trains mamba's seed 0
# alone (a pack of one, det-solo) and as one eager run (--pack 1, det-eager), beside the pairs.
#   mkdir -p /tmp/det && (SESSION_LOG=/tmp/det setsid nohup bash benchmarks/gpu_determinism.sh > /tmp/det/driver.log 2>&1 &)
#   SESSION_LOG=/tmp/det bash benchmarks/gpu_session.sh poll 540    # the runs come back under mqar_runs/board/det-{a,b}
set -u
LOG=${SESSION_LOG:-/tmp/det}; mkdir -p "$LOG"
source benchmarks/gpu_env.sh > "$LOG/install.log" 2>&1
T0=$(date +%s)
mark() { echo "$(( $(date +%s) - T0 ))s $*" >> "$LOG/progress.txt"; }
MODELS=${MODELS:-mamba,global_mamba,mamba_2x_state,mamba_4x_state,pythia,hyena,rwkv,mamba2,gla,deltanet,gated_deltanet,rwkv7}
TWICE=${TWICE:-mamba global_mamba}
gradients() {
  mark "start gradients"
  MQARBENCH_DETERMINISTIC=0 timeout 900 python3 benchmarks/grad_determinism.py --models "$MODELS" \
    > "$LOG/grads_default.md" 2> "$LOG/grads_default.err"
  MQARBENCH_DETERMINISTIC=1 timeout 900 python3 benchmarks/grad_determinism.py --models "$MODELS" \
    > "$LOG/grads_deterministic.md" 2> "$LOG/grads_deterministic.err"
  mark "done gradients"
}
runs() {
  mark "start gpu tests"
  timeout "${TEST_LIMIT:-300}" python3 -m pytest -m gpu -q -rs ${GPU_TESTS:-tests/test_determinism.py} ${GPU_K:+-k "$GPU_K"} > "$LOG/gpu_pytest.log" 2>&1
  mark "done gpu tests rc=$?"
  for model in $TWICE; do
    pids=()
    for copy in a b; do
      timeout 900 mqarbench run --model "$model" --suite main --train k2v2 --lr 0.003 --seeds "${SEEDS:-2}" \
        --preset small --out "mqar_runs/board/det-$copy" --no-site > "$LOG/run-$model-$copy.log" 2>&1 &
      pids+=($!)
    done
    wait "${pids[@]}"; mark "done runs $model"  # not the gradients lane
  done
}
solo() {
  timeout 900 mqarbench run --model mamba --suite main --train k2v2 --lr 0.003 --seeds 1 \
    --preset small --out mqar_runs/board/det-solo --no-site > "$LOG/run-mamba-solo.log" 2>&1
  mark "done solo rc=$?"
  timeout 900 mqarbench run --model mamba --suite main --train k2v2 --lr 0.003 --seeds 1 --pack 1 \
    --preset small --out mqar_runs/board/det-eager --no-site > "$LOG/run-mamba-eager.log" 2>&1
  mark "done eager rc=$?"
}
[ "${GRADS:-1}" = 1 ] && gradients &
[ "${SOLO:-0}" = 1 ] && solo &
runs; wait
[ "${EPOCHS:-1}" = 1 ] && for env in MQARBENCH_DETERMINISTIC=0 MQARBENCH_DETERMINISTIC=1; do  # the GPU idle now
  echo "## $env" >> "$LOG/bench_epoch.md"
  env $env timeout 600 python3 benchmarks/bench_epoch.py --models mamba,global_mamba --task standard --preset small \
    >> "$LOG/bench_epoch.md" 2>&1
  mark "done epochs $env"
done
mark "all done"
