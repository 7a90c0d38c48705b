"""`mqarbench run` (the whole suite), `mqarbench train` and `mqarbench eval` (its stages)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mqarbench.errors import UserError
from mqarbench.paths import default_data_dir, default_out_dir, usable_dir
from mqarbench.presets import PRESET_HELP, PRESETS, default_preset

DATA_DIR_HELP = "dataset cache (default: $MQARBENCH_DATA_DIR or ./mqar_data)"
MODEL_HELP = "adapter: entry-point name, module:Class or path/to/adapter.py[:Class]"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=PRESETS, help=f"data, training and model size: {PRESET_HELP}")
    p.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--out", type=Path, default=None,
                   help="runs and results (default: $MQARBENCH_OUT_DIR or ./mqar_runs)")
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    p.add_argument("--allow-slow-kernels", action="store_true",
                   help="on CUDA, train even where a model falls back to a reference kernel")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                   help="on CUDA, kernels that sum in a fixed order, so a rerun of a seed repeats bit for bit "
                        "(the default; the Mamba family takes the Triton selective scan); --no-deterministic: "
                        "the libraries' own kernels (as MQARBENCH_DETERMINISTIC=1 / 0)")


def _choose_kernels(args: argparse.Namespace) -> None:
    """Settle the kernel choices for this process and the workers it starts (they read the
    environment), before any dataset or run folder is made."""
    from mqarbench.kernels.determinism import choose_deterministic, deterministic_chosen, deterministic_setting

    asked = {"1": True, "0": False}.get(deterministic_setting()) if args.deterministic is None else args.deterministic
    if getattr(args, "stack", False):
        if asked:
            raise UserError("--deterministic with --stack: stacked runs take mamba_ssm's grouped scan, whose "
                            "backward is not deterministic; drop --stack")
        if asked is None:
            print("note: --stack trains without deterministic kernels (mamba_ssm's grouped scan); "
                  "a rerun of a seed may differ", file=sys.stderr)
        asked = False
    choose_deterministic(deterministic_chosen() if asked is None else asked)
    if deterministic_chosen():
        from mqarbench.kernels.selective_scan import triton_scan_chosen

        triton_scan_chosen()  # a scan that contradicts it is reported now


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train, select and evaluate models on a suite; print its tables")
    p.add_argument("--model", required=True,
                   help=f"{MODEL_HELP}; several comma separated, or 'all' (every built-in: the "
                        "paper's seven and five newer)")
    p.add_argument("--suite", required=True, help="main, positional, ngram, robustness or all")
    p.add_argument("--lr", type=float, nargs="+", help="learning rates to sweep (default: the preset's grid)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per setting (default 1)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: a Ray cluster")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--workers-per-gpu", type=int, default=None,
                   help="runs sharing one GPU at a time (worker processes, or Ray GPU fractions); "
                        "default: as many as the GPU's memory holds (8 on an 80 GB GPU), 1 at preset "
                        "paper and on a CPU")
    p.add_argument("--pack", type=int, default=None, metavar="K",
                   help="train up to K runs at once in this process, each replaying its step as a CUDA "
                        "graph on its own stream (default on a GPU: as many as its memory holds; 1 on a "
                        "CPU); --pack 1 trains one run per process as before")
    p.add_argument("--stack", action="store_true",
                   help="in a pack, train the runs of a model with a stacked form (the Mamba family) as one "
                        "batched computation instead of one CUDA graph each (about as fast on an H200 at "
                        "small; see docs/benchmarks.md)")
    p.add_argument("--only", nargs="+", metavar="RUN_ID",
                   help="run only these runs of the matrix (ids or unique prefixes, as `run` prints them)")
    p.add_argument("--train", nargs="+", metavar="TASK",
                   help="run only the runs trained on these tasks of the suite (e.g. k2v2 k4v8-shuffle)")
    p.add_argument("--no-site", action="store_true", help="skip building the leaderboard site")
    _common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train one model on one task (one learning rate and seed)")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--task", required=True, help="the train task")
    p.add_argument("--lr", type=float, help="learning rate (default: the preset's first)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained run's best checkpoint on test tasks")
    p.add_argument("run_dir", type=Path, help="<out>/runs/<run_id>")
    p.add_argument("--test", required=True, help="test task(s), comma separated")
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    p.set_defaults(func=cmd_eval)


def _workers_per_gpu(preset: str) -> int:
    from mqarbench.runner.envinfo import default_workers_per_gpu, gpu_memory_gib

    memory = gpu_memory_gib()
    workers = default_workers_per_gpu(preset, memory)
    if memory is not None:
        print(f"no --workers-per-gpu given: {workers} run(s) share the GPU ({memory:.0f} GiB, preset {preset!r})",
              file=sys.stderr)
    return workers


def _dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    out = getattr(args, "out", None) or default_out_dir()
    return usable_dir(out, "--out"), usable_dir(args.data_dir or default_data_dir(), "--data-dir")


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mqarbench.data import load_suite
    from mqarbench.models.registry import resolve_models
    from mqarbench.runner.hparams import sweep
    from mqarbench.runner.orchestrate import run_suite
    from mqarbench.runner.tables import suite_tables

    if args.seeds < 1 or (args.workers_per_gpu is not None and args.workers_per_gpu < 1):
        raise UserError("--seeds and --workers-per-gpu must be at least 1")
    if args.pack is not None and args.pack < 1:
        raise UserError(f"--pack must be at least 1, got {args.pack}")
    if args.stack and (args.pack == 1 or args.executor == "ray"):
        raise UserError("--stack trains runs side by side in one pack; drop --pack 1 / --executor ray, or drop --stack")
    if args.pack not in (None, 1) and args.executor == "ray":
        raise UserError("--pack works with --executor local; a Ray task trains one run (drop --pack)")
    _choose_kernels(args)
    load_suite(args.suite)  # an unknown suite fails before anything is built
    models = resolve_models(args.model)
    preset = default_preset(args.preset)
    # packed runs share the GPU inside one process; worker processes are for --pack 1
    workers = args.workers_per_gpu or (_workers_per_gpu(preset) if args.pack == 1 else 1)
    out, data = _dirs(args)
    hps = sweep(preset, args.lr, args.epochs, args.batch_size)
    console = Console()
    if not console.is_terminal:
        console.width = 140  # a log file: do not squeeze the tables to 80 columns
    _, results = run_suite(models, args.suite, preset=preset, sweep=hps, seeds=list(range(args.seeds)),
                           out_dir=out, data_dir=data, executor=args.executor, ray_address=args.ray_address,
                           workers_per_gpu=workers, allow_slow_kernels=args.allow_slow_kernels,
                           only=args.only, pack=args.pack, train=args.train, stack=args.stack)
    for table in suite_tables(args.suite, results):
        console.print(table)
    if not args.no_site:
        from mqarbench.leaderboard.build import build_site

        # your own results, shown even where they do not validate (the page then says so)
        console.print(f"leaderboard: {build_site([out], out / 'site', data, allow_invalid=True)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mqarbench.data import build_dataset, load_task
    from mqarbench.models.registry import load_adapter
    from mqarbench.runner.hparams import sweep
    from mqarbench.runner.job import execute
    from mqarbench.runner.plan import plan_run

    if args.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {args.seed}")
    _choose_kernels(args)
    if load_task(args.task).test_only:
        raise UserError(f"--task {args.task!r} is test only; train on a task with a train split")
    preset = default_preset(args.preset)
    out, data = _dirs(args)
    hp = sweep(preset, [args.lr] if args.lr else None, args.epochs, args.batch_size)[0]
    spec = plan_run(load_adapter(args.model), args.model, build_dataset(args.task, preset, data), [], preset,
                    hp, args.seed, out, args.allow_slow_kernels)
    from mqarbench.runner.progress import LineProgress

    lines = LineProgress(lambda text: print(text, file=sys.stderr, flush=True))
    record = execute(spec, lambda epoch, step, steps: lines(spec, epoch, step, steps))
    print(f"{spec.run_dir}  best epoch {record['best_epoch']}  "
          f"valid query accuracy {record['valid_query_accuracy']:.1f}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses

    from mqarbench.data import build_dataset
    from mqarbench.runner.job import execute, read_run_json
    from mqarbench.runner.plan import RunSpec, TaskRef, max_seq_len

    info = read_run_json(args.run_dir)
    if not info or not info.get("trained"):
        raise UserError(f"{args.run_dir}: no finished training run (run.json with trained: true); "
                        "train it first with `mqarbench train` or `mqarbench run`")
    spec = RunSpec.from_json(info["spec"])
    data = usable_dir(args.data_dir or default_data_dir(), "--data-dir")
    tests = [build_dataset(t.strip(), spec.preset, data) for t in args.test.split(",") if t.strip()]
    if tests and max_seq_len(tests) > spec.max_len:
        raise UserError(f"--test: sequences of length {max_seq_len(tests)} exceed the model's "
                        f"max_len {spec.max_len}; evaluate on tasks of the training grid")
    spec = dataclasses.replace(spec, tests=tuple(TaskRef.of(t) for t in tests),
                               out_dir=str(Path(args.run_dir).parent.parent))
    record = execute(spec)
    from mqarbench.results.store import read_results

    rows = read_results(spec.run_dir / "results.parquet").to_pylist()
    for r in rows:
        if r["slice"] == "overall" and r["test_task"] in {t.task_id for t in tests}:
            print(json.dumps({"test_task": r["test_task"], "query_accuracy": round(r["query_accuracy"], 2),
                              "token_accuracy": round(r["token_accuracy"], 2),
                              "example_exact_match": round(r["example_exact_match"], 2)}))
    return 0 if record else 1
