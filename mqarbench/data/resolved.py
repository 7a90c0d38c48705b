"""A task at a preset: the authored spec cut to the preset's cells, with example counts per split.

This is what generators, datasets and hashes use. Its JSON (``to_json``) is the authored spec's
with the grid made explicit and ``preset`` (``preset_version`` from version 2 on) and ``counts``
right after ``grid``: the form every stored manifest holds and every content hash covers, so it
must not change byte for byte.
"""

from __future__ import annotations

import json

import pydantic_core
from pydantic import BaseModel, ConfigDict, model_validator

from mqarbench.data.presets import Count, load_preset
from mqarbench.data.spec import AnySpec, Cell, Grid, TaskSpec
from mqarbench.errors import UserError


class ResolvedSpec(BaseModel):
    """``task`` (its grid the explicit cells kept by ``preset``) and ``counts[split][i]``, the
    examples of cell ``i`` in each split."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    task: AnySpec
    preset: str
    counts: dict[str, list[int]]
    preset_version: int = 1

    @model_validator(mode="after")
    def _counts_fit(self) -> "ResolvedSpec":
        if self.task.grid.cells is None:
            raise ValueError("task.grid: a resolved spec lists its `cells`")
        if sorted(self.counts) != sorted(self.task.splits) or any(
                len(c) != len(self.task.grid.cells) for c in self.counts.values()):
            raise ValueError(f"counts: one count per cell for each of the splits {self.task.splits}")
        return self

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def version(self) -> int:
        return self.task.version

    @property
    def family(self) -> str:
        return self.task.family

    @property
    def splits(self) -> tuple[str, ...]:
        return self.task.splits

    @property
    def grid(self) -> Grid:
        """The task's grid at this preset: explicit ``cells`` only."""
        return self.task.grid

    @property
    def cells(self) -> list[Cell]:
        return [tuple(c) for c in self.task.grid.cells]

    def _json(self, exclude: set[str]) -> str:
        fields: dict = {}
        for key, value in self.task.model_dump(mode="json", exclude=exclude).items():
            fields[key] = value
            if key == "grid":  # where the single TaskSpec of earlier versions held them
                fields["preset"] = self.preset
                if self.preset_version != 1:  # absent at version 1: earlier hashes stay as they were
                    fields["preset_version"] = self.preset_version
                fields["counts"] = self.counts
        return pydantic_core.to_json(fields).decode()

    def to_json(self) -> str:
        """The JSON stored with a dataset (``from_json`` reads it back)."""
        return self._json(set())

    def data_json(self) -> str:
        """The fields that determine the data (the description does not): what hashes cover."""
        return self._json({"description"})

    @classmethod
    def from_json(cls, text: str) -> "ResolvedSpec":
        """A resolved spec back from the JSON stored with a dataset."""
        fields = json.loads(text)
        preset, counts = fields.pop("preset", None), fields.pop("counts", None)
        version = fields.pop("preset_version", 1)
        return cls.model_validate({"task": fields, "preset": preset, "counts": counts, "preset_version": version})


def resolve(spec: TaskSpec, preset_name: str) -> ResolvedSpec:
    """``spec`` with the cells and per-cell example counts of ``preset_name``."""
    preset = load_preset(preset_name)
    cells = [c for c in spec.cells() if preset.keeps(c)]
    if not cells:
        raise UserError(f"task {spec.name}: preset {preset_name} keeps none of its grid cells "
                        f"{spec.cells()}; widen the preset in tasks/presets.yaml")
    counts = {}
    for split in spec.splits:
        count: Count = getattr(preset, split)
        if count.total is not None and count.total < len(cells):
            raise UserError(f"tasks/presets.yaml: {preset_name}.{split}.total {count.total} is "
                            f"fewer than the {len(cells)} cells of task {spec.name}")
        counts[split] = count.per_cells(len(cells))
    grid = spec.grid.model_copy(update={"seq_lens": None, "kv_pairs": None, "cells": cells,
                                        "drop_unfit": False})
    return ResolvedSpec(task=spec.model_copy(update={"grid": grid}), preset=preset_name, counts=counts,
                        preset_version=preset.version)
