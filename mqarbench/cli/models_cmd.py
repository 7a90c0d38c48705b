"""`mqarbench models list|show`: the registered adapters, their sizes and kernel paths."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list and describe model adapters")
    models_sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lst = models_sub.add_parser("list", help="registered adapters with their size at a preset")
    lst.add_argument("--preset", default="small", choices=("tiny", "small", "paper"))
    lst.set_defaults(func=_list)
    show = models_sub.add_parser("show", help="one adapter: config, sizes, kernel paths here")
    show.add_argument("name", help="entry-point name, module:Class, or path/to/adapter.py")
    show.add_argument("--preset", default="small", choices=("tiny", "small", "paper"))
    show.add_argument("--vocab-size", type=int, default=20_000)
    show.add_argument("--max-len", type=int, default=512)
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    from mqarbench.models.describe import describe
    from mqarbench.models.registry import list_adapters, load_adapter

    print(f"{'name':<16} {'family':<18} {'params':>12} {'state size':>12}   (preset {args.preset})")
    for name in list_adapters():
        info = describe(load_adapter(name), args.preset)
        print(f"{name:<16} {info.family:<18} {info.params:>12,} {info.state_size:>12,}")
    return 0


def _show(args: argparse.Namespace) -> int:
    import torch

    from mqarbench.models.describe import available_kernels, describe
    from mqarbench.models.registry import load_adapter

    adapter = load_adapter(args.name)
    info = describe(adapter, args.preset, args.vocab_size, args.max_len)
    print(f"{info.name}  (family {info.family}, adapter version {adapter.version})")
    print(f"preset {args.preset}: {info.params:,} parameters, recurrent state {info.state_size:,} numbers")
    paper = getattr(adapter, "PAPER_PARAMS", None)
    if paper and args.preset == "paper":
        print(f"paper reports {paper / 1e6:.0f}M parameters")
    print("config:", json.dumps(info.config, sort_keys=True))
    if info.citation:
        print("citation:", info.citation)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for op, path in available_kernels(adapter, device).items():
            print(f"kernel on {device}: {op} -> {path}")
    return 0
