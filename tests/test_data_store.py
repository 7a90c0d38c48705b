"""Datasets on disk: determinism, reuse, hashes, verification, atomic builds, the Parquet layout."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mqarbench.cli import main
from mqarbench.data import build_dataset, dataset_hash, load_task, verify_datasets
from mqarbench.data.store import MANIFEST, Dataset
from mqarbench.io import sha256_file
from mqarbench.errors import UserError


def test_two_builds_give_identical_bytes_and_hash(tmp_path):
    a = build_dataset("k2v2", "tiny", tmp_path / "a")
    b = build_dataset("k2v2", "tiny", tmp_path / "b")
    assert a.content_hash == b.content_hash and len(a.content_hash) == 64
    assert a.path.name == b.path.name == f"k2v2-v1-tiny-{a.short_hash}"
    for split in ("train", "valid", "test"):
        assert a.split_path(split).read_bytes() == b.split_path(split).read_bytes()
    assert dataset_hash("k2v2", "tiny") == a.content_hash, "the in-memory hash is the recorded one"


def test_existing_dataset_is_reused(tmp_path):
    first = build_dataset("standard", "tiny", tmp_path)
    stamp = first.split_path("train").stat().st_mtime_ns
    again = build_dataset(load_task("standard"), "tiny", tmp_path)
    assert again.path == first.path and again.split_path("train").stat().st_mtime_ns == stamp
    assert len(list(tmp_path.iterdir())) == 1


def test_changed_spec_changes_the_hash(tmp_path):
    base = load_task("standard")
    h0 = build_dataset(base, "tiny", tmp_path).content_hash
    reseeded = base.model_copy(update={"seed": base.seed + 1})
    assert build_dataset(reseeded, "tiny", tmp_path).content_hash != h0
    bumped = base.model_copy(update={"version": 2})
    assert build_dataset(bumped, "tiny", tmp_path).content_hash != h0
    paper_filler = base.model_copy(update={"filler_may_equal_key": True})
    assert build_dataset(paper_filler, "tiny", tmp_path).content_hash != h0
    # the description does not change a single generated token, so it does not change the hash
    reworded = base.model_copy(update={"description": "other words"})
    assert build_dataset(reworded, "tiny", tmp_path / "x").content_hash == h0


def test_dataset_api_and_parquet_layout(tmp_path):
    ds = build_dataset("k2v2", "tiny", tmp_path)
    assert ds.task_id == "k2v2" and ds.version == 1 and ds.preset == "tiny"
    assert ds.splits == ("train", "valid", "test") and ds.cells() == ds.spec.grid.cells
    table = ds.load("train")
    assert table.num_rows == sum(ds.spec.counts["train"])
    for name in ("input_ids", "labels", "query_index", "pair_starts", "query_starts"):
        kind = table.schema.field(name).type
        assert pa.types.is_list(kind) and kind.value_type == pa.int32()
    meta = table.schema.metadata
    assert json.loads(meta[b"mqarbench.spec"])["name"] == "k2v2"
    assert meta[b"mqarbench.content_hash"].decode() == ds.content_hash
    assert meta[b"mqarbench.generator_version"] == b"1"
    cells = list(zip(table["seq_len"].to_pylist(), table["num_kv_pairs"].to_pylist()))
    runs = [c for i, c in enumerate(cells) if i == 0 or cells[i - 1] != c]
    assert runs == ds.cells(), "rows of one cell are contiguous, in cell order"
    assert pq.ParquetFile(ds.split_path("train")).num_row_groups == len(ds.cells())
    row = table.slice(0, 1).to_pylist()[0]
    assert len(row["input_ids"]) == len(row["labels"]) == len(row["query_index"]) == row["seq_len"]
    assert row["num_queries"] == row["num_kv_pairs"] == len(row["query_starts"])
    assert Dataset.open(ds.path) == ds


def test_test_only_dataset(tmp_path):
    ds = build_dataset("position-robustness", "tiny", tmp_path)
    assert ds.splits == ("test",) and sorted(p.name for p in ds.path.iterdir()) == [MANIFEST, "test.parquet"]
    row = ds.load("test").slice(0, 1).to_pylist()[0]
    assert row["num_blocks"] == 4 and len(row["candidates"]) == 4 * row["num_queries"]
    with pytest.raises(UserError, match="has no split 'train'"):
        ds.split_path("train")


def test_flipped_byte_is_caught_by_verify(tmp_path, capsys):
    ds = build_dataset("k1v2", "tiny", tmp_path)
    build_dataset("shuffle", "tiny", tmp_path)
    assert verify_datasets(tmp_path) == []
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 0
    target = ds.split_path("valid")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(target) in errors[0]


def test_tampered_content_with_updated_manifest_is_caught(tmp_path):
    ds = build_dataset("standard", "tiny", tmp_path)
    path = ds.split_path("test")
    table = pq.read_table(path)
    labels = table["labels"].to_pylist()
    labels[0] = [v if v == -100 else 4 for v in labels[0]]  # rewrite the answers of one example
    table = table.set_column(table.schema.get_field_index("labels"), table.schema.field("labels"),
                             pa.array(labels, type=pa.list_(pa.int32())))
    pq.write_table(table, path)
    manifest = json.loads((ds.path / MANIFEST).read_text())
    manifest["files"]["test"].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (ds.path / MANIFEST).write_text(json.dumps(manifest))
    problems = verify_datasets(tmp_path)
    assert any(str(path) in p and "tampered" in p for p in problems)


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    import mqarbench.data.store as store

    real = store.pq.ParquetWriter

    class Crash(real):
        def write_table(self, *args, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(store.pq, "ParquetWriter", Crash)
    with pytest.raises(KeyboardInterrupt):
        build_dataset("last", "tiny", tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(store.pq, "ParquetWriter", real)
    assert verify_datasets(tmp_path) == []


def test_damaged_copy_is_rebuilt(tmp_path):
    ds = build_dataset("k1v1", "tiny", tmp_path)
    os.remove(ds.split_path("train"))
    again = build_dataset("k1v1", "tiny", tmp_path)
    assert again.path == ds.path and verify_datasets(tmp_path) == []


def test_verify_names_strays_and_missing_dir(tmp_path):
    stray = tmp_path / "k2v2-v1-tiny-0123456789ab"
    stray.mkdir()
    (tmp_path / "notes").mkdir()  # not named like a dataset: not ours to judge
    problems = verify_datasets(tmp_path)
    assert len(problems) == 1 and stray.name in problems[0] and MANIFEST in problems[0]
    with pytest.raises(UserError, match="does not exist"):
        verify_datasets(tmp_path / "nowhere")


def test_labels_round_trip_through_parquet(tmp_path):
    """What a reader loads is exactly what the generator made."""
    from mqarbench.data.generators import generate_cell

    ds = build_dataset("k4v8-shuffle", "tiny", tmp_path)
    seq_len, pairs = ds.cells()[0]
    expected = generate_cell(ds.spec.task, "valid", seq_len, pairs, ds.spec.counts["valid"][0])
    table = ds.load("valid").slice(0, ds.spec.counts["valid"][0])
    assert np.array_equal(np.array(table["input_ids"].to_pylist()), expected.input_ids)
    assert np.array_equal(np.array(table["labels"].to_pylist()), expected.labels)
    assert np.array_equal(np.array(table["query_index"].to_pylist()), expected.query_index)


def test_flipped_byte_stops_reading_before_anything_trains(tmp_path):
    ds = build_dataset("k2v2", "tiny", tmp_path)
    target = ds.path / "train.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    reopened = Dataset.open(ds.path)
    with pytest.raises(UserError, match=r"train\.parquet: sha256 differs .*delete .* and run again"):
        reopened.load("train")
    with pytest.raises(UserError, match="sha256 differs"):
        reopened.split_path("train")
    assert reopened.load("valid").num_rows > 0  # the other splits are intact


def test_verify_of_a_runs_folder_advises_no_deletion(tmp_path, capsys):
    (tmp_path / "runs" / "0123456789abcdef").mkdir(parents=True)
    (tmp_path / "site").mkdir()
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr()
    assert "delete" not in err.out + err.err and "run --out" in err.err
