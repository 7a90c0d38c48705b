"""The adapter base: how a model enters the benchmark.

An adapter is a small class. It declares a typed configuration (a pydantic ``ModelConfig``
subclass), the configuration's fields at each size preset, and how to create the model from a
configuration: a ``torch.nn.Module`` mapping ``input_ids (B, L)`` (int64) to logits
``(B, L, V)``. The runner only ever calls ``config``, ``build`` and ``state_size``; an adapter
author writes ``Config``, ``presets``, ``create_model`` and optionally ``recurrent_state``::

    class GRUConfig(ModelConfig):
        d_model: int
        n_layers: int

    class MyGRU(ModelAdapter[GRUConfig]):
        name, family = "my_gru", "rnn"
        Config = GRUConfig
        presets = {"tiny": {"d_model": 64, "n_layers": 2}, "small": ..., "paper": ...}

        def create_model(self, cfg: GRUConfig) -> nn.Module:
            return GRULM(cfg.vocab_size, cfg.d_model, cfg.n_layers)

Optional, for speed: a module that splits its forward into ``hidden_states`` and ``logits``
(subclass ``mqarbench.models.SplitLM``) has its vocabulary projection applied only where the
benchmark scores (``mqarbench/models/heads.py``); the scores do not change.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Mapping, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mqarbench.errors import UserError
from mqarbench.presets import PRESETS

# Model families the leaderboard groups and filters by; a new kind of model picks the closest
# or "other" (a new family is one more entry here).
FAMILIES: tuple[str, ...] = ("attention", "ssm", "linear-attention", "long-convolution", "rnn",
                             "hybrid", "other")


class ModelConfig(BaseModel):
    """Everything that changes the model, as typed fields; hashed into every run id.

    Subclass it and add the model's fields (defaults are fine). ``vocab_size`` and ``max_len``
    come from the data; the rest from the adapter's ``presets`` table.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
    vocab_size: int = Field(ge=1)
    max_len: int = Field(ge=1)


ConfigT = TypeVar("ConfigT", bound=ModelConfig)


class ModelAdapter(Generic[ConfigT]):
    """Subclass this: set the class attributes, ``Config`` and ``presets``; define ``create_model``."""

    name: ClassVar[str] = ""  # the model's id in results and on the board
    version: ClassVar[str] = "1"  # bump when the model changes: it is part of every run id
    family: ClassVar[str] = ""  # one of FAMILIES
    citation: ClassVar[str] = ""
    PAPER_PARAMS: ClassVar[int | None] = None  # parameters the source paper reports at preset paper
    # Why this model's training step must not be captured in CUDA graphs (packed training on a
    # GPU), or None: a packed `mqarbench run` then trains its runs one at a time with this note.
    no_pack_reason: ClassVar[str | None] = None
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}  # preset -> Config fields

    # ---- written by the adapter author ----

    def create_model(self, cfg: ConfigT) -> torch.nn.Module:
        """A fresh module: ``forward(input_ids (B, L)) -> logits (B, L, cfg.vocab_size)``."""
        raise NotImplementedError

    def recurrent_state(self, cfg: ConfigT) -> int:
        """Numbers carried from one token to the next per sequence; 0 where the state grows
        with L (attention's cache, a filter as long as the input)."""
        return 0

    def fields(self, preset: str) -> dict[str, Any]:
        """The Config fields at ``preset`` besides vocab_size and max_len: the ``presets`` row.
        Override to derive fields (from the class, or from other fields)."""
        return dict(self.presets[preset])

    # ---- what the runner calls ----

    def configure(self, preset: str, vocab_size: int, max_len: int) -> ConfigT:
        """The typed configuration at ``preset``; a bad table or field is one line."""
        if preset not in PRESETS:
            raise UserError(f"model '{self.name}': unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
        if preset not in self.presets:
            raise UserError(f"model '{self.name}': `presets` has no '{preset}' row; add "
                            f"presets['{preset}'] = {{...}} with the fields of {self.Config.__name__}")
        fields = self.fields(preset)
        try:
            return self.Config(**{**fields, "vocab_size": vocab_size, "max_len": max_len})  # type: ignore[return-value]
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            what = f"field `{field}`: " if field else ""
            message = first["msg"].removeprefix("Value error, ")
            raise UserError(f"model '{self.name}': {self.Config.__name__} at preset '{preset}': {what}"
                            f"{message}; fix presets['{preset}'] or the Config class") from None

    def config(self, preset: str, vocab_size: int, max_len: int) -> dict[str, Any]:
        """The configuration as JSON (what results record and the run id hashes)."""
        return self.configure(preset, vocab_size, max_len).model_dump(mode="json")

    def build(self, preset: str, vocab_size: int, max_len: int) -> torch.nn.Module:
        """``create_model`` at ``preset``, checked to be a module."""
        cfg = self.configure(preset, vocab_size, max_len)
        try:
            module = self.create_model(cfg)
        except UserError:
            raise
        except Exception as err:
            raise UserError(f"model '{self.name}': create_model failed at preset '{preset}': "
                            f"{type(err).__name__}: {err}; fix the adapter's create_model") from err
        if not isinstance(module, torch.nn.Module):
            raise UserError(f"model '{self.name}': create_model returned {type(module).__name__}, not a "
                            "torch.nn.Module; return the model instance")
        return module

    def state_size(self, preset: str, vocab_size: int, max_len: int) -> int:
        """``recurrent_state`` at ``preset``, checked to be a non-negative int."""
        size = self.recurrent_state(self.configure(preset, vocab_size, max_len))
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UserError(f"model '{self.name}': recurrent_state returned {size!r}; return the state "
                            "size as an int >= 0 (0 where the state grows with the length)")
        return size


def check_adapter(adapter: ModelAdapter, where: str) -> None:
    """The class-level contract, checked when an adapter is loaded: one line per mistake."""
    cls = type(adapter)
    if not adapter.name:
        raise UserError(f"{where}: the adapter sets no `name` class attribute; add name = \"my_model\"")
    label = f"model '{adapter.name}'"
    if adapter.family not in FAMILIES:
        raise UserError(f"{label}: family {adapter.family!r} is not one of {', '.join(FAMILIES)}; "
                        "set `family` to the closest (or \"other\")")
    if not (isinstance(adapter.Config, type) and issubclass(adapter.Config, ModelConfig)):
        raise UserError(f"{label}: `Config` must be a subclass of mqarbench.models.ModelConfig with the "
                        "model's fields; declare one and set Config = MyConfig")
    if cls.create_model is ModelAdapter.create_model:
        raise UserError(f"{label}: create_model is not defined; define create_model(self, cfg) returning "
                        "the torch.nn.Module built from cfg")
    unknown = sorted(set(adapter.presets) - set(PRESETS))
    if unknown:
        raise UserError(f"{label}: `presets` has unknown preset(s) {', '.join(unknown)}; use {', '.join(PRESETS)}")
    for preset, row in adapter.presets.items():
        strays = sorted(set(row) - set(adapter.Config.model_fields))
        if strays:
            raise UserError(f"{label}: presets['{preset}'] sets {', '.join(strays)}, not field(s) of "
                            f"{adapter.Config.__name__}; declare them in the Config class or fix the names")
    if adapter.PAPER_PARAMS is not None and (not isinstance(adapter.PAPER_PARAMS, int) or adapter.PAPER_PARAMS < 1):
        raise UserError(f"{label}: PAPER_PARAMS must be a positive int (the paper's parameter count) or None")

