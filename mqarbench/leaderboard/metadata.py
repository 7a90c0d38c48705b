"""A submission's ``metadata.yaml``: who ran which model, how, at which preset."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mqarbench.data.presets import PRESETS
from mqarbench.errors import UserError
from mqarbench.io import write_text_atomic

METADATA_FILE = "metadata.yaml"


class SubmissionMetadata(BaseModel):
    """Everything here is the submitter's text: the site escapes every field."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1, max_length=200)
    authors: str = Field(min_length=1, max_length=500)
    link: str = Field(min_length=1, max_length=500)
    adapter_source: str = Field(min_length=1, max_length=500)
    preset: str
    date: dt.date
    suites: list[str] = Field(min_length=1)  # the suites whose every experiment the results cover
    notes: str = Field(default="", max_length=2000)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"must be one of {', '.join(PRESETS)}")
        return value

    @field_validator("link")
    @classmethod
    def _web_link(cls, value: str) -> str:
        # Only web links become <a href>: a "javascript:" URL would run on click.
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// or http://")
        return value


def metadata_problems(path: Path) -> tuple[SubmissionMetadata | None, list[str]]:
    """Parse ``metadata.yaml``; return it (or None) and one line per problem naming the field."""
    if not path.is_file():
        return None, [f"{path}: missing; write it with `mqarbench leaderboard submit` or by hand"]
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        return None, [f"{path}: not valid YAML ({str(err).splitlines()[0]})"]
    if not isinstance(raw, dict):
        return None, [f"{path}: must be a mapping of field: value"]
    try:
        return SubmissionMetadata.model_validate(raw), []
    except ValidationError as err:
        return None, [
            f"{path}: field '{'.'.join(str(p) for p in e['loc']) or '(root)'}': {e['msg']}"
            for e in err.errors()
        ]


def load_metadata(path: Path) -> SubmissionMetadata:
    meta, problems = metadata_problems(path)
    if meta is None:
        raise UserError(problems[0])
    return meta


def write_metadata(path: Path, meta: SubmissionMetadata) -> None:
    text = yaml.safe_dump(meta.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    write_text_atomic(path, text)
