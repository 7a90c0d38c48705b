"""Find model adapters: by entry point (group ``mqarbench.models``), ``module:Class`` or ``file.py``.

A contributor never edits mqarbench to add a model: they point ``--model`` at their file or
class, or register an entry point in their own package.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from importlib.metadata import entry_points
from pathlib import Path

from mqarbench.errors import UserError
from mqarbench.models.adapter import ModelAdapter, check_adapter

GROUP = "mqarbench.models"
# The models `--model all` runs, in the paper's order (tables list models in run order). Each is
# registered by an entry point in pyproject.toml, as a third-party adapter is;
# tests/test_models_registry.py checks the two name the same models.
BUILTINS = ("pythia", "hyena", "rwkv", "mamba", "mamba_2x_state", "mamba_4x_state", "global_mamba",
            "mamba2", "gated_deltanet", "rwkv7", "gla", "deltanet")


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def list_adapters() -> list[str]:
    """Names registered under the ``mqarbench.models`` entry-point group."""
    return sorted(_entry_points())


def _instantiate(obj: object, where: str) -> ModelAdapter:
    if inspect.isclass(obj) and not issubclass(obj, ModelAdapter) or not inspect.isclass(obj) \
            and not isinstance(obj, ModelAdapter):
        raise UserError(f"{where}: is not a mqarbench.models.ModelAdapter subclass; "
                        "derive the adapter class from it")
    try:
        adapter = obj() if inspect.isclass(obj) else obj
    except Exception as err:
        raise UserError(f"{where}: creating the adapter failed: {type(err).__name__}: {err}; "
                        "an adapter takes no constructor arguments") from err
    check_adapter(adapter, where)
    return adapter


def _load_file(path: Path, class_name: str | None) -> ModelAdapter:
    if not path.is_file():
        raise UserError(f"--model {path}: no such file")
    module_name = f"mqarbench_user_adapter_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a broken user file: report it in one line
        sys.modules.pop(module_name, None)
        raise UserError(f"{path}: failed to import: {type(err).__name__}: {err}") from err
    if class_name:
        if not hasattr(module, class_name):
            raise UserError(f"{path}: defines no `{class_name}`")
        return _instantiate(getattr(module, class_name), f"{path}:{class_name}")
    found = [obj for obj in vars(module).values()
             if inspect.isclass(obj) and issubclass(obj, ModelAdapter) and obj is not ModelAdapter
             and obj.__module__ == module_name]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise UserError(f"{path}: expected exactly one ModelAdapter subclass, found {names}; "
                        f"name one with {path}:ClassName")
    return _instantiate(found[0], str(path))


def load_adapter(ref: str) -> ModelAdapter:
    """An adapter from an entry-point name, ``module:Class`` or ``path/to/file.py[:Class]``."""
    file_part, _, class_part = ref.partition(":") if ".py" in ref else (ref, "", "")
    if file_part.endswith(".py"):
        return _load_file(Path(file_part), class_part or None)
    eps = _entry_points()
    if ref in eps:
        try:
            obj = eps[ref].load()
        except Exception as err:
            raise UserError(f"model '{ref}': its entry point failed to load: "
                            f"{type(err).__name__}: {err}") from err
        return _instantiate(obj, f"model '{ref}'")
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as err:
            raise UserError(f"--model {ref}: cannot import {module_name}: "
                            f"{type(err).__name__}: {err}") from err
        if not hasattr(module, attr):
            raise UserError(f"--model {ref}: {module_name} defines no `{attr}`")
        return _instantiate(getattr(module, attr), ref)
    known = ", ".join(sorted(eps)) or "none installed"
    raise UserError(f"unknown model '{ref}'; known: {known} (or give module:Class or a .py file)")


def resolve_models(spec: str | list[str]) -> list[str]:
    """Expand a comma list / list of model refs; ``all`` means every built-in (BUILTINS: the
    paper's seven, then the newer five)."""
    items = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    refs: list[str] = []
    for item in (i.strip() for i in items):
        for ref in (BUILTINS if item == "all" else (item,)):
            if ref and ref not in refs:
                refs.append(ref)
    if not refs:
        raise UserError("--model: give at least one model name, or `all`")
    return refs
