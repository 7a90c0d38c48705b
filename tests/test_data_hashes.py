"""Every task's dataset hash at every preset does not drift.

``fixtures/dataset_hashes.json`` was recorded from the specs and generators of this checkout; the
content hash is what every published result and run id records, so a change here orphans them
and must be deliberate (bump the task's ``version``, the preset's ``version`` in tasks/presets.yaml or
``GENERATOR_VERSION``, and re-record).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mqarbench.data import list_tasks, load_task, resolve
from mqarbench.data.presets import PRESETS
from mqarbench.data.store import dataset_hash, spec_key

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "dataset_hashes.json").read_text())


def test_every_task_and_preset_is_recorded() -> None:
    assert sorted(RECORDED) == sorted(f"{t}/{p}" for t in list_tasks() for p in PRESETS)


@pytest.mark.parametrize("key", sorted(RECORDED))
def test_resolved_spec_json_unchanged(key: str) -> None:
    """The spec JSON stored in every manifest, and the key a dataset is reused under."""
    task, preset = key.split("/")
    resolved = resolve(load_task(task), preset)
    assert hashlib.sha256(resolved.to_json().encode()).hexdigest() == RECORDED[key]["spec_json_sha256"]
    assert spec_key(resolved) == RECORDED[key]["spec_key"]


@pytest.mark.parametrize("key", sorted(k for k in RECORDED if not k.endswith("/paper")))
def test_content_hash_unchanged(key: str) -> None:
    task, preset = key.split("/")
    assert dataset_hash(task, preset) == RECORDED[key]["content_hash"]


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(k for k in RECORDED if k.endswith("/paper")))
def test_paper_content_hash_unchanged(key: str) -> None:
    """The paper's full data (a few seconds per task)."""
    task, preset = key.split("/")
    assert dataset_hash(task, preset) == RECORDED[key]["content_hash"]


def test_preset_version_separates_results_without_changing_the_data() -> None:
    """small v2 changed training, not data: same tables, yet a new hash (so new run ids and a
    new board), and a version-1 spec keeps the JSON it always had (no ``preset_version`` key)."""
    from mqarbench.data.store import content_hash, digest, split_tables

    current = resolve(load_task("k4v8-shuffle"), "small")
    assert current.preset_version == 2
    first = current.model_copy(update={"preset_version": 1})
    assert "preset_version" not in first.to_json() and '"preset_version":2' in current.to_json()
    digests = {split: digest(split_tables(current, split)) for split in current.splits}
    assert digests == {split: digest(split_tables(first, split)) for split in first.splits}
    assert content_hash(current, digests) != content_hash(first, digests)
    assert type(current).from_json(current.to_json()) == current
