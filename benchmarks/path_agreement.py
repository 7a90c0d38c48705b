"""How far a model's gradients move between two kernel paths, against two runs of one path.

    python benchmarks/path_agreement.py --model global_mamba --task k2v2 --preset small \
        --a MQARBENCH_GLOBAL_MIXER=unfused --b MQARBENCH_GLOBAL_MIXER=fused

One model (seed 0), trained ``--steps`` eager steps on path A to leave its initial state, then one
batch of the task's training data (the longest bucket): the loss and every parameter's gradient
under path A twice and under path B once. Per parameter: the relative L2 distance |g_B - g_A| /
|g_A| beside |g_A' - g_A| / |g_A|, the floor that the nondeterministic backward kernels
(mamba_ssm's atomic adds) leave between two runs of one path. A path that only rounds
differently lands near that floor; a parameter far above it shows where the paths' math differs.
The environment settings (VAR=VAL, several joined by +) are read by the kernels at each forward.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from mqarbench.data import build_dataset
from mqarbench.models.registry import load_adapter
from mqarbench.runner.graphs import static_buckets, static_loss
from mqarbench.runner.hparams import sweep
from mqarbench.runner.plan import plan_run
from mqarbench.runner.train import TrainData


def settings(text: str) -> dict[str, str]:
    """'A=1+B=2' -> {'A': '1', 'B': '2'} ('' -> {})."""
    pairs = [part.split("=", 1) for part in text.split("+") if part]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"--a/--b: want VAR=VAL[+VAR=VAL], got {text!r}")
    return dict(pairs)


def with_env(env: dict[str, str], fn):
    """fn() with ``env`` set, the environment restored after."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return fn()
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="global_mamba")
    parser.add_argument("--task", default="k2v2")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--a", default="", help="path A's settings, VAR=VAL[+VAR=VAL]")
    parser.add_argument("--b", required=True, help="path B's settings")
    parser.add_argument("--steps", type=int, default=200, help="eager steps on path A before the comparison")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    env_a, env_b = settings(args.a), settings(args.b)
    device = torch.device(args.device)
    ds = build_dataset(args.task, args.preset, Path("mqar_data"))
    hp = sweep(args.preset)[0]
    adapter = load_adapter(args.model)
    spec = plan_run(adapter, args.model, ds, [], args.preset, hp, 0, Path("/tmp/path_agreement"))
    data = TrainData.load(spec, device)
    buckets = static_buckets(data, device)
    torch.manual_seed(0)
    model = adapter.build(args.preset, spec.vocab_size, spec.max_len).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr)
    rng = np.random.default_rng(0)

    def batch(bucket):
        return bucket.batch(rng.choice(bucket.blank, size=hp.batch_size, replace=False))  # not the blank row

    def loss_of(b):
        return static_loss(model, b[0].input_ids, *b[1])

    def train() -> None:
        for step in range(args.steps):
            bucket = buckets[step % len(buckets)]
            loss = loss_of((bucket, batch(bucket)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    with_env(env_a, train)
    probe = (buckets[-1], batch(buckets[-1]))

    def grads() -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = loss_of(probe)
        loss.backward()
        return loss.item(), {n: p.grad.detach().float().clone() for n, p in model.named_parameters()
                             if p.grad is not None}

    loss_a, g_a = with_env(env_a, grads)
    loss_a2, g_a2 = with_env(env_a, grads)
    loss_b, g_b = with_env(env_b, grads)
    missing = sorted(set(g_a) ^ set(g_b))
    print(f"{args.model} on {args.task} ({args.preset}), after {args.steps} steps on A = {args.a or 'defaults'}; "
          f"B = {args.b}. Loss A {loss_a:.6f}, A again {loss_a2:.6f}, B {loss_b:.6f}.")
    if missing:
        print(f"gradients on one path only: {', '.join(missing)}")
    rows = []
    for name in g_a:
        if name not in g_b:
            continue
        ref = g_a[name].norm().item() or 1.0
        rows.append((name, (g_a2[name] - g_a[name]).norm().item() / ref,
                     (g_b[name] - g_a[name]).norm().item() / ref,
                     torch.nn.functional.cosine_similarity(g_a[name].flatten(), g_b[name].flatten(), 0).item()))
    rows.sort(key=lambda r: r[2] / max(r[1], 1e-12), reverse=True)
    print("\n| parameter | A vs A again | A vs B | B / floor | cosine A, B |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, floor, dist, cos in rows[:args.top]:
        print(f"| {name} | {floor:.2e} | {dist:.2e} | {dist / max(floor, 1e-12):,.1f} | {cos:.6f} |")
    total_floor = np.median([r[1] for r in rows])
    total = np.median([r[2] for r in rows])
    print(f"\nmedian over {len(rows)} parameters: A vs A again {total_floor:.2e}, A vs B {total:.2e}")


if __name__ == "__main__":
    main()
