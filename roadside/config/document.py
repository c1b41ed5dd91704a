"""An agent config as a document the station and the box exchange: its canonical form, its
hash, what of it is secret, and how two of them differ.

The document is the validated config as written (``model_dump(exclude_unset=True)``): the keys
a file sets, with their values normalised ("200MB" becomes bytes), and no defaults, so it
reads like the file and stays small on a 3G link. The hash is over the *redacted* document,
so the station can compute the hash of what it sends without knowing the box's secrets; a
change of a secret alone does not change the hash.

Secrets are values that give access to something and are never sent: ``mqtt.password`` (an
inline broker password) and the password in a stream URL (``rtsp://user:PASSWORD@host``).
Paths are not secrets (``mqtt.password_file``, ``mqtt.tls_key``): they are sent as paths, the
files they name are never read for a document. A desired document that carries a secret as
the box redacted it (``"<redacted>"``) keeps the box's own value.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tomli_w

from roadside.config.agent import AgentConfig
from roadside.errors import ConfigError

# Names a desired config in its one-line errors, at the station and on the box alike.
DESIRED = "desired config"
REDACTED = "<redacted>"
# Inline secrets, replaced whole by REDACTED.
SECRET_KEYS = ("mqtt.password",)
# URLs whose password part is a secret.
URL_KEYS = ("source.url",)
# What names the box and where it keeps its state: never changed from the station.
FIXED_KEYS = ("device", "data_dir")
# [mqtt] keys that only tune the session: changing them cannot cut the box off.
MQTT_TUNING = frozenset(
    {"keepalive_s", "session_expiry_s", "max_inflight", "reconnect_min_s", "reconnect_max_s"}
)

Document = dict[str, Any]


def document(cfg: AgentConfig) -> Document:
    """The config as written: the keys set, normalised, in JSON types."""
    return cfg.model_dump(mode="json", exclude_unset=True)


def canonical_json(doc: Document) -> str:
    """One spelling per document: sorted keys, no spaces."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(cfg: AgentConfig) -> str:
    """First 12 hex digits of the sha256 of the redacted document (``StatusMsg.config_hash``)."""
    return hashlib.sha256(canonical_json(redact(document(cfg))).encode()).hexdigest()[:12]


def _get(doc: Document, key: str) -> Any:
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _put(doc: Document, key: str, value: Any) -> None:
    *tables, last = key.split(".")
    node = doc
    for part in tables:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} is a value, not a table")
        node = child
    node[last] = value


def redact_url(url: str) -> str:
    """``rtsp://user:<redacted>@host/x`` for a URL with a password; others as they are."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:{REDACTED}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _redacted(key: str, value: Any) -> Any:
    if key in SECRET_KEYS:
        return REDACTED
    if key in URL_KEYS and isinstance(value, str):
        return redact_url(value)
    return value


def redact(doc: Document) -> Document:
    """A copy with every secret replaced (what leaves the box)."""
    out = copy.deepcopy(doc)
    for key in (*SECRET_KEYS, *URL_KEYS):
        value = _get(out, key)
        if value is not None:
            _put(out, key, _redacted(key, value))
    return out


def keep_secrets(desired: Document, running: Document) -> Document:
    """``desired`` with each secret the box redacted put back from ``running``.

    Raises ConfigError for a redacted secret the box does not have (nothing to keep)."""
    out = copy.deepcopy(desired)
    for key in (*SECRET_KEYS, *URL_KEYS):
        wanted, have = _get(out, key), _get(running, key)
        if wanted is None:
            continue
        if have is not None and wanted == _redacted(key, have):
            _put(out, key, have)
        elif isinstance(wanted, str) and REDACTED in wanted:
            raise ConfigError(
                f"{key} = {wanted!r}: this box has no such secret to keep; give the value "
                "itself or leave the key out"
            )
    return out


@dataclass(frozen=True)
class Change:
    """One key that differs; ``before``/``after`` are None where the key is absent."""

    key: str
    before: Any
    after: Any

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key}
        if self.before is not None:
            out["from"] = self.before
        if self.after is not None:
            out["to"] = self.after
        return out

    def __str__(self) -> str:
        if self.before is None:
            return f"+ {self.key} = {_shown(self.after)}"
        if self.after is None:
            return f"- {self.key} = {_shown(self.before)}"
        return f"~ {self.key} = {_shown(self.before)} -> {_shown(self.after)}"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _flat(doc: Document, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def redact_change(change: Change) -> Change:
    """The change as it may be shown and stored: a secret's values redacted."""
    return Change(
        change.key,
        None if change.before is None else _redacted(change.key, change.before),
        None if change.after is None else _redacted(change.key, change.after),
    )


def diff(before: Document, after: Document) -> list[Change]:
    """Every key that differs, in key order (tables are walked, lists compared whole)."""
    a, b = _flat(before), _flat(after)
    return [
        Change(key, a.get(key), b.get(key))
        for key in sorted(a.keys() | b.keys())
        if a.get(key) != b.get(key)
    ]


def fixed_key_changes(changes: list[Change]) -> list[str]:
    """Keys the station may not change (the box's name, its state folder)."""
    return [c.key for c in changes if c.key in FIXED_KEYS]


def cutting_changes(before: AgentConfig, after: AgentConfig, changes: list[Change]) -> list[str]:
    """Changed keys that may cut the box off from the station: the broker's address, TLS,
    credentials, protocol and client id; the end of the mqtt sink or of commands."""
    cut = [
        c.key
        for c in changes
        if c.key.startswith("mqtt.") and c.key.removeprefix("mqtt.") not in MQTT_TUNING
    ]
    if (before.mqtt is None) != (after.mqtt is None):
        cut.append("mqtt")
    if "mqtt" in before.events.sinks and "mqtt" not in after.events.sinks:
        cut.append("events.sinks")
    if before.commands.enabled and not after.commands.enabled:
        cut.append("commands.enabled")
    return sorted(set(cut))


def assign(doc: Document, assignments: list[str]) -> Document:
    """A copy of ``doc`` with each ``key=value`` set; the value is read as TOML
    (``0.3``, ``true``, ``["mqtt"]``, ``"text"``), else taken as a plain string."""
    out = copy.deepcopy(doc)
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. detector.score=0.3")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        _put(out, key, value)
    return out


def to_toml(doc: Document) -> str:
    return tomli_w.dumps(doc)
