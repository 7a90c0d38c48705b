"""Training-step speed of the built-in models on CUDA (forward + backward, bf16 autocast).

    python benchmarks/bench_models.py --preset small            # B=256, L=256
    python benchmarks/bench_models.py --preset paper            # B=32,  L=512
    python benchmarks/bench_models.py --preset small --family mamba

Prints a Markdown table: ms per step, tokens/s, peak GPU memory, and an MFU estimate from
6 x (non-embedding parameters) x tokens (it ignores the scan's and attention's own FLOPs).
Each family function returns (label, module) pairs; library reference models ride along.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from mqarbench.kernels import kernel_paths, slow_paths
from mqarbench.models.registry import load_adapter

SHAPES = {"small": (256, 256), "paper": (32, 512)}  # preset -> (batch, length)
VOCAB = 8192
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak


def ours(name: str, preset: str, length: int) -> tuple[str, torch.nn.Module]:
    return name, load_adapter(name).build(preset, VOCAB, length)


def mamba_family(preset: str, length: int) -> Iterator[tuple[str, torch.nn.Module]]:
    for name in ("mamba", "mamba_2x_state", "mamba_4x_state", "global_mamba"):
        yield ours(name, preset, length)
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
    yield "mamba_ssm.MambaLMHeadModel", _LogitsOnly(ref)


class _LogitsOnly(torch.nn.Module):
    """mamba_ssm returns a namedtuple; the benchmark wants the logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids).logits


FAMILIES: dict[str, Callable[[str, int], Iterator[tuple[str, torch.nn.Module]]]] = {
    "mamba": mamba_family,
}


def step_ms(model: torch.nn.Module, batch: int, length: int, iters: int = 10) -> tuple[float, int]:
    """Median ms of one forward+backward step, and peak allocated bytes."""
    ids = torch.randint(0, VOCAB, (batch, length), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids)
        F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten()).backward()
        model.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2], torch.cuda.max_memory_allocated()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(SHAPES), default="small")
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append")
    args = parser.parse_args()
    batch, length = SHAPES[args.preset]
    device_name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device_name), math.nan)
    print(f"\n{device_name}, preset {args.preset}, B={batch}, L={length}, vocab {VOCAB}, "
          f"torch {torch.__version__}\n")
    print("| model | params | ms/step | tokens/s | peak GiB | MFU (6N) | kernels |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for family in args.family or sorted(FAMILIES):
        for label, model in FAMILIES[family](args.preset, length):
            model = model.cuda()
            params = sum(p.numel() for p in model.parameters())
            embed = sum(m.weight.numel() for m in model.modules()
                        if isinstance(m, torch.nn.Embedding))
            ms, peak_bytes = step_ms(model, batch, length)
            tokens_s = batch * length / (ms / 1e3)
            mfu = 6 * (params - embed) * tokens_s / peak
            paths = ", ".join(f"{k}={v}" for k, v in kernel_paths(model).items()) or "library"
            slow = " SLOW: " + "; ".join(slow_paths(model)) if slow_paths(model) else ""
            print(f"| {label} | {params / 1e6:.1f}M | {ms:.1f} | {tokens_s:,.0f} | "
                  f"{peak_bytes / 2**30:.1f} | {mfu:.1%} | {paths}{slow} |", flush=True)
            del model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
