"""Training-loss curve of one model on one task's train split, on CPU: a diagnostic for a model
that does not learn on the board (is it the model, its init, or its kernel?).

    python benchmarks/loss_curve.py --model gated_deltanet --task k2v2 --steps 1000
    python benchmarks/loss_curve.py --model gated_deltanet --task k2v2 --zero-forget-gate
    python benchmarks/loss_curve.py --model gated_deltanet --task k2v2 --set n_heads=4 expand_v=1.0

A plain loop, not the runner: AdamW (weight decay 0.1 on every parameter, as the runner), linear
warmup over 50 steps then a constant learning rate, gradient clipping at 1.0, the runner's batches
(``epoch_batches``: length buckets, shuffled per epoch by the seed), one CPU thread. Prints the mean
loss of every 20 steps. The delta-rule models take ``delta_chunked`` (the kernel they train with on
Hopper GPUs) instead of the step loop a CPU would take.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from mqarbench.data.spec import load_task
from mqarbench.data.store import build_dataset
from mqarbench.data.tokens import IGNORE
from mqarbench.errors import UserError
from mqarbench.models import registry
from mqarbench.models.heads import logits_at
from mqarbench.paths import default_data_dir
from mqarbench.runner.batches import epoch_batches, length_buckets, load_cells


@contextlib.contextmanager
def chunked_delta_rule(zero_forget_gate: bool) -> Iterator[None]:
    """The delta-rule models take ``delta_chunked`` inside; with ``zero_forget_gate`` their log
    decay is multiplied by 0 (the gated model without forgetting, all else equal)."""
    import baselines.deltanet as deltanet
    from mqarbench.kernels.delta_rule import delta_chunked

    def chunked(q, k, v, beta, g, scale):
        return delta_chunked(q, k, v, beta, g * 0 if zero_forget_gate and g is not None else g, scale)

    choose = deltanet.delta_impl
    deltanet.delta_impl = lambda device, gated: (chunked, choose(device, gated)[1])
    try:
        yield
    finally:
        deltanet.delta_impl = choose


def redraw_decay(model: torch.nn.Module, a_max: float, dt_min: float, dt_max: float) -> None:
    """A ~ U(0, a_max) and dt log-uniform in [dt_min, dt_max] in every module with A_log and
    dt_bias, drawn from the global generator (seeded), stored as the reference stores them."""
    found = [m for m in model.modules() if hasattr(m, "A_log") and hasattr(m, "dt_bias")]
    if not found:
        raise UserError("--gate-init: the model has no module with A_log and dt_bias")
    from baselines.blocks import decay_a_log, decay_dt_bias

    with torch.no_grad():
        for module in found:
            heads = module.A_log.numel()
            module.A_log.copy_(decay_a_log(heads, high=a_max))
            module.dt_bias.copy_(decay_dt_bias(heads, dt_min, dt_max))


def parse_sets(pairs: list[str]) -> dict[str, object]:
    """FIELD=VALUE pairs, each VALUE read as JSON where it parses (4, 1.0, false), else a string."""
    fields = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--set {pair}: write FIELD=VALUE, e.g. --set n_heads=4")
        try:
            fields[field] = json.loads(value)
        except json.JSONDecodeError:
            fields[field] = value
    return fields


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="override fields of the model's config at --preset")
    parser.add_argument("--zero-forget-gate", action="store_true",
                        help="delta-rule models: multiply the forget gate's log decay by 0")
    parser.add_argument("--gate-init", nargs=3, type=float, metavar=("A_MAX", "DT_MIN", "DT_MAX"),
                        help="re-draw every A_log / dt_bias pair (Mamba-2's decay): A ~ U(0, A_MAX), "
                             "dt log-uniform in [DT_MIN, DT_MAX] (the reference: 16 0.001 0.1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    adapter = registry.load_adapter(args.model)
    buckets = length_buckets(load_cells(build_dataset(args.task, args.preset, default_data_dir()), "train"))
    fields = {**adapter.fields(args.preset), **parse_sets(args.set)}
    unknown = set(fields) - set(adapter.Config.model_fields)
    if unknown:
        raise UserError(f"--set {' '.join(sorted(unknown))}: not a field of {adapter.Config.__name__}; "
                        f"its fields: {' '.join(adapter.Config.model_fields)}")
    # the runner's max_len spans the test tasks too; 256 is every preset's longest below paper
    cfg = adapter.Config(**{**fields, "vocab_size": load_task(args.task).vocab_size, "max_len": 256})
    model = adapter.create_model(cfg)
    if args.gate_init:
        redraw_decay(model, *args.gate_init)
    print(f"{args.model} {args.task} {args.preset} {cfg.model_dump()} zero_forget_gate={args.zero_forget_gate}")
    with chunked_delta_rule(args.zero_forget_gate):
        train(model, buckets, args)


def train(model: torch.nn.Module, buckets: list[tuple[np.ndarray, np.ndarray]], args: argparse.Namespace) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 50))
    start, losses, epoch = time.time(), [], 0
    while len(losses) < args.steps:
        for ids, labels in epoch_batches(buckets, args.batch, args.seed, epoch):
            ids, labels = torch.from_numpy(ids), torch.from_numpy(labels)  # (B, L), (B, L)
            mask = labels != IGNORE
            loss = F.cross_entropy(logits_at(model, ids, mask).float(), labels[mask])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            warmup.step()
            losses.append(loss.item())
            if len(losses) % 20 == 0:
                print(f"step {len(losses)} loss {np.mean(losses[-20:]):.3f} {time.time() - start:.0f}s", flush=True)
            if len(losses) >= args.steps:
                return
        epoch += 1


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"loss_curve.py: {err}")
