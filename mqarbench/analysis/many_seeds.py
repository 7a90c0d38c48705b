"""Cells measured over many seeds, beside the board's three: one folder of runs per model and kernel path.

``ROOT/<name>/`` holds runs (any depth) trained on one task over seeds 0..N-1; seed for seed the
folders share initial weights and data order (a run's seed fixes both), so two folders can be
compared pair by pair. ``render`` writes docs/reproduction.md's section on them: per folder the
kernel paths its runs recorded and each test cell's mean ± std, the board's 3-seed score beside
it, and each folder against mamba's (the findings' rule: clearly above, clearly below, or within
noise) with a paired sign-flip test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from mqarbench.results.score import NOISE_MARGIN, Score, clearly_above, over_seeds
from mqarbench.results.select import select_best_lr
from mqarbench.results.store import collect_results

EXACT_PAIRS = 20  # every sign pattern up to 2^20; above, a fixed random sample of them
SAMPLED_FLIPS = 200_000


def sign_flip_p(differences: list[float]) -> float:
    """Two-sided p-value of a zero mean paired difference: the share of sign patterns whose
    |sum| reaches the observed |sum| (the observed pattern included)."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) == 0:
        return float("nan")
    if len(d) <= EXACT_PAIRS:
        signs = np.array(list(product((1.0, -1.0), repeat=len(d))))  # (2^n, n)
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(SAMPLED_FLIPS, len(d)))
    return float((np.abs(signs @ d) >= abs(d.sum()) - 1e-9).mean())


def seed_scores(folder: Path) -> dict[tuple[str, str], dict[int, float]]:
    """(train task, test task) -> seed -> test query accuracy (overall slice) at the learning
    rate each seed's validation picks, as the board picks it."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for r in select_best_lr(collect_results(folder)).to_pylist():
        if r["slice"] == "overall":
            out.setdefault((r["train_task"], r["test_task"]), {})[r["seed"]] = r["query_accuracy"]
    return out


def recorded_paths(folder: Path) -> list[dict[str, str]]:
    """The distinct kernel-path sets the folder's runs recorded (run.json)."""
    seen = {json.dumps(json.loads(p.read_text()).get("kernel_paths", {}), sort_keys=True)
            for p in folder.rglob("run.json")}
    return [json.loads(s) for s in sorted(seen)]


@dataclass
class SeedFolder:
    name: str
    model: str
    scores: dict[tuple[str, str], dict[int, float]]  # cell -> seed -> accuracy
    paths: list[dict[str, str]]


def load(root: Path) -> list[SeedFolder]:
    """Every folder of runs under ``root`` (sorted by name)."""
    folders = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = [json.loads(p.read_text()) for p in folder.rglob("run.json")]
        if runs:
            folders.append(SeedFolder(folder.name, runs[0]["model"], seed_scores(folder),
                                      recorded_paths(folder)))
    return folders


def clearly_apart(a: Score, b: Score) -> str:
    """'above' / 'below' / 'within noise', by the findings' rule (``clearly_above``)."""
    return "above" if clearly_above(a, b) else "below" if clearly_above(b, a) else "within noise"


def paths_text(paths: list[dict[str, str]]) -> str:
    """Kernel-path sets on one line: op=path, ...; several sets joined by ' | '."""
    return " | ".join(", ".join(f"{k}={v}" for k, v in sorted(p.items())) for p in paths) or "not recorded"


def render(root: Path, board: dict[str, dict[tuple[str, str], Score]], label: str) -> list[str]:
    """docs/reproduction.md's section on the folders under ``root`` (``label``: its path as shown);
    ``board``: model -> cell -> the board's score."""
    folders = load(root)
    if not folders:
        return []
    cells = sorted({cell for f in folders for cell in f.scores})
    reference = next((f for f in folders if f.model == "mamba"), None)
    lines = ["## Cells over many seeds", "",
             f"The board holds 3 seeds a cell. `{label}` holds more of a few cells: runs trained at one "
             "learning rate over seeds 0..N-1, for a model on one or several kernel paths (the "
             "`MQARBENCH_*` variables of the README); seed for seed they share initial weights and "
             "data order. Test query accuracy, mean ± std over seeds, the board's 3-seed score in "
             "parentheses. `python benchmarks/seed_spread.py` prints every seed.", "",
             "| runs | model | " + " | ".join(f"{t} -> {s}" for t, s in cells) + " |",
             "| --- | --- | " + " | ".join("---" for _ in cells) + " |"]
    for f in folders:
        row = [over_seeds(list(f.scores[c].values())).text() if c in f.scores else "-" for c in cells]
        on_board = [board.get(f.model, {}).get(c) for c in cells]
        lines.append(f"| {f.name} | {f.model} | " + " | ".join(
            f"{r} (board: {b.text() if b else 'not run'})" for r, b in zip(row, on_board)) + " |")
    if reference is not None:
        lines += ["", f"Against `{reference.name}` (the first mamba folder): the mean paired "
                  "difference over common seeds, p of a two-sided sign-flip test of those "
                  f"differences, and the findings' unpaired rule (clearly apart: more than {NOISE_MARGIN:g} "
                  "points and two combined stds), which ignores the pairing:", ""]
        for f in folders:
            if f is reference:
                continue
            parts = []
            for c in cells:
                if c not in f.scores or c not in reference.scores:
                    continue
                mine, ref = f.scores[c], reference.scores[c]
                common = sorted(set(mine) & set(ref))
                diffs = [mine[s] - ref[s] for s in common]
                verdict = clearly_apart(over_seeds(list(mine.values())), over_seeds(list(ref.values())))
                parts.append(f"{c[0]} -> {c[1]} {np.mean(diffs):+.2f} (p = {sign_flip_p(diffs):.3f}, "
                             f"n = {len(common)}; findings' rule: {verdict})")
            lines.append(f"- {f.name}: " + "; ".join(parts))
    lines += ["", "Kernel paths the runs recorded:", ""]
    lines += [f"- {f.name}: {paths_text(f.paths)}" for f in folders]
    return lines + [""]
