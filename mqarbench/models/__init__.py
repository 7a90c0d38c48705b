"""Model adapters: the typed base every model (built-in or yours) is written on.

    from mqarbench.models import ModelAdapter, ModelConfig, SplitLM

See ``mqarbench/models/adapter.py`` and CONTRIBUTING.md ("Add a model adapter").
"""

from mqarbench.models.adapter import FAMILIES, ModelAdapter, ModelConfig
from mqarbench.models.heads import SplitLM

__all__ = ["FAMILIES", "ModelAdapter", "ModelConfig", "SplitLM"]
