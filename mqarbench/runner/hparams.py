"""Training hyper-parameters per preset (App. B.5): AdamW, wd 0.1, 10% warmup, clip 1.0.

``paper`` follows the paper (30 epochs, a learning-rate sweep). ``small`` is calibrated so that a
2-layer d_model 128 attention model learns every training task and Mamba its positional ones.
``tiny`` only proves the pipeline end to end on a CPU; its scores mean nothing.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mqarbench.errors import UserError


class HParams(BaseModel):
    """Everything a training run depends on besides model, data and seed (part of the run id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lr: float = Field(gt=0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    eval_batch_size: int = Field(ge=1)
    warmup_fraction: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0


class PresetHParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lrs: tuple[float, ...]
    epochs: int
    batch_size: int
    eval_batch_size: int


PRESET_HPARAMS: dict[str, PresetHParams] = {
    "tiny": PresetHParams(lrs=(3e-3,), epochs=1, batch_size=32, eval_batch_size=32),
    # small v2: at batch 256 the n-gram tasks got 35-70 steps an epoch and attention never learned
    # them; batch 64 gives 4x the steps on the same tokens (docs/benchmarks.md, calibration)
    "small": PresetHParams(lrs=(1e-3, 3e-3), epochs=30, batch_size=64, eval_batch_size=512),
    "paper": PresetHParams(lrs=(1e-4, 3e-4, 1e-3, 3e-3), epochs=30, batch_size=64, eval_batch_size=256),
}


def preset_hparams(preset: str) -> PresetHParams:
    if preset not in PRESET_HPARAMS:
        raise UserError(f"--preset {preset!r} is not a preset; use one of {', '.join(PRESET_HPARAMS)}")
    return PRESET_HPARAMS[preset]


def sweep(preset: str, lrs: list[float] | None = None, epochs: int | None = None,
          batch_size: int | None = None) -> list[HParams]:
    """One ``HParams`` per learning rate of the sweep (``lrs`` replaces the preset's grid)."""
    base = preset_hparams(preset)
    # `is not None`, not `or`: --epochs 0 is a mistake to report, never "the preset's default"
    for flag, value in (("--lr", min(lrs) if lrs else None), ("--epochs", epochs),
                        ("--batch-size", batch_size)):
        if value is not None and not value > 0:
            raise UserError(f"{flag} must be positive, got {value}")
    return [HParams(lr=lr, epochs=base.epochs if epochs is None else epochs,
                    batch_size=base.batch_size if batch_size is None else batch_size,
                    eval_batch_size=base.eval_batch_size)
            for lr in (lrs or base.lrs)]
