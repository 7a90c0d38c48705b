"""Pieces the flash-linear-attention-style baselines (GLA, DeltaNet, Gated DeltaNet) share:
RMSNorm, the short causal convolution, the SwiGLU MLP and the pre-norm language model.

Recurrent mixers here also run one token at a time (``init_state`` / ``step``), carrying
exactly the state a streaming model must keep: the tests check that stepping reproduces the
sequence forward and that the adapters' ``state_size`` counts these tensors.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mqarbench.models import SplitLM
from mqarbench.kernels import KernelChoice, at_least_fp32
from mqarbench.kernels.causal_conv import conv_impl

State = dict[str, torch.Tensor]


def decay_a_log(heads: int, low: float = 0.0, high: float = 16.0) -> torch.Tensor:
    """Mamba-2's decay rates per head, A ~ U(low, high) (floored at 1e-4), stored as log A."""
    return torch.empty(heads).uniform_(low, high).clamp_min(1e-4).log()


def decay_dt_bias(heads: int, dt_min: float = 1e-3, dt_max: float = 0.1) -> torch.Tensor:
    """Mamba-2's step sizes per head, log-uniform in [dt_min, dt_max] (floored at 1e-4), stored as
    softplus^-1(dt) so that softplus(x + dt_bias) starts at dt for x = 0."""
    dt = torch.exp(torch.rand(heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp_min(1e-4)
    return dt + torch.log(-torch.expm1(-dt))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm over the last dim, computed in fp32 or wider, returned in x's dtype."""
    work = at_least_fp32(x)[0]
    return (work * torch.rsqrt(work.square().mean(-1, keepdim=True) + eps) * weight).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class ShortConv(nn.Module):
    """Depthwise causal conv over L with SiLU, on (B, L, C); a window of W - 1 past inputs is
    its state."""

    def __init__(self, channels: int, width: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, width).uniform_(-width ** -0.5, width ** -0.5))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        return {"causal_conv1d": conv_impl(device)[1]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, L, C)
        conv, _ = conv_impl(x.device)
        # channels-last (B, C, L) view: causal_conv1d takes it without a copy when C % 8 == 0
        channels_last = x.contiguous().transpose(1, 2)
        if channels_last.shape[1] % 8:
            channels_last = channels_last.contiguous()
        return conv(channels_last, self.weight, self.bias, activation="silu").transpose(1, 2)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(batch, self.weight.shape[0], self.weight.shape[1] - 1, device=device, dtype=dtype)

    def step(self, x: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C), window (B, C, W - 1) of the previous inputs, oldest first."""
        full = torch.cat([window, x[..., None]], dim=-1)  # (B, C, W)
        out = (full * self.weight).sum(-1) + (0 if self.bias is None else self.bias)
        return F.silu(out), full[..., 1:]


class SwiGLU(nn.Module):
    """fla's GatedMLP: down(SiLU(gate(x)) * up(x)), hidden 8/3 d rounded up to 256."""

    def __init__(self, d_model: int, ratio: int = 4) -> None:
        super().__init__()
        hidden = 256 * math.ceil(int(d_model * ratio * 2 / 3) / 256)
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class PreNormBlock(nn.Module):
    """x + mixer(RMSNorm(x)), then x + MLP(RMSNorm(x)): the block of fla's models."""

    def __init__(self, d_model: int, mixer: nn.Module) -> None:
        super().__init__()
        self.mixer_norm, self.mlp_norm = RMSNorm(d_model), RMSNorm(d_model)
        self.mixer, self.mlp = mixer, SwiGLU(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.mixer_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class PreNormLM(SplitLM):
    """Embedding, pre-norm blocks around a mixer per layer, final RMSNorm, linear head."""

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, tie_embeddings: bool,
                 make_mixer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(PreNormBlock(d_model, make_mixer(i)) for i in range(n_layers))
        self.norm = RMSNorm(d_model)
        self.unembed = nn.Linear(d_model, vocab_size, bias=False)
        for name, param in self.named_parameters():  # fla's initialisation: N(0, 0.02) matrices
            if name.endswith("weight") and param.dim() == 2 and "conv" not in name:
                nn.init.normal_(param, std=0.02)
        # zero biases of linear layers only: a mixer's own parameters named *bias (Gated
        # DeltaNet's dt_bias, Mamba-2's step sizes) keep the init they drew
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:  # residual outputs shrunk with depth so activations stay O(1)
            for out in (block.mixer.o_proj, block.mlp.down):
                nn.init.normal_(out.weight, std=0.02 / math.sqrt(2 * n_layers))
        if tie_embeddings:
            self.unembed.weight = self.embed.weight

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(..., H * Dh) -> (..., H, Dh)"""
    return x.unflatten(-1, (-1, head_dim))
