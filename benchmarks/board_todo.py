"""Which reference-board runs are still to train: exactly the missing ones, for the next GPU session.

    python benchmarks/board_todo.py [--models m1,m2|all|new] [--suite all] [--seeds 3]
                                    [--preset small] [--root leaderboard] [--data-dir mqar_data]
    python benchmarks/board_todo.py --ids-only MODEL [--suite all] [--train TASK ...]   # for `run --only`
    python benchmarks/board_todo.py --seconds-only MODEL [--suite all] [--train TASK ...]   # its pack's wall time

For each model the matrix is planned as `mqarbench run --model M --suite S --seeds N --preset P`
plans it (same run ids), and each run id is looked up under ROOT/submissions/*/runs/ and
ROOT/pending/*/runs/. A run is complete only if its results hold every test the suite asks of its
train task (name, version and content hash, as the board checks them): a run trained by a smaller
suite (`main`) has the same id as under `all` but fewer tests, and must be retrained (no weights
are kept). One markdown row per model; its phase `board@MODEL@SUITE@SEEDS@ID+ID...` (plan order)
is what benchmarks/gpu_session.sh takes (the session trains at preset small), `-` if nothing is
missing. `--models new`: the built-ins without any run under ROOT/submissions yet. Default: all
built-ins (`--model all` of the CLI).

The `pack s` column (and `--seconds-only`, 0 when unknown) estimates the wall time of one pack of
the missing runs from the board's own runs (`pack_seconds`). Measured with whatever shared the
GPU then, it is what a GPU session (gpu_session.sh) uses to skip a pack that would not finish in
time.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from mqarbench.data import Dataset, load_suite
from mqarbench.errors import UserError, report
from mqarbench.models.registry import BUILTINS, resolve_models
from mqarbench.paths import default_data_dir, leaderboard_dir, usable_dir
from mqarbench.runner.hparams import sweep
from mqarbench.runner.plan import RunSpec, plan_runs, suite_datasets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from board_runs import read_run, run_dirs  # noqa: E402 - a sibling module

TestKey = tuple[str, int, str]  # (test_task, version, content_hash): what the board matches on


@dataclass
class Todo:
    """One model's planned runs, split by what the board already holds."""

    model: str
    planned: list[RunSpec]
    complete: list[str] = field(default_factory=list)
    missing_tests: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    in_submissions: bool = False  # any planned run (complete or not) under ROOT/submissions
    pack_s: int = 0  # estimated wall time of one pack of the runs to train (pack_seconds)

    @property
    def to_train(self) -> list[str]:
        """Ids to train, in plan order (the two lists would otherwise put all partial runs first)."""
        missing = set(self.missing_tests) | set(self.absent)
        return [s.run_id for s in self.planned if s.run_id in missing]

    def phase(self, suite: str, seeds: int) -> str:
        ids = self.to_train
        return f"board@{self.model}@{suite}@{seeds}@{'+'.join(ids)}" if ids else "-"


def index_runs(root: Path) -> dict[str, list[Path]]:
    """Run id -> its directories on the board; an id may sit in several (pending and a submission)."""
    if not root.is_dir():
        raise UserError(f"--root {root}: no such folder; pass the leaderboard/ directory")
    found: dict[str, list[Path]] = {}
    for folder in ("submissions", "pending"):
        for run_dir in run_dirs(root / folder):
            found.setdefault(run_dir.name, []).append(run_dir)
    return found


Timing = tuple[str, str, int, float, float | None]  # (model, train task, pack size, wall s, training tokens)


def measured_wall_s(index: dict[str, list[Path]]) -> list[Timing]:
    """Every board run's wall time (run.json), with its model, train task, pack size and the tokens
    it trained (None where run.json does not say)."""
    found = []
    for dirs in index.values():
        for run_dir in dirs:
            try:
                info = read_run(run_dir)
                if info is None:
                    continue
                timing = info["timing"]
                rate, train_s = info.get("train_tokens_per_s"), timing.get("train_s")
                tokens = float(rate) * float(train_s) if rate and train_s else None
                found.append((info["model"], info["train_task"], int(info.get("pack_size") or 1),
                              float(timing["wall_s"]), tokens))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # no timing (an old or hand-made run): no estimate from it
    return found


def pack_seconds(todo: "Todo", timings: list[Timing]) -> int:
    """Estimated wall time of one pack of todo's missing runs; 0 when unknown. A pack's members
    train side by side and each ends with its own task (in one gla pack the k4v8-shuffle members
    took 528 s, the k2v2 ones 720-741 s), so the pack takes about its longest task's time, not
    the sum of its tasks' (an 18-run rwkv pack of three tasks took 1,082 s, a 12-run one of two
    1,064 s). Per task: from runs of packs no larger than this one (n members), each counting as
    wall * sqrt(n / its pack's size), since more members share the GPU more (an overestimate
    where measured: the rwkv pack above at 1,303 s), the longest; a task timed only in larger
    packs takes the shortest of those (fewer members are not slower). A run that early stopping
    ended counts at its time scaled to the task's full training tokens. A task this model never
    trained takes another task's time scaled by their training tokens (a task's tokens are the
    same for every model; the most any board run trained), the longest such: rwkv7's standard,
    shuffle and last train 178.6 M tokens a run, its k2v2 97.9 M, and were half done when its
    k2v2 members had finished."""
    missing = set(todo.to_train)
    tasks = {s.train.task for s in todo.planned if s.run_id in missing}
    own: dict[str, float] = {}
    larger: dict[str, float] = {}
    tokens: dict[str, float] = {}
    for _, task, _, _, trained in timings:
        if trained:
            tokens[task] = max(trained, tokens.get(task, 0.0))
    for model, task, pack, wall, trained in timings:
        if model != todo.model:
            continue
        if trained:  # a run that stopped early counts as the whole run it would have trained
            wall *= tokens[task] / trained
        if pack <= len(missing):
            own[task] = max(wall * math.sqrt(len(missing) / pack), own.get(task, 0.0))
        else:
            larger[task] = min(wall, larger.get(task, math.inf))
    known = {**larger, **own}
    if not tasks or not known:
        return 0

    def untimed(task: str) -> float:
        if task not in tokens:
            return max(known.values())
        return max(wall * tokens[task] / tokens[k] if k in tokens else wall for k, wall in known.items())

    return round(max(known[task] if task in known else untimed(task) for task in tasks))


def tests_held(run_dir: Path) -> set[TestKey]:
    """The tests a run's results hold; none if it has no readable results (it must be retrained)."""
    path = run_dir / "results.parquet"
    if not path.is_file():
        return set()
    try:
        t = pq.read_table(path, columns=["test_task", "test_task_version", "test_task_hash"])
    except Exception as err:  # a corrupt file counts as no results, but say so
        print(f"warning: {path}: unreadable ({type(err).__name__}: {err}); counted as missing tests",
              file=sys.stderr)
        return set()
    return set(zip(*(t.column(c).to_pylist() for c in t.column_names)))


def classify(model: str, specs: list[RunSpec], index: dict[str, list[Path]]) -> Todo:
    todo = Todo(model, specs)
    for spec in specs:
        dirs = index.get(spec.run_id, [])
        todo.in_submissions |= any(d.parent.parent.parent.name == "submissions" for d in dirs)
        need = {(t.task, t.version, t.content_hash) for t in spec.tests}
        if not dirs:
            todo.absent.append(spec.run_id)
        elif any(need <= tests_held(d) for d in dirs):
            todo.complete.append(spec.run_id)
        else:
            todo.missing_tests.append(spec.run_id)
    return todo


def board_todo(models: list[str], suite: str, seeds: int, preset: str, root: Path,
               data_dir: Path, train: list[str] | None = None,
               index: dict[str, list[Path]] | None = None) -> list[Todo]:
    """Plan each model's matrix as `mqarbench run` does (only the runs trained on ``train``, if
    given, as its --train does) and classify every run against ``root`` (or ``index``, run id ->
    directories, when given: runs not yet on the board)."""
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    train_tasks = load_suite(suite).train_tasks()  # an unknown suite fails before any data is built
    unknown = sorted(set(train or []) - set(train_tasks))
    if unknown:
        raise UserError(f"--train {' '.join(unknown)}: not a training task of suite {suite} "
                        f"({', '.join(train_tasks)})")
    hps = sweep(preset)
    index = index_runs(root) if index is None else index
    datasets: dict[str, Dataset] = suite_datasets(suite, preset, data_dir)
    timings = measured_wall_s(index)
    todos = []
    for m in models:
        specs = plan_runs([m], suite, preset, datasets, hps, list(range(seeds)), root)
        todo = classify(m, [s for s in specs if not train or s.train.task in train], index)
        todo.pack_s = pack_seconds(todo, timings)
        todos.append(todo)
    return todos


def table(todos: list[Todo], suite: str, seeds: int) -> list[str]:
    lines = ["| model | planned | complete | missing tests | absent | pack s | GPU phase |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    lines += [f"| {t.model} | {len(t.planned)} | {len(t.complete)} | {len(t.missing_tests)} | "
              f"{len(t.absent)} | {t.pack_s if t.to_train and t.pack_s else '-'} | "
              f"{t.phase(suite, seeds)} |" for t in todos]
    lines.append(f"\n{sum(len(t.to_train) for t in todos)} runs to train")
    return lines


def add_board_args(p: argparse.ArgumentParser) -> None:
    """The flags that say which board, and which matrix of it, a script reads."""
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--preset", default="small")
    p.add_argument("--root", type=Path, default=leaderboard_dir())
    p.add_argument("--data-dir", type=Path, default=None, help="dataset cache (default: mqar_data/)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all", help="comma list of model refs, `all` (the built-ins) or `new`")
    p.add_argument("--ids-only", metavar="MODEL", help="print only MODEL's ids to train, space-separated")
    p.add_argument("--seconds-only", metavar="MODEL",
                   help="print only the estimated wall time of one pack of MODEL's missing runs (0: unknown)")
    p.add_argument("--suite", default="all")
    p.add_argument("--train", nargs="+", metavar="TASK", help="only the runs trained on these tasks")
    add_board_args(p)
    args = p.parse_args(argv)
    try:
        data_dir = usable_dir(args.data_dir or default_data_dir(), "--data-dir")
        one = args.ids_only or args.seconds_only
        if args.ids_only and args.seconds_only:
            raise UserError("--ids-only and --seconds-only: give one of them")
        if one:
            models = resolve_models(one)
            if len(models) != 1:
                raise UserError(f"--{'ids' if args.ids_only else 'seconds'}-only {one}: give one model")
        else:
            # `new` is decided after classifying: built-ins with no run in a submission
            models = list(BUILTINS) if args.models.strip() == "new" else resolve_models(args.models)
        todos = board_todo(models, args.suite, args.seeds, args.preset, args.root, data_dir, args.train)
    except UserError as err:
        return report(err)
    if args.ids_only:
        print(" ".join(todos[0].to_train))
        return 0
    if args.seconds_only:
        print(todos[0].pack_s if todos[0].to_train else 0)
        return 0
    if args.models.strip() == "new":
        todos = [t for t in todos if not t.in_submissions]
    if args.preset != "small":
        print(f"note: benchmarks/gpu_session.sh trains board phases at small, not {args.preset}", file=sys.stderr)
    print("\n".join(table(todos, args.suite, args.seeds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
