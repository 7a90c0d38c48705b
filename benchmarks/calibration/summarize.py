"""The calibration table: one row per run under ROOT/<candidate>/runs/*/run.json.

    python benchmarks/calibration/summarize.py mqar_runs/cal

Columns: the candidate (the folder name), model and its parameters, training task, batch size,
learning rate, epochs, the selected checkpoint's validation query accuracy and epoch, the
validation curve at a few epochs, training seconds and the run's training tokens per second.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(history: list[dict], points: int = 5) -> str:
    """Validation accuracy at ``points`` evenly spaced epochs, ending at the last."""
    n = len(history)
    if not n:
        return ""
    picks = sorted({round(i * (n - 1) / max(points - 1, 1)) for i in range(points)})
    return " ".join(f"{history[i]['valid_query_accuracy']:.0f}@{history[i]['epoch'] + 1}" for i in picks)


def rows(root: Path) -> list[dict]:
    out = []
    for path in sorted(root.glob("*/runs/*/run.json")):
        run = json.loads(path.read_text())
        if not run.get("trained"):  # still training (or stopped): its run.json has no result yet
            continue
        hp = run["hparams"]
        out.append(dict(candidate=path.parents[2].name, model=run["model"], params=run["params"],
                        task=run["train_task"], batch=hp["batch_size"], lr=hp["lr"], epochs=hp["epochs"],
                        seed=run["seed"], valid=run.get("valid_query_accuracy", 0.0),
                        best_epoch=run.get("best_epoch", -1) + 1, curve=curve(run.get("history", [])),
                        train_s=run["timing"]["train_s"], tok_s=run.get("train_tokens_per_s", 0.0),
                        pack=run.get("pack_size", 1)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder holding one folder per candidate")
    args = parser.parse_args()
    table = rows(args.root)
    print("| candidate | model | params | train task | batch | lr | epochs | seed | valid | best epoch "
          "| valid curve (acc@epoch) | train s | tokens/s | pack |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for r in sorted(table, key=lambda r: (r["task"], r["model"], r["candidate"], r["lr"], r["seed"])):
        print(f"| {r['candidate']} | {r['model']} | {r['params']:,} | {r['task']} | {r['batch']} | {r['lr']:g} "
              f"| {r['epochs']} | {r['seed']} | {r['valid']:.1f} | {r['best_epoch']} | {r['curve']} "
              f"| {r['train_s']:.0f} | {r['tok_s']:,.0f} | {r['pack']} |")


if __name__ == "__main__":
    main()
