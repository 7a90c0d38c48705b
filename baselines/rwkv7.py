"""RWKV-7 (Goose): RWKV's token-shift layout with a generalised delta-rule state.

The layers of flash-linear-attention's ``RWKV7Attention`` / ``RWKV7FeedForward`` at their
defaults. Time-mix: token-shift interpolations feed r, k, v and small LoRAs for the decay
w = exp(-e^-0.5 sigmoid(.)), the in-context learning rate a = sigmoid(.), the output gate g and
(after the first layer) a value residual mixing v toward the first layer's v; the state update
    S_t = S_{t-1} (diag(w_t) - kk_t^T (a_t kk_t)) + v_t^T k_t,    kk = L2-normalised k * k_k
(``mqarbench/kernels/rwkv7.py``), a per-head GroupNorm, a "bonus" (r . k . r_k) v, the gate.
Channel-mix: token shift, squared ReLU, no receptance. LayerNorm pre-norm blocks, with one more
LayerNorm on the embedding before the first block, as RWKV does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.blocks import State, heads
from mqarbench.kernels import KernelChoice
from mqarbench.models import ModelAdapter, ModelConfig, SplitLM
from mqarbench.kernels.rwkv7 import LOG_DECAY_MIN, rwkv7_impl, rwkv7_step

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layers=2, d_model=64, head_size=32, tie_embeddings=True),
    "small": dict(n_layers=2, d_model=128, head_size=32, tie_embeddings=True),
    "paper": dict(n_layers=12, d_model=768, head_size=64, tie_embeddings=False),
}
class RWKV7Config(ModelConfig):
    n_layers: int
    d_model: int
    head_size: int
    tie_embeddings: bool
    ffn_mult: int = 4


def lora_rank(d_model: int, scale: float, head_factor: float = 1.0) -> int:
    """fla's default LoRA widths: scale * sqrt(d) (times head_size / 64), to a multiple of 32."""
    return max(32, int(round(scale * d_model ** 0.5 * head_factor / 32) * 32))


def orthogonal_(weight: torch.Tensor, gain: float = 1.0) -> None:
    if not weight.is_meta:  # parameter counting builds on the meta device, where QR has no kernel
        with torch.no_grad():
            weight.copy_(nn.init.orthogonal_(torch.empty_like(weight, dtype=torch.float32), gain=gain))


def head_norm(o: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` (one group per head) of o (..., H, K), as (..., H K): a LayerNorm over K, then the
    per-channel affine. The same numbers as ``norm`` on (N, H K), but its backward sums the affine
    gradients over the N = B L positions with PyTorch's parallel reductions, where GroupNorm's
    backward for inputs without spatial size runs ceil(C / 32) thread blocks (4 at `small`)."""
    heads, size = o.shape[-2:]
    normed = F.layer_norm(o, (size,), eps=norm.eps)
    return (normed * norm.weight.view(heads, size) + norm.bias.view(heads, size)).flatten(-2)


class LoRA(nn.Module):
    """up(act(down(x))): down starts at zero, up orthogonal at 0.1 gain (fla's init)."""

    def __init__(self, d_model: int, out: int, rank: int, act: nn.Module, bias: bool = True) -> None:
        super().__init__()
        self.down, self.act = nn.Linear(d_model, rank, bias=False), act
        self.up = nn.Linear(rank, out, bias=bias)
        nn.init.zeros_(self.down.weight)
        orthogonal_(self.up.weight, 0.1 * (math.sqrt(rank / out) if rank > out else 1.0))
        if bias:
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class TimeMix7(nn.Module):
    def __init__(self, d_model: int, head_size: int, layer: int, n_layers: int) -> None:
        super().__init__()
        self.n_heads, self.head_size, self.first = d_model // head_size, head_size, layer == 0
        factor = head_size / 64
        depth = layer / max(n_layers - 1, 1)  # 0 at the first layer, 1 at the last
        shallowness = 1 - layer / n_layers
        ramp = torch.arange(d_model, dtype=torch.float32) / d_model
        linear = torch.arange(d_model, dtype=torch.float32) / max(d_model - 1, 1) - 0.5
        zigzag = (torch.arange(d_model) % head_size - (head_size - 1) / 2) / ((head_size - 1) / 2)
        zigzag = zigzag * zigzag.abs()
        # RWKV-7's initialisation: how much of the previous token each input mixes in, per channel.
        self.mix = nn.Parameter(torch.stack([1 - ramp ** (p * shallowness)
                                             for p in (0.2, 0.9, 0.7, 0.7, 0.9, 0.2)]))  # (6, D) r w k v a g
        self.k_k = nn.Parameter(0.71 - 0.1 * linear)
        self.k_a = nn.Parameter(torch.full((d_model,), 1.02))
        self.r_k = nn.Parameter(torch.full((self.n_heads, head_size), -0.04))
        self.r_proj, self.k_proj, self.v_proj, self.o_proj = (
            nn.Linear(d_model, d_model, bias=False) for _ in range(4))
        orthogonal_(self.r_proj.weight)
        orthogonal_(self.k_proj.weight, 0.1)
        orthogonal_(self.v_proj.weight)
        nn.init.zeros_(self.o_proj.weight)
        self.w_lora = LoRA(d_model, d_model, lora_rank(d_model, 2.5, factor), nn.Tanh())
        self.a_lora = LoRA(d_model, d_model, lora_rank(d_model, 2.5, factor), nn.Identity())
        self.g_lora = LoRA(d_model, d_model, lora_rank(d_model, 5), nn.Sigmoid(), bias=False)
        with torch.no_grad():
            self.w_lora.up.bias.copy_(-6 + 6 * (torch.arange(d_model) / max(d_model - 1, 1))
                                      ** (1 + depth ** 0.3) + 0.5 + 2.5 * zigzag)
            self.a_lora.up.bias.copy_(-0.19 + 0.3 * zigzag + 0.4 * linear)
        if not self.first:  # the value residual: later layers mix v toward layer 0's v
            self.v_lora = LoRA(d_model, d_model, lora_rank(d_model, 1.7, factor), nn.Identity())
            with torch.no_grad():
                self.v_lora.up.bias.copy_(0.73 - 0.4 * linear)
        self.g_norm = nn.GroupNorm(self.n_heads, d_model, eps=head_size * 1e-5)
        with torch.no_grad():
            self.g_norm.weight.fill_(((layer + 1) / n_layers) ** 0.7)

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        return {"rwkv7": rwkv7_impl(device)[1]}

    def _inputs(self, x: torch.Tensor, previous: torch.Tensor, v_first: torch.Tensor | None):
        """r, w, k, v, a, b for the kernel, the bonus's inputs and the gate, from x and the
        previous token (..., D). Returns them with this layer's v_first."""
        xr, xw, xk, xv, xa, xg = (x + (previous - x) * self.mix[i] for i in range(6))
        r, k, v = self.r_proj(xr), self.k_proj(xk), self.v_proj(xv)
        w = LOG_DECAY_MIN * torch.sigmoid(self.w_lora(xw))  # log decay in [-e^-0.5, 0)
        if self.first:
            v_first = v
        else:
            v = torch.lerp(v, v_first, torch.sigmoid(self.v_lora(xv)))
        a = torch.sigmoid(self.a_lora(xa))  # in-context learning rate
        kk = F.normalize(heads(k * self.k_k, self.head_size), dim=-1)
        k = k * (1 + (a - 1) * self.k_a)
        r, w, k, v, a = (heads(t, self.head_size) for t in (r, w, k, v, a))
        return (r, w, k, v, -kk, kk * a), self.g_lora(xg), v_first

    def _output(self, o: torch.Tensor, r: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                g: torch.Tensor) -> torch.Tensor:
        o = head_norm(o, self.g_norm)  # (..., D)
        bonus = ((r * k * self.r_k).sum(-1, keepdim=True) * v).flatten(-2)  # (..., D)
        return self.o_proj(((o + bonus) * g).to(g.dtype))

    def forward(self, x: torch.Tensor, v_first: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        previous = F.pad(x, (0, 0, 1, -1))  # (B, L, D): x_{t-1}, zeros at t = 0
        kernel_in, g, v_first = self._inputs(x, previous, v_first)
        rwkv7, _ = rwkv7_impl(x.device)
        o = rwkv7(*kernel_in)  # (B, L, H, K)
        r, _, k, v, _, _ = kernel_in
        return self._output(o, r, k, v, g), v_first

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        d_model = self.n_heads * self.head_size
        return {"S": torch.zeros(batch, self.n_heads, self.head_size, self.head_size, device=device, dtype=dtype),
                "shift": torch.zeros(batch, d_model, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, v_first: torch.Tensor | None, state: State):  # x (B, D)
        kernel_in, g, v_first = self._inputs(x, state["shift"], v_first)
        o, s = rwkv7_step(state["S"], *kernel_in)
        r, _, k, v, _, _ = kernel_in
        return self._output(o, r, k, v, g), v_first, {"S": s, "shift": x}


class ChannelMix7(nn.Module):
    def __init__(self, d_model: int, ffn_mult: int, layer: int, n_layers: int) -> None:
        super().__init__()
        ramp = torch.arange(d_model, dtype=torch.float32) / d_model
        self.mix_k = nn.Parameter(1 - ramp ** ((1 - layer / n_layers) ** 4))
        hidden = 32 * math.ceil(ffn_mult * d_model / 32)
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.value = nn.Linear(hidden, d_model, bias=False)
        orthogonal_(self.key.weight)
        nn.init.zeros_(self.value.weight)

    def _mix(self, x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        return self.value(torch.relu(self.key(x + (previous - x) * self.mix_k)) ** 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x, F.pad(x, (0, 0, 1, -1)))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"shift": torch.zeros(batch, self.key.in_features, device=device, dtype=dtype)}

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self._mix(x, state["shift"]), {"shift": x}


class RWKV7Block(nn.Module):
    def __init__(self, d_model: int, head_size: int, ffn_mult: int, layer: int, n_layers: int) -> None:
        super().__init__()
        self.ln_time, self.ln_channel = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.time_mix = TimeMix7(d_model, head_size, layer, n_layers)
        self.channel_mix = ChannelMix7(d_model, ffn_mult, layer, n_layers)

    def forward(self, x: torch.Tensor, v_first: torch.Tensor | None):
        mixed, v_first = self.time_mix(self.ln_time(x), v_first)
        x = x + mixed
        return x + self.channel_mix(self.ln_channel(x)), v_first


class RWKV7LM(SplitLM):
    def __init__(self, vocab_size: int, n_layers: int, d_model: int, head_size: int,
                 tie_embeddings: bool, ffn_mult: int, **_: Any) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.ln_embed = nn.LayerNorm(d_model)
        self.blocks = nn.ModuleList(RWKV7Block(d_model, head_size, ffn_mult, i, n_layers)
                                    for i in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.unembed.weight, std=0.02)
        if tie_embeddings:
            self.unembed.weight = self.embed.weight

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        x, v_first = self.ln_embed(self.embed(input_ids)), None
        for block in self.blocks:
            x, v_first = block(x, v_first)
        return self.norm(x)

    def step_hidden(self, input_ids: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        """One token per sequence (B,) -> (B, D), carrying each layer's time- and channel-mix state."""
        x, v_first, new_states = self.ln_embed(self.embed(input_ids)), None, []
        for block, (time_state, channel_state) in zip(self.blocks, states):
            mixed, v_first, time_state = block.time_mix.step(block.ln_time(x), v_first, time_state)
            x = x + mixed
            mixed, channel_state = block.channel_mix.step(block.ln_channel(x), channel_state)
            x = x + mixed
            new_states.append((time_state, channel_state))
        return self.norm(x), new_states

    def init_states(self, batch: int, device: torch.device, dtype: torch.dtype) -> list[State]:
        return [(b.time_mix.init_state(batch, device, dtype), b.channel_mix.init_state(batch, device, dtype))
                for b in self.blocks]


class RWKV7(ModelAdapter[RWKV7Config]):
    name = "rwkv7"
    family = "linear-attention"
    citation = ("Peng et al. 2025, RWKV-7 \"Goose\" with Expressive Dynamic State Evolution")
    Config = RWKV7Config
    presets = PRESETS

    def create_model(self, cfg: RWKV7Config) -> nn.Module:
        return RWKV7LM(**cfg.model_dump())

    def recurrent_state(self, cfg: RWKV7Config) -> int:
        """Per layer: a (K x K) state per head (d x head_size in all), plus the previous token
        of each of the two token shifts (2 d). The value residual is per token, not state."""
        return cfg.n_layers * (cfg.d_model * cfg.head_size + 2 * cfg.d_model)
