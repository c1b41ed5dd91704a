"""The central service's configuration: one TOML file, checked by typed models.

Same rules as the agent's: every field has a default, a description and bounds, unknown keys
are rejected, and any problem becomes one line naming the field and what is allowed. The
officer commands read the same file (``--config``, or $ROADSIDE_CENTRAL_CONFIG).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from roadside.config.base import Section, load, parse
from roadside.config.broker import BrokerLink
from roadside.logs import LoggingConfig

ENV_CONFIG = "ROADSIDE_CENTRAL_CONFIG"
DEFAULT_CONFIG = "/etc/roadside/central.toml"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class BrokerConfig(BrokerLink):
    """The station's MQTT broker, as the ingest workers and the officer commands reach it."""

    keepalive_s: int = Field(60, ge=5, le=3600, description="MQTT keepalive, seconds.")
    session_expiry_s: int = Field(
        604800,
        ge=0,
        le=4294967295,
        description="How long the broker keeps a worker's session "
        "(and queues its share of messages) while the worker is down, seconds.",
    )


class DatabaseConfig(Section):
    """Where the station keeps what it receives."""

    url: str | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/central.db. For "
        "PostgreSQL: postgresql+psycopg://user:password@host/dbname.",
    )
    echo: bool = Field(False, description="Log every SQL statement (debugging).")

    @field_validator("url")
    @classmethod
    def _known_backend(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite:", "sqlite+", "postgresql")):
            raise ValueError("use sqlite:///path/file.db or postgresql+psycopg://user@host/db")
        return v


class IngestConfig(Section):
    """The ingest workers: one shared subscription spreads the load over all of them."""

    group: str = Field(
        "central",
        description="Shared-subscription group ($share/<group>/…); every worker "
        "of one station uses the same group.",
    )
    worker: str = Field(
        "1",
        description="This worker's name; keep it stable so the broker keeps its session "
        "and queue across restarts (`roadside central run --worker` overrides it).",
    )
    batch_max: int = Field(
        500, ge=1, le=100_000, description="Messages written in one transaction at most."
    )
    receive_max: int = Field(
        1000,
        ge=1,
        le=65535,
        description="Messages the broker may send before the worker "
        "acknowledges them (they are acknowledged once stored).",
    )
    rejects_per_box: int = Field(
        1000,
        ge=0,
        le=1_000_000,
        description="Refused messages kept whole per box, the newest (about 5 KB each); older "
        "ones are only counted.",
    )

    receiver: bool = Field(
        True,
        description="This worker also receives clip and snapshot uploads. Exactly one "
        "process per station should (`roadside central run --no-receiver` on the others).",
    )

    @field_validator("group", "worker")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                "must be 1-40 letters, digits, '-' or '_' (it is part of a topic "
                "filter and a client id)"
            )
        return v


class OfficerConfig(Section):
    """The officer command line: where clips land and how long it waits."""

    clips_dir: str | None = Field(
        None, description="Where received clips and snapshots are kept (default <data_dir>/clips)."
    )
    reply_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="How long to wait for a box's first answer."
    )
    clip_timeout_s: float = Field(
        3600.0,
        gt=0,
        le=7 * 86400,
        description="How long `roadside clip` waits for the "
        "whole file before it leaves the transfer running and returns.",
    )
    default_before_s: float = Field(10.0, ge=0, le=3600, description="--before default.")
    default_after_s: float = Field(20.0, ge=0, le=3600, description="--after default.")


class ReceiverConfig(Section):
    """The clip and snapshot receiver: whom it trusts and what one box may make it hold."""

    device_ca: str | None = Field(
        None,
        description="The device CA certificate (provisioning's device-ca.crt): uploads must be "
        "signed by a box certificate it issued. Unset: every upload is refused.",
    )
    crl: str | None = Field(
        None,
        description="The CA's revocation list (provisioning's crl.pem), read again when it "
        "changes: a revoked box is refused from its next upload on.",
    )
    crl_check_s: float = Field(
        5.0, ge=0, le=3600, description="How often the list's file is looked at for a change, s."
    )
    max_deadline_h: float = Field(
        48.0, gt=0, le=30 * 24, description="A box's upload deadline counts up to this, hours."
    )
    partial_mb_per_box: int = Field(
        2048, ge=1, le=1 << 20, description="Unfinished uploads held for one box at most, MB."
    )
    unasked_per_day: int = Field(
        20, ge=0, le=10000, description="Pictures a box may send unasked (tamper) per 24 h."
    )
    unasked_mb_per_day: int = Field(
        20, ge=0, le=100000, description="... and their size per 24 h, MB."
    )


class WebConfig(Section):
    """The officers' console (``roadside central web``, or inside ``central run``)."""

    enabled: bool = Field(
        False, description="`roadside central run` serves the console too (one process)."
    )
    host: str = Field(
        "0.0.0.0", min_length=1, description="Address to listen on (the station LAN's)."
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="Port (default 8080, or 8443 with a certificate)."
    )
    tls_cert: str | None = Field(
        None, description="Certificate for HTTPS (PEM; `roadside provision web` issues one)."
    )
    tls_key: str | None = Field(None, description="The certificate's private key (PEM).")
    language: Literal["vi", "en"] = Field(
        "vi", description="Language of the console until an officer picks another."
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="A login lasts this long, hours."
    )
    login_failures: int = Field(
        5, ge=1, le=100, description="Failed logins (per name or address) before a pause."
    )
    login_pause_s: float = Field(
        300.0, ge=1, le=86400, description="How long logins pause after too many failures."
    )
    silent_after_s: float = Field(
        900.0, ge=30, le=7 * 86400, description="A box silent this long stands out, seconds."
    )
    page_size: int = Field(50, ge=5, le=500, description="Events per page.")
    live_interval_s: float = Field(
        5.0,
        ge=2,
        le=300,
        description="Live view: at most one snapshot per this many seconds (mind the 3G link).",
    )
    live_max_s: float = Field(
        120.0, ge=10, le=3600, description="Live view stops after this long; the officer resumes."
    )

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def effective_port(self) -> int:
        return self.port or (8443 if self.uses_tls else 8080)

    @model_validator(mode="after")
    def _pair(self) -> WebConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("web.tls_cert and web.tls_key go together: set both or neither")
        return self


class CentralConfig(Section):
    """The whole central configuration file."""

    data_dir: str = Field(
        "/var/lib/roadside-central", description="Where the station keeps its database and clips."
    )
    time_zone: str = Field(
        "Asia/Ho_Chi_Minh", description="IANA time zone for times typed and shown to officers."
    )
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    officer: OfficerConfig = Field(default_factory=OfficerConfig)
    receiver: ReceiverConfig = Field(default_factory=ReceiverConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    web: WebConfig = Field(default_factory=WebConfig)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA time zone; e.g. 'Asia/Ho_Chi_Minh', 'UTC'") from None
        return v

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{Path(self.data_dir) / 'central.db'}"

    @property
    def clips_path(self) -> Path:
        return Path(self.officer.clips_dir or Path(self.data_dir) / "clips")

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "postgresql" if self.database_url.startswith("postgresql") else "sqlite"


def parse_central_config(data: dict, origin: str = "config") -> CentralConfig:
    """Validate a parsed TOML document; raises ConfigError naming the first problem."""
    return parse(CentralConfig, data, origin)


def load_central_config(path: str | os.PathLike | None = None) -> CentralConfig:
    """Read and validate a central config file (default: $ROADSIDE_CENTRAL_CONFIG, then
    /etc/roadside/central.toml)."""
    p = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)
    return load(CentralConfig, p, f" (give --config FILE or set {ENV_CONFIG})")
