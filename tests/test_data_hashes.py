"""Every task's dataset hash at every preset does not drift.

``fixtures/dataset_hashes.json`` was recorded from the specs and generators of this checkout; the
content hash is what every published result and run id records, so a change here orphans them
and must be deliberate (bump the task's ``version`` or ``GENERATOR_VERSION`` and re-record).
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
