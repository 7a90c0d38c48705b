"""`mqarbench run`: datasets -> run matrix -> executor -> results -> tables -> site, with progress bars."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from mqarbench.data import load_suite
from mqarbench.errors import UserError
from mqarbench.results.schema import RESULTS_SCHEMA
from mqarbench.results.store import RESULTS_FILE, read_results
from mqarbench.runner.hparams import HParams
from mqarbench.runner.job import is_finished
from mqarbench.runner.plan import RunSpec, plan_runs, suite_datasets, train_tokens

EXECUTORS = ("local", "ray")


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                    transient=False)


def collect(specs: list[RunSpec]) -> pa.Table:
    """The results of ``specs`` (only the test tasks each one is paired with)."""
    tables = []
    for spec in specs:
        path = spec.run_dir / RESULTS_FILE
        if path.exists():
            t = read_results(path)
            wanted = {(x.task, x.content_hash) for x in spec.tests}
            keep = [(a, b) in wanted for a, b in zip(t.column("test_task").to_pylist(),
                                                      t.column("test_task_hash").to_pylist())]
            tables.append(t.filter(pa.array(keep, pa.bool_())))
    return pa.concat_tables(tables) if tables else RESULTS_SCHEMA.empty_table()


def select_runs(specs: list[RunSpec], ids: list[str]) -> list[RunSpec]:
    """The runs named by ``ids`` (full ids or unique prefixes); one that names none is an error."""
    chosen = []
    for prefix in ids:
        hits = [s for s in specs if s.run_id.startswith(prefix)]
        if len(hits) != 1:
            what = "no run" if not hits else f"{len(hits)} runs"
            raise UserError(f"--only {prefix}: {what} of this matrix has that id; use an id printed by `mqarbench run`")
        chosen += [s for s in hits if s not in chosen]
    return chosen


def check_train_tasks(suite: str, tasks: list[str]) -> None:
    """A task the suite does not train on is an error (raised before any data is built)."""
    offered = load_suite(suite).train_tasks()
    for task in tasks:
        if task not in offered:
            raise UserError(f"--train {task}: suite {suite!r} trains on none such; "
                            f"its train tasks: {', '.join(offered)}")


def run_suite(models: list[str], suite: str, *, preset: str, sweep: list[HParams], seeds: list[int],
              out_dir: Path, data_dir: Path, executor: str = "local", ray_address: str | None = None,
              workers_per_gpu: int = 1, allow_slow_kernels: bool = False,
              console: Console | None = None, only: list[str] | None = None,
              pack: int | None = None, train: list[str] | None = None,
              stack: bool = False) -> tuple[list[RunSpec], pa.Table]:
    """Build data, run every missing run of the matrix (or of its runs ``only``, or those trained
    on the tasks ``train``), return (runs, their results)."""
    console = console or Console(stderr=True)
    if train:
        check_train_tasks(suite, train)
    experiments = load_suite(suite).experiments
    n_tasks = len({t for e in experiments for t in (e.train, e.test)})
    with progress_bar(console) as bar:
        data_task = bar.add_task(f"datasets ({preset})", total=n_tasks)
        datasets = suite_datasets(suite, preset, data_dir, lambda _t: bar.advance(data_task))
    specs = plan_runs(models, suite, preset, datasets, sweep, seeds, out_dir, allow_slow_kernels)
    if train:
        specs = [s for s in specs if s.train.task in train]
    if only:
        specs = select_runs(specs, only)
    todo = [s for s in specs if not is_finished(s)]
    console.print(f"{len(specs)} runs ({len(specs) - len(todo)} already finished) -> {out_dir / 'runs'}")
    if todo:
        _execute(todo, executor, ray_address, workers_per_gpu, console, pack, stack)
    return specs, collect(specs)


def packing(pack: int | None, executor: str, device_type: str, stack: bool = False) -> int:
    """Runs trained at once in one process: ``--pack`` if given; by default as many as fit on a
    GPU (0 = no fixed limit) and one on a CPU, where side-by-side runs gain nothing, unless
    ``--stack`` asks for a stack (which needs a pack)."""
    if pack is not None:
        return pack
    return 0 if (device_type == "cuda" or stack) and executor == "local" else 1


def _execute(todo: list[RunSpec], executor: str, ray_address: str | None, workers_per_gpu: int,
             console: Console, pack: int | None = None, stack: bool = False) -> None:
    from mqarbench.runner.executors import run_local, run_ray

    from mqarbench.runner.envinfo import pick_device
    from mqarbench.runner.warmup import warm_kernels

    device = pick_device()
    pack = packing(pack, executor, device.type, stack)
    parallel = executor == "ray" or workers_per_gpu > 1 or pack != 1
    if parallel:
        # longest runs first, so the matrix does not end with one long run on an idle GPU
        todo = sorted(todo, key=train_tokens, reverse=True)
    if device.type == "cuda" and parallel and pack == 1:
        # several processes would each compile and autotune the same Triton kernels at once
        warm_kernels(todo, device, report=console.print)
    with progress_bar(console) as bar:
        matrix = bar.add_task("runs", total=len(todo))
        epochs = bar.add_task("  epochs", total=1, visible=executor == "local" and workers_per_gpu <= 1 and pack == 1)

        def on_step(spec: RunSpec, epoch: int, step: int, steps: int) -> None:
            bar.update(epochs, completed=epoch * steps + step, total=spec.hparams.epochs * steps,
                       description=f"  {spec.adapter_name} on {spec.train.task}, lr {spec.hparams.lr:g}, "
                                   f"seed {spec.seed}: epoch {epoch + 1}/{spec.hparams.epochs}")

        def done(spec: RunSpec, record: dict) -> None:
            bar.advance(matrix)
            console.print(f"done {spec.run_id} {spec.adapter_name} on {spec.train.task}, lr {spec.hparams.lr:g}, "
                          f"seed {spec.seed}: valid {record.get('valid_query_accuracy', 0):.1f} "
                          f"in {record.get('wall_time_s', 0):.1f}s", soft_wrap=True)

        lines = None  # a log file: the bar prints nothing until it ends, so plain lines
        if not console.is_terminal:
            from mqarbench.runner.progress import with_lines

            lines = with_lines(None, lambda text: console.print(text, soft_wrap=True))
            on_step = with_lines(on_step, lambda text: console.print(text, soft_wrap=True))
        t0 = time.perf_counter()
        if executor == "ray":
            run_ray(todo, done, ray_address, workers_per_gpu)
        elif pack != 1:
            from mqarbench.runner.pack import train_pack

            alone = train_pack(todo, done, pack or None, report=console.print, on_step=lines, stack=stack)
            if alone and device.type == "cuda" and workers_per_gpu > 1:
                warm_kernels(alone, device, report=console.print)  # as for unpacked workers, above
            run_local(alone, done, on_step=on_step, workers=workers_per_gpu)
        else:
            run_local(todo, done, on_step=on_step, workers=workers_per_gpu)
        bar.update(epochs, visible=False)
    console.print(f"{len(todo)} runs in {time.perf_counter() - t0:.1f}s")
