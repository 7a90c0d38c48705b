"""Versioned, content-hashed datasets on disk: build (or reuse), open, verify.

A dataset is a directory ``<task>-v<version>-<preset>-<short hash>/`` holding one Parquet file
per split and ``manifest.json``. The content hash is a sha256 over the generator version, the
resolved spec JSON and the digest of every split's columns; it is what results record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mqarbench.data.generators import GENERATOR_VERSION, generate_cell
from mqarbench.data.resolved import ResolvedSpec, resolve
from mqarbench.data.spec import TaskSpec, load_task
from mqarbench.data.tables import cell_table, digest, schema
from mqarbench.errors import UserError
from mqarbench.io import sha256_file, write_json_atomic

MANIFEST = "manifest.json"
SHORT = 12
META_SPEC, META_GEN, META_HASH, META_SPLIT = (b"mqarbench.spec", b"mqarbench.generator_version",
                                              b"mqarbench.content_hash", b"mqarbench.split")


@dataclass(frozen=True)
class Dataset:
    task_id: str
    version: int
    content_hash: str
    path: Path
    spec: ResolvedSpec
    preset: str
    splits: tuple[str, ...]
    file_sha256: dict[str, str] = field(default_factory=dict, compare=False)  # split -> manifest sha256

    @property
    def short_hash(self) -> str:
        return self.content_hash[:SHORT]

    def split_path(self, split: str) -> Path:
        """The Parquet file of ``split``, checked against the manifest's sha256 first: a run never
        reads a modified dataset under the hash its results would record."""
        if split not in self.splits:
            raise UserError(f"dataset {self.path.name} has no split {split!r}; it has {', '.join(self.splits)}")
        path = self.path / f"{split}.parquet"
        check_split_file(path, self.file_sha256.get(split), self.path)
        return path

    def load(self, split: str) -> pa.Table:
        return pq.read_table(self.split_path(split))

    def cells(self) -> list[tuple[int, int]]:
        return self.spec.cells

    @classmethod
    def open(cls, path: Path) -> "Dataset":
        manifest = read_manifest(path)
        spec = ResolvedSpec.from_json(manifest["spec"])
        sha = {split: entry.get("sha256") for split, entry in manifest.get("files", {}).items()}
        return cls(spec.name, spec.version, manifest["content_hash"], Path(path), spec, spec.preset,
                   tuple(manifest["splits"]), sha)


def check_split_file(path: Path, expected: str | None, dataset_dir: Path) -> None:
    """UserError unless ``path`` exists and hashes to ``expected`` (its manifest's sha256)."""
    fix = f"delete {dataset_dir} and run again (it is rebuilt from tasks/)"
    if not path.is_file():
        raise UserError(f"{path}: missing from its dataset; {fix}")
    if expected is None:
        raise UserError(f"{dataset_dir / MANIFEST}: records no sha256 for {path.name}; {fix}")
    if sha256_file(path) != expected:
        raise UserError(f"{path}: sha256 differs from {MANIFEST} (corrupt or modified file); "
                        f"nothing was trained or scored on it: {fix}")


def read_manifest(path: Path) -> dict:
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{Path(path) / MANIFEST}: unreadable ({err}); delete {path} and rebuild") from None


def spec_key(spec: ResolvedSpec) -> str:
    """What a dataset is built from: equal keys mean equal bytes (the generator is pure)."""
    return hashlib.sha256(f"{GENERATOR_VERSION}\0{spec.data_json()}".encode()).hexdigest()


def content_hash(spec: ResolvedSpec, split_digests: dict[str, str]) -> str:
    h = hashlib.sha256(f"mqarbench-dataset\0{GENERATOR_VERSION}\0{spec.data_json()}".encode())
    for split in sorted(split_digests):
        h.update(f"\0{split}\0{split_digests[split]}".encode())
    return h.hexdigest()


def split_tables(spec: ResolvedSpec, split: str) -> list[pa.Table]:
    """One table per grid cell, in cell order."""
    return [cell_table(generate_cell(spec.task, split, seq_len, pairs, count), spec.family, seq_len, pairs)
            for (seq_len, pairs), count in zip(spec.cells, spec.counts[split])]


def _find_existing(spec: ResolvedSpec, data_dir: Path) -> Dataset | None:
    key = spec_key(spec)
    for manifest_path in sorted(data_dir.glob(f"{spec.name}-v{spec.version}-{spec.preset}-*/{MANIFEST}")):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        if manifest.get("spec_key") != key:
            continue
        files = manifest.get("files", {})
        ok = all((manifest_path.parent / f["file"]).is_file()
                 and (manifest_path.parent / f["file"]).stat().st_size == f["bytes"] for f in files.values())
        if ok and set(files) == set(spec.splits):
            return Dataset.open(manifest_path.parent)
    return None


def preset_version_hashes(ds: Dataset) -> dict[str, int]:
    """hash -> preset version: the content hash this dataset's data carry under each version of its
    preset up to the current one. A version that changed only training or model sizes keeps the
    data, so results of an earlier version stay recognisable (and on a board of their own)."""
    manifest = json.loads((ds.path / MANIFEST).read_text())
    digests = {split: entry["digest"] for split, entry in manifest["files"].items()}
    return {content_hash(ds.spec.model_copy(update={"preset_version": v}), digests): v
            for v in range(1, ds.spec.preset_version + 1)}


def dataset_hash(task: str | TaskSpec, preset: str) -> str:
    """The content hash ``build_dataset`` records, computed in memory (nothing is written)."""
    spec = resolve(load_task(task) if isinstance(task, str) else task, preset)
    return content_hash(spec, {split: digest(split_tables(spec, split)) for split in spec.splits})


def build_dataset(task: str | TaskSpec, preset: str, data_dir: Path) -> Dataset:
    """Build the dataset of ``task`` at ``preset`` under ``data_dir``, or reuse an identical one."""
    spec = resolve(load_task(task) if isinstance(task, str) else task, preset)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    existing = _find_existing(spec, data_dir)
    if existing is not None:
        return existing

    spec_json = spec.to_json()
    tables = {split: split_tables(spec, split) for split in spec.splits}
    digests = {split: digest(t) for split, t in tables.items()}
    full_hash = content_hash(spec, digests)
    final = data_dir / f"{spec.name}-v{spec.version}-{spec.preset}-{full_hash[:SHORT]}"

    tmp = Path(tempfile.mkdtemp(prefix=f".building-{spec.name}-", dir=data_dir))
    try:
        files = {}
        for split, cell_tables in tables.items():
            meta = {META_SPEC: spec_json.encode(), META_GEN: GENERATOR_VERSION.encode(),
                    META_HASH: full_hash.encode(), META_SPLIT: split.encode()}
            path = tmp / f"{split}.parquet"
            with pq.ParquetWriter(path, schema(spec.family, meta), compression="zstd") as writer:
                for table in cell_tables:  # one row group per cell
                    writer.write_table(table, row_group_size=max(1, table.num_rows))
            files[split] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
                            "rows": sum(t.num_rows for t in cell_tables), "digest": digests[split]}
        write_json_atomic(tmp / MANIFEST, {
            "task": spec.name, "version": spec.version, "preset": spec.preset,
            "generator_version": GENERATOR_VERSION, "spec_key": spec_key(spec), "content_hash": full_hash,
            "splits": list(spec.splits), "cells": spec.grid.cells, "files": files, "spec": spec_json})
        if final.exists() and _find_existing(spec, data_dir) is None:
            shutil.rmtree(final)  # a damaged copy under our name (a complete twin is kept)
        if not final.exists():
            try:
                os.rename(tmp, final)
            except OSError:
                if _find_existing(spec, data_dir) is None:  # not a twin process finishing first
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return Dataset.open(final)


def verify_dataset(path: Path) -> list[str]:
    """Problems with one dataset directory (empty if it checks out)."""
    try:
        manifest = read_manifest(path)
        spec_json = manifest["spec"]
        spec = ResolvedSpec.from_json(spec_json)
        files, recorded = manifest["files"], manifest["content_hash"]
    except (UserError, KeyError, ValueError) as err:
        return [f"{path}/{MANIFEST}: corrupt manifest ({err}); delete the directory and rebuild"]
    problems, digests = [], {}
    for split, entry in sorted(files.items()):
        file = path / entry["file"]
        if not file.is_file():
            problems.append(f"{file}: missing; delete {path} and rebuild")
            continue
        if sha256_file(file) != entry["sha256"]:
            problems.append(f"{file}: sha256 differs from the manifest (corrupt or modified file); "
                            f"delete {path} and rebuild")
            continue
        try:
            pf = pq.ParquetFile(file)
            meta = pf.schema_arrow.metadata or {}
            digests[split] = digest(pf.read_row_group(i) for i in range(pf.num_row_groups))
        except Exception as err:  # noqa: BLE001 - any unreadable file is a problem to report
            problems.append(f"{file}: unreadable Parquet ({type(err).__name__}); delete {path} and rebuild")
            continue
        if meta.get(META_SPEC, b"").decode() != spec_json or meta.get(META_HASH, b"").decode() != recorded:
            problems.append(f"{file}: schema metadata (spec or hash) differs from the manifest")
        if digests[split] != entry["digest"]:
            problems.append(f"{file}: content differs from its recorded digest (tampered); delete {path} and rebuild")
    if not problems and content_hash(spec, digests) != recorded:
        problems.append(f"{path}: content hash does not match the manifest (tampered manifest)")
    if not problems and not path.name.endswith(recorded[:SHORT]):
        problems.append(f"{path}: directory name does not end in the short hash {recorded[:SHORT]}")
    return problems


def list_datasets(data_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(data_dir).glob(f"*/{MANIFEST}") if not p.parent.name.startswith("."))


# <task>-v<version>-<preset>-<short hash>: the name build_dataset gives a dataset directory
DATASET_NAME = re.compile(rf"^[a-z0-9][a-z0-9-]*-v\d+-[a-z]+-[0-9a-f]{{{SHORT}}}$")


def looks_like_runs_dir(path: Path) -> bool:
    """A `mqarbench run --out` folder (or one run of it), not a dataset cache."""
    path = Path(path)
    return (path / "runs").is_dir() or (path / "run.json").is_file() or (path / "results.parquet").is_file()


def verify_datasets(data_dir: Path) -> list[str]:
    """Recompute every dataset's hashes under ``data_dir``; the problems found (empty: all good).

    Only directories named like a dataset are judged: anything else is not ours to advise deleting.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"data directory {data_dir} does not exist; build with `mqarbench data build`")
    if looks_like_runs_dir(data_dir) and not list_datasets(data_dir):
        raise UserError(f"--data-dir {data_dir}: this is a `mqarbench run --out` folder (runs and results), "
                        "not a dataset cache; pass the dataset cache (default ./mqar_data)")
    problems = []
    for path in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (path / MANIFEST).is_file():
            if DATASET_NAME.match(path.name):
                problems.append(f"{path}: no {MANIFEST} (an interrupted or damaged dataset); delete it and rebuild")
            continue
        problems += verify_dataset(path)
    return problems
