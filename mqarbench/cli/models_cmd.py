"""`mqarbench models list|show`: the registered adapters, their sizes and kernel paths."""

from __future__ import annotations

import argparse
import json

from mqarbench.presets import PRESET_HELP, PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list and describe model adapters")
    models_sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lst = models_sub.add_parser("list", help="registered adapters with their size at a preset")
    lst.add_argument("--preset", choices=PRESETS, help=PRESET_HELP)
    lst.set_defaults(func=_list)
    show = models_sub.add_parser(
        "show", help="one adapter: checks its model as `run` does (shape, causality), then config, "
                     "sizes and kernel paths here")
    show.add_argument("name", help="entry-point name, module:Class, or path/to/adapter.py[:Class]")
    show.add_argument("--preset", choices=PRESETS, help=PRESET_HELP)
    show.add_argument("--vocab-size", type=int, default=20_000,
                      help="vocabulary to build the model for (default: 20000, the benchmark's)")
    show.add_argument("--max-len", type=int, default=512,
                      help="longest sequence the model must take (default: 512)")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    from mqarbench.models.describe import describe
    from mqarbench.models.registry import list_adapters, load_adapter
    from mqarbench.presets import default_preset

    preset = default_preset(args.preset)
    print(f"{'name':<16} {'family':<18} {'params':>12} {'state size':>12}   (preset {preset})")
    for name in list_adapters():
        info = describe(load_adapter(name), preset)
        print(f"{name:<16} {info.family:<18} {info.params:>12,} {info.state_size:>12,}")
    return 0


def _show(args: argparse.Namespace) -> int:
    import torch

    from mqarbench.errors import UserError
    from mqarbench.models.checks import check_forward
    from mqarbench.models.describe import available_kernels, describe
    from mqarbench.models.heads import has_split_head
    from mqarbench.models.registry import load_adapter
    from mqarbench.presets import default_preset

    if args.vocab_size < 2 or args.max_len < 1:
        raise UserError("--vocab-size must be at least 2 and --max-len at least 1")
    adapter = load_adapter(args.name)  # a bad name fails before anything else is said
    preset = default_preset(args.preset)
    info = describe(adapter, preset, args.vocab_size, args.max_len)
    torch.manual_seed(0)
    model = adapter.build(preset, args.vocab_size, args.max_len)
    check_forward(adapter.name, model, args.vocab_size, args.max_len)
    print(f"{info.name}  (family {info.family}, adapter version {adapter.version})")
    print(f"preset {preset}: {info.params:,} parameters, recurrent state {info.state_size:,} numbers")
    if info.paper_params and preset == "paper":
        print(f"paper reports {info.paper_params / 1e6:.0f}M parameters")
    print("config:", json.dumps(info.config, sort_keys=True))
    print("checks passed: logits (B, L, V), finite, causal"
          + (", split head matches forward" if has_split_head(model) else ""))
    if info.citation:
        print("citation:", info.citation)
    declined = getattr(adapter, "no_pack_reason", None)
    print("packed training on a GPU (CUDA graphs): " + (f"declined: {declined}" if declined else "yes"))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for op, path in available_kernels(adapter, device, preset, args.vocab_size, args.max_len).items():
            print(f"kernel on {device}: {op} -> {path}")
    return 0

