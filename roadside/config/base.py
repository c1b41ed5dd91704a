"""What every config file has in common: strict sections, one-line errors, TOML loading.

Every field has a default, a description and bounds, and unknown keys are rejected, so a typo
is caught before a file leaves the station. Any problem becomes one line that names the
field, the bad value and what is allowed.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from roadside.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def describe_error(error: Any) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) as a sentence for people."""
    loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {loc!r}: remove it or check its spelling"
    if kind == "missing":
        return f"{loc} is required but missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{loc} = {error.get('input')!r}: must be a table, written [{loc}]"
    msg = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, dict):  # a whole-section rule: its message names the fields
        return msg if kind == "value_error" else f"{loc}: {msg}"
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{loc} = {shown}: {msg}"


def parse(model: type[M], data: dict, origin: str = "config") -> M:
    """Validate a parsed TOML document; raises ConfigError naming the first problem (and how
    many more there are)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{origin}: {describe_error(errors[0])}{more}") from None


def read_toml(path: str | os.PathLike, missing_hint: str = "") -> dict:
    """The parsed document in ``path``; ``missing_hint`` follows "no such config file"."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file{missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


def load(model: type[M], path: str | os.PathLike, missing_hint: str = "") -> M:
    """Read and validate a config file."""
    return parse(model, read_toml(path, missing_hint), str(Path(path)))
