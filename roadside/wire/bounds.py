"""What one message may hold: the limits that keep one box from breaking or filling the station.

Every value a box sends ends up in a column of the station's database (SQLite or
PostgreSQL), so the schemas take only what those columns store: finite floats (no NaN or
infinity, which PostgreSQL's JSON refuses and which break every comparison), integers within
their column's type, strings within their column's length and without NUL (PostgreSQL text
refuses it), lists and maps of a bounded size, and free-form JSON (a reply's result, a
manifest's meta) of a bounded size and depth. A payload over its kind's byte limit is not
even parsed.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

INT32_MAX = 2**31 - 1  # an INTEGER column on PostgreSQL
JSON_INT_MAX = 2**53  # the largest integer every JSON reader (the console's too) keeps exact

MAX_PAYLOAD = 64 * 1024  # bytes of an event, count, health or status message
MAX_REPLY_PAYLOAD = 256 * 1024  # bytes of a reply (a config document travels in one)
MAX_JSON_NODES = 10_000  # values in a free-form JSON object, all levels together
MAX_JSON_DEPTH = 16
MAX_JSON_TEXT = 4096  # characters of one string inside free-form JSON
MAX_LABELS = 256  # classes in one count, entries in one map of readings
MAX_ZONES = 64  # zones one event passed through

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

# A class label, zone or counting-line name: up to 32 characters (``events.cls``,
# ``line_counts.line``), no control characters.
Name = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=_PRINTABLE)]
# A compass direction (``events.direction``, ``line_counts.direction``): N, NE, … NW.
Direction = Annotated[str, StringConstraints(min_length=1, max_length=4, pattern=_PRINTABLE)]
# A short word: a reason code, a version, a model name, a hash.
Word = Annotated[str, StringConstraints(max_length=128, pattern=_PRINTABLE)]
# A sentence for people: any text but NUL.
Sentence = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
# A number of things, as a JSON body keeps it.
Amount = Annotated[int, Field(ge=0, le=JSON_INT_MAX)]
# Any integer a JSON body keeps.
Integer = Annotated[int, Field(ge=-JSON_INT_MAX, le=JSON_INT_MAX)]


def _check_json(value: Any) -> Any:
    """Raise ValueError unless ``value`` is JSON every database stores and every reader reads."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise ValueError(f"more than {MAX_JSON_NODES} values")
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH}")
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("a number that is not finite")
        elif isinstance(item, int):
            if abs(item) > JSON_INT_MAX:
                raise ValueError(f"an integer beyond ±2**53: {str(item)[:20]}")
        elif isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, sub in item.items():
                _check_text(key)
                stack.append((sub, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((sub, depth + 1) for sub in item)
        else:
            raise ValueError(f"not a JSON value: {type(item).__name__}")
    return value


def _check_text(text: str) -> None:
    if len(text) > MAX_JSON_TEXT:
        raise ValueError(f"a string longer than {MAX_JSON_TEXT} characters")
    if "\x00" in text:
        raise ValueError("a string with a NUL character")


# A free-form JSON object (a reply's result, a manifest's meta), bounded.
JsonObject = Annotated[dict[str, Any], AfterValidator(_check_json)]
