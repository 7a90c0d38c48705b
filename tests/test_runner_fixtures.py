"""Shared pieces of the runner tests: shrunken task specs and a small stand-in model.

The real ``tiny`` preset with a 20,000-token vocabulary costs minutes per suite on two CPU cores;
the tests copy ``tasks/`` and shrink the tiny preset (L = 64, 2-4 pairs, 64 training examples)
and the vocabulary (1,024), which exercises exactly the same code paths in seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
import yaml

from baselines.mamba import Mamba, MambaLM
from mqarbench.models import ModelAdapter, ModelConfig
from mqarbench.paths import REPO_ROOT

STANDIN = f"{Path(__file__).resolve()}:Recurrent"
STACKED_STANDIN = f"{Path(__file__).resolve()}:KillableMamba"  # trains in a stack
KILL_MARKER_ENV = "MQARBENCH_TEST_KILL_MARKER"


def shrink_tasks(dest: Path) -> Path:
    tasks = dest / "tasks"
    shutil.copytree(REPO_ROOT / "tasks", tasks)
    presets = yaml.safe_load((tasks / "presets.yaml").read_text())
    presets["tiny"].update(max_seq_len=64, min_kv_pairs=2, max_kv_pairs=4, train={"total": 64},
                           valid={"per_cell": 8}, test={"per_cell": 8})
    (tasks / "presets.yaml").write_text(yaml.safe_dump(presets))
    for spec in tasks.glob("*.yaml"):
        if spec.name != "presets.yaml":
            spec.write_text(spec.read_text() + "vocab_size: 1024\n")
    return tasks


@pytest.fixture(scope="session")
def mini_tasks(tmp_path_factory) -> Path:
    return shrink_tasks(tmp_path_factory.mktemp("mini"))


@pytest.fixture
def mini_env(mini_tasks, tmp_path, monkeypatch) -> Path:
    """Run from ``tmp_path`` with the shrunken tasks; returns ``tmp_path``."""
    monkeypatch.setenv("MQARBENCH_TASKS_DIR", str(mini_tasks))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli_env(mini_tasks: Path) -> dict[str, str]:
    return {**os.environ, "MQARBENCH_TASKS_DIR": str(mini_tasks), "PYTHONPATH": str(REPO_ROOT)}


class RecurrentLM(torch.nn.Module):
    """Embedding -> GRU -> tied-free head: fast, deterministic on CPU, learns a little."""

    def __init__(self, vocab_size: int, d: int = 32):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, d)
        self.rnn = torch.nn.GRU(d, d, batch_first=True)
        self.head = torch.nn.Linear(d, vocab_size)
        self.steps = 0

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, V)
        if self.training:
            self.steps += 1
            die_once_at(self.steps, 5)
        return self.head(self.rnn(self.embed(input_ids))[0])


def die_once_at(count: int, when: int) -> None:
    """SIGKILL this process the first time ``count`` reaches ``when`` (under KILL_MARKER_ENV),
    mid-training, like a lost node."""
    marker = os.environ.get(KILL_MARKER_ENV)
    if marker and count == when and not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)


class RecurrentConfig(ModelConfig):
    d_model: int = 32


class Recurrent(ModelAdapter[RecurrentConfig]):
    name = "recurrent"
    version = "1"
    family = "rnn"
    Config = RecurrentConfig
    presets = {"tiny": {}, "small": {}, "paper": {}}

    def create_model(self, cfg: RecurrentConfig) -> torch.nn.Module:
        return RecurrentLM(cfg.vocab_size, cfg.d_model)

    def recurrent_state(self, cfg: RecurrentConfig) -> int:
        return cfg.d_model


class KillableMambaLM(MambaLM):
    """Mamba whose stacked step can die once, mid-training (KILL_MARKER_ENV)."""

    stacked_steps = 0  # per process: any member's module may run the stack's step

    def stacked_hidden_states(self, params, input_ids):
        KillableMambaLM.stacked_steps += 1
        die_once_at(KillableMambaLM.stacked_steps, 6)
        return super().stacked_hidden_states(params, input_ids)


class KillableMamba(Mamba):
    name = "killable_mamba"

    def create_model(self, cfg):
        return KillableMambaLM(cfg.vocab_size, cfg.d_model, [self.mixer(cfg, i) for i in range(cfg.n_layers)])
