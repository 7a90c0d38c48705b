"""Read a YAML file into a pydantic model; every mistake becomes one UserError line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection

import yaml
from pydantic import TypeAdapter, ValidationError

from mqarbench.errors import UserError


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise UserError(f"{path}:{line} not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of fields at the top level")
    return data


def validate(adapter: TypeAdapter, data: dict[str, Any], path: Path, tags: Collection[str] = ()) -> Any:
    """Validate ``data`` against ``adapter``; a failure names the file and the field.

    ``tags``: the values of the ``family`` discriminator where ``adapter`` is a union on it.
    """
    try:
        return adapter.validate_python(data)
    except ValidationError as err:
        raise UserError(describe_validation_error(err, path, tags)) from None


def describe_validation_error(err: ValidationError, path: Path, tags: Collection[str] = ()) -> str:
    errors = err.errors()
    first = errors[0]
    # a discriminated union puts the tag (e.g. "ngram") first in the location: drop it
    loc = [str(part) for part in first["loc"]]
    if loc and loc[0] in tags:
        loc = loc[1:]
    field = ".".join(loc)
    if first["type"] == "extra_forbidden":
        text = f"unknown field `{field}` (misspelt? remove it or see CONTRIBUTING.md for the fields)"
    elif first["type"] == "missing":
        text = f"missing required field `{field}`"
    elif first["type"] == "union_tag_not_found":
        text = f"missing required field `family` (one of {', '.join(tags)})"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        text = f"field `{field}`: {msg}" if field else msg
        if first["type"] not in ("value_error", "assertion_error") and "input" in first:
            text += f" (got {first['input']!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {text}{more}"

