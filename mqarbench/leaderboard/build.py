"""Build the static leaderboard site from results directories (``build_site``)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from mqarbench import __version__
from mqarbench.data.render import mark, pick_example
from mqarbench.errors import UserError
from mqarbench.leaderboard.boards import Board, BoardEntry, build_boards
from mqarbench.leaderboard.catalog import TABLES, TaskCatalog
from mqarbench.leaderboard.exports import write_table
from mqarbench.leaderboard.png import attention_png
from mqarbench.leaderboard.render import environment
from mqarbench.leaderboard.site_dir import staged_site
from mqarbench.leaderboard.sources import Entry, find_results, load_entries, slugify
from mqarbench.leaderboard.verify import reported_run_ids, verified_runs
from mqarbench.leaderboard.tables import export_rows
from mqarbench.leaderboard.views import board_view, families, model_part, task_scores
from mqarbench.paths import default_data_dir
from mqarbench.results.store import read_results

RAW_FILES = ("results.parquet", "results.json", "run.json")
EXAMPLE_PRESET = "tiny"


def build_site(sources: list[Path], out_dir: Path, data_dir: Path | None = None,
               catalog: TaskCatalog | None = None, allow_invalid: bool = False,
               verified_dir: Path | None = None) -> Path:
    """Validate, then render every result under ``sources`` into a static site at ``out_dir``;
    return index.html.

    Invalid results are refused (a UserError naming the first problem) unless ``allow_invalid``,
    which builds a local preview with a banner on every page. Entries are marked verified from the
    stamps of `mqarbench leaderboard verify` under ``verified_dir``. Task pages and table columns
    come from the current ``tasks/`` (datasets cached in ``data_dir``).
    """
    missing = [str(s) for s in sources if not Path(s).exists()]
    if missing:
        raise UserError(f"results source {missing[0]} does not exist; pass a submission, the "
                        "submissions directory or a `mqarbench run --out` directory")
    catalog = catalog or TaskCatalog(data_dir or default_data_dir())
    problems = source_problems([Path(s) for s in sources], catalog)
    if problems and not allow_invalid:
        raise UserError(f"{problems[0]} ({len(problems)} problem(s); `mqarbench leaderboard validate` lists "
                        "them): nothing was published; fix them, or pass --allow-invalid for a local preview")
    entries = load_entries([Path(s) for s in sources])
    mark_verified(entries, verified_dir)
    columns = {table: catalog.columns(table) for table in TABLES}
    boards = build_boards(entries, catalog.preset_version)
    env = environment()
    common = {"version": __version__, "n_entries": len(entries), "known_tasks": set(catalog.task_names()),
              "built_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "preview_problems": problems}
    out_dir = Path(out_dir)
    with staged_site(out_dir) as site:
        static = resources.files("mqarbench.leaderboard") / "static"
        (site / "static").mkdir()
        for name in ("style.css", "leaderboard.js"):
            (site / "static" / name).write_bytes((static / name).read_bytes())
        downloads = _write_downloads(site / "data", boards, columns, entries)
        tasks = _write_task_pages(site, env, catalog, boards, common)
        for entry in entries:
            _write_model_page(site, env, entry, boards, columns, common)
        index = env.get_template("index.html").render(
            root="", boards=[board_view(b, columns) for b in boards], entries=entries,
            tasks=tasks, downloads=downloads, families=families(boards), **common)
        (site / "index.html").write_text(index)
    return out_dir / "index.html"


def source_problems(sources: list[Path], catalog: TaskCatalog) -> list[str]:
    """What `leaderboard validate` finds in the submissions among ``sources``, and the row, task and
    cell checks of any loose results (a runner's output)."""
    from mqarbench.leaderboard.validate import cell_problems, row_problems, task_problems, validate_submission

    groups = find_results(sources)
    subs = [d for d in groups if d is not None]
    rows = {d: [r for f in groups[d] for r in read_results(f, require_digest=False).to_pylist()] for d in subs}
    problems = []
    for sub in subs:
        problems += validate_submission(sub, catalog, {o.name: rows[o] for o in subs if o != sub})
    for f in groups.get(None, []):
        loose = read_results(f).to_pylist()
        problems += row_problems(f, loose)
        for preset in sorted({r["preset"] for r in loose if r["preset"]}):
            of_preset = [r for r in loose if r["preset"] == preset]
            problems += task_problems(f, of_preset, preset, catalog) + cell_problems(f, of_preset, preset, catalog)
    return problems


def mark_verified(entries: list[Entry], verified_dir: Path | None) -> None:
    """A submission is verified when every run it reports passed `leaderboard verify`, files unchanged."""
    for entry in entries:
        if entry.submission_dir is None:
            continue
        passed = verified_runs(verified_dir, entry.submission_dir)
        entry.verified = bool(entry.table.num_rows) and set(reported_run_ids(entry.table)) <= passed


def _write_downloads(data: Path, boards: list[Board], columns, entries: list[Entry]) -> list[dict]:
    tables = export_rows(boards, columns)
    titles = {**TABLES, "cells": "Query accuracy per grid cell", "results": "Every reported row"}
    tables["results"] = [{"board": b.id, **r} for b in boards for e in b.entries
                         for r in e.rows.filter(pc.equal(e.rows["slice"], "overall")).to_pylist()]
    downloads = []
    for stem, rows in tables.items():
        write_table(data, stem, rows)
        downloads.append({"stem": stem, "title": titles[stem], "rows": len(rows)})
    for entry in entries:
        rows = [{"board": b.id, **r} for b in boards for e in b.entries if e.entry is entry
                for r in e.rows.to_pylist()]
        write_table(data / "models", entry.key, rows)
    return downloads


def _raw_files(site: Path, entry: Entry, run_id: str) -> list[dict]:
    """Copy a run's result files into the site so links work offline."""
    run_dir = entry.run_dirs.get(run_id)
    if run_dir is None:
        return []
    dest = site / "raw" / entry.key / slugify(run_id)
    files = []
    for name in RAW_FILES:
        if (run_dir / name).is_file():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / name, dest / name)
            files.append({"name": name, "href": f"../raw/{entry.key}/{slugify(run_id)}/{name}"})
    return files


def _attention(site: Path, e: BoardEntry, runs: list[dict]) -> list[dict]:
    """Hidden-attention PNGs (one per layer) for every run that saved maps."""
    shown = []
    for run in runs:
        run_dir = e.entry.run_dirs.get(run["run_id"])
        if run_dir is None:
            continue
        for npz in sorted((run_dir / "attention").glob("*.npz")):
            try:
                with np.load(npz, allow_pickle=False) as f:
                    maps = f["maps"].astype(np.float32)  # (n_layers, L, L)
            except (OSError, ValueError, KeyError) as err:
                raise UserError(f"{npz}: not a readable attention file ({err}); delete it or re-run") from err
            if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
                raise UserError(f"{npz}: 'maps' must have shape (n_layers, L, L), got {maps.shape}")
            rel = f"{slugify(run['run_id'])}-{slugify(npz.stem)}"
            dest = site / "models" / e.entry.key / "attention"
            dest.mkdir(parents=True, exist_ok=True)
            images = []
            for layer, m in enumerate(maps):
                (dest / f"{rel}-layer{layer}.png").write_bytes(attention_png(m))
                images.append({"layer": layer, "size": 180,
                               "src": f"{e.entry.key}/attention/{rel}-layer{layer}.png"})
            shown.append({"train": run["train_task"], "test": npz.stem, "run_id": run["run_id"],
                          "images": images})
    return shown


def _write_model_page(site: Path, env, entry: Entry, boards: list[Board], columns, common) -> None:
    parts = []
    for board in boards:
        for e in board.entries:
            if e.entry is not entry:
                continue
            part = model_part(board, e, columns)
            for run in part["runs"]:
                run["files"] = _raw_files(site, entry, run["run_id"])
            part["attention"] = _attention(site, e, part["runs"])
            parts.append(part)
    html = env.get_template("model.html").render(root="../", entry=entry, parts=parts, **common)
    (site / "models").mkdir(exist_ok=True)
    (site / "models" / f"{entry.key}.html").write_text(html)


def _grid(catalog: TaskCatalog, task: str) -> dict:
    """Test examples per cell at each preset (None: the preset drops the cell)."""
    per_preset = catalog.grid(task)
    cells = sorted({c for counts in per_preset.values() for c in counts})
    return {"presets": list(per_preset),
            "cells": [{"seq_len": c[0], "kv": c[1], "counts": [counts.get(c) for counts in per_preset.values()]}
                      for c in cells]}


def _write_task_pages(site: Path, env, catalog: TaskCatalog, boards: list[Board], common) -> list[dict]:
    (site / "tasks").mkdir()
    listed = []
    for task in catalog.task_names():
        spec = catalog.spec(task)
        dataset = catalog.dataset(task, EXAMPLE_PRESET)
        example = pick_example(dataset.load("test"))
        shown = {"preset": EXAMPLE_PRESET, "seq_len": example["seq_len"], "num_kv_pairs": example["num_kv_pairs"],
                 "tokens": mark(example, dataset.spec.task)}
        html = env.get_template("task.html").render(
            root="../", task=spec, spec=json.dumps(spec, indent=2), grid=_grid(catalog, task),
            example=shown, scores=task_scores(boards, task), **common)
        (site / "tasks" / f"{task}.html").write_text(html)
        listed.append(spec)
    return listed
