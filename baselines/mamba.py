"""Mamba-1 (Gu and Dao, 2023) language models: plain and with a larger SSM state.

The mixer (per block, d_inner = expand * d_model):
    in_proj -> x, z;  x -> short causal depthwise conv -> SiLU;  x_proj(x) -> dt, B, C;
    dt_proj(dt);  selective scan with D skip and SiLU(z) gate;  out_proj.
On CUDA the plain model takes mamba_ssm's fused ``mamba_inner_fn``; everywhere else (or when a
subclass changes dt) the unfused path with one dispatched kernel per op.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice
from mqarbench.kernels.add_rms_norm import add_norm_impl
from mqarbench.kernels.causal_conv import conv_impl
from mqarbench.kernels.selective_scan import grouped_scan_impl, inner_impl, scan_impl
from mqarbench.models import ModelAdapter, ModelConfig, SplitLM
from mqarbench.models import stacked

NORM_EPS = 1e-5
CITATION = "Gu and Dao (2023), Mamba: Linear-Time Sequence Modeling with Selective State Spaces"


class MambaMixer(nn.Module):
    """The selective SSM mixer: (B, L, d_model) -> (B, L, d_model)."""

    fused = True  # whether this mixer may take the fused mamba_inner_fn on CUDA

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, dt_rank: int):
        super().__init__()
        d_inner = expand * d_model
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        # S4D-real init: A_n = -n, so channel n forgets at rate n (stored as log for positivity).
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))  # (d_inner, N)
        self.D = nn.Parameter(torch.ones(d_inner))
        self._init_dt()

    def _init_dt(self, dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        # Step sizes start log-uniform in [dt_min, dt_max]: the bias is softplus^{-1}(dt).
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        if self.dt_proj.bias.is_meta:
            return
        with torch.no_grad():
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        inner, inner_choice = inner_impl(device)
        if self.fused and inner is not None:
            return {"mamba_inner": inner_choice}
        return {"causal_conv1d": conv_impl(device)[1], "selective_scan": scan_impl(device)[1]}

    def _in_proj(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> xz (B, 2E, L) with unit stride along L, the layout the kernels
        take without a copy: W @ hidden^T transposes the narrow input, not the 2E-wide output."""
        batch, length, _ = hidden.shape
        flat = hidden.reshape(batch * length, -1).t()  # (d_model, B*L)
        return (self.in_proj.weight @ flat).view(-1, batch, length).transpose(0, 1)

    def gate_dt(self, dt: torch.Tensor, x_branch: torch.Tensor) -> torch.Tensor:
        """Hook for variants that change dt before its bias and softplus; identity here."""
        return dt

    def ssm_inputs(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        """The scan's inputs for hidden (B, L, d_model): u, dt (pre-bias), A, B, C, z."""
        xz = self._in_proj(hidden)  # (B, 2E, L)
        x, z = xz.chunk(2, dim=1)  # (B, E, L) each
        conv, _ = conv_impl(hidden.device)
        u = conv(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
        x_dbl = self.x_proj(u.transpose(1, 2))  # (B, L, R + 2N)
        dt, b, c = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # (B, E, L), bias added in the scan
        dt = self.gate_dt(dt, x)
        return {"u": u, "dt": dt, "A": -torch.exp(self.A_log.float()),
                "B": b.transpose(1, 2).contiguous(), "C": c.transpose(1, 2).contiguous(),
                "z": z}

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, L, d_model)
        inner, _ = inner_impl(hidden.device)
        if self.fused and inner is not None:
            out = inner(self._in_proj(hidden), self.conv1d.weight, self.conv1d.bias,
                        self.x_proj.weight,
                        self.dt_proj.weight, self.out_proj.weight, self.out_proj.bias,
                        -torch.exp(self.A_log.float()), None, None, self.D.float(),
                        delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
            return out  # (B, L, d_model)
        s = self.ssm_inputs(hidden)
        scan, _ = scan_impl(hidden.device)
        y = scan(s["u"].contiguous(), s["dt"].contiguous(), s["A"], s["B"], s["C"],
                 self.D.float(), s["z"].contiguous(), delta_bias=self.dt_proj.bias.float(),
                 delta_softplus=True)  # (B, E, L)
        return self.out_proj(y.transpose(1, 2))

    def stacked_forward(self, params: stacked.Params, prefix: str, hidden: torch.Tensor) -> torch.Tensor:
        """The unfused path for K members at once (``mqarbench/models/stacked.py``): hidden
        (K, B, L, d_model) -> (K, B, L, d_model); ``params[prefix + name]`` (K, ...) are the weights."""
        p = lambda name: params[prefix + name]  # noqa: E731
        members, batch, length, _ = hidden.shape
        xz = stacked.linear(hidden.reshape(members, batch * length, -1), p("in_proj.weight"))  # (K, B*L, 2E)
        x, z = xz.view(members, batch, length, -1).chunk(2, dim=-1)  # (K, B, L, E) each
        conv, _ = conv_impl(hidden.device)
        weight = p("conv1d.weight")  # (K, E, 1, W)
        u = conv(stacked.to_channels(x), weight.reshape(-1, weight.shape[-1]), p("conv1d.bias").flatten(),
                 activation="silu")  # (B, K*E, L)
        x_dbl = stacked.linear(stacked.from_channels(u, members), p("x_proj.weight"))  # (K, B*L, R + 2N)
        dt, b, c = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = stacked.linear(dt, p("dt_proj.weight"))  # (K, B*L, E), bias added in the scan
        # B and C per member: the scan's channel groups, (B, K, N, L)
        grouped = lambda t: t.view(members, batch, length, -1).permute(1, 0, 3, 2).contiguous()  # noqa: E731
        scan, _ = grouped_scan_impl(hidden.device)
        y = scan(u, stacked.to_channels(dt.view(members, batch, length, -1)),
                 -torch.exp(p("A_log").float()).flatten(0, 1), grouped(b), grouped(c), p("D").float().flatten(),
                 stacked.to_channels(z), delta_bias=p("dt_proj.bias").float().flatten(),
                 delta_softplus=True)  # (B, K*E, L)
        out = stacked.linear(stacked.from_channels(y, members), p("out_proj.weight"))  # (K, B*L, d_model)
        return out.view(members, batch, length, -1)


class Block(nn.Module):
    """Pre-norm residual block on a separate fp32 residual stream:
    residual += hidden; hidden = mixer(RMSNorm(residual))."""

    def __init__(self, d_model: int, mixer: nn.Module):
        super().__init__()
        self.norm_weight = nn.Parameter(torch.ones(d_model))
        self.mixer = mixer

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        return {"add_rms_norm": add_norm_impl(device)[1]}

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None):
        add_norm, _ = add_norm_impl(hidden.device)
        normed, residual = add_norm(hidden, residual, self.norm_weight, NORM_EPS)
        return self.mixer(normed), residual


class MambaLM(SplitLM):
    """Embedding, blocks, final RMSNorm, LM head tied to the embedding."""

    def __init__(self, vocab_size: int, d_model: int, mixers: list[nn.Module]):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(Block(d_model, m) for m in mixers)
        self.norm_f_weight = nn.Parameter(torch.ones(d_model))
        nn.init.normal_(self.embedding.weight, std=0.02)
        for block in self.layers:  # keep the residual stream's variance flat in depth
            with torch.no_grad():
                block.mixer.out_proj.weight.div_(math.sqrt(len(mixers)))

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, d_model)
        hidden, residual = self.embedding(input_ids), None  # (B, L, d_model)
        for block in self.layers:
            hidden, residual = block(hidden, residual)
        add_norm, _ = add_norm_impl(hidden.device)
        normed, _ = add_norm(hidden, residual, self.norm_f_weight, NORM_EPS)
        return normed

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., d_model) -> (..., V)
        return F.linear(hidden, self.embedding.weight)

    # ---- several runs at once (mqarbench/models/stacked.py) ----

    @property
    def can_stack(self) -> bool:
        """Only the plain mixer has a stacked form (variants change what the scan sees)."""
        return all(type(block.mixer) is MambaMixer for block in self.layers)

    def stacked_hidden_states(self, params: stacked.Params, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (K, B, L) -> (K, B, L, d_model), member k with weights ``params[name][k]``."""
        hidden, residual = stacked.embedding(input_ids, params["embedding.weight"]), None
        for i, block in enumerate(self.layers):
            residual = hidden.float() if residual is None else residual + hidden.float()  # fp32 stream
            normed = stacked.rms_norm(residual, params[f"layers.{i}.norm_weight"], NORM_EPS)
            hidden = block.mixer.stacked_forward(params, f"layers.{i}.mixer.", normed)
        return stacked.rms_norm(residual + hidden.float(), params["norm_f_weight"], NORM_EPS)

    def stacked_logits(self, params: stacked.Params, hidden: torch.Tensor) -> torch.Tensor:
        return stacked.linear(hidden, params["embedding.weight"])  # (K, N, d_model) -> (K, N, V)


class MambaConfig(ModelConfig):
    # The adapter's name and the preset repeat what the run id hashes anyway; they have been in
    # this config since its first version, so they stay: dropping them would re-key every run.
    model: str
    preset: str
    n_layers: int
    d_model: int
    d_state: int
    d_conv: int = 4
    expand: int = 2
    dt_rank: int  # ceil(d_model / 16), as mamba_ssm's "auto"
    norm: Literal["rmsnorm"] = "rmsnorm"
    tied_head: bool = True


class Mamba(ModelAdapter[MambaConfig]):
    """Mamba-130M at preset paper (d 768, 24 layers, d_state 16, d_conv 4, expand 2)."""

    name: ClassVar[str] = "mamba"
    family: ClassVar[str] = "ssm"
    citation: ClassVar[str] = CITATION
    PAPER_PARAMS: ClassVar[int | None] = 129_000_000
    Config: ClassVar[type[ModelConfig]] = MambaConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(n_layers=2, d_model=64),
        "small": dict(n_layers=2, d_model=128),
        "paper": dict(n_layers=24, d_model=768),
    }
    d_state: ClassVar[int] = 16  # the state variants change only this

    def fields(self, preset: str) -> dict[str, Any]:
        row = super().fields(preset)
        return {**row, "model": self.name, "preset": preset, "d_state": self.d_state,
                "dt_rank": math.ceil(row["d_model"] / 16)}

    def mixer(self, cfg: MambaConfig, layer: int) -> nn.Module:
        return MambaMixer(cfg.d_model, cfg.d_state, cfg.d_conv, cfg.expand, cfg.dt_rank)

    def create_model(self, cfg: MambaConfig) -> nn.Module:
        return MambaLM(cfg.vocab_size, cfg.d_model, [self.mixer(cfg, i) for i in range(cfg.n_layers)])

    def recurrent_state(self, cfg: MambaConfig) -> int:
        """SSM state (d_inner x d_state) plus the short conv's window (d_inner x (d_conv - 1))
        per layer: both must be carried to continue a sequence token by token."""
        return cfg.n_layers * cfg.expand * cfg.d_model * (cfg.d_state + cfg.d_conv - 1)


class Mamba2xState(Mamba):
    """Mamba with twice the SSM state (d_state 32)."""

    name: ClassVar[str] = "mamba_2x_state"
    PAPER_PARAMS: ClassVar[int | None] = 130_000_000
    d_state: ClassVar[int] = 32


class Mamba4xState(Mamba):
    """Mamba with four times the SSM state (d_state 64)."""

    name: ClassVar[str] = "mamba_4x_state"
    PAPER_PARAMS: ClassVar[int | None] = 134_000_000
    d_state: ClassVar[int] = 64
