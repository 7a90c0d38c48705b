"""Check submissions against the results schema, the current ``tasks/`` and each other.

Every problem is one line naming the file and the field; an empty list means the submission
can be merged.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from mqarbench.errors import UserError
from mqarbench.leaderboard.catalog import TaskCatalog
from mqarbench.leaderboard.metadata import METADATA_FILE, SubmissionMetadata, metadata_problems
from mqarbench.results.schema import SCHEMA_VERSION
from mqarbench.results.store import RESULTS_FILE, check_digest, read_results_unchecked

REQUIRED = ("run_id", "model", "preset", "train_task", "train_task_version", "train_task_hash",
            "test_task", "test_task_version", "test_task_hash", "lr", "seed", "slice", "query_accuracy")
PERCENT = ("query_accuracy", "token_accuracy", "example_exact_match", "valid_query_accuracy")
MAX_LISTED = 3  # examples named in one problem line


def _listed(items: list) -> str:
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _row_name(row: dict) -> str:
    where = f" cell ({row['seq_len']}, {row['num_kv_pairs']})" if row.get("slice") == "cell" else ""
    return f"run {row.get('run_id')} test {row.get('test_task')}{where}"


def row_problems(path: Path, rows: list[dict]) -> list[str]:
    """Values the schema's types cannot rule out: nulls, slices, percent ranges, JSON fields."""
    bad: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        name = _row_name(row)
        if row["schema_version"] != SCHEMA_VERSION:
            bad[("schema_version", f"must be {SCHEMA_VERSION}")].append(name)
        for col in REQUIRED:
            if row[col] is None:
                bad[(col, "is empty")].append(name)
        if row["slice"] not in ("overall", "cell", None):
            bad[("slice", "must be 'overall' or 'cell'")].append(name)
        has_cell = row["seq_len"] is not None and row["num_kv_pairs"] is not None
        if row["slice"] == "cell" and not has_cell:
            bad[("seq_len", "a cell row needs seq_len and num_kv_pairs")].append(name)
        for col in PERCENT:
            value = row[col]
            if value is not None and (math.isnan(value) or not 0.0 <= value <= 100.0):
                bad[(col, "must be a percent in 0-100")].append(name)
        if row["block_shares_json"] is not None:
            try:
                json.loads(row["block_shares_json"])
            except ValueError:
                bad[("block_shares_json", "is not valid JSON")].append(name)
    return [f"{path}: field '{col}': {msg} ({_listed(names)})" for (col, msg), names in bad.items()]


def task_problems(path: Path, rows: list[dict], preset: str, catalog: TaskCatalog) -> list[str]:
    """Task ids, versions and content hashes must be those the current tasks/ build at ``preset``
    (at its current version, or an earlier one that kept the data: those results get a board of
    their own, never ranked with the current one)."""
    problems = []
    seen = set()
    for row in rows:
        for side in ("train", "test"):
            task, version, digest = row[f"{side}_task"], row[f"{side}_task_version"], row[f"{side}_task_hash"]
            if (side, task, version, digest) in seen or task is None:
                continue
            seen.add((side, task, version, digest))
            ref = catalog.ref(task, preset)
            if ref is None:
                problems.append(f"{path}: field '{side}_task': unknown task '{task}' "
                                "(see `mqarbench tasks list`)")
            elif version != ref.version:
                problems.append(f"{path}: field '{side}_task_version': task '{task}' is version {version}, "
                                f"the current tasks/ have version {ref.version}; re-run with this checkout")
            elif digest != ref.content_hash and digest not in ref.preset_versions:
                problems.append(f"{path}: field '{side}_task_hash': task '{task}' v{version} hash {digest} "
                                f"differs from the data the current tasks/ generate at preset '{preset}' "
                                f"({ref.content_hash}, or an earlier version of the preset); "
                                "re-run with this checkout")
    return problems


def cell_problems(path: Path, rows: list[dict], preset: str, catalog: TaskCatalog) -> list[str]:
    """Every scored (run, test task) has one row per grid cell, and its score is their mean."""
    cells: dict[tuple[str, str], dict[tuple[int, int], float]] = defaultdict(dict)
    overall: dict[tuple[str, str], float] = {}
    for row in rows:
        key = (row["run_id"], row["test_task"])
        if row["slice"] == "cell":
            cells[key][(row["seq_len"], row["num_kv_pairs"])] = row["query_accuracy"]
        elif row["slice"] == "overall":
            overall[key] = row["query_accuracy"]
    problems = []
    for (run_id, test), score in overall.items():
        ref = catalog.ref(test, preset)
        if ref is None:
            continue
        missing = sorted(ref.cells - cells[(run_id, test)].keys())
        if missing:
            problems.append(f"{path}: field 'slice': run {run_id} test {test} lacks grid cells "
                            f"(seq_len, num_kv_pairs) {_listed(missing)} of preset '{preset}'")
            continue
        values = [v for c, v in cells[(run_id, test)].items() if c in ref.cells]
        if score is not None and None not in values and abs(score - sum(values) / len(values)) > 0.01:
            problems.append(f"{path}: field 'query_accuracy': run {run_id} test {test} overall {score:.4f} "
                            f"is not the mean of its cells ({sum(values) / len(values):.4f})")
    return problems


def suite_problems(meta_path: Path, meta: SubmissionMetadata, rows: list[dict],
                   catalog: TaskCatalog) -> list[str]:
    """Every experiment of every claimed suite has a score."""
    done = {(r["train_task"], r["test_task"]) for r in rows if r["slice"] == "overall"}
    problems = []
    for suite in meta.suites:
        if suite not in catalog.suite_names():
            problems.append(f"{meta_path}: field 'suites': unknown suite '{suite}' "
                            f"(known: {', '.join(catalog.suite_names())})")
            continue
        missing = [f"{name} ({train} -> {test})" for name, train, test in catalog.suite_pairs(suite)
                   if (train, test) not in done]
        if missing:
            problems.append(f"{meta_path}: field 'suites': suite '{suite}' lacks experiments "
                            f"{_listed(missing)}; run them or remove the suite from the claim")
    return problems


# What a copied run may change and still carry another run's numbers
RENAMED = ("run_id", "seed")


def _fingerprints(rows: list[dict]) -> set[tuple]:
    """Rows minus their run id and seed: a copy of another run's results matches even if renamed."""
    return {tuple((k, v) for k, v in r.items() if k not in RENAMED) for r in rows}


def recorded_run_id(row: dict) -> str | None:
    """The run id the runner derives from a row's recorded inputs (None if they are unreadable)."""
    from mqarbench.runner.plan import run_id_from_key

    try:
        config = json.loads(row["model_config_json"])
        hparams = json.loads(row["hparams_json"])
    except (TypeError, ValueError):
        return None
    return run_id_from_key(row["model"], row["adapter_version"], config,
                           [row["train_task"], row["train_task_version"], row["train_task_hash"]],
                           hparams, row["seed"], row["preset"])


def run_id_problems(path: Path, rows: list[dict]) -> list[str]:
    """Each run id must be the hash of the run's recorded inputs (model, config, train data, hparams, seed)."""
    bad = {}
    for row in rows:
        expected = recorded_run_id(row)
        if expected != row["run_id"]:
            bad.setdefault(row["run_id"], expected)
    return [f"{path}: field 'run_id': run {rid} does not match its recorded model, config, train task, "
            f"hyper-parameters, seed and preset (they give {expected or 'an unreadable key'}); "
            "submit the runner's files unchanged" for rid, expected in bad.items()]


def json_twin_problems(path: Path, rows: list[dict]) -> list[str]:
    """``results.json`` (what the site serves) must hold exactly the rows of ``results.parquet``."""
    twin = path.with_suffix(".json")
    if not twin.is_file():
        return [f"{twin}: missing; copy it with the run (`mqarbench leaderboard submit` does)"]
    try:
        served = json.loads(twin.read_text())
    except ValueError as err:
        return [f"{twin}: not valid JSON ({err})"]
    canon = json.dumps(json.loads(json.dumps(rows, default=str)), sort_keys=True)
    if json.dumps(served, sort_keys=True) != canon:
        return [f"{twin}: differs from {path.name} (edited); the two must hold the same rows: "
                "copy both from the run unchanged"]
    return []


def copied_run_problems(sub_dir: Path, rows: list[dict]) -> list[str]:
    """Two runs of one submission whose rows agree in everything but run id and seed: a copy."""
    by_run: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_run[r["run_id"]].append(r)
    seen: dict[frozenset, str] = {}
    problems = []
    for run_id, run_rows in sorted(by_run.items(), key=lambda kv: str(kv[0])):
        key = frozenset(_fingerprints(run_rows))
        if key in seen:
            problems.append(f"{sub_dir}: field 'run_id': run {run_id} carries the same rows as run "
                            f"{seen[key]} (only id and seed differ): a copied run; remove it")
        else:
            seen[key] = run_id
    return problems


def load_rows(sub_dir: Path) -> tuple[dict[Path, list[dict]], list[str]]:
    files = sorted(sub_dir.rglob(RESULTS_FILE))
    if not files:
        return {}, [f"{sub_dir}: no {RESULTS_FILE} found; copy the run directories with "
                    "`mqarbench leaderboard submit`"]
    loaded, problems = {}, []
    for f in files:
        try:
            check_digest(f, required=False)  # a submission's sidecars are optional; a wrong one is not
        except UserError as err:
            problems.append(str(err))
        try:
            loaded[f] = read_results_unchecked(f).to_pylist()
        except UserError as err:
            problems.append(str(err))
    return loaded, problems


def attention_problems(sub_dir: Path) -> list[str]:
    """Hidden-attention files load without pickle and hold maps (n_layers, L, L) for (L,) tokens."""
    problems = []
    for npz in sorted(sub_dir.rglob("attention/*.npz")):
        try:
            with np.load(npz, allow_pickle=False) as f:
                shapes = {k: f[k].shape for k in ("maps", "input_ids", "labels")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            problems.append(f"{npz}: not a readable attention file with maps, input_ids, labels ({err})")
            continue
        maps, ids = shapes["maps"], shapes["input_ids"]
        if len(maps) != 3 or maps[1] != maps[2] or ids != (maps[1],) or shapes["labels"] != ids:
            problems.append(f"{npz}: field 'maps': shape {maps} with input_ids {ids} and labels "
                            f"{shapes['labels']}; expected (n_layers, L, L), (L,), (L,)")
    return problems


def validate_submission(sub_dir: Path, catalog: TaskCatalog,
                        others: dict[str, list[dict]] | None = None) -> list[str]:
    """All problems of one submission directory (empty: valid); ``others``: rows of the other
    submissions by name, to catch duplicates."""
    sub_dir = Path(sub_dir)
    meta_path = sub_dir / METADATA_FILE
    meta, problems = metadata_problems(meta_path)
    files, load_errors = load_rows(sub_dir)
    problems += load_errors
    all_rows = [r for rows in files.values() for r in rows]
    for f, rows in files.items():
        problems += row_problems(f, rows)
        problems += run_id_problems(f, rows)
        problems += json_twin_problems(f, rows)
    problems += copied_run_problems(sub_dir, all_rows)
    presets = sorted({r["preset"] for r in all_rows if r["preset"]})
    if len(presets) > 1:
        problems.append(f"{sub_dir}: field 'preset': mixed presets {', '.join(presets)}; "
                        "submit each preset as its own submission")
    elif presets and meta is not None and presets[0] != meta.preset:
        problems.append(f"{meta_path}: field 'preset': says '{meta.preset}' but the results are "
                        f"preset '{presets[0]}'")
    if len(presets) == 1:
        for f, rows in files.items():
            problems += task_problems(f, rows, presets[0], catalog)
            problems += cell_problems(f, rows, presets[0], catalog)
    if meta is not None and all_rows:
        problems += suite_problems(meta_path, meta, all_rows, catalog)
    problems += attention_problems(sub_dir)
    problems += duplicate_problems(sub_dir, all_rows, others or {})
    return problems


def duplicate_problems(sub_dir: Path, rows: list[dict], others: dict[str, list[dict]]) -> list[str]:
    run_ids = {r["run_id"] for r in rows}
    prints = _fingerprints([r for r in rows if r["slice"] == "overall"])
    problems = []
    for name, other_rows in others.items():
        shared = sorted(run_ids & {r["run_id"] for r in other_rows})
        if shared:
            problems.append(f"{sub_dir}: field 'run_id': runs {_listed(shared)} are already in "
                            f"submission '{name}'")
            continue
        same = prints & _fingerprints([r for r in other_rows if r["slice"] == "overall"])
        if same:
            problems.append(f"{sub_dir}: results: {len(same)} rows are identical to rows of submission "
                            f"'{name}' (a duplicate)")
    return problems


def _rows_of(sub_dir: Path) -> list[dict]:
    return [r for rows in load_rows(sub_dir)[0].values() for r in rows]


def submission_dirs(path: Path) -> list[Path]:
    """``path`` itself if it is a submission, else the submissions directly under it."""
    path = Path(path)
    if (path / METADATA_FILE).exists() or is_submission_like(path):
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: no such directory; pass a submission or the submissions root")
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def is_submission_like(path: Path) -> bool:
    """A folder holding runs (``runs/`` or results files of its own) is a submission, metadata or not."""
    return (path / "runs").is_dir() or (path / RESULTS_FILE).is_file()


def validate_path(path: Path, catalog: TaskCatalog) -> tuple[list[Path], list[str]]:
    """Validate one submission or every submission under a root; duplicates are checked against
    every other submission next to it."""
    subs = submission_dirs(path)
    if subs == [Path(path)]:  # one submission: compare with submissions beside it
        siblings = [p for p in Path(path).parent.iterdir()
                    if (p / METADATA_FILE).is_file() or p.resolve() == Path(path).resolve()]
    else:
        siblings = subs
    rows = {s.resolve(): _rows_of(s) for s in siblings}
    problems = []
    for sub in subs:
        others = {s.name: r for s, r in rows.items() if s != sub.resolve()}
        problems += validate_submission(sub, catalog, others)
    return subs, problems
