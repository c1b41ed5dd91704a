"""The agent's configuration: one TOML file, checked by typed models.

A document shared by the box (which runs it), provisioning (which writes and checks it) and
the station. Every field has a default, a description and bounds, and unknown keys are
rejected, so a typo is caught before the file leaves the station. ``load_config`` turns any
problem into one line that names the field, the bad value and what is allowed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, ByteSize, Field, field_validator, model_validator

from roadside.config.base import Section, load, parse
from roadside.config.broker import BrokerLink
from roadside.logs import LoggingConfig

COCO_INTEREST = ("person", "bicycle", "motorcycle", "car", "bus", "truck")
DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Fraction, Fraction]


ControlValue = int | float | bool | list[int] | list[float]
SinkName = Literal["console", "jsonl", "mqtt"]


def _night_controls() -> dict[str, ControlValue]:
    return {"AeExposureMode": 2}  # long exposures first


def _console_only() -> list[SinkName]:
    return ["console"]


class PicameraConfig(Section):
    """The Raspberry Pi camera (source.kind = picamera2): sensor mode, exposure, encoder.

    ``controls`` and ``night_controls`` are libcamera controls by name (ExposureTime in µs,
    AnalogueGain, AeEnable, AeExposureMode, NoiseReductionMode, FrameDurationLimits in µs…);
    night ones apply while the IR light's day/night decision says night.
    """

    camera_num: int = Field(0, ge=0, le=7, description="Which camera, when several are attached.")
    sensor_mode: int | None = Field(
        None,
        ge=0,
        le=31,
        description="Index into the camera's sensor modes (`rpicam-hello "
        "--list-cameras`); unset lets libcamera choose from the main size.",
    )
    hflip: bool = Field(False, description="Mirror the picture left-right.")
    vflip: bool = Field(False, description="Flip the picture upside down.")
    bitrate: int = Field(
        3_000_000, ge=100_000, le=25_000_000, description="H.264 bitrate of the recording, bit/s."
    )
    keyframe_s: float = Field(
        1.0, gt=0, le=10, description="Seconds between H.264 keyframes (where clips can start)."
    )
    ae_enable: bool = Field(True, description="Automatic exposure; false needs exposure_time_us.")
    exposure_time_us: int | None = Field(
        None, ge=10, le=10_000_000, description="Fixed exposure time (µs); sets AeEnable off."
    )
    analogue_gain: float | None = Field(
        None, ge=1.0, le=64.0, description="Fixed analogue gain (1.0 = none)."
    )
    controls: dict[str, ControlValue] = Field(
        default_factory=dict, description="More libcamera controls by name, applied by day."
    )
    night_max_exposure_us: int = Field(
        100_000,
        ge=1_000,
        le=1_000_000,
        description="At night, let exposures grow to this "
        "long (µs); the frame rate drops to match (FrameDurationLimits).",
    )
    night_controls: dict[str, ControlValue] = Field(
        default_factory=_night_controls,
        description="Controls applied at night (AeExposureMode 2 = long exposures first).",
    )

    @model_validator(mode="after")
    def _manual_exposure(self) -> PicameraConfig:
        if not self.ae_enable and self.exposure_time_us is None:
            raise ValueError(
                "source.camera.ae_enable = false needs source.camera.exposure_time_us (µs)"
            )
        return self


class SourceConfig(Section):
    """Where frames come from."""

    kind: Literal["file", "device", "rtsp", "picamera2"] = Field(
        "file",
        description="file: a video file; device: a V4L2/USB camera index or path; "
        "rtsp: an IP camera URL; picamera2: the Raspberry Pi camera.",
    )
    path: str | None = Field(None, description="Video file (kind=file) or device path/index.")
    url: str | None = Field(None, description="Stream URL (kind=rtsp), e.g. rtsp://host/stream.")
    pipeline: str | None = Field(
        None, description="A full OpenCV GStreamer pipeline (Jetson CSI cameras); kind=device."
    )
    loop: bool = Field(False, description="Start the file again at its end (kind=file).")
    pace: Literal["native", "fast"] = Field(
        "native",
        description="native: play a file at its own frame rate; fast: as fast as "
        "the pipeline takes frames (tests and benchmarks).",
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
    camera: PicameraConfig = Field(
        default_factory=PicameraConfig, description="Raspberry Pi camera settings (picamera2)."
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


class CountingLine(Section):
    """A named line; objects whose centre crosses it are counted by class and direction."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    points: tuple[Point, Point] = Field(
        description="Its two ends as [x, y] pairs, 0..1 (origin top-left)."
    )

    @model_validator(mode="after")
    def _two_ends(self) -> CountingLine:
        (ax, ay), (bx, by) = self.points
        if abs(ax - bx) + abs(ay - by) < 0.01:
            raise ValueError(f"events.lines {self.name!r}: its two points must be apart")
        return self


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


class RegionConfig(Section):
    """Region detection: the model looks at crops around motion and live tracks."""

    enabled: bool = Field(
        True,
        description="false: every round runs the model once on the whole frame.",
    )
    max_regions: int = Field(
        3,
        ge=1,
        le=16,
        description="Crops in one round at most (each is one model invoke); beyond it the "
        "whole frame is looked at instead.",
    )
    full_frame_s: float = Field(
        1.0,
        gt=0.0,
        le=3600.0,
        description="Look at the whole frame at least this often, seconds (finds what "
        "neither motion nor a track points to).",
    )


class DetectorConfig(Section):
    """The object detector."""

    model: str = Field(
        "yolox_nano",
        description="Manifest name (see `roadside model list`); docs/pipeline.md says why "
        "YOLOX-nano is the default.",
    )
    models_dir: str | None = Field(
        None, description="Folder holding fetched models (default: the model store)."
    )
    threads: int = Field(
        0,
        ge=0,
        le=16,
        description="Interpreter threads; 0 = CPU count minus one (capture "
        "and recording keep a core).",
    )
    runtime: Literal["auto", "litert", "tflite"] = Field(
        "auto", description="auto: ai-edge-litert, else tflite-runtime."
    )
    classes: list[str] = Field(
        default_factory=lambda: list(COCO_INTEREST),
        min_length=1,
        description="Labels that become tracks and events; others are ignored.",
    )
    score: float = Field(
        0.1,
        ge=0.05,
        le=1.0,
        description="Floor: detections scoring at least this go to the tracker, which "
        "decides with tracker.high_score and tracker.start_score what they may do.",
    )
    scores: dict[str, Annotated[float, Field(ge=0.05, le=1.0)]] = Field(
        default_factory=dict, description="Per-class floors, e.g. {person = 0.2}."
    )
    nms_iou: float = Field(0.45, gt=0.0, le=1.0, description="NMS overlap (raw-grid models).")
    max_fps: float = Field(
        5.0,
        ge=0.0,
        le=120.0,
        description="Detector rounds per second at most, by frame time (0 = every frame); "
        "a Raspberry Pi 4 affords about 5.",
    )
    regions: RegionConfig = Field(
        default_factory=RegionConfig,
        description="Crops of the model's size around motion and tracks.",
    )


class TrackerConfig(Section):
    """How detections become tracks, and tracks events (docs/pipeline.md, "Tracker")."""

    high_score: float = Field(
        0.2,
        ge=0.05,
        le=1.0,
        description="Detections scoring at least this continue tracks first and confirm "
        "them; lower ones (down to detector.score) only continue confirmed tracks.",
    )
    start_score: float = Field(
        0.25, ge=0.05, le=1.0, description="Least score of a detection that starts a new track."
    )
    confirm_hits: int = Field(
        3, ge=1, le=100, description="High-score detections before a track is confirmed."
    )
    confirm_s: float = Field(
        0.4,
        ge=0.0,
        le=10.0,
        description="...and followed for at least this long, seconds: a track is confirmed "
        "by what it showed over time, the same at any detection rate (three rounds at 5/s).",
    )
    event_score: float = Field(
        0.3,
        ge=0.05,
        le=1.0,
        description="A confirmed track becomes an event once one of its detections scored "
        "at least this.",
    )
    min_size: float = Field(
        0.03,
        ge=0.0,
        le=1.0,
        description="A track becomes an event only once its box's larger side reached this "
        "fraction of the frame height (smaller objects are too few pixels to name).",
    )
    gate: float = Field(
        3.0,
        gt=0.0,
        le=20.0,
        description="How far from its predicted place a detection may join a track, in "
        "standard deviations of the track's expected spread.",
    )
    max_missed_s: float = Field(
        1.5,
        gt=0.0,
        le=600,
        description="A confirmed track ends after the detector looked this long without "
        "seeing it (pauses of the motion gate do not count).",
    )

    @model_validator(mode="after")
    def _start_above_high(self) -> TrackerConfig:
        if self.start_score < self.high_score:
            raise ValueError(
                f"tracker.start_score ({self.start_score}) must be at least tracker.high_score "
                f"({self.high_score}): new tracks start from high-score detections only"
            )
        return self


class EventsConfig(Section):
    """What leaves the tracker."""

    count_interval_s: float = Field(
        60.0, ge=1.0, le=86400, description="Per-class counts are sent every this many seconds."
    )
    zones: list[Zone] = Field(default_factory=list, description="Named zones an event reports.")
    lines: list[CountingLine] = Field(
        default_factory=list,
        max_length=16,
        description="Counting lines: crossings per line, class and direction travel in the "
        "count messages.",
    )
    sinks: list[SinkName] = Field(default_factory=_console_only, description="Where events go.")
    jsonl_path: str | None = Field(None, description="File for the jsonl sink.")

    @model_validator(mode="after")
    def _distinct_lines(self) -> EventsConfig:
        names = [line.name for line in self.lines]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"events.lines: the name {twice[0]!r} is used twice")
        return self

    @model_validator(mode="after")
    def _jsonl_needs_path(self) -> EventsConfig:
        if "jsonl" in self.sinks and not self.jsonl_path:
            raise ValueError("events.sinks has 'jsonl', so events.jsonl_path must name a file")
        return self


class MqttConfig(BrokerLink):
    """The link to the station's MQTT broker (needed when events.sinks has "mqtt")."""

    SECTION = "mqtt"
    UNREADABLE_PASSWORD = "{key} = {path!r}: cannot read a password from it ({exc})"

    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto", description="auto: MQTT 5, falling back to 3.1.1 when the broker refuses it."
    )
    client_id: str | None = Field(
        None,
        max_length=64,
        description="MQTT client id (default: the device id). Keep it "
        "stable: the broker keeps the box's session under it.",
    )
    keepalive_s: int = Field(
        120,
        ge=10,
        le=3600,
        description="Keepalive: the broker drops the link after 1.5x this "
        "silent. Long enough for one transfer chunk on the slowest link.",
    )
    session_expiry_s: int = Field(
        172800,
        ge=0,
        le=4294967295,
        description="How long the broker keeps the box's session "
        "(subscriptions, queued commands) while it is away (MQTT 5).",
    )
    max_inflight: int = Field(
        20,
        ge=1,
        le=1000,
        description="Messages sent and not yet acknowledged, at most "
        "(lowered to the broker's receive maximum).",
    )
    reconnect_min_s: float = Field(
        1.0, gt=0, le=3600, description="First wait before reconnecting (doubles, with jitter)."
    )
    reconnect_max_s: float = Field(
        120.0, gt=0, le=86400, description="Longest wait between reconnect attempts."
    )

    @model_validator(mode="after")
    def _reconnect_ordered(self) -> MqttConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"mqtt.reconnect_min_s ({self.reconnect_min_s}) must not exceed "
                f"mqtt.reconnect_max_s ({self.reconnect_max_s})"
            )
        return self


class UplinkConfig(Section):
    """The durable outbox in front of the MQTT link, and the health heartbeat."""

    outbox_max_rows: int = Field(
        500_000,
        ge=100,
        le=100_000_000,
        description="Messages the outbox holds at most; past "
        "it, health goes first, then counts are folded, then the oldest counts and events go.",
    )
    outbox_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024**3,
        description="Payload bytes the outbox holds at most (same policy as outbox_max_rows).",
    )
    outbox_sync: Literal["full", "normal"] = Field(
        "full",
        description="full: every message is on disk before publish() returns (survives "
        "power cuts); normal: faster, the last moments may be lost on a power cut.",
    )
    health_period_s: float = Field(
        300.0, ge=1, le=86400, description="Seconds between health heartbeats."
    )
    stop_flush_s: float = Field(
        3.0,
        ge=0,
        le=60,
        description="On a clean stop, wait up to this long for the outbox "
        "to empty while the link is up; what is left is sent after the next start.",
    )


_PIN_NAME = re.compile(r"^(GPIO|BCM|BOARD|J8:|WPI)\d{1,2}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _check_pin(v: int | str) -> int | str:
    if isinstance(v, int):
        if not 0 <= v <= 53:
            raise ValueError("a BCM GPIO number is 0..53 (the 40-pin header uses 2..27)")
        return v
    if not _PIN_NAME.match(v):
        raise ValueError(
            "use a BCM number such as 17, or a gpiozero pin name such as 'GPIO17' or 'BOARD11'"
        )
    return v


GpioPin = Annotated[int | str, AfterValidator(_check_pin)]


class StatusLedConfig(Section):
    """The LED a technician reads: starting, online, offline and queueing, fault."""

    pin: GpioPin = Field(description="GPIO of the LED (BCM number or gpiozero pin name).")
    active_high: bool = Field(True, description="false when the pin sinks the LED current.")


class IrLightConfig(Section):
    """The infrared illuminator and the camera's night settings: when is it night?"""

    pin: GpioPin | None = Field(
        None,
        description="GPIO driving the IR relay; unset switches only the camera's night settings.",
    )
    active_high: bool = Field(
        True, description="false for relay boards that switch on a low pin (most do)."
    )
    mode: Literal["brightness", "schedule"] = Field(
        "brightness", description="brightness: from the picture; schedule: by the clock."
    )
    on_below: float = Field(
        35.0,
        ge=0,
        le=255,
        description="Night begins when the scene's mean grey level (0..255) stays below this.",
    )
    off_above: float = Field(
        90.0,
        ge=0,
        le=255,
        description="Day begins when it stays above this; keep it above "
        "the level the IR light itself gives at night.",
    )
    confirm_s: float = Field(
        20.0, ge=0, le=3600, description="A level must hold this long before switching."
    )
    hold_s: float = Field(
        300.0, ge=0, le=86400, description="Least time between two switches (no flapping)."
    )
    on_at: str = Field("19:00", description="mode = schedule: night from this local time.")
    off_at: str = Field("06:30", description="mode = schedule: day from this local time.")

    @field_validator("on_at", "off_at")
    @classmethod
    def _clock_time(cls, v: str) -> str:
        if not _CLOCK.match(v):
            raise ValueError("must be a 24-hour local time HH:MM, e.g. '19:00'")
        return v

    @model_validator(mode="after")
    def _band(self) -> IrLightConfig:
        if self.off_above <= self.on_below:
            raise ValueError(
                "hardware.ir_light.off_above must be greater than on_below (the gap between "
                "them keeps the light from flapping)"
            )
        return self


class TamperConfig(Section):
    """The door switch: opening the box sends an urgent event and keeps a snapshot."""

    pin: GpioPin = Field(description="GPIO of the door switch.")
    open_when: Literal["released", "pressed"] = Field(
        "released", description="released: the switch is held closed by the shut door."
    )
    pull_up: bool = Field(True, description="Internal pull-up: the switch connects to ground.")
    bounce_s: float = Field(0.05, ge=0, le=2, description="Ignore contact bounce this long.")
    keep_snapshots: int = Field(
        50, ge=1, le=10_000, description="Tamper snapshots kept under data_dir/snapshots."
    )


class PirConfig(Section):
    """An optional passive-infrared motion sensor that wakes the detector."""

    pin: GpioPin = Field(description="GPIO of the PIR sensor's output.")
    wake_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Run the detector on every frame this long after a PIR trigger.",
    )


class WatchdogConfig(Section):
    """When the agent stops telling systemd it is alive (systemd then restarts it)."""

    enabled: bool = Field(
        True,
        description="Speak sd_notify when started by systemd (health is judged anyway, "
        "for the status LED).",
    )
    frame_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="Unhealthy when no frame was processed this long."
    )
    detect_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Unhealthy when the detector has not answered this "
        "long beyond the motion keepalive.",
    )
    status_interval_s: float = Field(
        10.0, ge=1, le=3600, description="How often the STATUS line is refreshed."
    )


class HardwareConfig(Section):
    """The box as an appliance: status LED, IR light, door switch, PIR, systemd watchdog.

    Every device is optional: leave its table out when the box does not have it. Pins are
    driven by gpiozero (Raspberry Pi); on other boards leave them unset.
    """

    status_led: StatusLedConfig | None = None
    ir_light: IrLightConfig | None = None
    tamper: TamperConfig | None = None
    pir: PirConfig | None = None
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)

    def pins(self) -> dict[str, int | str]:
        """The configured pins by device name."""
        found: dict[str, int | str] = {}
        for name in ("status_led", "ir_light", "tamper", "pir"):
            device = getattr(self, name)
            if device is not None and device.pin is not None:
                found[name] = device.pin
        return found

    @model_validator(mode="after")
    def _distinct_pins(self) -> HardwareConfig:
        seen: dict[str, str] = {}
        for name, pin in self.pins().items():
            key = re.sub(r"^(GPIO|BCM)", "", str(pin))
            if key in seen:
                raise ValueError(
                    f"hardware.{name}.pin = {pin!r} is already used by hardware.{seen[key]}"
                )
            seen[key] = name
        return self


class TransferConfig(Section):
    """Uploads of clips and snapshots to the station: chunked, windowed, resumable."""

    device_cert: str | None = Field(
        None,
        description="The box's certificate that signs every upload (default: mqtt.tls_cert).",
    )
    device_key: str | None = Field(
        None, description="Its private key (PEM; default: mqtt.tls_key)."
    )

    chunk_kib: int = Field(
        16,
        ge=16,
        le=64,
        description="Chunk size, KiB: small chunks lose less to a cut, large "
        "ones cost less per byte.",
    )
    window: int = Field(
        4,
        ge=1,
        le=64,
        description="Chunks sent and not yet acknowledged by the station, at "
        "most; chunk_kib x window should cover the link's rate x round trip.",
    )
    kbps: float = Field(
        0.0,
        ge=0,
        le=1_000_000,
        description="Upload cap, kbit/s, so events keep a share of a "
        "slow link; 0 = no cap (the window and the uplink's priorities still apply).",
    )
    deadline_s: float = Field(
        6 * 3600.0,
        ge=60,
        le=7 * 86400,
        description="A transfer not finished this long after "
        "it started fails, and the station is told to drop it.",
    )
    ack_timeout_s: float = Field(
        30.0,
        ge=2,
        le=3600,
        description="With chunks in flight and no word from the station "
        "for this long, ask it what it holds before sending more.",
    )


class UpdateConfig(Section):
    """Software updates from the station: signed releases into A/B slots, with rollback."""

    enabled: bool = Field(
        True, description="Take releases the station offers (needs [mqtt] and release_key)."
    )
    release_key: str = Field(
        "/etc/roadside/release.pub",
        description="The station's release public key (Ed25519, PEM): only releases "
        "signed by it are installed.",
    )
    root: str = Field(
        "/",
        description="Prefix of /opt/roadside (releases/<version>, current, stable); "
        "another folder only for tests and benches.",
    )
    health_s: float = Field(
        300.0,
        ge=30,
        le=86400,
        description="A new release must be healthy (watchdog ready and pinging, link up) "
        "within this long after the switch, or the box goes back to the previous one.",
    )
    confirm_s: float = Field(
        20.0,
        ge=0,
        le=3600,
        description="... and stay healthy this long before it counts as healthy.",
    )
    max_starts: int = Field(
        3,
        ge=1,
        le=100,
        description="A new release that has not become healthy after this many starts "
        "is rolled back at once (an agent that exits at start).",
    )
    keep: int = Field(2, ge=2, le=10, description="Release slots kept on the card.")
    max_bytes: int = Field(
        1 << 30, ge=1 << 20, le=1 << 34, description="Larger releases are refused, bytes."
    )


class CommandsConfig(Section):
    """Requests from the station (cmd/<name>): clip, snapshot, cancel, ping, status."""

    enabled: bool = Field(True, description="Listen for commands when [mqtt] is configured.")
    max_clip_s: float = Field(
        900.0, ge=1, le=86400, description="Longest clip one request may ask for, seconds."
    )
    max_request_bytes: int = Field(
        16384, ge=256, le=1 << 20, description="Larger command messages are refused."
    )
    inbox_size: int = Field(
        2000,
        ge=16,
        le=100_000,
        description="Commands received and waiting on the box's card to be handled, at most; "
        "more are answered busy at once.",
    )
    max_jobs: int = Field(
        8,
        ge=1,
        le=1000,
        description="Clip and snapshot requests waiting or running, at most; "
        "more are refused as busy.",
    )
    snapshot_width: int = Field(
        640, ge=64, le=4096, description="Snapshots are scaled down to this width."
    )
    snapshot_quality: int = Field(80, ge=10, le=100, description="JPEG quality of snapshots.")
    best_frames: int = Field(
        500,
        ge=0,
        le=100_000,
        description="Best-frame JPEGs kept on the box, one per event, "
        "for snapshot requests by event id (oldest dropped first).",
    )
    best_frames_bytes: Annotated[ByteSize, Field(ge=0)] = Field(
        ByteSize(64 * 1024**2),
        description='Disk space the best-frame JPEGs may take, e.g. "64MiB"; '
        "the oldest are dropped beyond it.",
    )
    remember_days: float = Field(
        30.0,
        ge=1,
        le=3650,
        description="Request ids are remembered (a repeat is not run again) for this long.",
    )


class FleetConfig(Section):
    """Changes sent from the station (``roadside fleet``): how a new config proves itself.

    A new config runs on trial: the agent restarts with it and watches itself for
    ``health_s`` (frames flowing, the detector answering, the outbox draining while the link
    is up; for a change of the broker link, reaching the broker). Healthy, it becomes
    current; not, the previous config is put back. docs/fleet.md has the whole story.
    """

    health_s: float = Field(
        60.0,
        ge=5,
        le=3600,
        description="How long a new config must keep the box healthy before it is kept; "
        "cover a model load, the first frames and a reconnect on a slow link.",
    )
    max_starts: int = Field(
        3,
        ge=1,
        le=8,
        description="Starts an unconfirmed config gets: an agent that keeps exiting at start "
        "with it (a crash loop) has it rolled back on the next start.",
    )


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


class RecordingEncoderConfig(Section):
    """How frames are encoded (libx264) where no camera encoder exists: USB, RTSP, file.

    On a Raspberry Pi camera (source.kind = picamera2) the camera's H.264 is written as is;
    its bitrate and keyframe interval are set in [source.camera].
    """

    preset: Literal[X264_PRESETS] = Field(  # type: ignore[valid-type]
        "veryfast",
        description="x264 speed/size trade-off: faster presets use less CPU and more bytes.",
    )
    bitrate: int = Field(2_000_000, ge=100_000, le=50_000_000, description="Target bitrate, bit/s.")
    fps: float | None = Field(
        15.0,
        gt=0,
        le=120,
        description="Frames recorded per second (extra ones are skipped); "
        "unset records every frame.",
    )
    width: int | None = Field(
        None,
        ge=64,
        le=7680,
        description="Recorded width; unset keeps the capture size "
        "(with only width or height set, the other keeps the aspect).",
    )
    height: int | None = Field(None, ge=48, le=4320, description="Recorded height.")
    threads: int = Field(
        1,
        ge=0,
        le=16,
        description="Encoder threads; 0 lets libx264 choose (it then takes "
        "every core, which detection needs).",
    )


class RecordingConfig(Section):
    """The recording ring on disk: mode, byte budget, segments, pre/post-roll, retention."""

    mode: Literal["continuous", "events", "off"] = Field(
        "off",
        description="continuous: every second goes to disk; events: only pre_roll_s "
        "before to post_roll_s after events (spares the SD card); off: nothing is recorded.",
    )
    dir: str | None = Field(
        None, description="Recordings folder (segments and index); default <data_dir>/segments."
    )
    budget_bytes: Annotated[ByteSize, Field(ge=1024 * 1024)] = Field(
        ByteSize(4 * 1024**3),
        description="Disk space the recordings may take, e.g. "
        '"8GiB"; the oldest footage is evicted beyond it.',
    )
    max_age_days: float | None = Field(
        None,
        gt=0,
        le=3650,
        description="Also evict footage older than this (applied only "
        "while the clock is synchronised); unset keeps footage until the budget needs room.",
    )
    event_bonus_days: float = Field(
        7.0,
        ge=0,
        le=3650,
        description="Footage that overlaps an event is kept as if it were "
        "this much younger (so it is evicted last).",
    )
    keep_free_bytes: Annotated[ByteSize, Field(ge=0)] = Field(
        ByteSize(256 * 1024**2),
        description="Free space the recorder leaves on the card for "
        "the outbox and the system: below it, the oldest footage is evicted.",
    )
    segment_s: float = Field(
        10.0, ge=1, le=300, description="Length of one segment file, seconds (cut on keyframes)."
    )
    keyframe_s: float = Field(
        2.0,
        ge=0.2,
        le=10,
        description="Seconds between keyframes when encoding: clips start "
        "at the keyframe at or before the time asked.",
    )
    pre_roll_s: float = Field(
        5.0, ge=0, le=120, description="events mode: footage kept before an event starts, s."
    )
    post_roll_s: float = Field(
        10.0,
        ge=0,
        le=600,
        description="events mode: recording goes on this long after the last event ended, s.",
    )
    pre_roll_max_bytes: Annotated[ByteSize, Field(ge=256 * 1024)] = Field(
        ByteSize(32 * 1024**2), description="events mode: RAM the pre-roll may hold."
    )
    queue_max_bytes: Annotated[ByteSize, Field(ge=1024 * 1024)] = Field(
        ByteSize(64 * 1024**2),
        description="Frames and packets waiting for the recorder, at "
        "most; beyond it they are dropped and counted (capture never waits).",
    )
    encoder: RecordingEncoderConfig = Field(default_factory=RecordingEncoderConfig)

    @model_validator(mode="after")
    def _keyframes_fit(self) -> RecordingConfig:
        if self.keyframe_s > self.segment_s:
            raise ValueError(
                f"recording.keyframe_s ({self.keyframe_s}) must not exceed recording.segment_s "
                f"({self.segment_s}): segments are cut on keyframes"
            )
        return self

    def folder(self, data_dir: str) -> Path:
        """Where the segments and their index live."""
        return Path(self.dir) if self.dir else Path(data_dir) / "segments"


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
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    mqtt: MqttConfig | None = Field(None, description='The broker link (sinks = ["mqtt"]).')
    uplink: UplinkConfig = Field(default_factory=UplinkConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    update: UpdateConfig = Field(default_factory=UpdateConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)

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


def parse_config(data: dict, origin: str = "config") -> AgentConfig:
    """Validate a parsed TOML document; raises ConfigError naming the first problem found."""
    return parse(AgentConfig, data, origin)


def load_config(path: str | os.PathLike) -> AgentConfig:
    """Read and validate an agent config file."""
    return load(AgentConfig, path)
