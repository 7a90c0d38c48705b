"""Presets scale a task: which grid cells it keeps and how many examples each split gets.

They live in ``tasks/presets.yaml`` so a calibration can change them without touching code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from mqarbench.data.spec import Cell
from mqarbench.data.yaml_io import read_yaml, validate
from mqarbench.errors import UserError
from mqarbench.presets import PRESETS

__all__ = ["PRESETS", "Count", "Preset", "load_preset", "load_presets"]


class Count(BaseModel):
    """Examples of one split: ``per_cell``, or a ``total`` shared evenly over the cells."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per_cell: int | None = Field(None, ge=1)
    total: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> "Count":
        if (self.per_cell is None) == (self.total is None):
            raise ValueError("give exactly one of `per_cell` and `total`")
        return self

    def per_cells(self, num_cells: int) -> list[int]:
        if self.per_cell is not None:
            return [self.per_cell] * num_cells
        base, extra = divmod(self.total, num_cells)
        return [base + (i < extra) for i in range(num_cells)]


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str
    # Bumped when a recalibration changes what the preset means (data, training or model sizes):
    # it enters every dataset hash, so results of two versions never share a run id or a board.
    version: int = Field(1, ge=1)
    max_seq_len: int | None = Field(None, ge=4)
    min_kv_pairs: int = Field(1, ge=1)
    max_kv_pairs: int | None = Field(None, ge=1)
    train: Count
    valid: Count
    test: Count

    def keeps(self, cell: Cell) -> bool:
        seq_len, pairs = cell
        return ((self.max_seq_len is None or seq_len <= self.max_seq_len)
                and pairs >= self.min_kv_pairs
                and (self.max_kv_pairs is None or pairs <= self.max_kv_pairs))


_PRESETS_ADAPTER = TypeAdapter(dict[str, Preset])


def load_presets() -> dict[str, Preset]:
    from mqarbench.paths import tasks_dir

    path = tasks_dir() / "presets.yaml"
    presets = validate(_PRESETS_ADAPTER, read_yaml(path), path)
    if sorted(presets) != sorted(PRESETS):
        raise UserError(f"{path}: defines presets {sorted(presets)}; expected exactly {list(PRESETS)}")
    return presets


def load_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return load_presets()[name]

