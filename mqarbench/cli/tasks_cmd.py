"""`mqarbench tasks list|show`: the task specs and a decoded example."""

from __future__ import annotations

import argparse

from mqarbench.presets import PRESET_HELP, PRESETS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tasks", help="list task specs or show one with a decoded example")
    sub = parser.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)
    lister = sub.add_parser("list", help="every task in tasks/")
    lister.set_defaults(func=list_cmd)
    show = sub.add_parser("show", help="a task's spec and one decoded example")
    show.add_argument("task", help="task name (a file tasks/<name>.yaml; see `mqarbench tasks list`)")
    show.add_argument("--preset", choices=PRESETS, help=f"preset whose cells are listed: {PRESET_HELP}")
    show.add_argument("--cell", help="SEQ_LEN,KV_PAIRS of the example (default: a short cell)")
    show.add_argument("--split", help="split of the example (default: train, or test for test-only tasks)")
    show.set_defaults(func=show_cmd)


def list_cmd(args: argparse.Namespace) -> int:
    import shutil

    from mqarbench.data import list_tasks, load_task

    width = shutil.get_terminal_size((120, 20)).columns
    print(f"{'task':<20} {'family':<20} {'v':>2} {'splits':<17} {'cells':>5}  description")
    for name in list_tasks():
        spec = load_task(name)
        line = (f"{name:<20} {spec.family:<20} {spec.version:>2} {'/'.join(spec.splits):<17} "
                f"{len(spec.cells()):>5}  {spec.description}")
        print(line if len(line) <= width else line[: width - 1] + "…")
    return 0


_STYLES = {"key": "bold cyan", "value": "green", "query": "bold yellow", "answer-slot": "magenta",
           "special": "magenta", "filler": "dim"}


def show_cmd(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.text import Text

    from mqarbench.data import load_task, resolve
    from mqarbench.data.render import example, pick_cell, token_text
    from mqarbench.errors import UserError

    from mqarbench.presets import default_preset

    spec = load_task(args.task)
    preset = default_preset(args.preset)
    resolved = resolve(spec, preset)
    console = Console(highlight=False)
    console.print(f"[bold]{spec.name}[/] v{spec.version} ({spec.family}): {spec.description}")
    fields = spec.model_dump(exclude={"name", "version", "description", "family", "grid"})
    console.print("  " + ", ".join(f"{k}={v}" for k, v in fields.items()))
    console.print(f"  splits: {', '.join(spec.splits)}; paper grid: {len(spec.cells())} cells; "
                  f"preset {preset}: {len(resolved.cells)} cells {resolved.grid.cells}")
    console.print(f"  examples at {preset}: "
                  + ", ".join(f"{s} {sum(c)}" for s, c in resolved.counts.items()))
    cell = pick_cell(spec)
    if args.cell:
        try:
            cell = tuple(int(x) for x in args.cell.split(","))
            assert len(cell) == 2
        except (ValueError, AssertionError):
            raise UserError(f"--cell {args.cell!r}: expected SEQ_LEN,KV_PAIRS such as 64,4") from None
        if cell not in spec.cells():
            raise UserError(f"--cell {args.cell}: not a cell of {spec.name}; its cells: {spec.cells()}")
    split = args.split or spec.splits[0]
    if split not in spec.splits:
        raise UserError(f"--split {split}: {spec.name} has only {', '.join(spec.splits)}")
    console.print(f"\nexample ({split} split, seq_len {cell[0]}, {cell[1]} pairs): "
                  "K key, V value, Q query key, →label (token to predict next), dim = filler")
    toks = example(spec, cell, split)
    width = max(len(token_text(t)) for t in toks) + 1
    per_line = max(4, (console.width - 6) // width)
    for row in range(0, len(toks), per_line):
        line = Text(f"{row:4d}  ")
        for tok in toks[row:row + per_line]:
            style = _STYLES[tok.role] + (" underline" if tok.label is not None else "")
            line.append(token_text(tok), style=style).append(" " * (width - len(token_text(tok))))
        console.print(line, no_wrap=True)
    return 0
