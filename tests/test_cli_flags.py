"""Every flag is documented, and every command picks the same preset when none is given."""

from __future__ import annotations

import argparse

import pytest

from mqarbench.cli import build_parser, main
from mqarbench.presets import PRESETS, default_preset


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(build_parser()))


def test_every_flag_and_argument_has_help():
    undocumented = [(" ".join(path), action.option_strings or action.dest)
                    for path, parser in COMMANDS for action in parser._actions
                    if not isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                                               argparse._SubParsersAction)) and not action.help]
    assert undocumented == []


def test_every_preset_flag_takes_the_presets_and_defaults_to_the_one_rule():
    flags = {" ".join(path): action for path, parser in COMMANDS for action in parser._actions
             if "--preset" in action.option_strings}
    assert set(flags) == {"run", "train", "data build", "models list", "models show", "tasks show"}
    for command, action in flags.items():
        assert tuple(action.choices) == PRESETS, command
        assert action.default is None, command  # resolved by mqarbench.presets.default_preset


@pytest.mark.parametrize("cuda, preset", [(True, "small"), (False, "tiny")])
def test_default_preset_rule(monkeypatch, capsys, cuda, preset):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert default_preset() == preset
    assert f"no --preset given: using '{preset}'" in capsys.readouterr().err
    assert default_preset("paper") == "paper"


def test_data_build_and_models_list_follow_the_rule(monkeypatch, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["data", "build", "--task", "standard", "--data-dir", str(tmp_path)]) == 0
    assert "standard (tiny) ..." in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    assert "(preset tiny)" in capsys.readouterr().out


def test_every_environment_variable_is_in_the_readme():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    used = {m for path in (root / "mqarbench").rglob("*.py")
            for m in re.findall(r"\bMQARBENCH_[A-Z_]+\b", path.read_text())}
    section = (root / "README.md").read_text().split("## Environment variables")[1].split("<!-- end")[0]
    assert used and {v for v in used if f"`{v}`" not in section} == set()
