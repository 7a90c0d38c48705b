"""benchmarks/bench_epoch.py: an epoch is every bucket's batch count times its own measured step."""

import torch
from bench_scripts import load_script


def test_epoch_sums_each_buckets_batches_times_its_step(tmp_path, monkeypatch):
    bench = load_script("bench_epoch")
    timed = []

    def fake_step_s(member, bucket, steps, warmup=3):
        timed.append((bucket, member.plan[0][0], len(member.plan), len(member.plan[0][1])))
        return 0.01 * (bucket + 1)  # a known step time per bucket

    monkeypatch.setattr(bench, "bucket_step_s", fake_step_s)
    rows, epoch_s = bench.epoch_table("pythia", "k2v2", "tiny", tmp_path / "data", 2, torch.device("cpu"))
    sizes = [int(r.split("|")[3].replace(",", "")) for r in rows]
    batches = [int(r.split("|")[4].replace(",", "")) for r in rows]
    assert len(rows) == len(timed) >= 2 and [b for b, *_ in timed] == list(range(len(rows)))
    assert batches == [-(-n // 32) for n in sizes]  # tiny's batch is 32
    assert abs(epoch_s - sum(b * 0.01 * (i + 1) for i, b in enumerate(batches))) < 1e-9


def test_bucket_step_runs_only_that_buckets_batches_of_the_preset_size(tmp_path):
    bench = load_script("bench_epoch")
    seen = []
    from mqarbench.runner import train

    original = train.Member.step

    def spy(self):
        bucket, rows = self.plan[self.cursor]
        seen.append((bucket, len(rows), int(rows.max())))
        original(self)

    train.Member.step = spy
    try:
        rows, epoch_s = bench.epoch_table("pythia", "k2v2", "tiny", tmp_path / "data", 2, torch.device("cpu"))
    finally:
        train.Member.step = original
    sizes = [int(r.split("|")[3].replace(",", "")) for r in rows]
    assert epoch_s > 0 and len(seen) == 5 * len(rows)  # 3 warm-up + 2 timed steps per bucket
    for i, size in enumerate(sizes):  # the run's own batches of that bucket, in its epoch order
        mine = seen[5 * i: 5 * (i + 1)]
        assert {b for b, _, _ in mine} == {i} and all(0 < n <= 32 and top < size for _, n, top in mine)
        assert len({(n, top) for _, n, top in mine}) > 1  # several batches, not one repeated
