"""Which parameters' gradients change between two identical training steps on the GPU.

    python benchmarks/grad_determinism.py --models mamba,global_mamba [--task k2v2] [--repeats 3]
    MQARBENCH_DETERMINISTIC=0 python benchmarks/grad_determinism.py --models mamba   # the libraries' kernels

Builds each model once (seed 0), takes one batch of the task's training data per length bucket,
and runs the graphed step's loss (``static_loss``) and backward ``--repeats`` times on the same
weights and batch. A parameter whose gradient differs bit for bit between repeats names the op
whose backward sums in a varying order (atomic adds); the table lists them with the largest
difference relative to the gradient's scale. Also runs each step once under
``torch.use_deterministic_algorithms(True)`` and prints which torch op refuses (if any).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mqarbench.data import build_dataset
from mqarbench.kernels import kernel_paths
from mqarbench.kernels.determinism import make_deterministic
from mqarbench.runner.graphs import static_buckets, static_loss
from mqarbench.runner.hparams import sweep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_helpers import model_and_data  # noqa: E402 - a sibling module


def gradients(model: torch.nn.Module, step) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    step().backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def refusal(step) -> str:
    """The first op torch's deterministic mode refuses in one step, or '' if none."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        step().backward()
        torch.cuda.synchronize()
        return ""
    except RuntimeError as err:
        return str(err).splitlines()[0][:160]
    finally:
        torch.use_deterministic_algorithms(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mamba,global_mamba,pythia")
    parser.add_argument("--task", default="k2v2")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda")
    make_deterministic(device)  # as a run does (unless MQARBENCH_DETERMINISTIC=0)
    ds = build_dataset(args.task, args.preset, Path("mqar_data"))
    hp = sweep(args.preset)[0]
    print("| model | bucket L | kernel paths | parameters whose gradient varies (max rel. diff) | "
          "torch deterministic mode |")
    print("| --- | ---: | --- | --- | --- |")
    for model_name in args.models.split(","):
        _, data, model = model_and_data(model_name, ds, args.preset, hp, device, Path("/tmp/grad_det"), seed=0)
        paths = ", ".join(f"{op}={path}" for op, path in kernel_paths(model).items())
        for bucket in static_buckets(data, device):
            rows, index, target = bucket.batch(np.arange(hp.batch_size))
            step = lambda: static_loss(model, bucket.input_ids, rows, index, target)  # noqa: E731
            first = gradients(model, step)
            varies: dict[str, float] = {}
            for _ in range(args.repeats - 1):
                again = gradients(model, step)
                for name, grad in first.items():
                    diff = (again[name].float() - grad.float()).abs().max().item()
                    if diff > 0:
                        scale = grad.float().abs().max().item() or 1.0
                        varies[name] = max(varies.get(name, 0.0), diff / scale)
            listed = ", ".join(f"`{n}` ({d:.1e})" for n, d in sorted(varies.items())) or "none"
            print(f"| {model_name} | {bucket.length} | {paths} | {listed} | {refusal(step) or 'runs'} |",
                  flush=True)
            paths = '"'
        data = None
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
