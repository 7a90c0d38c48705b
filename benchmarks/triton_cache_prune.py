"""Drop the autotuning losers from a Triton cache, so that the cache carried to the next GPU
machine holds what a cache hit reads and little else.

    python benchmarks/triton_cache_prune.py .triton [--dry-run]
    python benchmarks/triton_cache_prune.py .triton --keep-list   # the files to carry, one a line

With ``TRITON_CACHE_AUTOTUNING=1`` an autotuned kernel's timings are cached
(``<kernel>.autotune.json``) and the next process compiles only the winning config of each key.
The compiled variants of every other config (a cache entry: a directory holding
``<kernel>.cubin`` and its ``<kernel>.json`` metadata) are never read again. A variant is kept if
its kernel has no cached timings, or if its (num_warps, num_stages, num_ctas, maxnreg) is that of
a winner of any key of that kernel name (the metadata does not record constexpr values such as
block sizes, so variants differing only in those are all kept: a superset). A variant dropped by
mistake costs one recompilation on the next machine, never a wrong result.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

Launch = tuple  # (num_warps, num_stages, num_ctas, maxnreg)


def launch_of(config: dict) -> Launch:
    return (config.get("num_warps"), config.get("num_stages"), config.get("num_ctas", 1),
            config.get("maxnreg"))


def winners(cache: Path) -> dict[str, set[Launch]]:
    """Kernel name -> the launch settings of the fastest config of each cached autotuning key."""
    best: dict[str, set[Launch]] = defaultdict(set)
    for path in cache.glob("*/*.autotune.json"):
        timings = json.loads(path.read_text()).get("configs_timings") or []
        # a config's timing is a list (do_bench quantiles, median first) or a number
        scored = [(t[0] if isinstance(t, list) else t, c) for c, t in timings if t is not None]
        if scored:
            best[path.name.removesuffix(".autotune.json")].add(launch_of(min(scored, key=lambda s: s[0])[1]))
    return best


def losers(cache: Path) -> list[Path]:
    """Cache entries holding a compiled variant that no cached autotuning result selects."""
    best = winners(cache)
    dropped = []
    for cubin in cache.glob("*/*.cubin"):
        name = cubin.stem
        meta = cubin.with_suffix(".json")
        if name not in best or not meta.exists():
            continue
        if launch_of(json.loads(meta.read_text())) not in best[name]:
            dropped.append(cubin.parent)
    return sorted(set(dropped))


def kept_files(cache: Path) -> list[Path]:
    """What a cache hit reads (compiled kernels, their metadata, autotuning results, launcher .so),
    without the losers' entries."""
    drop = set(losers(cache))
    return sorted(f for f in cache.glob("*/*") if f.suffix in (".cubin", ".json", ".so")
                  and f.parent not in drop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path, help="the Triton cache directory (TRITON_CACHE_DIR)")
    parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    parser.add_argument("--keep-list", action="store_true",
                        help="delete nothing; print the files worth carrying, one per line")
    args = parser.parse_args(argv)
    if not args.cache.is_dir():  # one line, not argparse's usage + error: this runs inside shell scripts
        parser.exit(2, f"triton_cache_prune.py: no Triton cache at {args.cache}: "
                       "pass the folder TRITON_CACHE_DIR pointed at\n")
    if args.keep_list:
        print("\n".join(str(f) for f in kept_files(args.cache)))
        return 0
    entries = [d for d in args.cache.iterdir() if d.is_dir()]
    drop = losers(args.cache)
    size = sum(f.stat().st_size for d in drop for f in d.iterdir())
    if not args.dry_run:
        for entry in drop:
            shutil.rmtree(entry)
    print(f"{len(drop)} of {len(entries)} cache entries are autotuning losers ({size / 1e6:.1f} MB)"
          + (" (dry run: kept)" if args.dry_run else ": removed"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
