#!/usr/bin/env bash
# Bring the Triton cache back from a device call: only what a cache hit reads (cubin, json with
# the autotuning results, so; not the configs that lost their autotuning), xz-compressed, in
# 15 MiB parts (the device returns files of at most 16 MiB). The next call carries it as .triton_cache.txz:  cat triton_cache.txz.part-* > .triton_cache.txz
#   bash benchmarks/triton_cache_out.sh "$OUT"
set -u -o pipefail
dest=${1:?usage: triton_cache_out.sh DEST_DIR}
[ -d .triton ] || exit 0
# without the autotuning losers (triton_cache_prune.py: 12 MB instead of 27 MB for the seventh
# session's cache), sorted by file name so that one kernel's variants sit side by side within
# xz -9's 64 MiB window (20 MB instead of 35 MB for 3,261 kernels)
python3 benchmarks/triton_cache_prune.py .triton --keep-list | awk -F/ '{print $NF "\t" $0}' \
  | sort | cut -f2 | tar -T - -cf - | xz -T0 -9 > /tmp/triton_cache.txz \
  && split -b 15M /tmp/triton_cache.txz "$dest/triton_cache.txz.part-"
