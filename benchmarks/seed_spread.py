"""One cell over many seeds, on several kernel paths or models: per-seed scores and paired tests.

    python benchmarks/seed_spread.py --test k2v2 benchmarks/results/k2v2_seeds/global_mamba-unfused-fft \
        benchmarks/results/k2v2_seeds/global_mamba-fused-fft ...

Each folder holds runs trained on one task over seeds (the board's learning-rate choice on
validation is made per seed). For the test task ``--test``: the test query accuracy per seed, the
mean ± std, how many runs scored below ``--fail``, the kernel paths the runs recorded and, for
every folder after the first, the mean paired difference to the first over their common seeds
with a two-sided sign-flip permutation p-value (``mqarbench.analysis.many_seeds``). Seeds share
their initial weights and data order across folders, so pairing removes most of what a seed
alone decides.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mqarbench.analysis.many_seeds import paths_text, recorded_paths, seed_scores, sign_flip_p
from mqarbench.results.score import over_seeds


def scores(folder: Path, test: str) -> dict[int, float]:
    """seed -> test query accuracy on ``test`` at the learning rate each seed's validation picks."""
    out: dict[int, float] = {}
    for (_, tested), per_seed in seed_scores(folder).items():
        if tested == test:
            out.update(per_seed)
    if not out:
        raise SystemExit(f"{folder}: no results on test task {test!r}; check --test")
    return out


def table(folders: list[Path], test: str, fail: float) -> list[str]:
    per = {f: scores(f, test) for f in folders}
    seeds = sorted(set().union(*per.values()))
    base = per[folders[0]]
    lines = ["| folder | seeds | mean ± std | below %g | paired diff to the first | p (sign flip) | per seed (%s) |"
             % (fail, " / ".join(str(s) for s in seeds)),
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for f in folders:
        got = per[f]
        common = [s for s in seeds if s in got and s in base]
        diffs = [got[s] - base[s] for s in common]
        paired = "-" if f == folders[0] else f"{np.mean(diffs):+.1f} (n={len(common)})"
        p = "-" if f == folders[0] else f"{sign_flip_p(diffs):.3f}"
        values = list(got.values())
        lines.append(f"| {f.name} | {len(got)} | {over_seeds(values).text()} | "
                     f"{sum(v < fail for v in values)} | {paired} | {p} | "
                     + " / ".join(f"{got[s]:.1f}" if s in got else "-" for s in seeds) + " |")
    lines += ["", "Kernel paths:"] + [f"- {f.name}: {paths_text(recorded_paths(f))}" for f in folders]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="the first is the reference of the paired tests")
    parser.add_argument("--test", required=True, help="test task, e.g. k2v2")
    parser.add_argument("--fail", type=float, default=30.0, help="count runs below this accuracy")
    args = parser.parse_args()
    for folder in args.folders:
        if not folder.is_dir():
            parser.error(f"{folder}: no such folder")
    print("\n".join(table(args.folders, args.test, args.fail)))


if __name__ == "__main__":
    main()
