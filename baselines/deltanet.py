"""DeltaNet (Yang et al., 2024) and Gated DeltaNet (Yang, Kautz and Hatamizadeh, 2025): linear
attention whose state is edited by the delta rule instead of only accumulated.

The layers of flash-linear-attention's ``DeltaNet`` and ``GatedDeltaNet`` at their defaults:
q, k, v each through a short causal conv with SiLU, q and k L2-normalised, a write strength
beta = sigmoid(W_b x) per head. Gated DeltaNet adds a forget gate per head,
alpha = exp(-exp(A_log) softplus(W_a x + dt_bias)) (Mamba-2's decay), values at twice the key
width, and a SiLU output gate; DeltaNet RMS-norms its output per head without a gate. Blocks
are fla's pre-norm RMSNorm blocks with a SwiGLU MLP (``baselines/blocks.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.blocks import PreNormLM, ShortConv, State, decay_a_log, decay_dt_bias, heads, rms_norm
from mqarbench.kernels import KernelChoice, at_least_fp32
from mqarbench.models import ModelAdapter, ModelConfig
from mqarbench.kernels.delta_rule import delta_impl, delta_step

class DeltaNetConfig(ModelConfig):
    n_layers: int
    d_model: int
    n_heads: int
    head_dim: int
    tie_embeddings: bool
    expand_v: float = 1.0
    gated: bool = False
    conv_width: int = 4


class GatedDeltaNetConfig(DeltaNetConfig):
    expand_v: float = 2.0
    gated: bool = True


DELTANET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layers=2, d_model=64, n_heads=2, head_dim=32, tie_embeddings=True),
    "small": dict(n_layers=2, d_model=128, n_heads=4, head_dim=32, tie_embeddings=True),
    "paper": dict(n_layers=12, d_model=768, n_heads=6, head_dim=128, tie_embeddings=False),
}
GATED_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layers=2, d_model=64, n_heads=2, head_dim=16, tie_embeddings=True),
    "small": dict(n_layers=2, d_model=128, n_heads=2, head_dim=32, tie_embeddings=True),
    "paper": dict(n_layers=12, d_model=768, n_heads=4, head_dim=128, tie_embeddings=False),
}


class DeltaMixer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, head_dim: int, expand_v: float, gated: bool,
                 conv_width: int) -> None:
        super().__init__()
        key_dim = n_heads * head_dim
        value_dim = int(key_dim * expand_v)
        self.n_heads, self.head_k, self.head_v, self.gated = n_heads, head_dim, value_dim // n_heads, gated
        self.q_proj = nn.Linear(d_model, key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, value_dim, bias=False)
        self.b_proj = nn.Linear(d_model, n_heads, bias=False)
        self.q_conv, self.k_conv = ShortConv(key_dim, conv_width), ShortConv(key_dim, conv_width)
        self.v_conv = ShortConv(value_dim, conv_width)
        if gated:
            self.a_proj = nn.Linear(d_model, n_heads, bias=False)
            self.g_proj = nn.Linear(d_model, value_dim, bias=False)  # output gate
            # Mamba-2's decay init: A ~ U(0, 16), step sizes log-uniform in [1e-3, 0.1]
            self.A_log = nn.Parameter(decay_a_log(n_heads))
            self.dt_bias = nn.Parameter(decay_dt_bias(n_heads))
        self.o_norm = nn.Parameter(torch.ones(self.head_v))
        self.o_proj = nn.Linear(value_dim, d_model, bias=False)

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        op = "gated_delta_rule" if self.gated else "delta_rule"
        return {op: delta_impl(device, self.gated)[1]}

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """beta (..., H) and the log forget gate (..., H) (None without gating)."""
        beta = torch.sigmoid(self.b_proj(x))
        if not self.gated:
            return beta, None
        return beta, -self.A_log.exp() * F.softplus(at_least_fp32(self.a_proj(x))[0] + self.dt_bias)

    def _qkv(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (F.normalize(heads(q, self.head_k), dim=-1), F.normalize(heads(k, self.head_k), dim=-1),
                heads(v, self.head_v))

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        o = rms_norm(o, self.o_norm)
        if self.gated:
            o = o * F.silu(heads(self.g_proj(x), self.head_v))
        return self.o_proj(o.flatten(-2).to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D)
        q, k, v = self._qkv(self.q_conv(self.q_proj(x)), self.k_conv(self.k_proj(x)),
                            self.v_conv(self.v_proj(x)))
        beta, log_alpha = self._gates(x)
        delta, _ = delta_impl(x.device, self.gated)
        return self._output(delta(q, k, v, beta, log_alpha, self.head_k ** -0.5), x)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"S": torch.zeros(batch, self.n_heads, self.head_k, self.head_v, device=device, dtype=dtype),
                "q_window": self.q_conv.init_state(batch, device, dtype),
                "k_window": self.k_conv.init_state(batch, device, dtype),
                "v_window": self.v_conv.init_state(batch, device, dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:  # x (B, D)
        q, q_window = self.q_conv.step(self.q_proj(x), state["q_window"])
        k, k_window = self.k_conv.step(self.k_proj(x), state["k_window"])
        v, v_window = self.v_conv.step(self.v_proj(x), state["v_window"])
        beta, log_alpha = self._gates(x)
        o, s = delta_step(state["S"], *self._qkv(q, k, v), beta, log_alpha, self.head_k ** -0.5)
        return self._output(o, x), {"S": s, "q_window": q_window, "k_window": k_window,
                                    "v_window": v_window}


class DeltaNetLM(PreNormLM):
    def __init__(self, vocab_size: int, n_layers: int, d_model: int, n_heads: int, head_dim: int,
                 tie_embeddings: bool, expand_v: float, gated: bool, conv_width: int,
                 **_: Any) -> None:
        super().__init__(vocab_size, d_model, n_layers, tie_embeddings, lambda _layer: DeltaMixer(
            d_model, n_heads, head_dim, expand_v, gated, conv_width))


class DeltaNet(ModelAdapter[DeltaNetConfig]):
    name = "deltanet"
    family = "linear-attention"
    citation = ("Yang et al. 2024, Parallelizing Linear Transformers with the Delta Rule over "
                "Sequence Length (NeurIPS)")
    Config = DeltaNetConfig
    presets = DELTANET_PRESETS

    def create_model(self, cfg: DeltaNetConfig) -> nn.Module:
        return DeltaNetLM(**cfg.model_dump())

    def recurrent_state(self, cfg: DeltaNetConfig) -> int:
        """Per layer: a (K_h x V_h) state per head, plus the three short convs' windows of
        conv_width - 1 past inputs (q and k at key width, v at value width)."""
        key_dim = cfg.n_heads * cfg.head_dim
        value_dim = int(key_dim * cfg.expand_v)
        matrix = key_dim * value_dim // cfg.n_heads
        return cfg.n_layers * (matrix + (cfg.conv_width - 1) * (2 * key_dim + value_dim))


class GatedDeltaNet(DeltaNet):
    name = "gated_deltanet"
    citation = ("Yang, Kautz and Hatamizadeh 2025, Gated Delta Networks: Improving Mamba2 with "
                "Delta Rule (ICLR)")
    Config = GatedDeltaNetConfig
    presets = GATED_PRESETS
