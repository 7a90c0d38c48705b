"""The size presets every command and adapter shares, and the one rule for the default.

What a preset means lives with its users: data sizes in ``tasks/presets.yaml``, training in
``mqarbench/runner/hparams.py``, model sizes in each adapter's ``presets`` table.
"""

from __future__ import annotations

import sys

PRESETS: tuple[str, ...] = ("tiny", "small", "paper")
PRESET_HELP = "tiny | small | paper (default: small with CUDA, tiny without)"


def default_preset(given: str | None = None, announce: bool = True) -> str:
    """``given`` if set; else ``small`` where CUDA is available and ``tiny`` on a CPU.

    Every command (run, train, data build, models list/show) resolves ``--preset`` here, so a
    command without ``--preset`` always builds, trains and describes the same sizes.
    """
    if given:
        return given
    import torch

    preset = "small" if torch.cuda.is_available() else "tiny"
    if announce:
        print(f"no --preset given: using {preset!r} ({'CUDA found' if preset == 'small' else 'no CUDA'})",
              file=sys.stderr)
    return preset
