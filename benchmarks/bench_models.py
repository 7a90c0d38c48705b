"""Training-step speed of the built-in models on CUDA (forward + backward, bf16 autocast).

    python benchmarks/bench_models.py --preset small            # B=256, L=256
    python benchmarks/bench_models.py --preset paper            # B=32,  L=512
    python benchmarks/bench_models.py --preset small --family mamba
    python benchmarks/bench_models.py --preset small --family mamba2 --family fla
    python benchmarks/bench_models.py --preset small --batch 64     # the runner's batch at small v2

Prints a Markdown table: ms per step, tokens/s, peak GPU memory, an MFU estimate from
6 x (non-embedding parameters) x tokens (it ignores the scan's and attention's own FLOPs), and
the wall time of the first step: compilation plus, for Triton kernels met for the first time in
this TRITON_CACHE_DIR, their autotuning.
Each family function returns (label, module) pairs; library reference models ride along.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from mqarbench.kernels import kernel_paths, slow_paths
from mqarbench.models.registry import load_adapter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_helpers import cuda_ms  # noqa: E402 - a sibling module

SHAPES = {"small": (256, 256), "paper": (32, 512)}  # preset -> (batch, length)
VOCAB = 8192
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak


# the labels of the global_mamba rows timed with MQARBENCH_LONG_CONV set, and its value
# (the plain global_mamba row is the default, auto: the FFT at small, the Triton kernels at paper)
LONG_CONV_ROWS = {"(fft long conv)": "fft", "(toeplitz long conv)": "toeplitz", "(triton long conv)": "triton"}
# global_mamba's mixer forced to one path (the default row takes the fused one from 1024 channels)
PATH_ROWS = {"(fused path)": True, "(unfused path)": False}


@contextmanager
def long_conv_for(label: str) -> Iterator[None]:
    """MQARBENCH_LONG_CONV set as the row's label says while the row is built, timed and reported."""
    value = next((v for tag, v in LONG_CONV_ROWS.items() if tag in label), None)
    if value is None:
        yield
        return
    os.environ["MQARBENCH_LONG_CONV"] = value
    try:
        yield
    finally:
        del os.environ["MQARBENCH_LONG_CONV"]


def ours(name: str, preset: str, length: int) -> tuple[str, torch.nn.Module]:
    return name, load_adapter(name).build(preset, VOCAB, length)


def mamba_family(preset: str, length: int) -> Iterator[tuple[str, torch.nn.Module]]:
    for name in MODELS["mamba"]:
        if name != MAMBA_SSM_REFERENCE:  # that one is built from mamba_ssm below
            yield ours(name, preset, length)
    for path, fused in PATH_ROWS.items():  # each mixer path forced, beside the default's choice
        label, model = ours("global_mamba", preset, length)
        for module in model.modules():
            if hasattr(module, "use_inner_fn"):
                module.use_inner_fn = fused
        yield f"{label} {path}", model
    for tag in LONG_CONV_ROWS:  # timed with the env var set
        yield f"{label} {tag}", ours("global_mamba", preset, length)[1]
    try:
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    except Exception as err:  # noqa: BLE001
        print(f"mamba_ssm reference skipped: {err}")
        return
    cfg = load_adapter("mamba").config(preset, VOCAB, length)
    ref = MambaLMHeadModel(MambaConfig(
        d_model=cfg["d_model"], n_layer=cfg["n_layers"], vocab_size=VOCAB,
        ssm_cfg={"layer": "Mamba1", "d_state": cfg["d_state"], "d_conv": cfg["d_conv"],
                 "expand": cfg["expand"]},
        rms_norm=True, residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8))
    yield MAMBA_SSM_REFERENCE, _LogitsOnly(ref)


class _LogitsOnly(torch.nn.Module):
    """mamba_ssm returns a namedtuple; the benchmark wants the logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids).logits


def pythia_family(preset: str, length: int) -> Iterator[tuple[str, torch.nn.Module]]:
    yield ours("pythia", preset, length)
    yield "plain SDPA GPT-NeoX", _PlainNeoX(**load_adapter("pythia").config(preset, VOCAB, length))


class _PlainNeoX(torch.nn.Module):
    """The yardstick for pythia: GPT-NeoX written straight on SDPA, rotary tables precomputed."""

    def __init__(self, vocab_size: int, n_layers: int, d_model: int, n_heads: int,
                 tie_embeddings: bool, rotary_pct: float, rotary_base: float, mlp_ratio: int,
                 max_len: int) -> None:
        super().__init__()
        nn = torch.nn
        self.heads, head_dim = n_heads, d_model // n_heads
        n_rot = int(head_dim * rotary_pct)
        inv_freq = rotary_base ** (-torch.arange(0, n_rot, 2).float() / n_rot)
        angles = torch.arange(max_len).float()[:, None] * inv_freq
        angles = torch.cat([angles, angles], -1)  # (max_len, n_rot)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(nn.ModuleDict(dict(
            ln1=nn.LayerNorm(d_model), ln2=nn.LayerNorm(d_model),
            qkv=nn.Linear(d_model, 3 * d_model), out=nn.Linear(d_model, d_model),
            up=nn.Linear(d_model, mlp_ratio * d_model), down=nn.Linear(mlp_ratio * d_model, d_model),
        )) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.embed.weight

    def _rotate(self, x: torch.Tensor, length: int) -> torch.Tensor:
        n_rot = self.cos.shape[-1]
        cos, sin = self.cos[:length].to(x.dtype), self.sin[:length].to(x.dtype)
        rot, keep = x[..., :n_rot], x[..., n_rot:]
        a, b = rot.chunk(2, -1)
        return torch.cat([rot * cos + torch.cat([-b, a], -1) * sin, keep], -1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        batch, length, d_model = x.shape
        for layer in self.layers:
            q, k, v = layer["qkv"](layer["ln1"](x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            att = F.scaled_dot_product_attention(self._rotate(q, length), self._rotate(k, length), v,
                                                 is_causal=True)
            mlp = layer["down"](F.gelu(layer["up"](layer["ln2"](x))))
            x = x + layer["out"](att.transpose(1, 2).reshape(batch, length, d_model)) + mlp
        return self.head(self.norm(x))


def hyena_family(preset: str, length: int) -> Iterator[tuple[str, torch.nn.Module]]:
    yield ours("hyena", preset, length)


def rwkv_family(preset: str, length: int) -> Iterator[tuple[str, torch.nn.Module]]:
    """fla's Triton kernels autotune for minutes on first use in a fresh cache (one per head
    size: K=32 at small, K=64 at paper); sorted last, and worth its own run with a longer
    timeout: ``--family rwkv``. FLA_CACHE_RESULTS=1 (fla's default) keeps the tuned configs."""
    yield ours("rwkv", preset, length)


def mamba2_family(preset: str, length: int) -> Iterator[tuple[str, torch.nn.Module]]:
    """mamba_ssm's SSD Triton kernels (autotuned on first use, seconds)."""
    yield ours("mamba2", preset, length)


def fla_family(preset: str, length: int) -> Iterator[tuple[str, torch.nn.Module]]:
    """The flash-linear-attention models; each autotunes its own kernels on first use."""
    for name in MODELS["fla"]:
        yield ours(name, preset, length)


# family -> what --only matches: the first word of each row's label (variant rows share it).
# Fixed here so that a misspelt --only fails before any model is built or GPU touched.
MAMBA_SSM_REFERENCE = "mamba_ssm.MambaLMHeadModel"  # the yardstick of the mamba family's rows
MODELS: dict[str, tuple[str, ...]] = {
    "mamba": ("mamba", "mamba_2x_state", "mamba_4x_state", "global_mamba", MAMBA_SSM_REFERENCE),
    "pythia": ("pythia", "plain"),  # "plain SDPA GPT-NeoX"
    "hyena": ("hyena",),
    "mamba2": ("mamba2",),
    "rwkv": ("rwkv",),
    "fla": ("gated_deltanet", "rwkv7", "gla", "deltanet"),
}

FAMILIES: dict[str, Callable[[str, int], Iterator[tuple[str, torch.nn.Module]]]] = {
    "mamba": mamba_family,
    "pythia": pythia_family,
    "hyena": hyena_family,
    "mamba2": mamba2_family,
    "rwkv": rwkv_family,  # from here on fla's first calls autotune for minutes
    "fla": fla_family,
}


def step_ms(model: torch.nn.Module, batch: int, length: int,
            iters: int = 10) -> tuple[float, int, float]:
    """Median ms of one forward+backward step, peak allocated bytes, and seconds of the first
    step (kernel compilation and autotuning included)."""
    ids = torch.randint(0, VOCAB, (batch, length), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids)
        F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten()).backward()
        model.zero_grad(set_to_none=True)

    first = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first_s = time.perf_counter() - first
    for _ in range(2):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()  # after the warmup: the peak of the timed steps alone
    times = cuda_ms(step, iters)
    return sorted(times)[len(times) // 2], torch.cuda.max_memory_allocated(), first_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(SHAPES), default="small")
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append")
    parser.add_argument("--batch", type=int, help="batch size (default: the preset's, above)")
    parser.add_argument("--only", nargs="+", metavar="MODEL",
                        help="time only these models of the families (their variant rows too)")
    args = parser.parse_args(argv)
    families = args.family or list(FAMILIES)
    known = [name for family in families for name in MODELS[family]]
    unknown = [name for name in args.only or () if name not in known]
    if unknown:  # else the table would come out empty after the header
        parser.exit(2, f"bench_models.py: --only {' '.join(unknown)}: no such model in --family "
                       f"{' '.join(families)}; pick from: {' '.join(known)} (or add the --family that has it)\n")
    batch, length = SHAPES[args.preset]
    if args.batch is not None:
        if args.batch < 1:
            parser.error(f"--batch must be at least 1, not {args.batch}")
        batch = args.batch
    device_name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device_name), math.nan)
    print(f"\n{device_name}, preset {args.preset}, B={batch}, L={length}, vocab {VOCAB}, "
          f"torch {torch.__version__}\n")
    print("| model | params | ms/step | tokens/s | peak GiB | MFU (6N) | first step s | kernels |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    measured: dict[str, float] = {}
    for family in families:  # table order: fla's autotuning last
        for label, model in FAMILIES[family](args.preset, length):
            if args.only and label.split(" ")[0] not in args.only:
                continue
            model = model.cuda()
            params = sum(p.numel() for p in model.parameters())
            embed = sum(m.weight.numel() for m in model.modules()
                        if isinstance(m, torch.nn.Embedding))
            try:
                with long_conv_for(label):
                    ms, peak_bytes, first_s = step_ms(model, batch, length)
                    paths = ", ".join(f"{k}={v}" for k, v in kernel_paths(model).items()) or "library"
            except Exception as err:  # one model's failure is a row of the table, not the end of it
                print(f"| {label} | {params / 1e6:.1f}M | failed: {type(err).__name__}: "
                      f"{str(err).splitlines()[0][:160]} | | | | | |", flush=True)
                continue
            measured[label] = ms
            tokens_s = batch * length / (ms / 1e3)
            mfu = 6 * (params - embed) * tokens_s / peak
            slow = " SLOW: " + "; ".join(slow_paths(model)) if slow_paths(model) else ""
            print(f"| {label} | {params / 1e6:.1f}M | {ms:.1f} | {tokens_s:,.0f} | "
                  f"{peak_bytes / 2**30:.1f} | {mfu:.1%} | {first_s:.1f} | {paths}{slow} |", flush=True)
            del model
            torch.cuda.empty_cache()
    if "mamba" in measured:  # the figure: global_mamba's step at most 1.3x mamba's
        for label in ("global_mamba", *(f"global_mamba {t}" for t in (*PATH_ROWS, *LONG_CONV_ROWS))):
            if label in measured:
                print(f"\n{label} / mamba step time: {measured[label] / measured['mamba']:.2f}x")


if __name__ == "__main__":
    main()
