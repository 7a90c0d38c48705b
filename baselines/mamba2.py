"""Mamba-2 (Dao and Gu, 2024): the SSD mixer, Mamba's selective SSM with a scalar decay per head.

The mixer of mamba_ssm's ``Mamba2`` at its defaults (d_state 128, head dim 64, one group,
expand 2, conv width 4): one input projection to z, x, B, C and dt; a short causal conv with
SiLU over x, B, C; the SSD scan with D skip; RMSNorm(y * SiLU(z)); the output projection.
Blocks, residual stream and tied head are those of ``baselines/mamba.py`` (Mamba-2 has no MLP).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.blocks import ShortConv, State, decay_a_log, decay_dt_bias, heads, rms_norm
from baselines.mamba import CITATION as MAMBA_CITATION
from baselines.mamba import MambaLM
from mqarbench.kernels import KernelChoice, at_least_fp32
from mqarbench.models import ModelAdapter, ModelConfig
from mqarbench.kernels.ssd import ssd_impl, ssd_step

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layers=2, d_model=64),
    "small": dict(n_layers=2, d_model=128),
    "paper": dict(n_layers=24, d_model=768),  # Mamba2-130m
}
class Mamba2Config(ModelConfig):
    n_layers: int
    d_model: int
    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    head_dim: int = 64
    n_groups: int = 1


class Mamba2Mixer(nn.Module):
    """(B, L, d_model) -> (B, L, d_model)."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, head_dim: int,
                 n_groups: int) -> None:
        super().__init__()
        d_inner = expand * d_model
        self.d_inner, self.d_state, self.head_dim, self.n_groups = d_inner, d_state, head_dim, n_groups
        self.n_heads = d_inner // head_dim
        self.conv_dim = d_inner + 2 * n_groups * d_state  # x, B, C share the conv
        self.in_proj = nn.Linear(d_model, d_inner + self.conv_dim + self.n_heads, bias=False)
        self.conv = ShortConv(self.conv_dim, d_conv, bias=True)
        self.dt_bias = nn.Parameter(decay_dt_bias(self.n_heads))
        self.A_log = nn.Parameter(decay_a_log(self.n_heads, low=1.0))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm_weight = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        return {"ssd": ssd_impl(device)[1]}

    def _split(self, zxbcdt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return zxbcdt.split([self.d_inner, self.conv_dim, self.n_heads], dim=-1)  # z, xBC, dt

    def _scan_inputs(self, xbc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (..., H, P) and B, C (..., G, N) from the conv's output (..., conv_dim)."""
        x, b, c = xbc.split([self.d_inner, self.n_groups * self.d_state, self.n_groups * self.d_state], dim=-1)
        return heads(x, self.head_dim), heads(b, self.d_state), heads(c, self.d_state)

    def _output(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Gated RMSNorm (gate before the norm, as mamba_ssm's default), then out_proj."""
        y = rms_norm(at_least_fp32(y.flatten(-2))[0] * F.silu(at_least_fp32(z)[0]), self.norm_weight)
        return self.out_proj(y.to(z.dtype))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, L, d_model)
        z, xbc, dt = self._split(self.in_proj(hidden))
        x, b, c = self._scan_inputs(self.conv(xbc))
        ssd, _ = ssd_impl(hidden.device)
        a, d, dt_bias = (at_least_fp32(p)[0] for p in (self.A_log, self.D, self.dt_bias))
        y = ssd(x, dt, -torch.exp(a), b, c, d, dt_bias)
        return self._output(y, z)  # (B, L, d_model)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"ssm": torch.zeros(batch, self.n_heads, self.head_dim, self.d_state, device=device, dtype=dtype),
                "conv_window": self.conv.init_state(batch, device, dtype)}

    def step(self, hidden: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:  # (B, d_model)
        z, xbc, dt = self._split(self.in_proj(hidden))
        xbc, window = self.conv.step(xbc, state["conv_window"])
        x, b, c = self._scan_inputs(xbc)
        y, ssm = ssd_step(state["ssm"], x, F.softplus(dt + self.dt_bias), -torch.exp(self.A_log),
                          b, c, self.D)
        return self._output(y, z), {"ssm": ssm, "conv_window": window}


class Mamba2LM(MambaLM):
    def __init__(self, vocab_size: int, n_layers: int, d_model: int, d_state: int, d_conv: int,
                 expand: int, head_dim: int, n_groups: int, **_: Any) -> None:
        super().__init__(vocab_size, d_model, [Mamba2Mixer(d_model, d_state, d_conv, expand, head_dim, n_groups)
                                               for _ in range(n_layers)])


class Mamba2(ModelAdapter[Mamba2Config]):
    name = "mamba2"
    family = "ssm"
    citation = ("Dao and Gu 2024, Transformers are SSMs: Generalized Models and Efficient "
                f"Algorithms Through Structured State Space Duality (ICML); Mamba-1: {MAMBA_CITATION}")
    PAPER_PARAMS = 130_000_000  # Mamba2-130m at GPT-NeoX's vocabulary
    Config = Mamba2Config
    presets = PRESETS

    def create_model(self, cfg: Mamba2Config) -> nn.Module:
        return Mamba2LM(**cfg.model_dump())

    def recurrent_state(self, cfg: Mamba2Config) -> int:
        """Per layer: the SSM state (n_heads x head_dim x d_state = d_inner x d_state) and the
        conv's window of d_conv - 1 past inputs over x, B and C."""
        d_inner = cfg.expand * cfg.d_model
        conv_dim = d_inner + 2 * cfg.n_groups * cfg.d_state
        return cfg.n_layers * (d_inner * cfg.d_state + (cfg.d_conv - 1) * conv_dim)
