"""Pythia: GPT-NeoX blocks (rotary on a quarter of each head, attention and MLP in parallel).

Paper preset = the paper's Pythia-133M: Pythia-160M (d 768, 12 heads) cut to 8 layers,
untied embedding and unembedding as in Pythia. ``tiny``/``small`` tie them so that, at the
benchmark's vocabularies, every ``small`` model has a similar count (about 2.9M at V = 20,000).
"""

from __future__ import annotations

import math
import torch
from torch import nn

from mqarbench.kernels import KernelChoice
from mqarbench.kernels.attention import attention_impl
from mqarbench.models import ModelAdapter, ModelConfig, SplitLM


class PythiaConfig(ModelConfig):
    n_layers: int
    d_model: int
    n_heads: int
    tie_embeddings: bool
    rotary_pct: float = 0.25  # share of each head's channels that is rotated
    rotary_base: int = 10_000
    mlp_ratio: int = 4


def rotary_tables(length: int, n_rot: int, base: float,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, (L, n_rot) each in fp32; computed once per forward."""
    inv_freq = base ** (-torch.arange(0, n_rot, 2, device=device, dtype=torch.float32) / n_rot)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)  # (L, n_rot)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """GPT-NeoX rotary embedding (rotate-half form) on the first n_rot channels of each head."""
    n_rot = cos.shape[-1]  # x: (B, H, L, Dh)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # bf16 under autocast: keep q, k in x's dtype
    rot, keep = x[..., :n_rot], x[..., n_rot:]
    first, second = rot.chunk(2, dim=-1)
    return torch.cat([rot * cos + torch.cat([-second, first], dim=-1) * sin, keep], dim=-1)


class NeoXBlock(nn.Module):
    """x + Attention(LN1(x)) + MLP(LN2(x)): GPT-NeoX's parallel residual."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.ln_attn, self.ln_mlp = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        return {"attention": attention_impl(device)[1]}

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = x.shape
        qkv = self.qkv(self.ln_attn(x)).view(batch, length, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, Dh)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attend, _ = attention_impl(x.device)
        y = attend(q, k, v).transpose(1, 2).reshape(batch, length, d_model)  # (B, L, D)
        return x + self.attn_out(y) + self.mlp(self.ln_mlp(x))


class PythiaLM(SplitLM):
    def __init__(self, cfg: PythiaConfig) -> None:
        super().__init__()
        d_model = cfg.d_model
        self.n_rot, self.rotary_base = int(d_model // cfg.n_heads * cfg.rotary_pct), cfg.rotary_base
        self.embed = nn.Embedding(cfg.vocab_size, d_model)
        self.blocks = nn.ModuleList(NeoXBlock(d_model, cfg.n_heads, cfg.mlp_ratio) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, cfg.vocab_size, bias=False)
        self._init(cfg.n_layers)
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight

    def _init(self, n_layers: int) -> None:
        """GPT-NeoX style: N(0, 0.02), residual outputs shrunk with depth so activations stay O(1)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for out in (block.attn_out, block.mlp[-1]):
                nn.init.normal_(out.weight, std=0.02 / math.sqrt(2 * n_layers))

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        x = self.embed(input_ids)  # (B, L, D)
        cos, sin = rotary_tables(input_ids.shape[1], self.n_rot, self.rotary_base, x.device)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.norm(x)


class Pythia(ModelAdapter[PythiaConfig]):
    name = "pythia"
    family = "attention"
    citation = ("Biderman et al. 2023, Pythia: A Suite for Analyzing Large Language Models "
                "Across Training and Scaling (ICML)")
    PAPER_PARAMS = 133_000_000
    Config = PythiaConfig
    presets = {
        "tiny": dict(n_layers=2, d_model=64, n_heads=2, tie_embeddings=True),
        "small": dict(n_layers=2, d_model=128, n_heads=4, tie_embeddings=True),
        "paper": dict(n_layers=8, d_model=768, n_heads=12, tie_embeddings=False),
    }

    def create_model(self, cfg: PythiaConfig) -> nn.Module:
        return PythiaLM(cfg)

    # recurrent_state stays 0: attention keeps every past key and value, a cache that grows with L.
