"""Runner pieces: batches, schedule, run ids, checkpoints, hyper-parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mqarbench.errors import UserError
from mqarbench.runner.batches import batches_per_epoch, epoch_batches
from mqarbench.runner.checkpoint import CorruptCheckpoint, load_checkpoint, save_checkpoint
from mqarbench.runner.hparams import sweep
from mqarbench.runner.plan import TaskRef, run_id
from mqarbench.runner.train import label_loss, lr_lambda


def buckets():
    short = (np.arange(10 * 4).reshape(10, 4), np.zeros((10, 4), int))
    long = (np.arange(7 * 8).reshape(7, 8) + 1000, np.zeros((7, 8), int))
    return [short, long]


def test_batches_never_mix_lengths_and_cover_each_example_once():
    seen = []
    for ids, _ in epoch_batches(buckets(), 3, seed=0, epoch=0):
        assert ids.shape[1] in (4, 8) and len(ids) <= 3
        seen += [int(r[0]) for r in ids]
    assert sorted(seen) == sorted([i * 4 for i in range(10)] + [1000 + i * 8 for i in range(7)])
    assert batches_per_epoch(buckets(), 3) == 4 + 3


def test_batch_order_depends_only_on_seed_and_epoch():
    def order(seed, epoch):
        return [ids[:, 0].tolist() for ids, _ in epoch_batches(buckets(), 3, seed, epoch)]
    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2) and order(0, 1) != order(1, 1)


def test_schedule_warms_up_over_ten_percent_then_decays_to_zero():
    f = lr_lambda(100, 0.1)
    assert [f(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert f(10) == 1.0 and f(55) == pytest.approx(0.5) and f(100) == 0.0
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


def test_loss_only_on_labelled_positions():
    logits = torch.zeros(1, 3, 5)
    logits[0, 1, 2] = 10.0  # the one labelled position is confidently right
    logits[0, 0, 4] = -10.0  # unlabelled positions do not count, however wrong
    class Fixed(torch.nn.Module):  # a model without the split head: used whole
        def forward(self, input_ids):
            return logits

    loss = label_loss(Fixed(), torch.zeros(1, 3, dtype=torch.long), torch.tensor([[-100, 2, -100]]))
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits[0, 1:2], torch.tensor([2])).item())


def test_run_id_covers_what_changes_the_weights():
    train = TaskRef("standard", 1, "a" * 64, "/x")
    hp = sweep("tiny")[0]
    base = run_id("mamba", "1", {"d": 64}, train, hp, 0, "tiny")
    assert base == run_id("mamba", "1", {"d": 64}, TaskRef("standard", 1, "a" * 64, "/elsewhere"), hp, 0, "tiny")
    others = [run_id("mamba", "1", {"d": 64}, train, hp, 1, "tiny"),
              run_id("mamba", "2", {"d": 64}, train, hp, 0, "tiny"),
              run_id("mamba", "1", {"d": 128}, train, hp, 0, "tiny"),
              run_id("mamba", "1", {"d": 64}, TaskRef("standard", 1, "b" * 64, "/x"), hp, 0, "tiny"),
              run_id("mamba", "1", {"d": 64}, train, sweep("tiny", [1e-4])[0], 0, "tiny"),
              run_id("mamba", "1", {"d": 64}, train, hp, 0, "small")]
    assert len({base, *others}) == 7


def test_sweep_per_preset_and_overrides():
    assert [h.lr for h in sweep("paper")] == [1e-4, 3e-4, 1e-3, 3e-3]
    assert all(h.epochs == 30 and h.weight_decay == 0.1 and h.grad_clip == 1.0 for h in sweep("paper"))
    hp = sweep("small", [1e-3, 2e-3], epochs=3, batch_size=8)
    assert [(h.lr, h.epochs, h.batch_size) for h in hp] == [(1e-3, 3, 8), (2e-3, 3, 8)]
    with pytest.raises(UserError, match="--epochs"):
        sweep("tiny", epochs=-1)
    with pytest.raises(UserError, match="--preset"):
        sweep("huge")


def test_checkpoint_roundtrip_and_corruption_detected(tmp_path):
    path = tmp_path / "checkpoint.pt"
    assert load_checkpoint(path) is None
    save_checkpoint(path, {"w": torch.arange(4.0), "epoch": 3})
    assert load_checkpoint(path)["epoch"] == 3
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpoint, match="sha256"):
        load_checkpoint(path)
    path.with_name("checkpoint.pt.sha256").unlink()
    with pytest.raises(CorruptCheckpoint, match="no checkpoint.pt.sha256"):
        load_checkpoint(path)


def test_default_runs_per_gpu_follow_its_memory_and_the_preset():
    from mqarbench.runner.envinfo import default_workers_per_gpu

    h100, h200, a100_40, l4 = 79.19, 139.8, 39.4, 22.0  # total memory in GiB as torch reports it
    assert [default_workers_per_gpu("small", m) for m in (h100, h200, a100_40, l4, 6.0)] == [8, 8, 4, 2, 1]
    assert default_workers_per_gpu("paper", h200) == 1  # a paper-sized run fills a GPU
    assert default_workers_per_gpu("small", None) == 1  # CPU


def test_run_picks_runs_per_gpu_unless_given(monkeypatch, capsys):
    import mqarbench.runner.envinfo
    import mqarbench.runner.orchestrate
    from mqarbench.cli import main
    from mqarbench.results.store import to_table

    seen = []

    def fake_run_suite(*args, **kwargs):
        seen.append(kwargs["workers_per_gpu"])
        return None, to_table([])

    monkeypatch.setattr(mqarbench.runner.orchestrate, "run_suite", fake_run_suite)
    monkeypatch.setattr(mqarbench.runner.envinfo, "gpu_memory_gib", lambda: 79.19)
    base = ["run", "--model", "mamba", "--suite", "main", "--preset", "small", "--no-site"]
    assert main(base) == 0 and seen == [1]  # packed by default: the runs share one process
    assert main([*base, "--pack", "1"]) == 0 and seen == [1, 8]
    assert "no --workers-per-gpu given: 8 run(s) share the GPU (79 GiB, preset 'small')" in capsys.readouterr().err
    assert main([*base, "--workers-per-gpu", "3"]) == 0 and seen == [1, 8, 3]
    assert main([*base, "--workers-per-gpu", "0"]) == 2
    assert main([*base, "--pack", "0"]) == 2
    assert main([*base, "--pack", "4", "--executor", "ray"]) == 2
    assert "--pack works with --executor local" in capsys.readouterr().err
    assert main([*base, "--stack", "--pack", "1"]) == 2
    assert "--stack trains runs side by side in one pack" in capsys.readouterr().err
    monkeypatch.setattr(mqarbench.runner.envinfo, "gpu_memory_gib", lambda: None)
    assert main([*base, "--pack", "1"]) == 0 and seen == [1, 8, 3, 1]


def test_packing_defaults_to_a_pack_on_a_gpu_or_when_a_stack_is_asked_for():
    from mqarbench.runner.orchestrate import packing

    assert packing(None, "local", "cuda") == 0 and packing(None, "local", "cpu") == 1
    assert packing(None, "local", "cpu", stack=True) == 0  # --stack on a CPU is not silently dropped
    assert packing(3, "local", "cpu", stack=True) == 3 and packing(None, "ray", "cuda") == 1


def test_a_static_buckets_batch_holds_exactly_its_rows_labels_in_flat_order():
    """StaticBucket.batch: the rows, the labelled positions as indices into the flattened (B * L)
    batch, and their targets, without padding (the benchmarks' one step outside a graph)."""
    import numpy as np

    from mqarbench.runner.graphs import StaticBucket, label_table

    labels = np.full((3, 4), -100)
    labels[0, 1], labels[1, 0], labels[1, 3], labels[2, 2] = 7, 8, 9, 5
    positions, targets = label_table(labels)
    bucket = StaticBucket(torch.zeros(3, 4, dtype=torch.long), positions, targets)
    rows, index, target = bucket.batch(np.array([1, 2]))
    assert rows.tolist() == [1, 2]
    assert index.tolist() == [0, 3, 4 + 2]  # row 1 at 0 and 3, row 2 (the batch's second) at 2
    assert target.tolist() == [8, 9, 5]
