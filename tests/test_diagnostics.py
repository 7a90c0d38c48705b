"""A model's diagnostics (Global Selection's gate and Δ) are recorded every epoch and read back."""

from __future__ import annotations

from mqarbench.analysis import diagnostics
from mqarbench.data import build_dataset
from mqarbench.models.registry import load_adapter
from mqarbench.runner.hparams import HParams
from mqarbench.runner.job import execute, read_run_json
from mqarbench.runner.plan import plan_run
from test_runner_fixtures import mini_env, mini_tasks  # noqa: F401


def train(model: str, root, epochs: int = 2):
    ds = build_dataset("standard", "tiny", root / "data")
    spec = plan_run(load_adapter(model), model, ds, [], "tiny",
                    HParams(lr=3e-3, epochs=epochs, batch_size=32, eval_batch_size=64), 0, root / "runs")
    execute(spec)
    return spec.run_dir


def test_global_selection_diagnostics_are_kept_per_epoch_and_printed(mini_env, capsys):
    run_dir = train("global_mamba", mini_env)
    history = read_run_json(run_dir)["history"]
    assert [h["epoch"] for h in history] == [0, 1]
    first, second = (h["diagnostics"] for h in history)
    n_layers = load_adapter("global_mamba").config("tiny", 1024, 64)["n_layers"]
    assert {k.split(".")[0] for k in first} == {f"layer{i}" for i in range(n_layers)}
    assert 0.0 <= first["layer0.gate.near0"] <= 1.0 and first["layer0.delta.mean"] > 0
    assert first != second  # the statistics follow the weights as they train
    assert diagnostics.main([str(run_dir), "--keys", "gate.mean,delta.mean"]) == 0
    out = capsys.readouterr().out
    assert "| epoch | valid | layer0.gate.mean | layer0.delta.mean |" in out
    assert f"| 0 | {history[0]['valid_query_accuracy']:.1f} | {first['layer0.gate.mean']:.4g} |" in out
    assert diagnostics.main([str(run_dir), "--keys", "gate.mean,gate.men"]) == 2  # a typo is named
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--keys: gate.men not in" in err and "delta.near0" in err


def test_a_model_without_diagnostics_records_none_and_the_reader_says_so(mini_env, capsys):
    run_dir = train("pythia", mini_env, epochs=1)
    assert "diagnostics" not in read_run_json(run_dir)["history"][0]
    assert diagnostics.main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no diagnostics" in err and run_dir.name in err
    assert diagnostics.main([str(mini_env / "nowhere")]) == 2
    assert "no readable run.json" in capsys.readouterr().err
