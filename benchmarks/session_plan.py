"""The next GPU machine's board phases: the missing packs spread over lanes to fit before a deadline.

    python benchmarks/session_plan.py --deadline 1430 [--lanes 2] [--start 110] [--models all]
                                      [--suite all] [--seeds 3] [--unknown-s 600] [--tasks-per-pack 1]

One pack per model and training task that the board still lacks (benchmarks/board_todo.py), or
per ``--tasks-per-pack`` of a model's tasks (in plan order: a pack of three tasks' 18 runs takes
about as long as one of two tasks' 12, since its members train side by side), each
with board_todo's estimate of its wall time (`pack_seconds`, from the board's own runs;
``--unknown-s`` where the model has none). The models with the fewest missing runs first
(a complete suite becomes a submission), each model's longest pack first, each pack goes to the
lane that is free soonest, if it ends there with a tenth to spare before ``--deadline`` (seconds after the
session's start, as gpu_session.sh's DEADLINE; the lanes start at ``--start``, after the kernel
checks). Prints the PHASES / LANE2 / LANE3 lines for gpu_session.sh (`todo@` phases, which
re-check the board and the deadline on the machine) and what is left for a later machine.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from board_todo import Todo, add_board_args, board_todo, index_runs, measured_wall_s, pack_seconds  # noqa: E402

from mqarbench.errors import UserError, report  # noqa: E402
from mqarbench.models.registry import resolve_models  # noqa: E402
from mqarbench.paths import default_data_dir, usable_dir  # noqa: E402

MARGIN = 1.1  # what gpu_session.sh's todo@ phase asks of an estimate before it starts a pack


@dataclass
class Pack:
    model: str
    task: str  # training tasks joined by + (a pack of several)
    runs: int
    seconds: int  # estimated wall time
    known: bool  # from the board's runs, not --unknown-s

    def phase(self, suite: str, seeds: int) -> str:
        return f"todo@{self.model}@{suite}@{seeds}@train={self.task}"


@dataclass
class Lane:
    start: int
    packs: list[Pack] = field(default_factory=list)

    @property
    def ends(self) -> int:
        return self.start + sum(p.seconds for p in self.packs)


def task_packs(todo: Todo, timings: list, unknown_s: int, tasks_per_pack: int = 1) -> list[Pack]:
    """One Pack per ``tasks_per_pack`` training tasks among todo's missing runs, in plan order."""
    if tasks_per_pack < 1:
        raise UserError(f"--tasks-per-pack must be at least 1, got {tasks_per_pack}")
    missing = set(todo.to_train)
    by_task: dict[str, list] = {}
    for spec in todo.planned:
        if spec.run_id in missing:
            by_task.setdefault(spec.train.task, []).append(spec)
    tasks = list(by_task)
    packs = []
    for i in range(0, len(tasks), tasks_per_pack):
        group = tasks[i:i + tasks_per_pack]
        specs = [spec for task in group for spec in by_task[task]]
        one = Todo(todo.model, specs, absent=[s.run_id for s in specs])
        seconds = pack_seconds(one, timings)
        packs.append(Pack(todo.model, "+".join(group), len(specs), seconds or unknown_s, bool(seconds)))
    return packs


def plan(packs: list[Pack], lanes: int, start: int, deadline: int) -> tuple[list[Lane], list[Pack]]:
    """The models nearest to a complete suite first (a finished suite is a submission), within
    one model the longest pack first; each onto the lane free soonest, when it ends there with
    the margin before the deadline."""
    if lanes < 1:
        raise UserError(f"--lanes must be at least 1, got {lanes}")
    missing: dict[str, int] = {}
    for pack in packs:
        missing[pack.model] = missing.get(pack.model, 0) + pack.runs
    slots, left = [Lane(start) for _ in range(lanes)], []
    for pack in sorted(packs, key=lambda p: (missing[p.model], p.model, -p.seconds)):
        lane = min(slots, key=lambda s: s.ends)
        if lane.ends + pack.seconds * MARGIN <= deadline:
            lane.packs.append(pack)
        else:
            left.append(pack)
    return slots, left


def render(slots: list[Lane], left: list[Pack], suite: str, seeds: int, deadline: int) -> list[str]:
    lines = []
    for i, lane in enumerate(slots):
        name = "PHASES" if i == 0 else f"LANE{i + 1}"
        about = ", ".join(f"{p.model} {p.task} {p.seconds} s{'' if p.known else ' (guess)'}" for p in lane.packs)
        lines.append(f"# lane {i + 1}: ends near {lane.ends} s of {deadline} ({about or 'nothing'})")
        lines.append(f'{name}="{" ".join(p.phase(suite, seeds) for p in lane.packs)}"')
    runs = sum(p.runs for lane in slots for p in lane.packs)
    lines.append(f"# {runs} runs planned; left for a later machine: "
                 + (", ".join(f"{p.model} {p.task} ({p.runs} runs, {p.seconds} s)" for p in left) or "nothing"))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all", help="comma list of model refs or `all` (the built-ins)")
    p.add_argument("--suite", default="all")
    p.add_argument("--deadline", type=int, required=True, help="seconds after the session's start (DEADLINE)")
    p.add_argument("--lanes", type=int, default=2)
    p.add_argument("--start", type=int, default=0, help="seconds before the lanes start (kernel checks first)")
    p.add_argument("--unknown-s", type=int, default=600, help="a pack's guess where the board has no timing")
    p.add_argument("--tasks-per-pack", type=int, default=1, help="a model's training tasks per pack (one process)")
    add_board_args(p)
    args = p.parse_args(argv)
    try:
        data_dir = usable_dir(args.data_dir or default_data_dir(), "--data-dir")
        index = index_runs(args.root)
        todos = board_todo(resolve_models(args.models), args.suite, args.seeds, args.preset, args.root,
                           data_dir, index=index)
        timings = measured_wall_s(index)
        packs = [pack for todo in todos for pack in task_packs(todo, timings, args.unknown_s, args.tasks_per_pack)]
        slots, left = plan(packs, args.lanes, args.start, args.deadline)
    except UserError as err:
        return report(err)
    print("\n".join(render(slots, left, args.suite, args.seeds, args.deadline)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
