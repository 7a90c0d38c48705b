"""Mamba with Global Selection (the paper's Eq. 7/8).

The step size of the selective scan is gated by a long causal view of the sequence:
    Delta = softplus(W_dt dt_t * SiLU(LongConv(x))_t + b_dt)
where x is the x-branch of in_proj before the short conv, and LongConv is a depthwise causal
convolution of ``long_kernel`` taps per channel (plus a bias), held as an ``nn.Conv1d`` as in
the authors' release: tap j of ``long_conv.weight[:, 0]`` multiplies x_{t-K+1+j}, i.e. the
convolution with K-1 zeros of left padding. It is computed by FFT, or on CUDA for layers of
at least 1024 channels (`paper`) by Triton kernels (``mqarbench.kernels.long_conv``); those
layers run as one fused function (``mqarbench.kernels.global_selection``), the narrower ones as
separate kernels, which is faster there.

Configuration (class attributes, subclass to change; every one enters the run id):
    long_kernel               taps K (128, as the paper)
    long_conv_init            "authors": nn.Conv1d's default init, taps and bias uniform in
                              +-1/sqrt(K) (the released code); "ours": random taps under an
                              exponential envelope scaled to unit gain, bias 0; "open": zero
                              taps and the bias at SiLU^{-1}(1), so the gate starts at exactly 1
                              (the model starts as plain Mamba and the gate learns from there)
    long_conv_bias            whether the long conv has a bias (the authors': yes)
    global_selection_layers   which layers are gated (None: every layer)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from baselines.mamba import Mamba, MambaConfig, MambaLM, MambaMixer
from mqarbench.errors import UserError
from mqarbench.kernels import KernelChoice, env_choice
from mqarbench.kernels.global_selection import global_selection_inner_impl
from mqarbench.kernels.long_conv import TRITON_FROM_WIDTH, global_long_conv_impl, long_conv_like_conv1d

INITS = ("authors", "ours", "open")
# The fused mixer pays where its long conv is the Triton kernels with the gate as their epilogue
# (`paper`, 1536 channels: a third of the unfused path's memory, 1.23-1.39x mamba's step). Below,
# with the FFT, the unfused path's step is faster (`small`, H200: eager 7.1 against 8.1 ms and 9.2
# against 11.3 ms; graphed, an epoch of standard 1.8 against 1.9 s; docs/benchmarks.md).
FUSED_FROM_WIDTH = TRITON_FROM_WIDTH
GLOBAL_MIXERS = ("auto", "fused", "unfused")  # MQARBENCH_GLOBAL_MIXER's values
SILU_INV_ONE = 1.2784645  # SiLU(1.2784645) = 1.0000000 (to float32 precision)
NEAR_ZERO_GATE = 0.05  # |SiLU(LongConv(x))| below this: the gate all but removes W_dt dt
NEAR_ZERO_DELTA = 1e-3  # Delta below Mamba's smallest initial step: the token is skipped
NEAR_ZERO_DT = 0.05  # |W_dt dt * gate| below this: Delta is all but input-independent


class GlobalSelectionMixer(MambaMixer):
    """A Mamba mixer whose dt is gated by SiLU of a long causal convolution of x."""

    fused = False  # mamba_inner_fn has no place for the gate; global_selection_inner_fn has
    # None: global_selection_inner_fn from FUSED_FROM_WIDTH channels, the unfused path below;
    # True / False force one (benchmarks and GPU tests compare the two)
    use_inner_fn: bool | None = None

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, dt_rank: int,
                 long_kernel: int, init: str = "authors", bias: bool = True):
        super().__init__(d_model, d_state, d_conv, expand, dt_rank)
        if init not in INITS:
            raise UserError(f"long_conv_init {init!r} unknown; use one of {', '.join(INITS)}")
        if init == "open" and not bias:
            raise UserError("long_conv_init 'open' sets the gate through the bias; "
                            "set long_conv_bias = True or pick another init")
        # nn.Conv1d's own init is the authors' form; the module is never called, only its
        # parameters are (the FFT is faster than a 128-tap direct conv).
        self.long_conv = nn.Conv1d(self.d_inner, self.d_inner, long_kernel, groups=self.d_inner,
                                   bias=bias)
        self.init_name = init
        self._init_long_conv(init)

    def _init_long_conv(self, init: str) -> None:
        weight, bias = self.long_conv.weight, self.long_conv.bias  # (E, 1, K), (E,)
        if weight.is_meta or init == "authors":
            return
        taps = weight.shape[-1]
        with torch.no_grad():
            if init == "ours":
                # Random taps under an exponential envelope (time constant K/4), unit gain:
                # recent tokens weigh most at first while far taps can grow.
                envelope = torch.exp(-torch.arange(taps, dtype=torch.float32)
                                     / max(taps / 4, 1.0))
                taps_now = torch.randn(self.d_inner, taps) * envelope / envelope.norm()
                weight.copy_(taps_now.flip(-1)[:, None, :])  # newest token is the last tap
                if bias is not None:
                    bias.zero_()
            else:  # "open"
                weight.zero_()
                bias.fill_(SILU_INV_ONE)

    def takes_inner_fn(self) -> bool:
        """Whether this mixer runs as global_selection_inner_fn where that function is available:
        ``use_inner_fn`` if set, else MQARBENCH_GLOBAL_MIXER (fused / unfused), else (auto) from
        FUSED_FROM_WIDTH channels."""
        if self.use_inner_fn is not None:
            return self.use_inner_fn
        chosen = env_choice("MQARBENCH_GLOBAL_MIXER", GLOBAL_MIXERS)
        return self.d_inner >= FUSED_FROM_WIDTH if chosen == "auto" else chosen == "fused"

    def kernel_choices(self, device: torch.device) -> dict[str, KernelChoice]:
        inner, choice = global_selection_inner_impl(device)
        if inner is not None and self.takes_inner_fn():
            return {"global_selection_inner": choice,
                    "long_conv": global_long_conv_impl(device, self.d_inner)[1]}
        return {**super().kernel_choices(device), "long_conv": global_long_conv_impl(device, self.d_inner)[1]}

    def gate(self, x_branch: torch.Tensor) -> torch.Tensor:
        """SiLU(LongConv(x)) (B, E, L) in >= fp32, for x the x-branch before the short conv."""
        return F.silu(long_conv_like_conv1d(x_branch, self.long_conv.weight, self.long_conv.bias))

    def gate_dt(self, dt: torch.Tensor, x_branch: torch.Tensor) -> torch.Tensor:
        return dt * self.gate(x_branch).to(dt.dtype)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, L, d_model)
        inner, _ = global_selection_inner_impl(hidden.device)
        if inner is None or not self.takes_inner_fn():
            return super().forward(hidden)  # the unfused path: the reference on CPU (fused = False)
        return inner(self._in_proj(hidden), self.conv1d.weight, self.conv1d.bias,
                     self.x_proj.weight, self.dt_proj.weight, self.out_proj.weight,
                     -torch.exp(self.A_log.float()), self.D.float(), self.dt_proj.bias.float(),
                     self.long_conv.weight, self.long_conv.bias)


class _Stats:
    """Running sums of one quantity: mean, std and the fraction below a threshold."""

    def __init__(self, near: float):
        self.near, self.sums = near, None

    def add(self, values: torch.Tensor) -> None:
        v = values.detach().float()  # sums in fp64 without an fp64 copy of the whole tensor
        f64 = torch.float64
        new = torch.stack([v.sum(dtype=f64), v.square().sum(dtype=f64), (v.abs() < self.near).sum(dtype=f64),
                           torch.tensor(float(v.numel()), dtype=f64, device=v.device)])
        self.sums = new if self.sums is None else self.sums + new

    def summary(self) -> dict[str, float]:
        total, squares, near, count = self.sums.tolist()
        mean = total / count
        return {"mean": mean, "std": math.sqrt(max(squares / count - mean * mean, 0.0)),
                "near0": near / count}


class GlobalMambaLM(MambaLM):
    """MambaLM with optional training diagnostics of the gate and the step size.

    ``track_diagnostics()`` hooks every gated mixer: each forward then also computes, without
    gradients, the gate SiLU(LongConv(x)), the input-dependent part of Delta's pre-activation
    (W_dt dt * gate) and Delta itself. ``diagnostics()`` returns their statistics since the last
    call as flat floats and starts anew. Off (the default) it costs nothing.
    """

    def track_diagnostics(self, on: bool = True) -> None:
        for handle in getattr(self, "_diag_hooks", []):
            handle.remove()
        self._diag_hooks, self._diag_stats = [], {}
        if not on:
            return
        for index, block in enumerate(self.layers):
            if isinstance(block.mixer, GlobalSelectionMixer):
                stats = {"gate": _Stats(NEAR_ZERO_GATE), "dt_input": _Stats(NEAR_ZERO_DT),
                         "delta": _Stats(NEAR_ZERO_DELTA)}
                self._diag_stats[index] = stats
                self._diag_hooks.append(block.mixer.register_forward_pre_hook(
                    lambda mixer, args, stats=stats: _record(mixer, args[0], stats)))

    def diagnostics(self) -> dict[str, float]:
        """``layer{i}.{gate,dt_input,delta}.{mean,std,near0}`` since the last call (or {})."""
        out: dict[str, float] = {}
        for index, stats in getattr(self, "_diag_stats", {}).items():
            for name, stat in stats.items():
                if stat.sums is not None:
                    for key, value in stat.summary().items():
                        out[f"layer{index}.{name}.{key}"] = value
                    stat.sums = None
        return out


@torch.no_grad()
def _record(mixer: GlobalSelectionMixer, hidden: torch.Tensor, stats: dict[str, _Stats]) -> None:
    inputs = mixer.ssm_inputs(hidden)  # dt here is W_dt dt * gate, before bias and softplus
    x_branch = mixer._in_proj(hidden).chunk(2, dim=1)[0]
    gated = inputs["dt"].float()
    stats["gate"].add(mixer.gate(x_branch))
    stats["dt_input"].add(gated)
    stats["delta"].add(F.softplus(gated + mixer.dt_proj.bias.float()[:, None]))


class GlobalMambaConfig(MambaConfig):
    long_kernel: int = Field(ge=1)  # taps of the long causal convolution
    long_conv_init: Literal["authors", "ours", "open"]
    long_conv_bias: bool
    global_selection_layers: list[int]  # the layers whose dt is gated, in order

    @model_validator(mode="after")
    def _consistent(self) -> "GlobalMambaConfig":
        if any(i < 0 or i >= self.n_layers for i in self.global_selection_layers):
            raise ValueError(f"global_selection_layers {self.global_selection_layers} outside "
                             f"0..{self.n_layers - 1}; pick existing layers")
        if self.long_conv_init == "open" and not self.long_conv_bias:
            raise ValueError("long_conv_init 'open' sets the gate through the bias; "
                             "set long_conv_bias = True or pick another init")
        return self


class GlobalMamba(Mamba):
    """Mamba-130M plus Global Selection (long kernel 128) in every layer: 133M in the paper."""

    name: ClassVar[str] = "global_mamba"
    version: ClassVar[str] = "2"  # 2: the long conv in the authors' form (default init, a bias)
    citation: ClassVar[str] = ("Local pattern shortcuts of Mamba (Global Selection); "
                               + Mamba.citation)
    PAPER_PARAMS: ClassVar[int | None] = 133_000_000
    Config = GlobalMambaConfig
    long_kernel: ClassVar[int] = 128
    long_conv_init: ClassVar[str] = "authors"
    long_conv_bias: ClassVar[bool] = True
    global_selection_layers: ClassVar[tuple[int, ...] | None] = None  # None: every layer

    def fields(self, preset: str) -> dict[str, Any]:
        row = super().fields(preset)
        layers = self.global_selection_layers
        layers = list(range(row["n_layers"])) if layers is None else sorted(set(layers))
        return {**row, "long_kernel": self.long_kernel, "long_conv_init": self.long_conv_init,
                "long_conv_bias": self.long_conv_bias, "global_selection_layers": layers}

    def mixer(self, cfg: GlobalMambaConfig, layer: int) -> nn.Module:
        if layer not in cfg.global_selection_layers:
            return super().mixer(cfg, layer)
        return GlobalSelectionMixer(cfg.d_model, cfg.d_state, cfg.d_conv, cfg.expand, cfg.dt_rank,
                                    cfg.long_kernel, init=cfg.long_conv_init, bias=cfg.long_conv_bias)

    def create_model(self, cfg: GlobalMambaConfig) -> nn.Module:
        return GlobalMambaLM(cfg.vocab_size, cfg.d_model, [self.mixer(cfg, i) for i in range(cfg.n_layers)])

    def recurrent_state(self, cfg: GlobalMambaConfig) -> int:
        """Mamba's state plus the long conv's window (d_inner x (long_kernel - 1)) per gated
        layer, which token-by-token generation must keep."""
        window = cfg.expand * cfg.d_model * (cfg.long_kernel - 1)
        return super().recurrent_state(cfg) + window * len(cfg.global_selection_layers)


# The ablation surface (issue: init, bias, kernel, layers), usable as --model
# baselines.global_mamba:<Class>. Each is a separate adapter name so its runs never mix.
class GlobalMambaOursInit(GlobalMamba):
    """Global Selection with our earlier long-conv init: unit-gain enveloped taps, no bias."""

    name: ClassVar[str] = "global_mamba_ours_init"
    long_conv_init: ClassVar[str] = "ours"
    long_conv_bias: ClassVar[bool] = False


class GlobalMambaNoBias(GlobalMamba):
    name: ClassVar[str] = "global_mamba_no_bias"
    long_conv_bias: ClassVar[bool] = False


class GlobalMambaOpenGate(GlobalMamba):
    """The gate starts at 1: the model starts as plain Mamba."""

    name: ClassVar[str] = "global_mamba_open_gate"
    long_conv_init: ClassVar[str] = "open"


class GlobalMambaK64(GlobalMamba):
    name: ClassVar[str] = "global_mamba_k64"
    long_kernel: ClassVar[int] = 64


class GlobalMambaK256(GlobalMamba):
    name: ClassVar[str] = "global_mamba_k256"
    long_kernel: ClassVar[int] = 256


class GlobalMambaFirstLayer(GlobalMamba):
    """Global Selection in layer 0 only (the paper gates only some layers downstream)."""

    name: ClassVar[str] = "global_mamba_first_layer"
    global_selection_layers: ClassVar[tuple[int, ...] | None] = (0,)
