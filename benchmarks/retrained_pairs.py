"""How far a run moves when the same run id is trained again: new runs against the board's copies.

    git archive REV leaderboard | tar x -C /tmp/before
    python benchmarks/retrained_pairs.py --before /tmp/before/leaderboard RUNS_DIR [RUNS_DIR ...]
    python benchmarks/retrained_pairs.py --before RUNS_DIR RUNS_DIR    # two --out folders

A run id fixes the data, seed, learning rate and code, so two trainings of one id differ only by
nondeterministic kernels (mamba_ssm's selective-scan backward and causal_conv1d's weight gradient
add with atomics; not with --deterministic) and the train path. For every finished run under
``RUNS_DIR/runs/`` whose id also has results under ``BEFORE/runs/`` or ``BEFORE/*/*/runs/``, the
tests both hold are compared, and whether the two trainings are identical: every epoch's loss and
validation score, and the weights file's sha256. Prints a summary per model and the largest
moves, in Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from mqarbench.results.store import overall_scores


@dataclass
class Pair:
    model: str
    train_task: str
    lr: float
    seed: int
    valid: tuple[float, float]  # (before, after)
    best_epoch: tuple[int, int]
    diffs: dict[str, float]  # test task -> after - before, query accuracy in points
    identical: bool  # the same history and weights file


def find_pairs(before: Path, runs_dirs: list[Path]) -> list[Pair]:
    found = [*before.glob("runs/*/results.parquet"), *before.glob("*/*/runs/*/results.parquet")]
    old = {p.parent.name: p.parent for p in found}
    pairs = []
    for runs_dir in runs_dirs:
        for new in sorted(runs_dir.glob("runs/*/results.parquet")):
            run_dir = new.parent
            if run_dir.name not in old:
                continue
            after, prior = json.loads((run_dir / "run.json").read_text()), json.loads((old[run_dir.name] / "run.json").read_text())
            s_new, s_old = overall_scores(run_dir), overall_scores(old[run_dir.name])
            pairs.append(Pair(after["model"], after["train_task"], after["hparams"]["lr"], after["seed"],
                              (prior["valid_query_accuracy"], after["valid_query_accuracy"]),
                              (prior["best_epoch"], after["best_epoch"]),
                              {t: s_new[t] - s_old[t] for t in s_old if t in s_new},
                              after.get("history") == prior.get("history")
                              and _weights_digest(run_dir) == _weights_digest(old[run_dir.name]) is not None))
    return pairs


def _weights_digest(run_dir: Path) -> str | None:
    sidecar = run_dir / "weights.safetensors.sha256"
    return sidecar.read_text().strip() if sidecar.exists() else None


def summary(pairs: list[Pair]) -> list[str]:
    lines = ["| model | pairs | identical pairs | test cells | median abs. diff | largest | median valid diff | "
             "largest valid diff | cells > 5 points |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for model in dict.fromkeys(p.model for p in pairs):
        mine = [p for p in pairs if p.model == model]
        cells = [abs(d) for p in mine for d in p.diffs.values()]
        valid = [abs(p.valid[1] - p.valid[0]) for p in mine]
        lines.append(f"| {model} | {len(mine)} | {sum(p.identical for p in mine)} | {len(cells)} | {statistics.median(cells):.1f} | {max(cells):.1f} | "
                     f"{statistics.median(valid):.1f} | {max(valid):.1f} | {sum(c > 5 for c in cells)} |")
    return lines


def largest(pairs: list[Pair], n: int) -> list[str]:
    lines = ["| model | trained on | lr | seed | validation before -> after | best epoch | largest test change |",
             "| --- | --- | ---: | ---: | --- | --- | --- |"]
    moved = sorted((p for p in pairs if p.diffs), key=lambda p: -max(map(abs, p.diffs.values())))
    for p in moved[:n]:
        test = max(p.diffs, key=lambda t: abs(p.diffs[t]))
        lines.append(f"| {p.model} | {p.train_task} | {p.lr:g} | {p.seed} | {p.valid[0]:.1f} -> {p.valid[1]:.1f} | "
                     f"{p.best_epoch[0]} -> {p.best_epoch[1]} | {test} {p.diffs[test]:+.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dirs", nargs="+", type=Path, help="--out directories of `mqarbench run`")
    parser.add_argument("--before", type=Path, required=True,
                        help="the first trainings: a leaderboard/ folder or a --out folder")
    parser.add_argument("--top", type=int, default=6)
    args = parser.parse_args()
    pairs = find_pairs(args.before, args.runs_dirs)
    if not pairs:
        raise SystemExit(f"retrained_pairs: no run under {' '.join(map(str, args.runs_dirs))} has an id under "
                         f"{args.before}/runs/ or {args.before}/*/*/runs/; pass the --out folders of the retraining")
    print(*summary(pairs), "", *largest(pairs, args.top), sep="\n")


if __name__ == "__main__":
    main()
