"""benchmarks/loss_curve.py: the diagnostic loop prints its curve, takes config overrides, and its
forget-gate switch changes a gated delta-rule model's training (and only that)."""

from __future__ import annotations

import re

import pytest

from tests.bench_scripts import load_script


@pytest.fixture()
def loss_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("MQARBENCH_DATA_DIR", str(tmp_path / "data"))
    return load_script("loss_curve")


def curve(loss_curve, capsys, *extra: str) -> list[float]:
    loss_curve.main(["--model", "gated_deltanet", "--task", "k1v1", "--preset", "tiny", "--steps", "40",
                     "--batch", "8", *extra])
    out = capsys.readouterr().out
    return [float(x) for x in re.findall(r"^step \d+ loss ([\d.]+)", out, re.M)]


def test_the_forget_gate_switch_and_overrides_change_the_curve(loss_curve, capsys):
    base = curve(loss_curve, capsys)
    assert len(base) == 2 and all(x > 0 for x in base)
    assert curve(loss_curve, capsys) == base  # seeded: the same curve again
    assert curve(loss_curve, capsys, "--zero-forget-gate") != base
    wider = curve(loss_curve, capsys, "--set", "n_heads=4", "expand_v=1.0")
    assert wider != base


def test_an_unknown_field_is_one_line_naming_it(loss_curve):
    from mqarbench.errors import UserError

    with pytest.raises(UserError, match=r"--set nheads: not a field of GatedDeltaNetConfig; its fields: .*n_heads"):
        loss_curve.main(["--model", "gated_deltanet", "--task", "k1v1", "--preset", "tiny", "--set", "nheads=4"])


def test_the_delta_rule_is_restored_after_a_curve(loss_curve, capsys):
    import baselines.deltanet as deltanet

    before = deltanet.delta_impl
    curve(loss_curve, capsys, "--zero-forget-gate")
    assert deltanet.delta_impl is before  # later models in this process take the usual kernels


def test_gate_init_redraws_the_decay_and_needs_a_gated_model(loss_curve, capsys):
    from mqarbench.errors import UserError

    base = curve(loss_curve, capsys)
    assert curve(loss_curve, capsys, "--gate-init", "1", "0.0001", "0.001") != base
    with pytest.raises(UserError, match="--gate-init: the model has no module with A_log and dt_bias"):
        loss_curve.main(["--model", "deltanet", "--task", "k1v1", "--preset", "tiny", "--steps", "1",
                         "--gate-init", "1", "0.0001", "0.001"])
