"""Model-size candidates for calibrating `small`: the built-ins with a different `small` row.

Used as `mqarbench run --model benchmarks/calibration/variants.py:Pythia4L,...`. A variant is a
distinct adapter name, so its runs never share ids with the built-in's.
"""

from __future__ import annotations

from typing import Any

from baselines.mamba import Mamba
from baselines.pythia import Pythia


def _small(base: type, suffix: str, **fields: Any) -> type:
    """``base`` renamed ``<name>_<suffix>`` with ``fields`` replacing its `small` row."""
    presets = {**base.presets, "small": {**base.presets["small"], **fields}}
    return type(f"{base.__name__}_{suffix}", (base,), {"name": f"{base.name}_{suffix}", "presets": presets,
                                                        "__module__": __name__})


Pythia4L = _small(Pythia, "4l", n_layers=4)
Mamba4L = _small(Mamba, "4l", n_layers=4)
Pythia2LD256 = _small(Pythia, "2l_d256", d_model=256)
Mamba2LD256 = _small(Mamba, "2l_d256", d_model=256)
