"""The registry finds adapters by entry point, module:Class and file; bad input is one line."""

import subprocess
import sys
import textwrap

import pytest
import torch

from mqarbench.errors import UserError
from mqarbench.kernels import KernelChoice, force_reference, kernel_paths, slow_paths, use_reference
from mqarbench.models.checks import check_forward
from mqarbench.models.registry import BUILTINS, list_adapters, load_adapter, resolve_models
from test_runner_fixtures import mini_env, mini_tasks  # noqa: F401

ADAPTER_SOURCE = textwrap.dedent('''
    import torch
    from mqarbench.models import ModelAdapter, ModelConfig

    class Bigram(torch.nn.Module):
        def __init__(self, vocab_size):
            super().__init__()
            self.table = torch.nn.Embedding(vocab_size, vocab_size)
        def forward(self, input_ids):  # (B, L) -> (B, L, V)
            return self.table(input_ids)

    class BigramConfig(ModelConfig):
        pass

    class BigramAdapter(ModelAdapter[BigramConfig]):
        name = "bigram"
        family = "other"
        Config = BigramConfig
        presets = {"tiny": {}, "small": {}, "paper": {}}
        def create_model(self, cfg):
            return Bigram(cfg.vocab_size)
''')


def test_every_builtin_is_registered_by_entry_point():
    assert set(BUILTINS) <= set(list_adapters())


def test_resolve_expands_all_and_comma_lists_without_duplicates():
    assert resolve_models("all") == list(BUILTINS)
    assert resolve_models(["mamba,pythia", "mamba"]) == ["mamba", "pythia"]
    with pytest.raises(UserError):
        resolve_models(" , ")


def test_file_and_module_class_refs(tmp_path, monkeypatch):
    path = tmp_path / "my_adapter.py"
    path.write_text(ADAPTER_SOURCE)
    adapter = load_adapter(str(path))
    assert adapter.name == "bigram"
    assert load_adapter(f"{path}:BigramAdapter").name == "bigram"
    monkeypatch.syspath_prepend(str(tmp_path))
    module_adapter = load_adapter("my_adapter:BigramAdapter")
    check_forward("bigram", module_adapter.build("tiny", 50, 32), 50, 32)


@pytest.mark.parametrize("ref, message", [
    ("no_such_model", "unknown model 'no_such_model'; known:"),
    ("json:NoSuchClass", "json defines no `NoSuchClass`"),
    ("no_such_module_xyz:Cls", "cannot import no_such_module_xyz"),
    ("missing_file.py", "no such file"),
])
def test_bad_refs_give_one_line(ref, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_adapter(ref)
    assert "\n" not in str(err.value)


def test_broken_adapter_file_is_one_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\nraise RuntimeError('boom')\n")
    with pytest.raises(UserError, match=r"broken.py: failed to import: RuntimeError: boom"):
        load_adapter(str(path))


def test_wrong_output_shape_is_rejected(tmp_path):
    path = tmp_path / "flat.py"
    path.write_text(ADAPTER_SOURCE.replace("return self.table(input_ids)",
                                           "return self.table(input_ids).mean(1)"))
    adapter = load_adapter(str(path))
    with pytest.raises(UserError, match=r"must return logits of shape \(B, L, V\)"):
        check_forward("bigram", adapter.build("tiny", 50, 32), 50, 32)


def test_cli_unknown_model_prints_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "mqarbench", "models", "show", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'nope'")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


class _Op(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def kernel_choices(self, device):
        if device.type == "cuda" and not use_reference():
            return {"scan": KernelChoice("fast_lib", True)}
        return {"scan": KernelChoice("reference", False, "fast_lib not importable (pip install fast-lib)")}


def test_kernel_reports_merge_submodules_and_honour_forcing():
    model = torch.nn.Sequential(_Op(), _Op())
    assert kernel_paths(model) == {"scan": "reference"}
    assert slow_paths(model) == []  # on CPU the reference path is the expected one
    with force_reference():
        assert use_reference()
    assert not use_reference()


def test_contributing_adapter_example_runs(mini_env, capsys):
    """The worked example in CONTRIBUTING.md loads by path, passes `models show` and trains."""
    import json
    import re
    from pathlib import Path

    from mqarbench.cli import main

    text = (Path(__file__).parent.parent / "CONTRIBUTING.md").read_text()
    code = re.search(r"```python\n(# my_gru.py.*?)```", text, re.S).group(1)
    path = mini_env / "my_gru.py"
    path.write_text(code)
    adapter = load_adapter(str(path))
    assert adapter.name == "my_gru" and adapter.state_size("small", 40, 32) == 128 * 2
    assert main(["models", "show", str(path), "--preset", "tiny", "--vocab-size", "40", "--max-len", "32"]) == 0
    assert "split head matches forward" in capsys.readouterr().out
    assert main(["train", "--model", str(path), "--task", "standard", "--preset", "tiny", "--epochs", "1",
                 "--out", "out", "--data-dir", "data"]) == 0
    [run] = (mini_env / "out" / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert info["trained"] and info["model"] == "my_gru" and info["model_family"] == "rnn"
    assert info["model_config"] == {"vocab_size": 1024, "max_len": 64, "d_model": 64, "n_layers": 2}


def test_builtins_are_exactly_the_baselines_entry_points():
    """`--model all` and pyproject.toml's entry points name the same models."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    table = text.split('[project.entry-points."mqarbench.models"]')[1].split("\n[")[0]
    declared = re.findall(r'^(\w+) = "baselines\.', table, re.M)
    assert sorted(declared) == sorted(BUILTINS) and len(set(BUILTINS)) == len(BUILTINS)
