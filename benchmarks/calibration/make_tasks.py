"""A candidate copy of ``tasks/`` for calibrating `small`, used through MQARBENCH_TASKS_DIR.

    python benchmarks/calibration/make_tasks.py --out /tmp/cal10k --per-cell 10000 \
        --train k2v2 k4v8-shuffle standard
    MQARBENCH_TASKS_DIR=/tmp/cal10k mqarbench run --model pythia --suite calib ...

The copy changes only `small`'s training examples per cell and adds a suite `calib` that trains
on the given tasks and tests each in-domain; datasets get their own hashes, runs their own ids.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from mqarbench.paths import tasks_dir

MARKER = ".calibration-candidate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write the copy to")
    parser.add_argument("--per-cell", type=int, required=True, help="small's training examples per cell")
    parser.add_argument("--train", nargs="+", required=True, help="training tasks of the suite `calib`")
    args = parser.parse_args()
    if args.out.exists():
        # only a copy this script wrote is replaced: --out . must never delete a checkout
        if not (args.out / MARKER).is_file():
            raise SystemExit(f"error: --out {args.out}: exists and is not a candidate copy; pass a new directory")
        shutil.rmtree(args.out)
    shutil.copytree(tasks_dir(), args.out)
    (args.out / MARKER).write_text("a candidate copy of tasks/ (benchmarks/calibration/make_tasks.py)\n")
    presets_path = args.out / "presets.yaml"
    presets = yaml.safe_load(presets_path.read_text())
    presets["small"]["train"] = {"per_cell": args.per_cell}
    presets["small"]["description"] = f"calibration candidate: {args.per_cell} training examples per cell"
    presets_path.write_text(yaml.safe_dump(presets, sort_keys=False))
    suite = {"name": "calib", "description": "calibration: each training task tested in-domain",
             "experiments": [{"name": f"{t}-in-domain", "train": t, "test": t, "table": "table3"}
                             for t in args.train]}
    (args.out / "suites" / "calib.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    print(f"{args.out}: small.train.per_cell={args.per_cell}, suite calib trains on {', '.join(args.train)}")


if __name__ == "__main__":
    main()
