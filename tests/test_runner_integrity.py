"""What a run trusts: its datasets, its results files, its flags, its --out (shared by two runs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mqarbench.cli import main
from mqarbench.results.store import CorruptResults, read_results
from mqarbench.runner.progress import LineProgress
from test_runner_fixtures import STANDIN, cli_env, mini_env, mini_tasks  # noqa: F401

TRAIN = ["train", "--model", STANDIN, "--task", "standard", "--preset", "tiny", "--epochs", "1",
         "--out", "out", "--data-dir", "data"]


def _flip(path, offset=None):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(raw))


def test_a_flipped_dataset_byte_stops_training(mini_env, capsys):
    assert main(["data", "build", "--task", "standard", "--preset", "tiny", "--data-dir", "data"]) == 0
    [ds] = (mini_env / "data").glob("standard-v*")
    _flip(ds / "train.parquet")
    capsys.readouterr()
    assert main(TRAIN) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.parquet: sha256 differs" in err[0] and f"delete data/{ds.name} and run again" in err[0]
    assert not list((mini_env / "out").rglob("*.pt")), "nothing was trained"


def test_a_flipped_results_byte_is_caught_and_the_run_evaluated_again(mini_env, capsys):
    assert main(TRAIN) == 0
    [run] = (mini_env / "out" / "runs").iterdir()
    assert main(["eval", str(run), "--test", "standard", "--data-dir", "data"]) == 0
    path = run / "results.parquet"
    honest = read_results(path)
    # a readable forgery: one score changed, the file rewritten, its sidecar left alone
    rows = honest.to_pylist()
    rows[0]["query_accuracy"] = rows[0]["query_accuracy"] + 2.0
    pq.write_table(pa.Table.from_pylist(rows, schema=honest.schema), path)
    with pytest.raises(CorruptResults, match="sha256 differs from results.parquet.sha256"):
        read_results(path)
    capsys.readouterr()
    assert main(["leaderboard", "build", "--source", "out", "--out", "site", "--data-dir", "data"]) == 2
    assert "results.parquet: sha256 differs" in capsys.readouterr().err
    assert not (mini_env / "site").exists(), "nothing unverified is published"
    assert main(["eval", str(run), "--test", "standard", "--data-dir", "data"]) == 0
    assert "evaluating this run again" in capsys.readouterr().err
    key = ("test_task", "slice", "seq_len", "num_kv_pairs", "query_accuracy", "token_accuracy")
    again = read_results(path).to_pylist()
    assert [[r[k] for k in key] for r in again] == [[r[k] for k in key] for r in honest.to_pylist()]


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be positive, got 0"),
    (["--epochs", "-3"], "--epochs must be positive, got -3"),
    (["--batch-size", "0"], "--batch-size must be positive, got 0"),
    (["--batch-size", "-8"], "--batch-size must be positive, got -8"),
])
def test_nonsense_sizes_are_errors(mini_env, capsys, flags, message):
    assert main(TRAIN + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {message}"]
    assert not (mini_env / "out" / "runs").exists()


def test_unusable_dirs_are_one_line(mini_env, capsys):
    (mini_env / "afile").write_text("x")
    for flag, value, says in (("--data-dir", "afile", "exists and is not a directory"),
                              ("--data-dir", "afile/sub", "cannot create it"),
                              ("--out", "afile", "exists and is not a directory")):
        args = TRAIN + [flag, value]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{flag} {value}: {says}" in err[0]


def test_two_runs_on_one_out_train_each_run_once(mini_env, mini_tasks):
    env = cli_env(mini_tasks)
    cmd = [sys.executable, "-m", "mqarbench", "run", "--model", STANDIN, "--suite", "positional",
           "--preset", "tiny", "--epochs", "2", "--out", "out", "--data-dir", "data", "--no-site"]
    procs = [subprocess.Popen(cmd, cwd=mini_env, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = sorted((mini_env / "out" / "runs").iterdir())
    assert len(runs) == 3
    for run in runs:
        assert json.loads((run / "run.json").read_text())["attempts"] == 1, "trained once"
    logs = "".join(err for _, err in outs)
    assert logs.count("epoch 2/2 done") == 3, "a line per epoch in a log; each run trained by one process"


def test_line_progress_prints_each_epoch_and_a_heartbeat():
    class Spec:
        run_id, adapter_name, seed = "abc", "m", 0
        train = type("T", (), {"task": "standard"})
        hparams = type("H", (), {"lr": 1e-3, "epochs": 2})

    now = [0.0]
    lines = []
    progress = LineProgress(lines.append, every_s=10, clock=lambda: now[0])
    for epoch in range(2):
        for step in range(1, 5):
            now[0] += 4
            progress(Spec, epoch, step, 4)
    assert lines == ["abc m on standard, lr 0.001, seed 0: epoch 1/2 step 3/4",
                     "abc m on standard, lr 0.001, seed 0: epoch 1/2 done",
                     "abc m on standard, lr 0.001, seed 0: epoch 2/2 step 3/4",
                     "abc m on standard, lr 0.001, seed 0: epoch 2/2 done"]


def test_weights_round_trip_in_bf16_with_a_tied_head(tmp_path):
    import torch

    from mqarbench.runner.weights import export_selected, load_weights

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 8)
            self.head = torch.nn.Linear(8, 50, bias=False)
            self.head.weight = self.embed.weight
            self.register_buffer("scale", torch.full((8,), 1 / 3))  # a constant: kept in fp32

        def forward(self, x):  # (B, L) -> (B, L, V)
            return self.head(self.embed(x) * self.scale)

    torch.manual_seed(0)
    a, b = Tied(), Tied()
    export_selected(a, tmp_path)
    path = tmp_path / "weights.safetensors"
    assert path.stat().st_size < 50 * 8 * 2 + 8 * 4 + 400, "bf16, the tied head stored once"
    load_weights(b, path)
    x = torch.randint(0, 50, (2, 5))
    assert torch.equal(a(x), b(x)) and b.head.weight is b.embed.weight
    assert b.scale.dtype == torch.float32 and torch.equal(b.scale, a.scale)
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    with pytest.raises(ValueError, match="Git LFS pointer"):
        load_weights(b, path)


def test_the_same_weights_give_the_same_file(tmp_path):
    """A rerun that trains the same weights (--deterministic on a GPU, any run on a CPU) writes a
    byte-identical weights file, so its .sha256 matches too."""
    import torch

    from mqarbench.runner.weights import save_weights

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(40, 8), torch.nn.Linear(8, 40))
    model[1].weight = model[0].weight  # an alias in the metadata
    files = [tmp_path / f"w{i}.safetensors" for i in range(6)]
    for path in files:
        save_weights(model, path)
    assert len({p.read_bytes() for p in files}) == 1
    assert len({(p.parent / (p.name + ".sha256")).read_text() for p in files}) == 1
