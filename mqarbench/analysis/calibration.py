"""The reference board's calibration targets (issue "a board with signal"), judged on its runs.

A preset carries signal only if attention learns every training task, Mamba learns standard, and
three seeds of both agree on every Table 3 column. The learning targets read validation query
accuracy in-domain (the selection metric) at the learning rate selected per seed, and count the
worst seed: a target met on average but not by every seed is missed.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqarbench.analysis import paper_numbers as paper
from mqarbench.leaderboard.boards import Score

ATTENTION_FLOOR = 95.0  # pythia, every training task
MAMBA_FLOOR = 90.0  # mamba, standard
MAX_STD = 5.0  # points, every Table 3 column of pythia and mamba
SPREAD_MODELS = ("pythia", "mamba")
# the training tasks of suite `all`, in the order
TRAIN_TASKS = ("standard", "last", "shuffle", "k1v1", "k1v2", "k2v2", "k4v8-shuffle")

Valid = dict[str, dict[str, Score]]  # model -> train task -> validation accuracy over seeds
Scores = dict[str, dict[paper.Cell, Score]]  # model -> (train, test) -> test accuracy over seeds


@dataclass
class Target:
    name: str
    figure: str
    verdict: str  # met / missed ... / not measured ...


def _worst(score: Score) -> float:
    return min(score.values)


def judge_floor(name: str, valid: dict[str, Score], tasks: tuple[str, ...] | list[str],
                floor: float) -> Target:
    """Every seed of every task in ``tasks`` at or above ``floor``."""
    missing = [t for t in tasks if t not in valid]
    held = [f"{t} {_worst(valid[t]):.2f} (n={valid[t].n})" for t in tasks if t in valid]
    figure = "worst seed: " + ", ".join(held) if held else "-"
    if missing:
        return Target(name, figure, f"not measured: {', '.join(missing)}")
    short = [(t, floor - _worst(valid[t])) for t in tasks if _worst(valid[t]) < floor]
    if not short:
        return Target(name, figure, f"met on {len(tasks)} of {len(tasks)}")
    gaps = ", ".join(f"{t} by {gap:.2f}" for t, gap in short)
    return Target(name, figure, f"missed on {len(short)} of {len(tasks)} ({gaps})")


def judge_spread(scores: Scores, models: tuple[str, ...] = SPREAD_MODELS,
                 max_std: float = MAX_STD) -> Target:
    """The seeds' sample std of every Table 3 column of ``models`` at most ``max_std``."""
    name = f"std <= {max_std:g} on every Table 3 column of {' and '.join(models)}"
    missing, over, worst = [], [], []
    for model in models:
        row = scores.get(model, {})
        stds = {col: row[cell].std for col, cell in paper.TABLE3_COLUMNS.items()
                if cell in row and row[cell].n >= 2}
        missing += [f"{model} {col}" for col in paper.TABLE3_COLUMNS if col not in stds]
        over += [f"{model} {col} {std:.2f}" for col, std in stds.items() if std > max_std]
        if stds:
            col = max(stds, key=stds.get)
            worst.append(f"{model}: largest {stds[col]:.2f} ({col})")
    figure = "; ".join(worst) or "-"
    if missing:
        return Target(name, figure, f"not measured (under 2 seeds): {', '.join(missing)}")
    if over:
        return Target(name, figure, f"missed on {len(over)}: {', '.join(over)}")
    return Target(name, figure, "met")


def targets(valid: Valid, scores: Scores, train_tasks: tuple[str, ...] = TRAIN_TASKS) -> list[Target]:
    return [
        judge_floor(f"pythia >= {ATTENTION_FLOOR:g} in-domain on every training task, every seed",
                    valid.get("pythia", {}), train_tasks, ATTENTION_FLOOR),
        judge_floor(f"mamba >= {MAMBA_FLOOR:g} in-domain on standard, every seed",
                    valid.get("mamba", {}), ["standard"], MAMBA_FLOOR),
        judge_spread(scores),
    ]


def _cell(score: Score | None) -> str:
    if score is None:
        return "not run"
    worst = "" if score.n < 2 else f" · min {_worst(score):.1f}"
    return f"{score.mean:.1f}" + ("" if score.n < 2 else f" ± {score.std:.1f}") + f" (n={score.n}){worst}"


def render(valid: Valid, scores: Scores, train_tasks: tuple[str, ...] = TRAIN_TASKS) -> list[str]:
    """The section of docs/reproduction.md: the targets, then every model's in-domain table."""
    lines = ["## Calibration targets", "",
             "What the preset was calibrated for (issue \"a board with signal\"), judged on the runs "
             "above: validation query accuracy in-domain (the selection metric) at the learning rate "
             "selected per seed, the worst seed counting; spreads are the sample std over seeds of "
             "Table 3's test scores.", "",
             "| target | figure | verdict |", "| --- | --- | --- |"]
    lines += [f"| {t.name} | {t.figure} | **{t.verdict}** |" for t in targets(valid, scores, train_tasks)]
    lines += ["", "In-domain validation query accuracy per training task (mean ± std over seeds, "
              "the worst seed after `min`): which tasks each model learns at this preset.", "",
              "| model | " + " | ".join(train_tasks) + " |", "| --- |" + " --- |" * len(train_tasks)]
    for model in sorted(valid):
        lines.append(f"| {model} | " + " | ".join(_cell(valid[model].get(t)) for t in train_tasks) + " |")
    return lines + [""]

