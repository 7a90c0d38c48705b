"""benchmarks/bench_models.py on CPU: what --only accepts (the timing itself needs CUDA)."""

import pytest
import torch
from bench_scripts import load_script


@pytest.mark.parametrize("argv,unknown", [
    (["--family", "fla", "--only", "gla", "nope"], "nope"),
    (["--family", "fla", "--only", "mamba"], "mamba"),  # a model of a family not selected
])
def test_only_naming_no_model_of_the_families_is_one_line_error(capsys, argv, unknown):
    bench = load_script("bench_models")
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)  # before torch.cuda is asked anything: this runs on CPU
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"bench_models.py: --only {unknown}:")
    assert "gated_deltanet rwkv7 gla deltanet" in err and "gla" not in err.split(":")[1]


def test_only_names_are_the_first_words_of_the_rows_labels(monkeypatch):
    """MODELS (what --only checks against) must list every row a family yields, or a real
    model would be refused."""
    bench = load_script("bench_models")
    monkeypatch.setattr(bench, "ours", lambda name, preset, length: (name, torch.nn.Identity()))
    monkeypatch.setattr(bench, "_PlainNeoX", lambda **config: torch.nn.Identity())
    assert bench.MODELS.keys() == bench.FAMILIES.keys()
    for family, rows in bench.FAMILIES.items():
        firsts = {label.split(" ")[0] for label, _ in rows("small", 256)}
        assert firsts <= set(bench.MODELS[family]), family
        assert len(firsts) >= len(bench.MODELS[family]) - (family == "mamba"), family  # mamba_ssm: GPU only
