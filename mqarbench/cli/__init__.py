"""`mqarbench` command line: one sub-command group per module, errors as one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from mqarbench import __version__
from mqarbench.errors import UserError, report

# Each module exposes ``register(subparsers)`` and sets ``func`` on the parsers it adds.
COMMAND_MODULES = (
    "mqarbench.cli.tasks_cmd",
    "mqarbench.cli.data_cmd",
    "mqarbench.cli.models_cmd",
    "mqarbench.cli.run_cmd",
    "mqarbench.cli.leaderboard_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqarbench",
        description="Recall or shortcut? Multi-query associative recall benchmark and leaderboard.",
    )
    parser.add_argument("--version", action="version", version=f"mqarbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # a command group not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        return report(err)
    except RuntimeError as err:
        from mqarbench.kernels.determinism import refusal

        if (user_error := refusal(err)) is None:
            raise
        return report(user_error)
    except KeyboardInterrupt:
        print("interrupted: finished runs and datasets are kept; re-run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
