"""Validating what comes in a URL or a form, before it reaches the store or a box."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException

DEVICE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
REQUEST_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
WORD = re.compile(r"^[A-Za-z0-9 _.-]{1,64}$")


def path_part(value: str, pattern: re.Pattern[str]) -> str:
    """A path parameter that must match ``pattern``; anything else is simply not found."""
    if not pattern.match(value):
        raise HTTPException(404)
    return value


def optional(value: str | None, pattern: re.Pattern[str]) -> str | None:
    """A filter from the query string: empty or malformed means no filter."""
    if not value:
        return None
    value = value.strip()
    return value if pattern.match(value) else None
