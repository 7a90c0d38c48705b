"""Every adapter mistake is one line naming the model, the method and the fix; a model that sees
the future is refused by `models show` and by the runner's check alike."""

from __future__ import annotations

import textwrap

import pytest
import torch

from mqarbench.cli import main
from mqarbench.errors import UserError
from mqarbench.models.checks import check_forward
from mqarbench.models.registry import load_adapter

HEADER = '''
import torch
from torch import nn
from mqarbench.models import ModelAdapter, ModelConfig, SplitLM

class GRUConfig(ModelConfig):
    d_model: int = 16
    bidirectional: bool = False

class GRULM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.rnn = nn.GRU(cfg.d_model, cfg.d_model, batch_first=True, bidirectional=cfg.bidirectional)
        self.head = nn.Linear(cfg.d_model * (2 if cfg.bidirectional else 1), cfg.vocab_size)
    def forward(self, input_ids):  # (B, L) -> (B, L, V)
        return self.head(self.rnn(self.embed(input_ids))[0])
'''

GOOD = '''
class GRU(ModelAdapter[GRUConfig]):
    name = "gru"
    family = "rnn"
    Config = GRUConfig
    presets = {"tiny": {}, "small": {"d_model": 32}}
    def create_model(self, cfg):
        return GRULM(cfg)
'''


def adapter_file(tmp_path, body: str, name: str = "gru.py"):
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return str(path)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_good_adapter_passes_every_check(tmp_path):
    adapter = load_adapter(adapter_file(tmp_path, GOOD))
    check_forward("gru", adapter.build("small", 30, 24), 30, 24)
    assert adapter.config("small", 30, 24) == {"vocab_size": 30, "max_len": 24, "d_model": 32,
                                               "bidirectional": False}


@pytest.mark.parametrize("change, message", [
    ("    def create_model(self, cfg):\n        return GRULM(cfg)\n", "create_model is not defined; define create_model"),
    ('    Config = GRUConfig\n', "presets['small'] sets d_model, not field(s) of ModelConfig; declare them"),
    ('    family = "rnn"\n', "family '' is not one of attention, ssm"),
    ('    name = "gru"\n', "sets no `name` class attribute"),
])
def test_missing_pieces_fail_at_load(tmp_path, change, message):
    with pytest.raises(UserError) as err:
        load_adapter(adapter_file(tmp_path, GOOD.replace(change, "")))
    assert message in one_line(err)


def test_wrong_table_and_values_name_the_preset_and_field(tmp_path):
    with pytest.raises(UserError) as err:
        load_adapter(adapter_file(tmp_path, GOOD.replace('"d_model": 32', '"d_modl": 32')))
    assert one_line(err) == ("model 'gru': presets['small'] sets d_modl, not field(s) of GRUConfig; "
                             "declare them in the Config class or fix the names")
    adapter = load_adapter(adapter_file(tmp_path, GOOD.replace('"d_model": 32', '"d_model": "wide"')))
    with pytest.raises(UserError) as err:
        adapter.config("small", 30, 24)
    assert one_line(err) == ("model 'gru': GRUConfig at preset 'small': field `d_model`: Input should be a "
                             "valid integer, unable to parse string as an integer; fix presets['small'] or "
                             "the Config class")
    adapter = load_adapter(adapter_file(tmp_path, GOOD.replace('"d_model": 32', '"d_model": torch.ones(2)')))
    with pytest.raises(UserError, match=r"field `d_model`: Input should be a valid integer"):
        adapter.build("small", 30, 24)
    with pytest.raises(UserError, match=r"`presets` has no 'paper' row; add presets\['paper'\]"):
        adapter.build("paper", 30, 24)
    with pytest.raises(UserError, match="unknown preset 'huge'; choose one of tiny, small, paper"):
        adapter.build("huge", 30, 24)
    with pytest.raises(UserError, match="`presets` has unknown preset"):
        load_adapter(adapter_file(tmp_path, GOOD.replace('"tiny"', '"tyni"')))


def test_build_returning_a_non_module_or_raising_is_one_line(tmp_path):
    adapter = load_adapter(adapter_file(tmp_path, GOOD.replace("return GRULM(cfg)", "return 3")))
    with pytest.raises(UserError) as err:
        adapter.build("tiny", 30, 24)
    assert "create_model returned int, not a torch.nn.Module" in one_line(err)
    adapter = load_adapter(adapter_file(tmp_path, GOOD.replace("return GRULM(cfg)", "return GRULM(cfg.nope)")))
    with pytest.raises(UserError) as err:
        adapter.build("tiny", 30, 24)
    assert "create_model failed at preset 'tiny': AttributeError" in one_line(err)
    adapter = load_adapter(adapter_file(tmp_path, GOOD + "    def recurrent_state(self, cfg):\n        return 1.5\n"))
    with pytest.raises(UserError, match="recurrent_state returned 1.5"):
        adapter.state_size("tiny", 30, 24)


def test_bidirectional_model_is_refused(tmp_path):
    adapter = load_adapter(adapter_file(tmp_path, GOOD.replace('"small": {"d_model": 32}',
                                                               '"small": {"bidirectional": True}')))
    check_forward("gru", adapter.build("tiny", 30, 24), 30, 24)  # the same code, causal
    with pytest.raises(UserError) as err:
        check_forward("gru", adapter.build("small", 30, 24), 30, 24)
    assert "model 'gru': forward sees the future: changing the last token changed the logits" in one_line(err)


class _Attention(torch.nn.Module):
    """One attention layer; ``causal=False`` is the classic mistake of a forgotten mask."""

    def __init__(self, vocab: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.embed = torch.nn.Embedding(vocab, 16)
        self.head = torch.nn.Linear(16, vocab)

    def forward(self, input_ids):
        x = self.embed(input_ids)  # (B, L, D)
        y = torch.nn.functional.scaled_dot_product_attention(x, x, x, is_causal=self.causal)
        return self.head(x + y)


def test_attention_without_its_mask_is_refused():
    torch.manual_seed(0)
    check_forward("attn", _Attention(30, causal=True), 30, 24)
    with pytest.raises(UserError, match="sees the future"):
        check_forward("attn", _Attention(30, causal=False), 30, 24)


def test_split_head_must_agree_with_forward():
    class Halves(torch.nn.Module):
        def __init__(self, skew: float = 0.0):
            super().__init__()
            self.embed, self.head, self.skew = torch.nn.Embedding(30, 8), torch.nn.Linear(8, 30), skew

        def hidden_states(self, input_ids):
            return self.embed(input_ids)

        def logits(self, hidden):
            return self.head(hidden)

        def forward(self, input_ids):
            return self.logits(self.hidden_states(input_ids)) + self.skew

    check_forward("halves", Halves(), 30, 24)
    with pytest.raises(UserError, match=r"logits\(hidden_states\(x\)\) differs from forward\(x\)"):
        check_forward("halves", Halves(skew=1.0), 30, 24)

    class HiddenOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = torch.nn.Embedding(30, 8), torch.nn.Linear(8, 30)

        def hidden_states(self, input_ids):
            return self.embed(input_ids)

        def forward(self, input_ids):
            return self.head(self.hidden_states(input_ids))

    with pytest.raises(UserError, match="defines hidden_states but not logits; define both"):
        check_forward("hidden_only", HiddenOnly(), 30, 24)


def test_models_show_runs_the_checks(tmp_path, capsys):
    good = adapter_file(tmp_path, GOOD)
    assert main(["models", "show", good, "--preset", "small", "--vocab-size", "30", "--max-len", "24"]) == 0
    out = capsys.readouterr().out
    assert "checks passed: logits (B, L, V), finite, causal" in out
    assert "packed training on a GPU (CUDA graphs): yes" in out
    declining = adapter_file(tmp_path, GOOD.replace('    name = "gru"\n', '    name = "gru"\n'
                                                    '    no_pack_reason = "its kernels sync with the host"\n'),
                             "declining.py")
    assert main(["models", "show", declining, "--preset", "small", "--vocab-size", "30", "--max-len", "24"]) == 0
    assert "packed training on a GPU (CUDA graphs): declined: its kernels sync with the host" in capsys.readouterr().out
    future = adapter_file(tmp_path, GOOD.replace('{"d_model": 32}', '{"bidirectional": True}'), "future.py")
    assert main(["models", "show", future, "--preset", "small", "--vocab-size", "30", "--max-len", "24"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model 'gru': forward sees the future") and len(err.splitlines()) == 1
    flat = adapter_file(tmp_path, GOOD.replace("return GRULM(cfg)", "return torch.nn.Linear(2, 2)"), "flat.py")
    assert main(["models", "show", flat, "--preset", "tiny", "--vocab-size", "30", "--max-len", "24"]) == 2
    assert "forward on random input_ids of shape (2, 16) failed" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["pythia", "hyena", "rwkv", "mamba", "mamba_2x_state", "mamba_4x_state",
                                  "global_mamba"])
def test_builtins_pass_the_runners_check_on_cuda_in_training_precision(name):
    """The run's check (fast kernels, bf16 autocast) must not refuse a causal model: the
    round-off tolerance holds for every fast path."""
    from mqarbench.runner.evaluate import autocast

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = load_adapter(name).build("small", 20_000, 512).to(device)
    with autocast(device):
        for _ in range(3):  # fresh random inputs each time
            check_forward(name, model, 20_000, 512)
