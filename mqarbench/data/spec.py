"""Authored task specs: typed, validated, loaded from ``tasks/<name>.yaml``.

A spec fully determines a task: family and its parameters, the (seq_len, kv pairs) grid,
vocabulary, seeds and a ``version``. It knows nothing of presets: ``resolved.py`` picks the
cells and example counts of a preset, and that resolved spec is what gets hashed and stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from mqarbench.data import tokens
from mqarbench.data.yaml_io import read_yaml, validate
from mqarbench.errors import UserError

Cell = tuple[int, int]  # (seq_len, num_kv_pairs)
SPLITS = ("train", "valid", "test")


class Grid(BaseModel):
    """Grid cells: ``seq_lens`` x powers of two up to ``max_kv_ratio * seq_len``, or explicit ``cells``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seq_lens: list[Annotated[int, Field(ge=4)]] | None = None
    kv_pairs: list[Annotated[int, Field(ge=1)]] | None = None
    max_kv_ratio: float = Field(0.25, gt=0, le=1)
    cells: list[tuple[Annotated[int, Field(ge=4)], Annotated[int, Field(ge=1)]]] | None = None
    drop_unfit: bool = False  # drop cells whose pairs do not fit instead of rejecting the spec

    @model_validator(mode="after")
    def _one_form(self) -> "Grid":
        if (self.seq_lens is None) == (self.cells is None):
            raise ValueError("grid: give either `seq_lens` (with optional `kv_pairs`) or `cells`")
        if self.cells is not None and self.kv_pairs is not None:
            raise ValueError("grid: `kv_pairs` only goes with `seq_lens`, not with `cells`")
        return self

    def candidates(self) -> list[Cell]:
        if self.cells is not None:
            return sorted(set(self.cells))
        out = []
        for seq_len in sorted(set(self.seq_lens)):
            limit = int(seq_len * self.max_kv_ratio)
            pairs = self.kv_pairs or [2**i for i in range(limit.bit_length())]
            out += [(seq_len, n) for n in sorted(set(pairs)) if n <= limit]
        return out


@dataclass(frozen=True)
class Layout:
    """Where pairs and queries go in one grid cell (all counts in slots of ``unit`` tokens)."""

    unit: int  # tokens per pair and per query slot
    context_start: int
    context_len: int  # tokens of the context region (packed or cut into slots)
    query_start: int
    query_slots: int


class TaskSpec(BaseModel):
    """Fields common to every family, as a task file holds them. Use ``load_task`` to read one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    description: str
    family: str
    vocab_size: int = Field(tokens.DEFAULT_VOCAB_SIZE, ge=16)
    power_a: float = Field(0.01, gt=0, le=1)  # query slots drawn with p_i ~ i^(a-1)
    filler_may_equal_key: bool = False  # True reproduces the released generators' behaviour
    test_only: bool = False
    seed: int = Field(ge=0)
    grid: Grid

    @property
    def splits(self) -> tuple[str, ...]:
        return ("test",) if self.test_only else SPLITS

    @property
    def key_tokens(self) -> int:
        return 1

    @property
    def value_tokens(self) -> int:
        return 1

    @property
    def unit(self) -> int:
        """Tokens per pair (and per query slot)."""
        return 2

    def layout(self, seq_len: int, num_kv_pairs: int) -> Layout:
        raise NotImplementedError  # each family places its pairs and queries

    def context_slots(self, layout: Layout) -> int:
        return layout.context_len // layout.unit

    def distinct_keys_needed(self, num_kv_pairs: int) -> int:
        return num_kv_pairs * self.key_tokens

    def distinct_values_needed(self, num_kv_pairs: int) -> int:
        return num_kv_pairs * self.value_tokens

    def why_unfit(self, seq_len: int, num_kv_pairs: int) -> str | None:
        """A reason the cell cannot hold its pairs and queries, or None."""
        if seq_len % 2:
            return f"seq_len {seq_len} is odd (the first half holds the pairs)"
        lay = self.layout(seq_len, num_kv_pairs)
        if num_kv_pairs * self.unit > seq_len // 2 or self.context_slots(lay) < num_kv_pairs:
            return (f"{num_kv_pairs} pairs of {self.unit} tokens do not fit in the "
                    f"{seq_len // 2}-token first half")
        if lay.query_slots < num_kv_pairs:
            return f"only {lay.query_slots} query slots for {num_kv_pairs} queries"
        return None

    def why_vocab_small(self, num_kv_pairs: int) -> str | None:
        keys = tokens.key_range(self.vocab_size)
        values = tokens.value_range(self.vocab_size)
        need_k, need_v = self.distinct_keys_needed(num_kv_pairs), self.distinct_values_needed(num_kv_pairs)
        if need_k > keys[1] - keys[0]:
            return f"needs {need_k} distinct key ids but has {keys[1] - keys[0]}"
        if need_v > values[1] - values[0]:
            return f"needs {need_v} distinct value ids but has {values[1] - values[0]}"
        return None

    def cells(self) -> list[Cell]:
        """The grid cells this spec generates, in (seq_len, num_kv_pairs) order."""
        return [c for c in self.grid.candidates() if self.why_unfit(*c) is None]

    @model_validator(mode="after")
    def _check_grid(self) -> "TaskSpec":
        kept = []
        for cell in self.grid.candidates():
            reason = self.why_unfit(*cell)
            if reason and not self.grid.drop_unfit:
                raise ValueError(f"grid: cell {cell} does not fit: {reason}; remove it or set "
                                 "`grid.drop_unfit: true`")
            if reason is None:
                kept.append(cell)
        if not kept:
            raise ValueError("grid: no cell fits the pairs and queries of this family")
        for cell in kept:
            small = self.why_vocab_small(cell[1])
            if small:
                raise ValueError(f"vocab_size: {self.vocab_size} is too small for cell {cell}: "
                                 f"{small}; raise vocab_size or drop the cell")
        return self


class PlacedSpec(TaskSpec):
    """Families whose pairs are placed by ``placement`` (paper Sec. 3.2, App. B.2)."""

    placement: Literal["standard", "last", "shuffle"] = "standard"

    def layout(self, seq_len: int, num_kv_pairs: int) -> Layout:
        half, packed = seq_len // 2, num_kv_pairs * self.unit
        if self.placement == "standard":  # packed at the start, queries anywhere after
            return Layout(self.unit, 0, packed, packed, (seq_len - packed) // self.unit)
        if self.placement == "last":  # packed at the end of the first half
            return Layout(self.unit, half - packed, packed, half, half // self.unit)
        return Layout(self.unit, 0, half, half, half // self.unit)  # shuffle: slots of the first half


class PositionalSpec(PlacedSpec):
    """Single-token keys and values, a pair is ``k v``; a query is the key alone."""

    family: Literal["positional"]
    placement: Literal["standard", "last", "shuffle"]


class NgramSpec(PlacedSpec):
    """A pair is ``SEP k1..kN SEP_KV v1..vM SEP``; queries show MASK for the values (App. B.3)."""

    family: Literal["ngram"]
    num_key_tokens: int = Field(ge=1, le=32)
    num_value_tokens: int = Field(ge=1, le=32)
    shared_last_key_token: bool = False  # every key of an example ends in the same token (App. B.4)
    closing_sep_label: bool = True  # train split also labels a query's closing SEP (App. B.5)

    @property
    def key_tokens(self) -> int:
        return self.num_key_tokens

    @property
    def value_tokens(self) -> int:
        return self.num_value_tokens

    @property
    def unit(self) -> int:
        return 3 + self.num_key_tokens + self.num_value_tokens

    def distinct_keys_needed(self, num_kv_pairs: int) -> int:
        if self.shared_last_key_token:
            return num_kv_pairs * (self.num_key_tokens - 1) + 1
        return num_kv_pairs * self.num_key_tokens

    @model_validator(mode="after")
    def _shared_needs_two(self) -> "NgramSpec":
        if self.shared_last_key_token and self.num_key_tokens < 2:
            raise ValueError("shared_last_key_token: needs num_key_tokens >= 2")
        return self


class PositionRobustnessSpec(TaskSpec):
    """The first half cut into ``num_blocks`` blocks holding the same keys with distinct values."""

    family: Literal["position_robustness"]
    num_blocks: int = Field(4, ge=2, le=16)

    def layout(self, seq_len: int, num_kv_pairs: int) -> Layout:
        half = seq_len // 2
        return Layout(self.unit, 0, half, half, half // self.unit)

    def context_slots(self, layout: Layout) -> int:
        """Slots per block: every block must hold all the pairs."""
        return (layout.context_len // self.num_blocks) // layout.unit

    def why_unfit(self, seq_len: int, num_kv_pairs: int) -> str | None:
        if seq_len % (2 * self.num_blocks):
            return f"the first half of {seq_len} does not split into {self.num_blocks} equal blocks"
        block = seq_len // 2 // self.num_blocks
        if num_kv_pairs * self.unit > block:
            return f"{num_kv_pairs} pairs do not fit in a {block}-token block"
        return super().why_unfit(seq_len, num_kv_pairs)

    def distinct_values_needed(self, num_kv_pairs: int) -> int:
        return num_kv_pairs * self.num_blocks

    @model_validator(mode="after")
    def _test_only(self) -> "PositionRobustnessSpec":
        if not self.test_only:
            raise ValueError("test_only: position_robustness labels only block 0; set `test_only: true`")
        return self


SPEC_CLASSES = (PositionalSpec, NgramSpec, PositionRobustnessSpec)  # one per family
AnySpec = Annotated[Union[SPEC_CLASSES], Field(discriminator="family")]
SPEC_ADAPTER = TypeAdapter(AnySpec)


def family_of(cls: type[TaskSpec]) -> str:
    """The family name a spec class declares (its ``family`` literal): the one spelling of it."""
    return get_args(cls.model_fields["family"].annotation)[0]


FAMILIES: tuple[str, ...] = tuple(family_of(cls) for cls in SPEC_CLASSES)


def list_tasks() -> list[str]:
    from mqarbench.paths import tasks_dir

    return sorted(p.stem for p in tasks_dir().glob("*.yaml") if p.stem != "presets")


def load_task(name: str) -> TaskSpec:
    """Read and validate ``tasks/<name>.yaml``."""
    from mqarbench.paths import tasks_dir

    path = tasks_dir() / f"{name}.yaml"
    if name == "presets" or not path.is_file():
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(list_tasks())}")
    return spec_from_file(path)


def spec_from_file(path) -> TaskSpec:
    data = read_yaml(path)
    if "family" in data and data["family"] not in FAMILIES:
        raise UserError(f"{path}: field `family`: {data['family']!r} is not one of {', '.join(FAMILIES)}")
    for field in ("preset", "counts"):  # what resolved.py adds at a preset
        if field in data:
            raise UserError(f"{path}: field `{field}` is set by the preset, not in a task file; remove it")
    spec = validate(SPEC_ADAPTER, data, path, FAMILIES)
    if spec.name != path.stem:
        raise UserError(f"{path}: field `name`: {spec.name!r} must match the file name {path.stem!r}")
    return spec
