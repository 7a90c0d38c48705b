"""GLA (Yang et al., 2024): linear attention with a data-dependent forget gate per key channel.

The layer of flash-linear-attention's ``GatedLinearAttention`` at its defaults: keys at half the
model width, values at full width, a low-rank forget gate logsigmoid(W2 W1 x) / 16, and the
output RMS-normed per head and gated by SiLU(W_g x). Blocks are fla's pre-norm RMSNorm blocks
with a SwiGLU MLP (``baselines/blocks.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.blocks import PreNormLM, State, heads, rms_norm
from mqarbench.kernels import KernelChoice
from mqarbench.models import ModelAdapter, ModelConfig
from mqarbench.kernels.gla import gla_impl, gla_step

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layers=2, d_model=64, n_heads=2, tie_embeddings=True),
    "small": dict(n_layers=2, d_model=128, n_heads=4, tie_embeddings=True),
    "paper": dict(n_layers=12, d_model=768, n_heads=4, tie_embeddings=False),
}
class GLAConfig(ModelConfig):
    n_layers: int
    d_model: int
    n_heads: int
    tie_embeddings: bool
    expand_k: float = 0.5
    expand_v: float = 1.0
    gate_rank: int = 16
    gate_normalizer: int = 16


class GLAMixer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, expand_k: float, expand_v: float,
                 gate_rank: int, gate_normalizer: float) -> None:
        super().__init__()
        key_dim, value_dim = int(d_model * expand_k), int(d_model * expand_v)
        self.head_k, self.head_v = key_dim // n_heads, value_dim // n_heads
        self.n_heads, self.gate_normalizer = n_heads, gate_normalizer
        self.q_proj = nn.Linear(d_model, key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, value_dim, bias=False)
        self.g_proj = nn.Linear(d_model, value_dim, bias=False)  # output gate
        self.gk_down = nn.Linear(d_model, gate_rank, bias=False)  # forget gate, low rank
        self.gk_up = nn.Linear(gate_rank, key_dim, bias=True)
        self.o_norm = nn.Parameter(torch.ones(self.head_v))
        self.o_proj = nn.Linear(value_dim, d_model, bias=False)

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        return {"gla": gla_impl(device)[1]}

    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q, k, log forget gate (..., H, K) and v (..., H, V) for x (..., D)."""
        gk = F.logsigmoid(self.gk_up(self.gk_down(x))) / self.gate_normalizer  # in [-inf, 0)
        return (heads(self.q_proj(x), self.head_k), heads(self.k_proj(x), self.head_k),
                heads(self.v_proj(x), self.head_v), heads(gk, self.head_k))

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        o = rms_norm(o, self.o_norm) * F.silu(heads(self.g_proj(x), self.head_v))
        return self.o_proj(o.flatten(-2).to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D)
        q, k, v, gk = self._inputs(x)
        gla, _ = gla_impl(x.device)
        return self._output(gla(q, k, v, gk, self.head_k ** -0.5), x)  # (B, L, D)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"S": torch.zeros(batch, self.n_heads, self.head_k, self.head_v, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:  # x (B, D)
        q, k, v, gk = self._inputs(x)
        o, s = gla_step(state["S"], q, k, v, gk, self.head_k ** -0.5)
        return self._output(o, x), {"S": s}


class GLALM(PreNormLM):
    def __init__(self, vocab_size: int, n_layers: int, d_model: int, n_heads: int,
                 tie_embeddings: bool, expand_k: float, expand_v: float, gate_rank: int,
                 gate_normalizer: float, **_: Any) -> None:
        super().__init__(vocab_size, d_model, n_layers, tie_embeddings, lambda _layer: GLAMixer(
            d_model, n_heads, expand_k, expand_v, gate_rank, gate_normalizer))


class GLA(ModelAdapter[GLAConfig]):
    name = "gla"
    family = "linear-attention"
    citation = ("Yang et al. 2024, Gated Linear Attention Transformers with Hardware-Efficient "
                "Training (ICML)")
    Config = GLAConfig
    presets = PRESETS

    def create_model(self, cfg: GLAConfig) -> nn.Module:
        return GLALM(**cfg.model_dump())

    def recurrent_state(self, cfg: GLAConfig) -> int:
        """Per layer: a (K_h x V_h) state per head = key_dim x value_dim / n_heads."""
        key_dim, value_dim = int(cfg.d_model * cfg.expand_k), int(cfg.d_model * cfg.expand_v)
        return cfg.n_layers * key_dim * value_dim // cfg.n_heads
