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
from pydantic import Field, model_validator
from torch import nn

from baselines.blocks import PreNormLM, ShortConv, State, decay_a_log, decay_dt_bias, heads, rms_norm
from mqarbench.kernels import KernelChoice, at_least_fp32
from mqarbench.models import ModelAdapter, ModelConfig
from mqarbench.kernels.delta_rule import delta_impl, delta_step

MAMBA2_DECAY = (16.0, 1e-3, 0.1)  # the forget gate's init: A ~ U(0, 16), dt log-uniform in [1e-3, 0.1]


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


class SlowDecayConfig(GatedDeltaNetConfig):
    """The forget gate's init drawn from other ranges: A ~ U(0, decay_a_max), step sizes
    log-uniform in [decay_dt_min, decay_dt_max] (the built-in keeps Mamba-2's 16, 1e-3, 0.1)."""

    decay_a_max: float = Field(gt=0)
    decay_dt_min: float = Field(gt=0)
    decay_dt_max: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "SlowDecayConfig":
        if self.decay_dt_min >= self.decay_dt_max:
            raise ValueError(f"decay_dt_min ({self.decay_dt_min}) must be below decay_dt_max ({self.decay_dt_max})")
        return self


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
                 conv_width: int, decay: tuple[float, float, float] = MAMBA2_DECAY) -> None:
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
            # decay = (A_max, dt_min, dt_max): A ~ U(0, A_max), step sizes log-uniform in
            # [dt_min, dt_max]; Mamba-2's (16, 1e-3, 0.1) unless an ablation says otherwise
            a_max, dt_min, dt_max = decay
            self.A_log = nn.Parameter(decay_a_log(n_heads, high=a_max))
            self.dt_bias = nn.Parameter(decay_dt_bias(n_heads, dt_min, dt_max))
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
                 decay_a_max: float = MAMBA2_DECAY[0], decay_dt_min: float = MAMBA2_DECAY[1],
                 decay_dt_max: float = MAMBA2_DECAY[2], **_: Any) -> None:
        decay = (decay_a_max, decay_dt_min, decay_dt_max)
        super().__init__(vocab_size, d_model, n_layers, tie_embeddings, lambda _layer: DeltaMixer(
            d_model, n_heads, head_dim, expand_v, gated, conv_width, decay))


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
    version = "2"  # 2: dt_bias keeps its Mamba-2 draw (1 zeroed it with the linear layers' biases)
    citation = ("Yang, Kautz and Hatamizadeh 2025, Gated Delta Networks: Improving Mamba2 with "
                "Delta Rule (ICLR)")
    Config = GatedDeltaNetConfig
    presets = GATED_PRESETS


class GatedDeltaNetSlowDecay(GatedDeltaNet):
    """Gated DeltaNet whose heads start with a memory of thousands of positions: A ~ U(0, 1),
    step sizes in [1e-4, 1e-3] (A dt about 1.5e-4, against about 1e-2 at Mamba-2's init). An
    ablation of the decay init, usable as --model baselines.deltanet:GatedDeltaNetSlowDecay;
    its own name, so its runs never mix with the built-in's."""

    name = "gated_deltanet_slow_decay"
    Config = SlowDecayConfig
    decay: tuple[float, float, float] = (1.0, 1e-4, 1e-3)

    def fields(self, preset: str) -> dict[str, Any]:
        a_max, dt_min, dt_max = self.decay
        return {**super().fields(preset), "decay_a_max": a_max, "decay_dt_min": dt_min, "decay_dt_max": dt_max}
