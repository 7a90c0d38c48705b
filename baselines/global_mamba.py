"""Mamba with Global Selection (the paper's Eq. 7/8).

The step size of the selective scan is gated by a long causal view of the sequence:
    Delta = softplus(W_dt dt_t * SiLU(LongConv(x))_t + b_dt)
where x is the x-branch of in_proj before the short conv, and LongConv is a depthwise causal
convolution with a learned kernel of ``long_kernel`` taps per channel, computed by FFT.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from baselines.mamba import Mamba, MambaConfig, MambaMixer
from mqarbench.kernels import KernelChoice
from mqarbench.kernels.long_conv import long_conv_impl


class GlobalSelectionMixer(MambaMixer):
    """A Mamba mixer whose dt is gated by SiLU of a long causal convolution of x."""

    fused = False  # the gate enters between x_proj and the scan, inside mamba_inner_fn

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, dt_rank: int,
                 long_kernel: int):
        super().__init__(d_model, d_state, d_conv, expand, dt_rank)
        self.long_kernel = nn.Parameter(torch.empty(self.d_inner, long_kernel))  # (E, K)
        self._init_long_kernel()

    def _init_long_kernel(self) -> None:
        # Random taps under an exponential envelope (time constant K/4), scaled to unit gain:
        # recent tokens weigh most at first while far taps can grow, and LongConv(x) starts on
        # the scale of x, so the gate SiLU(.) is input-dependent from step one. A zero kernel
        # would give SiLU(0) = 0: Delta = softplus(b_dt) for every token, no selection at all.
        if self.long_kernel.is_meta:
            return
        taps = self.long_kernel.shape[1]
        envelope = torch.exp(-torch.arange(taps, dtype=torch.float32) / max(taps / 4, 1.0))
        with torch.no_grad():
            self.long_kernel.copy_(torch.randn(self.d_inner, taps) * envelope / envelope.norm())

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        return {**super().kernel_choices(device), "long_conv": long_conv_impl(device)[1]}

    def gate_dt(self, dt: torch.Tensor, x_branch: torch.Tensor) -> torch.Tensor:
        conv, _ = long_conv_impl(dt.device)
        work = torch.promote_types(x_branch.dtype, torch.float32)
        context = conv(x_branch.to(work), self.long_kernel.to(work))  # (B, E, L), >= fp32
        return dt * F.silu(context).to(dt.dtype)


class GlobalMambaConfig(MambaConfig):
    long_kernel: int = Field(ge=1)  # taps of the long causal convolution
    global_selection_layers: list[int]  # the layers whose dt is gated, in order

    @model_validator(mode="after")
    def _layers_exist(self) -> "GlobalMambaConfig":
        if any(i < 0 or i >= self.n_layers for i in self.global_selection_layers):
            raise ValueError(f"global_selection_layers {self.global_selection_layers} outside "
                             f"0..{self.n_layers - 1}; pick existing layers")
        return self


class GlobalMamba(Mamba):
    """Mamba-130M plus Global Selection (long kernel 128) in every layer: 133M in the paper."""

    name: ClassVar[str] = "global_mamba"
    citation: ClassVar[str] = ("Local pattern shortcuts of Mamba (Global Selection); "
                               + Mamba.citation)
    PAPER_PARAMS: ClassVar[int | None] = 133_000_000
    Config = GlobalMambaConfig
    long_kernel: ClassVar[int] = 128
    global_selection_layers: ClassVar[tuple[int, ...] | None] = None  # None: every layer

    def fields(self, preset: str) -> dict[str, Any]:
        row = super().fields(preset)
        layers = self.global_selection_layers
        layers = list(range(row["n_layers"])) if layers is None else sorted(set(layers))
        return {**row, "long_kernel": self.long_kernel, "global_selection_layers": layers}

    def mixer(self, cfg: GlobalMambaConfig, layer: int) -> nn.Module:
        if layer not in cfg.global_selection_layers:
            return super().mixer(cfg, layer)
        return GlobalSelectionMixer(cfg.d_model, cfg.d_state, cfg.d_conv, cfg.expand, cfg.dt_rank,
                                    cfg.long_kernel)

    def recurrent_state(self, cfg: GlobalMambaConfig) -> int:
        """Mamba's state plus the long conv's window (d_inner x (long_kernel - 1)) per gated
        layer, which token-by-token generation must keep."""
        window = cfg.expand * cfg.d_model * (cfg.long_kernel - 1)
        return super().recurrent_state(cfg) + window * len(cfg.global_selection_layers)
