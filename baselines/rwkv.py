"""RWKV-6 (Finch): token-shift time-mix with data-dependent decay, then channel-mix.

The paper trained RWKV-4. This is RWKV-6 because flash-linear-attention ships a chunked RWKV-6
kernel with a backward pass (RWKV-4 has no maintained training kernel there), and RWKV-6 keeps
RWKV-4's layout: token shift, a WKV mix with per-channel decay and a "bonus" u for the current
token, the same squared-ReLU channel-mix. It differs in that the decay and the token-shift mix
depend on the input (small LoRAs), the state is a (K x V) matrix per head instead of RWKV-4's
normalised per-channel average, and the output is gated (SiLU) and group-normed.
RWKV-7 would change more (a delta-rule state update), so it is further from the paper's model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mqarbench.kernels import KernelChoice
from mqarbench.kernels.rwkv import wkv6_impl
from mqarbench.models import ModelAdapter, ModelConfig, SplitLM


class RWKVConfig(ModelConfig):
    n_layers: int
    d_model: int
    head_size: int
    tie_embeddings: bool
    ffn_mult: float = 3.5  # channel-mix width over d_model
    mix_rank: int = 32  # rank of the data-dependent token-shift LoRA
    decay_rank: int = 64  # rank of the data-dependent decay LoRA


def token_shift(x: torch.Tensor) -> torch.Tensor:
    """x_{t-1} (zeros at t = 0) - x_t: what RWKV's mixes interpolate along."""
    return F.pad(x, (0, 0, 1, -1)) - x  # (B, L, D)


class TimeMix(nn.Module):
    def __init__(self, d_model: int, head_size: int, layer: int, n_layers: int, mix_rank: int,
                 decay_rank: int) -> None:
        super().__init__()
        self.n_heads, self.head_size = d_model // head_size, head_size
        depth = layer / max(n_layers - 1, 1)  # 0 at the first layer, 1 at the last
        shallowness = 1 - layer / n_layers
        ramp = torch.arange(d_model, dtype=torch.float32) / d_model
        # Finch's initialisation: deeper layers mix in less of the previous token and decay slower.
        self.mix_x = nn.Parameter(1 - ramp ** shallowness)
        self.mix_wkvrg = nn.Parameter(torch.stack([
            1 - ramp ** shallowness, 1 - ramp ** shallowness,
            1 - (ramp ** shallowness + 0.3 * depth),
            1 - ramp ** (0.5 * shallowness), 1 - ramp ** (0.5 * shallowness)]))  # (5, D)
        self.mix_down = nn.Parameter(torch.zeros(d_model, 5 * mix_rank))
        self.mix_up = nn.Parameter(torch.empty(5, mix_rank, d_model).uniform_(-0.01, 0.01))
        position = torch.arange(d_model, dtype=torch.float32) / max(d_model - 1, 1)
        self.decay = nn.Parameter(-6 + 5 * position ** (0.7 + 1.3 * depth))
        self.decay_down = nn.Parameter(torch.zeros(d_model, decay_rank))
        self.decay_up = nn.Parameter(torch.empty(decay_rank, d_model).uniform_(-0.01, 0.01))
        zigzag = (torch.arange(d_model) + 1) % 3 - 1
        self.bonus = nn.Parameter((depth * (1 - position) + 0.1 * zigzag).view(self.n_heads, head_size))
        self.receptance, self.key, self.value, self.gate, self.output = (
            nn.Linear(d_model, d_model, bias=False) for _ in range(5))
        self.norm = nn.GroupNorm(self.n_heads, d_model, eps=64e-5)

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        return {"rwkv6_wkv": wkv6_impl(device)[1]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = x.shape
        shift = token_shift(x)  # (B, L, D)
        lora = torch.tanh((x + shift * self.mix_x) @ self.mix_down).view(batch, length, 5, -1)
        dynamic = torch.einsum("blfr,frd->fbld", lora, self.mix_up)  # (5, B, L, D)
        xw, xk, xv, xr, xg = (x + shift * (self.mix_wkvrg[i] + dynamic[i]) for i in range(5))
        log_decay = -torch.exp(self.decay + torch.tanh(xw @ self.decay_down) @ self.decay_up)
        heads = (batch, length, self.n_heads, self.head_size)
        r, k, v = self.receptance(xr).view(heads), self.key(xk).view(heads), self.value(xv).view(heads)
        wkv, _ = wkv6_impl(x.device)
        y = wkv(r, k, v, log_decay.float().view(heads), self.bonus)  # (B, L, H, K)
        y = self.norm(y.reshape(batch * length, d_model).float()).view(batch, length, d_model)
        return self.output(y.to(x.dtype) * F.silu(self.gate(xg)))  # (B, L, D)


class ChannelMix(nn.Module):
    def __init__(self, d_model: int, ffn_mult: float, layer: int, n_layers: int) -> None:
        super().__init__()
        ramp = torch.arange(d_model, dtype=torch.float32) / d_model
        shallowness = 1 - layer / n_layers
        self.mix_k = nn.Parameter(1 - ramp ** shallowness)
        self.mix_r = nn.Parameter(1 - ramp ** shallowness)
        hidden = int(ffn_mult * d_model) // 32 * 32
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.value = nn.Linear(hidden, d_model, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift = token_shift(x)  # (B, L, D)
        hidden = torch.relu(self.key(x + shift * self.mix_k)) ** 2  # (B, L, F)
        return torch.sigmoid(self.receptance(x + shift * self.mix_r)) * self.value(hidden)


class RWKVBlock(nn.Module):
    def __init__(self, d_model: int, layer: int, n_layers: int, head_size: int, ffn_mult: float,
                 mix_rank: int, decay_rank: int) -> None:
        super().__init__()
        self.ln_time, self.ln_channel = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.time_mix = TimeMix(d_model, head_size, layer, n_layers, mix_rank, decay_rank)
        self.channel_mix = ChannelMix(d_model, ffn_mult, layer, n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.time_mix(self.ln_time(x))
        return x + self.channel_mix(self.ln_channel(x))


class RWKVLM(SplitLM):
    def __init__(self, cfg: RWKVConfig) -> None:
        super().__init__()
        d_model = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d_model)
        self.ln_embed = nn.LayerNorm(d_model)  # RWKV normalises the embedding once before block 0
        self.blocks = nn.ModuleList(
            RWKVBlock(d_model, i, cfg.n_layers, cfg.head_size, cfg.ffn_mult, cfg.mix_rank, cfg.decay_rank)
            for i in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, cfg.vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        x = self.ln_embed(self.embed(input_ids))  # (B, L, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class RWKV(ModelAdapter[RWKVConfig]):
    name = "rwkv"
    family = "linear-attention"
    citation = ("Peng et al. 2024, Eagle and Finch: RWKV with Matrix-Valued States and Dynamic "
                "Recurrence (RWKV-6); the paper used RWKV-4, Peng et al. 2023 (EMNLP Findings)")
    PAPER_PARAMS = 153_000_000
    Config = RWKVConfig
    presets = {
        "tiny": dict(n_layers=2, d_model=64, head_size=32, tie_embeddings=True),
        "small": dict(n_layers=2, d_model=128, head_size=32, tie_embeddings=True),
        "paper": dict(n_layers=12, d_model=1024, head_size=64, tie_embeddings=False),
    }

    def create_model(self, cfg: RWKVConfig) -> nn.Module:
        return RWKVLM(cfg)

    def recurrent_state(self, cfg: RWKVConfig) -> int:
        """Per layer: a (K x K) WKV state per head, plus the last token of each of the two
        token shifts (2 d)."""
        return cfg.n_layers * (cfg.d_model * cfg.head_size + 2 * cfg.d_model)
