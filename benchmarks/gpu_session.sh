#!/usr/bin/env bash
# One GPU session in the background (setsid), polled by later calls: install, the GPU test suite,
# the pack throughput benchmark, model step benchmarks, and the packed vs 8-worker run matrices.
#   setsid nohup bash benchmarks/gpu_session.sh > /tmp/session/driver.log 2>&1 &
#   later: bash benchmarks/gpu_session.sh poll [S]  (copies the logs, the board runs without weights and their attention/last.npz
#   into $OUT; with S, first waits up to S seconds, less once "all done": a poll's sleep never holds an idle machine)
# Carry .whl (the wheels) or .site.txz (benchmarks/wheels.sh) and the Triton cache a `POLL_CACHE=1 ... poll` brought back (slimmed to
# what a cache hit reads and xz-compressed by triton_cache_out.sh, so that it fits beside the
# wheels in the 64 MiB carry):  cat triton_cache.txz.part-* > .triton_cache.txz
# Phases run in order; PHASES="tests pack stack profile models epoch matrix workers calibrate board" picks some
# (stack: bench_pack.py's graphed packs against stacks of mamba, with a profile of the largest stack)
# (models@PRESET@FAMILY+FAMILY[@MODEL+MODEL]: one bench_models table; wait@PHASE: wait for another lane's PHASE;
# gpu@FILE+FILE[@K]: the GPU tests of those files (-k K, words joined by +); pack@MODELS@PACKS[@VAR=VAL+...] and
# epoch@PRESET@TASK@MODELS[@VAR=VAL+...]: bench_pack / bench_epoch with those environment settings; profile@PRESET@MODEL,MODEL[@VAR=VAL+...]: profile_step.py at PRESET;
# todo@MODEL[@SUITE@SEEDS[@train=TASK+TASK]]: the runs benchmarks/board_todo.py says the board lacks, skipped when
#   its estimate of their pack's wall time (from the board's runs) exceeds what is left before DEADLINE;
# matrix[@SUITE[@train=...]] / workers[@SUITE[@train=...]]: mamba's runs per GPU-hour, packed / 8 processes)
# (calibrate: the candidates of STAGE, default benchmarks/calibration/stage1.txt; board: MODELS x
# SUITE x SEEDS at small, default pythia,mamba x main x 3, one `mqarbench run` per model so that a
# time limit loses one model's pack, not all, and models joined by + as one pack (an ablation's variants); board@MODELS@SUITE@SEEDS[@ID+ID|@train=TASK+TASK[,lr=LR][,epochs=N]] overrides
# those three for one phase, and picks runs; @ since adapter refs hold colons). LANE2="..." (and LANE3)
# runs more phases at the same time in another process chain (the GPU is shared; a board beside the
# tests). DEADLINE=S (seconds after the start; the machine's held time) stops board packs from
# starting with under MIN_PACK_S (300) left and caps their limit. Logs in /tmp/session.
set -u
LOG=${SESSION_LOG:-/tmp/session}; mkdir -p "$LOG"
if [ "${1:-}" = poll ]; then
  for _ in $(seq "${2:-0}"); do grep -qs "all done" "$LOG/progress.txt" && break; sleep 1; done
  cat "$LOG/progress.txt" 2>/dev/null; for f in $(ls -t "$LOG"/*.log "$LOG"/*.md 2>/dev/null | head -2); do echo "== $f"; tail -n 6 "$f"; done
  for f in mqar_runs/cal/*.log; do [ -f "$f" ] && echo "== $f" && tail -n 2 "$f"; done
  tar czf "$OUT/session.tgz" -C "$LOG" . 2>/dev/null
  # POLL_CACHE=1: the Triton cache as it is now, slimmed, in parts (triton_cache_out.sh)
  [ "${POLL_CACHE:-0}" = 1 ] && bash benchmarks/triton_cache_out.sh "$OUT"
  # no weights and no checkpoints being written (.NAME.XXXX.tmp); the .sha256 sidecars must come:
  # `mqarbench leaderboard submit` refuses results without them. Over 16 MiB it comes in parts.
  [ -d mqar_runs/board ] && tar czf /tmp/board_runs.tgz --exclude='*.pt' --exclude='*.npz' \
    --exclude='*.safetensors' --exclude='*.tmp' --exclude=run.lock mqar_runs/board 2>/dev/null \
    && split -b 15M /tmp/board_runs.tgz "$OUT/board_runs.tgz.part-"
  # the hidden-attention maps the board's shortcut cell reads (trained on standard, tested on last:
  # the paper's Fig. 4), about 200 KB a run; the other maps stay behind
  maps=$(find mqar_runs/board -path '*/attention/last.npz' 2>/dev/null)
  [ -n "$maps" ] && tar czf "$OUT/attention_last.tgz" $maps
  [ -d mqar_runs/cal ] && tar czf "$OUT/cal_runs.tgz" --exclude='*.pt' --exclude='*.npz' --exclude='*.safetensors' \
    --exclude='*.sha256' mqar_runs/cal 2>/dev/null
  exit 0
fi
source benchmarks/gpu_env.sh > /dev/null 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 >> "$LOG/gpu_util.csv" &
SAMPLER=$!  # runs until killed: the end waits for the lanes only
T0=$(date +%s)
step() { echo "$(( $(date +%s) - T0 ))s start $1" >> "$LOG/progress.txt"; }
done_() { echo "$(( $(date +%s) - T0 ))s done $1 rc=$2" >> "$LOG/progress.txt"; }
# the GPU extensions must import (after torch, whose libc10 they link): a .site.txz packed wrong shows in the first poll
if python3 -c "import torch, selective_scan_cuda, causal_conv1d_cuda" > "$LOG/imports.log" 2>&1; then
  echo "0s GPU extensions import" >> "$LOG/progress.txt"
else
  echo "0s GPU extensions do not import (imports.log; STRIP=0 bash benchmarks/wheels.sh pack)" >> "$LOG/progress.txt"
fi
# a board phase's last field, parts joined by commas: run ids (ID+ID, as --only), train tasks
# (train=TASK+TASK, as --train), learning rates (lr=LR+LR, as --lr; e.g. an ablation at one rate),
# epochs (epochs=N, as --epochs; a calibration probe of longer training)
pick_runs() {
  local part out=""
  for part in ${1//,/ }; do
    case $part in
      train=*) part=${part#train=}; out="$out --train ${part//+/ }";;
      lr=*) part=${part#lr=}; out="$out --lr ${part//+/ }";;
      epochs=*) out="$out --epochs ${part#epochs=}";;
      *) out="$out --only ${part//+/ }";;
    esac
  done
  echo "$out"
}
board_pack() {  # MODEL[+MODEL] SUITE SEEDS [run picks]: one `mqarbench run` (one pack) into mqar_runs/board
  # (BOARD_OUT: a folder under it, for a second session on the machine training the same run ids
  # on another kernel path; a poll brings back everything under mqar_runs/board)
  local model=$1 suite=$2 seeds=$3 out=${BOARD_OUT:-mqar_runs/board}; shift 3
  local now=$(( $(date +%s) - T0 )) limit=${BOARD_LIMIT:-1200}
  # DEADLINE (s after the session's start): when the machine's held time runs out. A pack cut short
  # keeps only its finished members (checkpoints stay on the machine) and slows the lanes beside it, so a pack is
  # not started with under MIN_PACK_S left, and is never given more than what is left.
  # PACK_EST (todo@ phases: board_todo.py's estimate from the board's own runs, 0 if unknown)
  # replaces MIN_PACK_S with the pack's expected wall time and a tenth more.
  if [ -n "${DEADLINE:-}" ]; then
    local left=$(( DEADLINE - now )) need=${MIN_PACK_S:-300}
    [ "${PACK_EST:-0}" -gt 0 ] && need=$(( PACK_EST * 11 / 10 ))
    if [ "$left" -lt "$need" ]; then
      echo "${now}s board $model $suite skipped: ${left}s before DEADLINE, needs ${need}s" >> "$LOG/progress.txt"; rc=0; return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  echo "${now}s board $model $suite x$seeds" >> "$LOG/progress.txt"
  timeout "$limit" mqarbench run --model "${model//+/,}" --suite "$suite" --seeds "$seeds" "$@" \
    --preset small --out "$out" --no-site > "$LOG/board-${model##*[:.]}-$suite-$BASHPID.log" 2>&1; rc=$?
  echo "$(( $(date +%s) - T0 ))s board $model $suite rc=$rc" >> "$LOG/progress.txt"
  python3 benchmarks/bench_runner.py "$out" > "$LOG/board_summary.md" 2>&1  # a poll brings the runs
}
bench_table() {  # LIMIT PRESET FAMILY+FAMILY [MODEL+MODEL]: one bench_models.py table (small at the runner's batch of 64)
  local batch=(); [ "$2" = small ] && batch=(--batch 64)
  timeout "$1" python3 benchmarks/bench_models.py --preset "$2" "${batch[@]}" $(for f in ${3//+/ }; do echo "--family $f"; done) \
    ${4:+--only ${4//+/ }} >> "$LOG/bench_models.md" 2>&1; rc=$?
  cp "$LOG/bench_models.md" "$LOG/current.log"; return $rc
}
lane() {
for phase in "$@"; do
  step "$phase"
  case $phase in
    tests) OUT="$LOG" LIMIT="${TEST_LIMIT:-420}" IN_SESSION=1 GROUP_LOGS="$LOG" bash benchmarks/gpu_tests.sh > "$LOG/gpu_tests_summary.txt" 2>&1
           rc=$?; cp "$LOG/gpu_tests.log" "$LOG/current.log";;  # its kernel-family groups run in parallel
    pack) timeout 300 python3 benchmarks/bench_pack.py --models mamba,pythia --packs 1,8,16 > "$LOG/bench_pack.md" 2>&1
          rc=$?; cp "$LOG/bench_pack.md" "$LOG/current.log";;
    pack@*)  # pack@MODELS@PACKS[@VAR=VAL+VAR=VAL]: bench_pack.py's table with those environment settings (an A/B of a kernel path)
            IFS=@ read -r _ models packs envs <<< "$phase"
            env ${envs//+/ } timeout 300 python3 benchmarks/bench_pack.py --models "$models" --packs "$packs" \
              >> "$LOG/bench_pack.md" 2>&1; rc=$?; cp "$LOG/bench_pack.md" "$LOG/current.log";;
    stack) timeout 400 python3 benchmarks/bench_pack.py --models mamba --packs 1,8,24 --stacks 8,24 --profile \
             > "$LOG/bench_stack.md" 2>&1; rc=$?; cp "$LOG/bench_stack.md" "$LOG/current.log";;
    profile) timeout 300 python3 benchmarks/profile_step.py --models mamba,mamba2,gla,rwkv7,deltanet --top 12 \
               > "$LOG/profile.md" 2>&1; rc=$?; cp "$LOG/profile.md" "$LOG/current.log";;
    profile@*)  # profile@PRESET@MODEL,MODEL[@VAR=VAL+VAR=VAL]: where those models' steps spend their GPU time
            IFS=@ read -r _ preset models envs <<< "$phase"
            echo "## $phase" >> "$LOG/profile.md"
            env ${envs//+/ } timeout 300 python3 benchmarks/profile_step.py --models "$models" --preset "$preset" --top 15 \
              >> "$LOG/profile.md" 2>&1; rc=$?; cp "$LOG/profile.md" "$LOG/current.log";;
    models) bench_table 300 small mamba+mamba2+fla; bench_table 400 paper mamba+mamba2+fla;;
    models@*)  # models@PRESET@FAMILY+FAMILY[@MODEL+MODEL]: one table
            IFS=@ read -r _ preset families only <<< "$phase"; bench_table 600 "$preset" "$families" "$only";;
    gpu@*)  # gpu@FILE+FILE[@K]: those test files' GPU tests (a kernel just written, without the whole suite);
            # K: a pytest -k expression, words joined by + (not+gla)
            IFS=@ read -r _ files kexpr <<< "$phase"
            timeout "${TEST_LIMIT:-420}" python3 -m pytest -m gpu -q -rs ${files//+/ } ${kexpr:+-k "${kexpr//+/ }"} \
              >> "$LOG/gpu_pytest.log" 2>&1
            rc=$?; cp "$LOG/gpu_pytest.log" "$LOG/current.log";;
    wait@*)  # wait@PHASE: this lane waits until another lane has finished PHASE (an idle GPU for its timings)
            until grep -qF "done ${phase#wait@} rc=" "$LOG/progress.txt"; do sleep 5; done; rc=0;;
    epoch) rc=0; for task in k4v8-shuffle k2v2; do  # the paper's headline rows: measured epoch times
             timeout 600 python3 benchmarks/bench_epoch.py --models mamba,global_mamba --task $task \
               --preset paper >> "$LOG/bench_epoch.md" 2>&1 || rc=$?
           done; cp "$LOG/bench_epoch.md" "$LOG/current.log";;
    epoch@*)  # epoch@PRESET@TASK@MODEL,MODEL[@VAR=VAL+VAR=VAL]: graphed epoch times with those environment settings
            IFS=@ read -r _ preset task models envs <<< "$phase"
            env ${envs//+/ } timeout 600 python3 benchmarks/bench_epoch.py --models "$models" --task "$task" \
              --preset "$preset" >> "$LOG/bench_epoch.md" 2>&1; rc=$?; cp "$LOG/bench_epoch.md" "$LOG/current.log";;
    matrix|matrix@*|workers|workers@*)  # the same mamba matrix packed (3 seeds) or by 8 worker processes (seed 0)
           # matrix@SUITE[@train=TASK+TASK]: tested on SUITE (all: runs the board can use), under
           # mqar_runs/board/ so that a poll brings them back
           IFS=@ read -r kind suite pick <<< "$phase"; out=mqar_runs/packed
           [ "$kind" = workers ] && out=mqar_runs/workers
           [ -n "$suite" ] && out=mqar_runs/board/$kind
           if [ "$kind" = matrix ]; then args=(--seeds 3); limit=1500; else args=(--seeds 1 --pack 1 --workers-per-gpu 8); limit=${WORKERS_LIMIT:-900}; fi
           timeout "$limit" mqarbench run --model mamba --suite "${suite:-main}" "${args[@]}" $(pick_runs "$pick") \
             --preset small --out "$out" --no-site > "$LOG/$kind.log" 2>&1; rc=$?
           python3 benchmarks/bench_runner.py "$out" > "$LOG/${kind}_summary.md" 2>&1
           # runs under mqar_runs/board come back with every poll; the others in the session's logs
           [ -n "$suite" ] || tar czf "$LOG/${kind}_runs.tgz" --exclude='*.pt' --exclude='*.npz' --exclude='*.safetensors' "$out";;
    board|board@*)  # board@MODELS@SUITE@SEEDS[@PICK] gives one lane its own matrix, or the runs PICK
           # names (pick_runs); fields left out: the env's
           IFS=@ read -r _ models suite seeds only <<< "$phase"
           models=${models:-$MODELS} suite=${suite:-${SUITE:-main}} seeds=${seeds:-${SEEDS:-3}}
           for model in ${models//,/ }; do board_pack "$model" "$suite" "$seeds" $(pick_runs "$only"); done;;
    todo@*)  # todo@MODEL[@SUITE@SEEDS[@train=TASK+TASK]]: the runs the committed board still lacks
           # (benchmarks/board_todo.py, default suite all x 3 seeds), computed here: no ids on the command line
           IFS=@ read -r _ model suite seeds pick <<< "$phase"; suite=${suite:-all} seeds=${seeds:-3}
           ids=$(python3 benchmarks/board_todo.py --ids-only "$model" --suite "$suite" --seeds "$seeds" $(pick_runs "$pick"))
           rc=$?
           est=$(python3 benchmarks/board_todo.py --seconds-only "$model" --suite "$suite" --seeds "$seeds" $(pick_runs "$pick"))
           [[ "$est" =~ ^[0-9]+$ ]] || est=0
           [ $rc = 0 ] && { if [ -n "$ids" ]; then PACK_EST=$est board_pack "$model" "$suite" "$seeds" --only $ids
                                   else echo "$(( $(date +%s) - T0 ))s todo $model: nothing to train" >> "$LOG/progress.txt"; fi; };;
    calibrate) timeout "${CAL_LIMIT:-1000}" bash benchmarks/calibration/run_candidates.sh "${STAGE:-benchmarks/calibration/stage1.txt}" \
                 mqar_runs/cal > "$LOG/calibration.md" 2>&1; rc=$?
               tar czf "$LOG/cal_runs.tgz" --exclude='*.pt' --exclude='*.npz' --exclude='*.safetensors' \
                 --exclude='*.sha256' mqar_runs/cal;;
  esac
  done_ "$phase" "$rc"
done
}
MODELS="${MODELS:-pythia,mamba}"
LANES=()
for extra in "${LANE2:-}" "${LANE3:-}"; do [ -n "$extra" ] && { lane $extra & LANES+=($!); }; done
lane ${PHASES:-tests pack models matrix workers}
[ ${#LANES[@]} -gt 0 ] && wait "${LANES[@]}"
kill "$SAMPLER" 2>/dev/null
echo "$(( $(date +%s) - T0 ))s all done" >> "$LOG/progress.txt"
