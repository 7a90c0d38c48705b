"""Hyena: gated long convolutions whose filters are generated implicitly, then an MLP.

Operator of order N (paper: 2): project to N+1 streams, short causal conv (3) on each, then
v <- h_n * (v . x_n) for n = N-1..1 with an implicit filter h_n as long as the sequence,
computed by FFT, and y = v . x_0. The filter is positional features (t and sin/cos bands)
-> small MLP with learnable-frequency sine activations -> exponential-decay modulation.
Paper preset = Hyena-153M (d 864, 18 layers); its 153M is reproduced at GPT-2's vocabulary
with an MLP width of 2 d and tied embeddings, the layout this file follows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mqarbench.kernels import KernelChoice
from mqarbench.kernels.long_conv import long_conv_impl
from mqarbench.models import ModelAdapter, ModelConfig, SplitLM


class HyenaConfig(ModelConfig):
    n_layers: int
    d_model: int
    filter_width: int  # hidden width of the implicit filter's MLP
    pos_dim: int  # positional features fed to it: t and (pos_dim - 1) / 2 cos/sin bands
    order: int = 2
    short_conv: int = 3
    mlp_ratio: int = 2
    sin_freq: float = 1.0
    fast_decay_pct: float = 0.3
    slow_decay_pct: float = 1.5
    decay_target: float = 1e-2


class Sin(nn.Module):
    """sin(freq * x) with a learnable frequency per channel."""

    def __init__(self, dim: int, freq: float) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.full((1, dim), freq))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """Filters (channels, L) as a function of position, so their length follows the input."""

    def __init__(self, channels: int, filter_width: int, pos_dim: int, max_len: int, sin_freq: float,
                 fast_decay_pct: float, slow_decay_pct: float, decay_target: float) -> None:
        super().__init__()
        self.max_len, self.n_bands = max_len, (pos_dim - 1) // 2
        width = filter_width
        self.mlp = nn.Sequential(
            nn.Linear(pos_dim, width), Sin(width, sin_freq),
            nn.Linear(width, width), Sin(width, sin_freq),
            nn.Linear(width, width), Sin(width, sin_freq),
            nn.Linear(width, channels, bias=False))
        # Per channel decay rates spread between fast and slow: filters of different reach.
        rates = torch.linspace(math.log(decay_target) / fast_decay_pct,
                               math.log(decay_target) / slow_decay_pct, channels).abs()
        self.register_buffer("decay_rates", rates, persistent=False)

    def positional_features(self, length: int, device: torch.device) -> torch.Tensor:
        """(length, pos_dim): t in [0, 1] over max_len, plus cos/sin of n_bands frequencies.
        Normalised by max_len, not by L, so position t gets the same filter tap at any L."""
        t = torch.arange(length, device=device, dtype=torch.float32) / max(self.max_len - 1, 1)
        bands = torch.linspace(1e-4, self.n_bands - 1, self.n_bands, device=device)
        phase = 2 * math.pi * t[:, None] * (self.max_len - 1) / self.max_len * bands  # (L, bands)
        return torch.cat([t[:, None], phase.cos(), -phase.sin()], dim=-1)

    def forward(self, length: int, device: torch.device) -> torch.Tensor:
        features = self.positional_features(length, device)  # (L, pos_dim)
        t = features[:, :1]  # (L, 1)
        filters = self.mlp(features) * torch.exp(-t * self.decay_rates)  # (L, channels)
        return filters.transpose(0, 1)  # (channels, L)


class HyenaOperator(nn.Module):
    def __init__(self, d_model: int, order: int, short_conv: int, max_len: int,
                 **filter_args: Any) -> None:
        super().__init__()
        self.d_model, self.order = d_model, order
        self.in_proj = nn.Linear(d_model, (order + 1) * d_model)
        self.short_conv = nn.Conv1d((order + 1) * d_model, (order + 1) * d_model, short_conv,
                                    groups=(order + 1) * d_model, padding=short_conv - 1)
        self.filter = ImplicitFilter((order - 1) * d_model, max_len=max_len, **filter_args)
        self.skip = nn.Parameter(torch.randn((order - 1) * d_model))  # the filter's direct term
        self.out_proj = nn.Linear(d_model, d_model)

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        return {"hyena_fft_conv": long_conv_impl(device)[1]}

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[1]  # u: (B, L, D)
        streams = self.short_conv(self.in_proj(u).transpose(1, 2))[..., :length]  # (B, (N+1)D, L)
        *gates, v = streams.split(self.d_model, dim=1)  # each (B, D, L)
        filters = self.filter(length, u.device).split(self.d_model, dim=0)  # each (D, L)
        skips = self.skip.split(self.d_model)
        conv, _ = long_conv_impl(u.device)
        for n, gate in enumerate(reversed(gates[1:])):
            v = v * gate
            v = conv(v, filters[n].to(v.dtype)) + v * skips[n][:, None].to(v.dtype)
        return self.out_proj((v * gates[0]).transpose(1, 2))  # (B, L, D)


class HyenaBlock(nn.Module):
    def __init__(self, d_model: int, mlp_ratio: int, **operator_args: Any) -> None:
        super().__init__()
        self.ln_mix, self.ln_mlp = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.mixer = HyenaOperator(d_model, **operator_args)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.ln_mix(x))
        return x + self.mlp(self.ln_mlp(x))


class HyenaLM(SplitLM):
    def __init__(self, cfg: HyenaConfig) -> None:
        super().__init__()
        operator_args = cfg.model_dump(exclude={"vocab_size", "n_layers", "d_model", "mlp_ratio"})
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(HyenaBlock(cfg.d_model, cfg.mlp_ratio, **operator_args)
                                    for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.unembed.weight = self.embed.weight  # tied, as Hyena's GPT-style LM

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        x = self.embed(input_ids)  # (B, L, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class Hyena(ModelAdapter[HyenaConfig]):
    name = "hyena"
    family = "long-convolution"
    citation = ("Poli et al. 2023, Hyena Hierarchy: Towards Larger Convolutional Language "
                "Models (ICML)")
    PAPER_PARAMS = 153_000_000
    Config = HyenaConfig
    presets = {
        "tiny": dict(n_layers=2, d_model=64, filter_width=16, pos_dim=9),
        "small": dict(n_layers=2, d_model=128, filter_width=64, pos_dim=33),
        "paper": dict(n_layers=18, d_model=864, filter_width=64, pos_dim=33),
    }

    def create_model(self, cfg: HyenaConfig) -> nn.Module:
        return HyenaLM(cfg)

    # recurrent_state stays 0: the long filters span the whole input, so exact recurrent decoding
    # keeps every past input (the state grows with L).


# Why Hyena fits the training set at `small` instead of learning recall: the references' choices
# that differ from ours, each its own adapter name (so its runs never mix with the board's), usable
# as --model baselines.hyena:<Class>.
class HyenaW14(Hyena):
    """The filter MLP's sine frequency of safari's Hyena-153M config (w = 14; ours: 1)."""

    name = "hyena_w14"

    def fields(self, preset: str) -> dict[str, Any]:
        return {**super().fields(preset), "sin_freq": 14.0}


class HyenaReferenceInit(Hyena):
    """The references' GPT-style init instead of PyTorch's defaults: every linear weight, the filter
    MLP's included, drawn N(0, 0.02) with zero biases, so the implicit filters start near zero; the
    residual outputs (operator out_proj, MLP down) scaled by 1/sqrt(2 n_layers)."""

    name = "hyena_reference_init"

    def create_model(self, cfg: HyenaConfig) -> nn.Module:
        model = HyenaLM(cfg)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Linear) and module is not model.unembed:  # tied to embed
                    nn.init.normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        module.bias.zero_()
            for block in model.blocks:
                for residual_out in (block.mixer.out_proj, block.mlp[-1]):
                    residual_out.weight.div_(math.sqrt(2 * cfg.n_layers))
        return model
