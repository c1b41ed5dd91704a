"""The agent's configuration: one TOML file, checked by typed models.

Every field has a default, a description and bounds, and unknown keys are rejected, so a typo
is caught on the box before it leaves the station. ``load_config`` turns any problem into one
line that names the field, the bad value and what is allowed.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from roadside.errors import ConfigError

COCO_INTEREST = ("person", "bicycle", "motorcycle", "car", "bus", "truck")
DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Fraction, Fraction]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class SourceConfig(Section):
    """Where frames come from."""

    kind: Literal["file", "device", "rtsp", "picamera2"] = Field(
        "file", description="file: a video file; device: a V4L2/USB camera index or path; "
        "rtsp: an IP camera URL; picamera2: the Raspberry Pi camera."
    )
    path: str | None = Field(None, description="Video file (kind=file) or device path/index.")
    url: str | None = Field(None, description="Stream URL (kind=rtsp), e.g. rtsp://host/stream.")
    pipeline: str | None = Field(
        None, description="A full OpenCV GStreamer pipeline (Jetson CSI cameras); kind=device."
    )
    loop: bool = Field(False, description="Start the file again at its end (kind=file).")
    pace: Literal["native", "fast"] = Field(
        "native", description="native: play a file at its own frame rate; fast: as fast as "
        "the pipeline takes frames (tests and benchmarks)."
    )
    width: int = Field(1280, ge=64, le=7680, description="Capture width (camera sources).")
    height: int = Field(720, ge=48, le=4320, description="Capture height (camera sources).")
    fps: float = Field(15.0, gt=0, le=120, description="Capture rate (camera sources).")
    lores_width: int = Field(
        320, ge=64, le=1920, description="Width of the low-resolution detection stream."
    )
    reconnect_max_s: float = Field(
        60.0, gt=0, le=3600, description="Longest wait between reconnect attempts (streams)."
    )

    @model_validator(mode="after")
    def _needs_location(self) -> SourceConfig:
        if self.kind == "file" and not self.path:
            raise ValueError("source.kind = 'file' needs source.path (a video file)")
        if self.kind == "rtsp" and not self.url:
            raise ValueError("source.kind = 'rtsp' needs source.url (rtsp://…)")
        if self.kind == "device" and not (self.path or self.pipeline):
            raise ValueError("source.kind = 'device' needs source.path (index or /dev/videoN)")
        return self


class Zone(Section):
    """A named polygon in normalised image coordinates (0..1, origin top-left)."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    polygon: list[Point] = Field(min_length=3, description="Corners as [x, y] pairs, 0..1.")


class MotionConfig(Section):
    """The cheap motion gate that decides when the detector runs."""

    enabled: bool = Field(True, description="false runs the detector on every frame.")
    width: int = Field(160, ge=32, le=640, description="Width of the grey frame compared.")
    threshold: int = Field(20, ge=1, le=255, description="Grey-level change that counts.")
    min_area: float = Field(
        0.002, ge=0.0, le=1.0, description="Fraction of the frame that must change."
    )
    alpha: float = Field(
        0.05, gt=0.0, le=1.0, description="How fast the background learns (0..1 per frame)."
    )
    keepalive_s: float = Field(
        2.0, gt=0.0, le=3600, description="Run the detector at least this often anyway."
    )
    masks: list[list[Point]] = Field(
        default_factory=list,
        description="Polygons ignored by the gate (trees, sky, burnt-in clocks), 0..1 coords.",
    )


class DetectorConfig(Section):
    """The object detector."""

    model: str = Field(
        "ssd_mobilenet_v1_coco_quant", description="Manifest name (see `roadside model list`)."
    )
    models_dir: str | None = Field(
        None, description="Folder holding fetched models (default: the model store)."
    )
    threads: int = Field(
        0, ge=0, le=16, description="Interpreter threads; 0 = CPU count minus one (capture "
        "and recording keep a core)."
    )
    runtime: Literal["auto", "litert", "tflite"] = Field(
        "auto", description="auto: ai-edge-litert, else tflite-runtime."
    )
    classes: list[str] = Field(
        default_factory=lambda: list(COCO_INTEREST), min_length=1,
        description="Labels that become tracks and events; others are ignored.",
    )
    score: float = Field(0.5, ge=0.05, le=1.0, description="Minimum score for every class.")
    scores: dict[str, Annotated[float, Field(ge=0.05, le=1.0)]] = Field(
        default_factory=dict, description="Per-class minimum scores, e.g. {person = 0.6}."
    )
    nms_iou: float = Field(0.45, gt=0.0, le=1.0, description="NMS overlap (raw-grid models).")


class TrackerConfig(Section):
    """How detections become tracks."""

    iou: float = Field(0.25, gt=0.0, le=1.0, description="Least overlap to continue a track.")
    confirm_hits: int = Field(
        3, ge=1, le=100, description="Detections before a track is confirmed (an event)."
    )
    max_missed_s: float = Field(
        1.0, gt=0.0, le=600, description="A track ends after this long unseen."
    )


class EventsConfig(Section):
    """What leaves the tracker."""

    count_interval_s: float = Field(
        60.0, ge=1.0, le=86400, description="Per-class counts are sent every this many seconds."
    )
    zones: list[Zone] = Field(default_factory=list, description="Named zones an event reports.")
    sinks: list[Literal["console", "jsonl", "mqtt"]] = Field(
        default_factory=lambda: ["console"], description="Where events go."
    )
    jsonl_path: str | None = Field(None, description="File for the jsonl sink.")

    @model_validator(mode="after")
    def _jsonl_needs_path(self) -> EventsConfig:
        if "jsonl" in self.sinks and not self.jsonl_path:
            raise ValueError("events.sinks has 'jsonl', so events.jsonl_path must name a file")
        return self


class MqttConfig(Section):
    """The link to the station's MQTT broker (needed when events.sinks has "mqtt")."""

    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Broker port (default 1883, or 8883 with TLS)."
    )
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto", description="auto: MQTT 5, falling back to 3.1.1 when the broker refuses it."
    )
    client_id: str | None = Field(
        None, max_length=64, description="MQTT client id (default: the device id). Keep it "
        "stable: the broker keeps the box's session under it."
    )
    tls: bool = Field(
        False, description="Use TLS (implied by tls_ca/tls_cert); without tls_ca the system "
        "CA store checks the broker."
    )
    tls_ca: str | None = Field(None, description="CA certificate(s) that signed the broker's.")
    tls_cert: str | None = Field(None, description="This box's client certificate (PEM).")
    tls_key: str | None = Field(None, description="The client certificate's private key (PEM).")
    username: str | None = Field(None, min_length=1, description="Broker user name.")
    password: str | None = Field(None, description="Broker password (prefer password_file).")
    password_file: str | None = Field(
        None, description="File holding the broker password (first line), readable by the agent."
    )
    keepalive_s: int = Field(
        120, ge=10, le=3600, description="Keepalive: the broker drops the link after 1.5x this "
        "silent. Long enough for one transfer chunk on the slowest link."
    )
    session_expiry_s: int = Field(
        172800, ge=0, le=4294967295, description="How long the broker keeps the box's session "
        "(subscriptions, queued commands) while it is away (MQTT 5)."
    )
    max_inflight: int = Field(
        20, ge=1, le=1000, description="Messages sent and not yet acknowledged, at most "
        "(lowered to the broker's receive maximum)."
    )
    reconnect_min_s: float = Field(
        1.0, gt=0, le=3600, description="First wait before reconnecting (doubles, with jitter)."
    )
    reconnect_max_s: float = Field(
        120.0, gt=0, le=86400, description="Longest wait between reconnect attempts."
    )

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.tls_ca or self.tls_cert)

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.uses_tls else 1883)

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("mqtt.tls_cert and mqtt.tls_key go together: set both or neither")
        if self.password is not None and self.password_file is not None:
            raise ValueError("mqtt.password and mqtt.password_file: set one, not both")
        if (self.password is not None or self.password_file) and not self.username:
            raise ValueError("mqtt.password needs mqtt.username")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"mqtt.reconnect_min_s ({self.reconnect_min_s}) must not exceed "
                f"mqtt.reconnect_max_s ({self.reconnect_max_s})"
            )
        return self


class UplinkConfig(Section):
    """The durable outbox in front of the MQTT link, and the health heartbeat."""

    outbox_max_rows: int = Field(
        500_000, ge=100, le=100_000_000, description="Messages the outbox holds at most; past "
        "it, health goes first, then counts are folded, then the oldest counts and events go."
    )
    outbox_max_bytes: int = Field(
        64 * 1024 * 1024, ge=64 * 1024, le=64 * 1024**3,
        description="Payload bytes the outbox holds at most (same policy as outbox_max_rows).",
    )
    outbox_sync: Literal["full", "normal"] = Field(
        "full", description="full: every message is on disk before publish() returns (survives "
        "power cuts); normal: faster, the last moments may be lost on a power cut."
    )
    health_period_s: float = Field(
        300.0, ge=5, le=86400, description="Seconds between health heartbeats."
    )
    stop_flush_s: float = Field(
        3.0, ge=0, le=60, description="On a clean stop, wait up to this long for the outbox "
        "to empty while the link is up; what is left is sent after the next start."
    )


class AgentConfig(Section):
    """The whole agent configuration file."""

    device: str = Field(
        description="This box's id, lowercase letters, digits, '-' and '_', e.g. 'junction-07'."
    )
    data_dir: str = Field(
        "/var/lib/roadside", description="Where the box keeps its state (recordings, outbox)."
    )
    source: SourceConfig
    motion: MotionConfig = Field(default_factory=MotionConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    mqtt: MqttConfig | None = Field(None, description="The broker link (sinks = [\"mqtt\"]).")
    uplink: UplinkConfig = Field(default_factory=UplinkConfig)

    @model_validator(mode="after")
    def _mqtt_sink_needs_broker(self) -> AgentConfig:
        if "mqtt" in self.events.sinks and self.mqtt is None:
            raise ValueError(
                "events.sinks has 'mqtt', so an [mqtt] section must name the broker "
                "(host = ..., port = ...)"
            )
        return self

    @field_validator("device")
    @classmethod
    def _device_id(cls, v: str) -> str:
        if not DEVICE_ID.match(v):
            raise ValueError(
                "must be 1-63 characters of lowercase letters, digits, '-' or '_', "
                "starting with a letter or digit"
            )
        return v


def _describe(error: dict) -> str:
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


def parse_config(data: dict, origin: str = "config") -> AgentConfig:
    """Validate a parsed TOML document; raises ConfigError with one line per problem found."""
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = _describe(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{origin}: {first}{more}") from None


def load_config(path: str | os.PathLike) -> AgentConfig:
    """Read and validate an agent config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse_config(data, str(p))
