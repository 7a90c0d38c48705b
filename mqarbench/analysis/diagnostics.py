"""A model's diagnostics over training, from the ``history`` of a run's run.json.

    python -m mqarbench.analysis.diagnostics mqar_runs/runs/<run id> [--keys gate.mean,delta.near0]

Models that define ``track_diagnostics(on)`` and ``diagnostics() -> dict[str, float]`` (Global
Selection: per gated layer the gate's, ``W_dt·dt ⊙ gate``'s and Δ's mean, std and share near 0)
report them on the validation split after every epoch; the runner keeps them in the run's
history. This prints one Markdown table per run: epoch, validation accuracy and the chosen
statistics of every layer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mqarbench.errors import UserError, report
from mqarbench.runner.job import read_run_json

DEFAULT_KEYS = ("gate.mean", "gate.near0", "delta.mean", "delta.near0")


def diagnostics_table(run_dir: Path, keys: tuple[str, ...] = DEFAULT_KEYS) -> list[str]:
    """Markdown lines: one row per epoch, one column per (layer, key) the history holds."""
    record = read_run_json(run_dir)
    if record is None:
        raise UserError(f"{run_dir}: no readable run.json; pass a run's folder (mqar_runs/runs/<run id>)")
    history = [h for h in record.get("history", []) if h.get("diagnostics")]
    if not history:
        raise UserError(f"{run_dir}: its history holds no diagnostics (the model defines none, or "
                        "the run was trained before the runner recorded them)")

    names = list(history[0]["diagnostics"])
    stats = sorted({n.split(".", 1)[-1] for n in names})
    unknown = [k for k in keys if k not in stats]
    if unknown:
        raise UserError(f"--keys: {', '.join(unknown)} not in {run_dir.name}'s diagnostics; "
                        f"it has {', '.join(stats)}")

    def order(name: str) -> tuple[int, str, int]:  # layer by layer, the keys in the order asked for
        where, stat = name.split(".", 1) if "." in name else ("", name)
        layer = where.removeprefix("layer")
        return (int(layer) if layer.isdigit() else -1, where, keys.index(stat))

    columns = sorted((n for n in names if n.split(".", 1)[-1] in keys), key=order)
    lines = [f"{run_dir.name}: {record.get('model', '?')} on {record.get('train_task', '?')}, "
             f"lr {record.get('hparams', {}).get('lr', '?')}, seed {record.get('seed', '?')}", "",
             "| epoch | valid | " + " | ".join(columns) + " |", "| ---: | ---: |" + " ---: |" * len(columns)]
    for h in history:
        cells = [f"{h['diagnostics'].get(c, float('nan')):.4g}" for c in columns]
        lines.append(f"| {h['epoch']} | {h['valid_query_accuracy']:.1f} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (mqar_runs/runs/<run id>)")
    parser.add_argument("--keys", default=",".join(DEFAULT_KEYS),
                        help=f"statistics per layer, comma separated (default {','.join(DEFAULT_KEYS)})")
    args = parser.parse_args(argv)
    try:
        for run in args.runs:
            print("\n".join(diagnostics_table(run, tuple(args.keys.split(",")))))
    except UserError as err:
        return report(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
