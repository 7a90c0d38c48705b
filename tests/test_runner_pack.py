"""Packed training: several runs side by side in one process compute what each computes alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mqarbench.data import build_dataset
from mqarbench.models.registry import BUILTINS, load_adapter
from mqarbench.runner.hparams import HParams
from mqarbench.runner.job import execute, read_run_json
from mqarbench.runner.pack import train_pack
from mqarbench.runner.plan import plan_run
from mqarbench.runner.train import CHECKPOINT, Member
from test_runner_fixtures import (KILL_MARKER_ENV, STACKED_STANDIN, STANDIN, Recurrent, cli_env,  # noqa: F401
                                  mini_env, mini_tasks)

EPOCHS, BATCH = 1, 3
# 64 examples in length buckets, batch 3: short last batches too (small batches keep CPU steps cheap)
STEPS = 22
SETTINGS = [(3e-3, 0), (1e-2, 1), (3e-3, 2)]  # (lr, seed) of the three members


def specs_for(model: str, out, data, epochs: int = EPOCHS, batch: int = BATCH) -> list:
    ds = build_dataset("standard", "tiny", data)
    return [plan_run(load_adapter(model), model, ds, [], "tiny",
                     HParams(lr=lr, epochs=epochs, batch_size=batch, eval_batch_size=32), seed, out)
            for lr, seed in SETTINGS]


@pytest.fixture
def step_losses(monkeypatch):
    """Every optimizer step's loss, per run id, in order."""
    losses: dict[str, list[float]] = {}
    original = Member.after_step

    def record(self, loss, tokens):
        losses.setdefault(self.spec.run_id, []).append(float(loss))
        original(self, loss, tokens)
    monkeypatch.setattr(Member, "after_step", record)
    return losses


def last_weights(spec) -> dict[str, torch.Tensor]:
    return torch.load(spec.run_dir / CHECKPOINT, weights_only=True)["model"]


# the stacked path once at whole-run level (tests/test_models_stacked.py checks every stackable model)
PACKINGS = [(m, False) for m in BUILTINS] + [("mamba", True)]


@pytest.mark.parametrize("model,stack", PACKINGS)
def test_pack_of_three_equals_three_runs_alone(model, stack, mini_env, step_losses):
    alone = specs_for(model, mini_env / "alone", mini_env / "data")
    for spec in alone:
        execute(spec)
    packed = specs_for(model, mini_env / "packed", mini_env / "data")
    assert [s.run_id for s in packed] == [s.run_id for s in alone]  # packing leaves run ids alone
    records = {}
    assert train_pack(packed, lambda spec, rec: records.setdefault(spec.run_id, rec), max_pack=3,
                      stack=stack) == []
    assert {r["pack_size"] for r in records.values()} == {3}
    assert {r["train_path"] for r in records.values()} == {"stacked" if stack else "eager"}
    for a, p in zip(alone, packed):
        # the step losses were recorded for the alone run first, then for its packed twin
        losses = step_losses[a.run_id]
        assert len(losses) == 2 * STEPS
        assert losses[STEPS:] == pytest.approx(losses[:STEPS], rel=1e-4)
        wa, wp = last_weights(a), last_weights(p)
        for name in wa:
            # each element within 1e-4, or within 1e-3 of the tensor's scale: Adam turns rounding-
            # sized gradients (a rare token's row) into lr-sized steps, so at lr 1e-2 the same run
            # alone on 1 and on 2 CPU threads already differs by 1.2e-4 of the embedding's scale
            scale = float(wa[name].abs().max())
            torch.testing.assert_close(wp[name], wa[name], rtol=1e-4, atol=max(1e-6, 1e-3 * scale))
        ra, rp = read_run_json(a.run_dir), read_run_json(p.run_dir)
        assert ra["best_epoch"] == rp["best_epoch"]
        assert ra["valid_query_accuracy"] == pytest.approx(rp["valid_query_accuracy"])
    # the members really differ from each other (different lr and seed)
    assert step_losses[alone[0].run_id][:STEPS] != step_losses[alone[1].run_id][:STEPS]


def test_pack_of_one_equals_an_unpacked_run_bit_for_bit(mini_env):
    [spec] = specs_for("mamba", mini_env / "alone", mini_env / "data")[:1]
    execute(spec)
    [twin] = specs_for("mamba", mini_env / "packed", mini_env / "data")[:1]
    train_pack([twin], lambda *_: None, max_pack=1)
    wa, wp = last_weights(spec), last_weights(twin)
    assert all(torch.equal(wa[k], wp[k]) for k in wa)
    ha, hp = read_run_json(spec.run_dir)["history"], read_run_json(twin.run_dir)["history"]
    assert ha == hp


def _run(out, env, *extra, model: str = STANDIN):
    cmd = [sys.executable, "-m", "mqarbench", "run", "--model", model, "--suite", "positional",
           "--preset", "tiny", "--epochs", "4", "--pack", "3", "--no-site", "--out", str(out),
           "--data-dir", str(out.parent / "data"), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _all_weights(out) -> dict[str, dict[str, torch.Tensor]]:
    return {run.name: torch.load(run / "best.pt", weights_only=True)["model"]
            for run in sorted((out / "runs").iterdir())}


def test_killed_pack_resumes_every_member_and_skips_finished_ones(mini_env, mini_tasks, tmp_path):
    env = cli_env(mini_tasks)
    clean = _run(tmp_path / "clean", env)
    assert clean.returncode == 0, clean.stderr
    # output to a pipe: every member's epochs are reported as plain lines while the pack trains
    assert sum("epoch 4/4 done" in line for line in clean.stderr.splitlines()) == 3, clean.stderr

    # one run of the matrix already finished before the pack starts: it must not train again
    first = _run(tmp_path / "killed", env, "--pack", "1", "--only",
                 sorted(p.name for p in (tmp_path / "clean" / "runs").iterdir())[0])
    assert first.returncode == 0, first.stderr
    [done_run] = list((tmp_path / "killed" / "runs").iterdir())
    stamp = (done_run / "best.pt").stat().st_mtime_ns

    killed = _run(tmp_path / "killed", {**env, KILL_MARKER_ENV: str(tmp_path / "marker")})
    assert killed.returncode == -9, killed.stderr  # SIGKILL in a member's fifth step: epoch 2 of 4
    epochs = {r.name: torch.load(r / CHECKPOINT, weights_only=True)["state"]["epoch"]
              for r in (tmp_path / "killed" / "runs").iterdir() if r != done_run}
    assert len(epochs) == 2 and all(e >= 0 for e in epochs.values()), epochs  # both packed runs had checkpoints

    resumed = _run(tmp_path / "killed", env)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 already finished" in resumed.stderr
    assert (done_run / "best.pt").stat().st_mtime_ns == stamp
    a, b = _all_weights(tmp_path / "clean"), _all_weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for run in a:
        assert all(torch.equal(a[run][k], b[run][k]) for k in a[run]), run
        info = json.loads((tmp_path / "killed" / "runs" / run / "run.json").read_text())
        assert info["trained"] and len(info["history"]) == 4


def test_killed_stack_resumes_every_member_as_if_never_stopped(mini_env, mini_tasks, tmp_path):
    env = cli_env(mini_tasks)
    batch = ("--batch-size", "16", "--stack")  # 4 steps an epoch
    clean = _run(tmp_path / "clean", env, *batch, model=STACKED_STANDIN)
    assert clean.returncode == 0, clean.stderr
    killed = _run(tmp_path / "killed", {**env, KILL_MARKER_ENV: str(tmp_path / "marker")}, *batch,
                  model=STACKED_STANDIN)
    assert killed.returncode == -9, killed.stderr  # SIGKILL in the stack's sixth step: epoch 2 of 4
    runs = sorted((tmp_path / "killed" / "runs").iterdir())
    epochs = [torch.load(r / CHECKPOINT, weights_only=True)["state"]["epoch"] for r in runs]
    assert len(runs) == 3 and all(0 <= e < 3 for e in epochs), epochs  # checkpointed, unfinished
    resumed = _run(tmp_path / "killed", env, *batch, model=STACKED_STANDIN)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _all_weights(tmp_path / "clean"), _all_weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for run in a:
        assert all(torch.equal(a[run][k], b[run][k]) for k in a[run]), run
        info = json.loads((tmp_path / "killed" / "runs" / run / "run.json").read_text())
        assert info["trained"] and len(info["history"]) == 4 and info["train_path"] == "stacked"


GPU_EPOCHS, GPU_BATCH = 3, 8  # 24 steps of 8 examples: per-step losses steady enough to compare


def window_means(losses: list[float], width: int = 8) -> list[float]:
    return [sum(losses[i:i + width]) / width for i in range(0, len(losses), width)]


# models whose Triton kernels (flash-linear-attention's, mamba_ssm's SSD) compile and autotune on
# first use, for minutes
AUTOTUNED = ("rwkv", "gated_deltanet", "rwkv7", "gla", "deltanet", "mamba2")


@pytest.mark.gpu
@pytest.mark.parametrize("model,stack", [pytest.param(m, st, marks=[pytest.mark.triton_autotune] if m in AUTOTUNED else [])
                                         for m, st in PACKINGS])
def test_graphed_pack_matches_eager_runs_on_gpu(model, stack, mini_env, step_losses):
    """On CUDA the pack replays captured steps on several streams (or, ``stack``, trains the members
    as one stack); each member must train as its eager twin does. bf16 autocast and the Mamba family's atomic-add backward let the two drift
    apart step by step, so the first loss (same weights, same batch) is compared tightly and the
    rest as means over 8 steps."""
    alone = specs_for(model, mini_env / "alone", mini_env / "data", GPU_EPOCHS, GPU_BATCH)
    for spec in alone:
        execute(spec)
    packed = specs_for(model, mini_env / "packed", mini_env / "data", GPU_EPOCHS, GPU_BATCH)
    records = {}
    assert train_pack(packed, lambda spec, rec: records.setdefault(spec.run_id, rec), max_pack=3,
                      stack=stack) == []
    assert {r["pack_size"] for r in records.values()} == {3}
    assert {r["train_path"] for r in records.values()} == {"stacked" if stack else "graphed"}
    steps = GPU_EPOCHS * 64 // GPU_BATCH
    for a in alone:
        losses = step_losses[a.run_id]
        assert len(losses) == 2 * steps
        eager, graphed = losses[:steps], losses[steps:]
        assert graphed[0] == pytest.approx(eager[0], rel=2e-3)
        assert window_means(graphed) == pytest.approx(window_means(eager), rel=3e-2)
        assert window_means(graphed)[-1] < window_means(graphed)[0]  # it trains


class DecliningRecurrent(Recurrent):
    no_pack_reason = "its kernels synchronise with the host"


DECLINING = f"{Path(__file__).resolve()}:DecliningRecurrent"


@pytest.mark.gpu
def test_pack_hands_back_the_runs_of_an_adapter_that_declines_on_gpu(mini_env):
    packed = specs_for(DECLINING, mini_env / "packed", mini_env / "data")
    assert train_pack(packed, lambda *_: None, max_pack=3, report=lambda _: None) == packed
    assert all(read_run_json(s.run_dir) is None for s in packed)  # untouched


def test_only_an_adapter_that_declines_capture_is_handed_back(mini_env):
    from mqarbench.runner.pack import _declined

    for model in BUILTINS:  # every built-in model trains in the pack
        [spec] = specs_for(model, mini_env / "out", mini_env / "data")[:1]
        assert _declined(spec) is None, model
    [spec] = specs_for(DECLINING, mini_env / "out", mini_env / "data")[:1]
    assert _declined(spec) == "its kernels synchronise with the host"


def test_pack_leaves_a_run_another_process_holds(mini_env):
    import os

    from mqarbench.runner.lock import try_lock

    specs = specs_for("pythia", mini_env / "out", mini_env / "data")
    held = try_lock(specs[1].run_dir)  # as a second `mqarbench run` on the same --out would
    try:
        finished = []
        left = train_pack(specs, lambda spec, rec: finished.append(spec.run_id), max_pack=3, report=lambda _: None)
    finally:
        os.close(held)
    assert left == [specs[1]]
    assert sorted(finished) == sorted([specs[0].run_id, specs[2].run_id])
    assert read_run_json(specs[1].run_dir) is None  # never opened, never trained here
