"""The Raspberry Pi camera through picamera2: lores frames for detection, H.264 for recording.

One camera configuration gives two streams: ``main`` at the recording size, encoded by
picamera2's ``H264Encoder`` (the hardware encoder on a Pi 4, libav in software on a Pi 5,
chosen by picamera2 itself) and handed to the recorder packet by packet, never re-encoded;
and ``lores`` (YUV420, a few hundred pixels wide) that the motion gate and detector read.

The adapter is thin and written against picamera2's own API. Which implementation it talks
to is chosen by ``ROADSIDE_PICAMERA2``: unset means the real ``picamera2`` package;
``standin`` means ``picamera_standin``, which mirrors the same API over a video file so the
whole path runs without a Pi (the way ``GPIOZERO_PIN_FACTORY=mock`` works for pins).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from roadside.agent.frames import Frame
from roadside.agent.sources.base import PacketSink
from roadside.config.agent import PicameraConfig, SourceConfig
from roadside.errors import SourceError

log = logging.getLogger(__name__)

API_ENV = "ROADSIDE_PICAMERA2"


@dataclass(frozen=True)
class Picamera2Api:
    """The names the adapter uses, from picamera2 or from the stand-in."""

    Picamera2: Any
    H264Encoder: Any
    Output: Any
    Transform: Any
    name: str


def load_api(which: str | None = None) -> Picamera2Api:
    """The picamera2 implementation named by ``which`` or ``$ROADSIDE_PICAMERA2``."""
    which = (which or os.environ.get(API_ENV) or "picamera2").strip().lower()
    if which == "standin":
        from roadside.agent.sources import picamera_standin as standin

        return Picamera2Api(
            standin.Picamera2, standin.H264Encoder, standin.Output, standin.Transform, "standin"
        )
    if which != "picamera2":
        raise SourceError(f"{API_ENV}={which!r}: use 'picamera2' (the camera) or 'standin'")
    try:
        from libcamera import Transform
        from picamera2 import Picamera2
        from picamera2.encoders import H264Encoder
        from picamera2.outputs import Output
    except ImportError as exc:
        raise SourceError(
            f"source.kind = 'picamera2' needs the picamera2 package ({exc}); on Raspberry Pi OS "
            "install it with `sudo apt install python3-picamera2` and create the venv with "
            "--system-site-packages"
        ) from None
    return Picamera2Api(Picamera2, H264Encoder, Output, Transform, "picamera2")


def packet_output_class(base: type) -> type:
    """An ``Output`` subclass (picamera2 checks the type) that forwards packets to a sink."""

    class PacketOutput(base):
        """Forwards each encoded frame to the recorder unchanged, with its time in seconds."""

        def __init__(self, sink: PacketSink) -> None:
            super().__init__()
            self.sink = sink
            self.packets = 0

        def outputframe(
            self,
            frame: bytes | None,
            keyframe: bool = True,
            timestamp: int | None = None,
            packet: object = None,
            audio: bool = False,
        ) -> None:
            if audio or frame is None:
                return
            self.packets += 1
            self.sink.write_packet(bytes(frame), (timestamp or 0) / 1_000_000, bool(keyframe))

    return PacketOutput


def lores_size(width: int, height: int, lores_width: int) -> tuple[int, int]:
    """Lores size with the main stream's aspect, even sides (YUV420), never larger than main."""
    w = min(lores_width, width) & ~1
    h = max(2, round(height * w / width)) & ~1
    return w, h


class Picamera2Source:
    """Frames from the Pi camera: ``image`` from main (BGR), ``lores`` (BGR) for detection.

    Threading: ``read`` runs on the capture thread; picamera2 runs its own camera and encoder
    threads and calls the packet output from them. ``set_night`` may be called from any thread
    (picamera2's ``set_controls`` is thread-safe: it queues controls for the next request).
    """

    live = True

    def __init__(
        self,
        size: tuple[int, int],
        fps: float,
        lores_width: int,
        camera: PicameraConfig,
        api: Picamera2Api | None = None,
    ) -> None:
        self.size = size
        self.fps = fps
        self.lores = lores_size(size[0], size[1], lores_width)
        self.camera = camera
        self.api = api or load_api()
        self.night = False
        self.packet_sink: PacketSink | None = None
        self.output: Any = None
        self._cam: Any = None
        self._encoder: Any = None
        self._index = 0
        self._lock = threading.Lock()  # open/close/encoder start-stop, from any thread

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> Picamera2Source:
        return cls((cfg.width, cfg.height), cfg.fps, cfg.lores_width, cfg.camera)

    # -- configuration ------------------------------------------------------------------
    def _frame_us(self) -> int:
        return round(1_000_000 / self.fps)

    def day_controls(self) -> dict[str, Any]:
        c = self.camera
        controls: dict[str, Any] = {"FrameDurationLimits": (self._frame_us(), self._frame_us())}
        if c.exposure_time_us is not None:
            controls["AeEnable"] = False
            controls["ExposureTime"] = c.exposure_time_us
        else:
            controls["AeEnable"] = c.ae_enable
        if c.analogue_gain is not None:
            controls["AnalogueGain"] = c.analogue_gain
        controls.update(c.controls)
        return controls

    def night_controls(self) -> dict[str, Any]:
        controls = self.day_controls()
        longest = max(self._frame_us(), self.camera.night_max_exposure_us)
        controls["FrameDurationLimits"] = (self._frame_us(), longest)
        controls.update(self.camera.night_controls)
        return controls

    def _sensor(self, cam: Any) -> dict[str, Any] | None:
        index = self.camera.sensor_mode
        if index is None:
            return None
        modes = cam.sensor_modes
        if index >= len(modes):
            raise SourceError(
                f"source.camera.sensor_mode = {index}: this camera has {len(modes)} modes "
                f"(0..{len(modes) - 1})"
            )
        mode = modes[index]
        return {"output_size": tuple(mode["size"]), "bit_depth": mode["bit_depth"]}

    def _configuration(self, cam: Any) -> Any:
        kwargs: dict[str, Any] = {
            "main": {"size": self.size, "format": "RGB888"},  # BGR in memory, as OpenCV wants
            "lores": {"size": self.lores, "format": "YUV420"},
            "controls": self.day_controls(),
            "encode": "main",
        }
        sensor = self._sensor(cam)
        if sensor is not None:
            kwargs["sensor"] = sensor
        if self.camera.hflip or self.camera.vflip:
            kwargs["transform"] = self.api.Transform(
                hflip=int(self.camera.hflip), vflip=int(self.camera.vflip)
            )
        return cam.create_video_configuration(**kwargs)

    # -- FrameSource --------------------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            try:
                cam = self.api.Picamera2(self.camera.camera_num)
            except (RuntimeError, IndexError, OSError) as exc:
                raise SourceError(
                    f"cannot open the Pi camera {self.camera.camera_num}: {exc} (is it "
                    "connected, and does `rpicam-hello --list-cameras` see it?)"
                ) from None
            try:
                cam.configure(self._configuration(cam))
                cam.start()
            except SourceError:
                cam.close()
                raise
            except Exception as exc:
                cam.close()
                raise SourceError(f"the Pi camera refused its configuration: {exc}") from None
            self._cam = cam
            log.info(
                "Pi camera %s (%s): main %dx%d, lores %dx%d at %.1f fps",
                cam.camera_properties.get("Model", "?"),
                self.api.name,
                *self.size,
                *self.lores,
                self.fps,
            )
            if self.packet_sink is not None:
                self._start_encoder()

    def read(self) -> Frame | None:
        cam = self._cam
        if cam is None:
            raise SourceError("source not open")
        (main, lores), metadata = cam.capture_arrays(["main", "lores"])
        mono, wall = self._capture_time(metadata)
        frame = Frame(
            image=np.ascontiguousarray(main[:, :, :3]),
            time=wall,
            mono=mono,
            index=self._index,
            lores=cv2.cvtColor(lores, cv2.COLOR_YUV2BGR_I420),
        )
        self._index += 1
        return frame

    def close(self) -> None:
        with self._lock:
            cam, self._cam = self._cam, None
            if cam is None:
                return
            self._stop_encoder(cam)
            try:
                cam.stop()
            finally:
                cam.close()

    # -- recording and night --------------------------------------------------------------
    def attach_recorder(self, sink: PacketSink) -> None:
        """Send the main stream, H.264-encoded by picamera2, to ``sink.write_packet``."""
        with self._lock:
            self.packet_sink = sink
            if self._cam is not None and self._encoder is None:
                self._start_encoder()

    def set_night(self, night: bool) -> None:
        """Apply the night (long exposure) or day controls; called on day/night changes."""
        self.night = night
        cam = self._cam
        if cam is not None:
            cam.set_controls(self.night_controls() if night else self.day_controls())

    def _start_encoder(self) -> None:
        assert self.packet_sink is not None
        iperiod = max(1, round(self.fps * self.camera.keyframe_s))
        encoder = self.api.H264Encoder(bitrate=self.camera.bitrate, repeat=True, iperiod=iperiod)
        self.output = packet_output_class(self.api.Output)(self.packet_sink)
        self._cam.start_encoder(encoder, self.output, name="main")
        self._encoder = encoder

    def _stop_encoder(self, cam: Any) -> None:
        if self._encoder is None:
            return
        try:
            cam.stop_encoder(self._encoder)
        finally:
            self._encoder = None

    @staticmethod
    def _capture_time(metadata: dict[str, Any]) -> tuple[float, float]:
        """(monotonic, epoch) capture time: the sensor's timestamp when it is on our clock."""
        now_mono, now_wall = time.monotonic(), time.time()
        sensor_ns = metadata.get("SensorTimestamp") if metadata else None
        mono = now_mono
        if sensor_ns:
            candidate = sensor_ns / 1e9
            if 0 <= now_mono - candidate < 2.0:  # CLOCK_BOOTTIME: same as monotonic on a Pi
                mono = candidate
        return mono, now_wall - (now_mono - mono)
