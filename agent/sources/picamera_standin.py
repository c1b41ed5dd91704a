"""A stand-in for picamera2 that lives beside the real thing, like gpiozero's mock pins.

It mirrors the part of picamera2's API the agent uses, with the same names, arguments and
behaviour: ``Picamera2(camera_num)``, ``sensor_modes``, ``create_video_configuration(main=…,
lores=…, controls=…, sensor=…, transform=…)``, ``configure``, ``start``, ``capture_arrays``,
``set_controls``, ``start_encoder``/``stop_encoder`` with an ``H264Encoder`` that calls its
``Output``'s ``outputframe(frame, keyframe, timestamp, packet, audio)``, ``stop``, ``close``.

Its "sensor" is a video file (``ROADSIDE_STANDIN_SCENE`` or ``Picamera2.scene``), played in a
loop at the configured frame rate, or a synthetic moving scene when none is given. Its H.264
encoder is libx264 through PyAV, which is what picamera2 itself uses on a Pi 5. Select it for
the agent with ``ROADSIDE_PICAMERA2=standin``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np

SCENE_ENV = "ROADSIDE_STANDIN_SCENE"

SENSOR_MODES: list[dict[str, Any]] = [
    {
        "format": "SRGGB10_CSI2P",
        "unpacked": "SRGGB10",
        "bit_depth": 10,
        "size": (1536, 864),
        "fps": 120.13,
        "crop_limits": (768, 432, 3072, 1728),
        "exposure_limits": (9, None),
    },
    {
        "format": "SRGGB10_CSI2P",
        "unpacked": "SRGGB10",
        "bit_depth": 10,
        "size": (2304, 1296),
        "fps": 56.03,
        "crop_limits": (0, 0, 4608, 2592),
        "exposure_limits": (13, None),
    },
    {
        "format": "SRGGB10_CSI2P",
        "unpacked": "SRGGB10",
        "bit_depth": 10,
        "size": (4608, 2592),
        "fps": 14.35,
        "crop_limits": (0, 0, 4608, 2592),
        "exposure_limits": (26, None),
    },
]

CAMERA_CONTROLS: dict[str, tuple[Any, Any, Any]] = {
    "AeEnable": (False, True, True),
    "AeExposureMode": (0, 3, 0),
    "AnalogueGain": (1.0, 16.0, 1.0),
    "ExposureTime": (26, 112015443, 20000),
    "FrameDurationLimits": (8333, 120000000, 33333),
    "NoiseReductionMode": (0, 4, 0),
    "AwbEnable": (False, True, True),
    "Brightness": (-1.0, 1.0, 0.0),
    "Contrast": (0.0, 32.0, 1.0),
    "Sharpness": (0.0, 16.0, 1.0),
}

FORMATS_MAIN = ("RGB888", "BGR888", "XBGR8888", "XRGB8888", "YUV420")


class Transform:
    """libcamera.Transform: hflip and vflip."""

    def __init__(self, hflip: int = 0, vflip: int = 0) -> None:
        self.hflip = bool(hflip)
        self.vflip = bool(vflip)


class Output:
    """picamera2.outputs.Output: ``start``, ``stop``, ``outputframe``."""

    def __init__(self, pts: Any = None) -> None:
        self.recording = False
        self.ptsoutput = pts
        self.needs_pacing = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(
        self,
        frame: bytes | None,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        """Receives one encoded frame; ``timestamp`` in microseconds."""

    def _add_stream(self, encoder_stream: Any, *args: Any, **kwargs: Any) -> None:
        pass


class H264Encoder:
    """picamera2.encoders.H264Encoder, encoding with libx264 as picamera2 does on a Pi 5.

    ``digest`` is a sha256 of every byte it produced, in order, and ``packets`` their number,
    so a test can check that what reached the recorder is exactly what was encoded.
    """

    def __init__(
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = None,
        framerate: float | None = None,
        enable_sps_framerate: bool = False,
        qp: int | None = None,
        profile: str | None = None,
    ) -> None:
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.framerate = framerate
        self.qp = qp
        self.profile = profile
        self._output: list[Output] = []
        self.size: tuple[int, int] = (0, 0)  # set by Picamera2.start_encoder, as picamera2 does
        self._codec: av.video.codeccontext.VideoCodecContext | None = None
        self.firsttimestamp: int | None = None
        self.packets = 0
        self.digest = hashlib.sha256()
        self._lock = threading.Lock()

    @property
    def output(self) -> Output | list[Output]:
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value: Output | list[Output]) -> None:
        outputs = value if isinstance(value, list) else [value]
        for out in outputs:
            if not isinstance(out, Output):
                raise RuntimeError("Must pass Output")
        self._output = outputs

    @property
    def running(self) -> bool:
        return self._codec is not None

    def start(self, quality: Any = None) -> None:
        with self._lock:
            if self._codec is not None:
                raise RuntimeError("Encoder already running")
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height = self.size
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = Fraction(1, 1_000_000)
            ctx.framerate = Fraction(round((self.framerate or 30) * 1000), 1000)
            ctx.gop_size = self.iperiod or 30
            if self.bitrate:
                ctx.bit_rate = self.bitrate
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
            if not self.repeat:
                ctx.flags |= av.codec.context.Flags.global_header
            self._codec = ctx
            self.firsttimestamp = None
            for out in self._output:
                out.start()

    def encode(self, image: np.ndarray, sensor_ns: int) -> None:
        """Encode one main-stream frame (BGR in memory: picamera2's RGB888)."""
        with self._lock:
            if self._codec is None:
                return
            ts_us = sensor_ns // 1000
            if self.firsttimestamp is None:
                self.firsttimestamp = ts_us
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(image[:, :, :3]), format="bgr24"
            )
            frame.pts = ts_us - self.firsttimestamp
            for packet in self._codec.encode(frame):
                self._emit(packet)

    def stop(self) -> None:
        with self._lock:
            if self._codec is None:
                raise RuntimeError("Encoder already stopped")
            for packet in self._codec.encode(None):
                self._emit(packet)
            self._codec = None
            for out in self._output:
                out.stop()

    def _emit(self, packet: av.Packet) -> None:
        data = bytes(packet)
        self.packets += 1
        self.digest.update(data)
        for out in self._output:
            out.outputframe(data, packet.is_keyframe, packet.pts, packet, False)


class _Scene:
    """What the stand-in sensor sees: a looped video file, or a synthetic moving scene."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._cap: cv2.VideoCapture | None = None
        self._t = 0
        if path:
            cap = cv2.VideoCapture(path)
            if not cap.isOpened():
                raise RuntimeError(f"stand-in scene {path!r} cannot be opened")
            self._cap = cap

    def next(self, size: tuple[int, int]) -> np.ndarray:
        if self._cap is not None:
            ok, image = self._cap.read()
            if not ok:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self._cap.read()
            if ok:
                return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        w, h = size
        image = np.full((h, w, 3), 90, np.uint8)
        x = (self._t * 7) % max(1, w - w // 8)
        cv2.rectangle(image, (x, h // 3), (x + w // 8, h // 3 + h // 6), (40, 40, 200), -1)
        self._t += 1
        return image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class Picamera2:
    """picamera2.Picamera2 over a scene. One camera (number 0) is attached."""

    scene: str | None = None  # a video file; default: $ROADSIDE_STANDIN_SCENE, else synthetic
    cameras = 1

    def __init__(self, camera_num: int = 0) -> None:
        if not 0 <= camera_num < self.cameras:
            raise IndexError("list index out of range")
        self.camera_num = camera_num
        self.camera_properties: dict[str, Any] = {
            "Model": "imx708-standin",
            "PixelArraySize": (4608, 2592),
            "Location": 2,
        }
        self.sensor_modes = [dict(m) for m in SENSOR_MODES]
        self.camera_controls = dict(CAMERA_CONTROLS)
        self.camera_config: dict[str, Any] | None = None
        self.controls: dict[str, Any] = {}
        self.control_history: list[dict[str, Any]] = []
        self.started = False
        self.closed = False
        self.frames = 0
        self._encoders: dict[Any, str] = {}
        self._scene: _Scene | None = None
        self._latest: tuple[int, dict[str, np.ndarray], dict[str, Any]] | None = None
        self._delivered = 0
        self._cond = threading.Condition()  # guards _latest; camera thread notifies readers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- configuration ------------------------------------------------------------------
    def create_video_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        transform: Transform | None = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        config: dict[str, Any] = {
            "use_case": use_case,
            "transform": transform or Transform(),
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": None,
            "raw": raw,
            "display": display,
            "encode": encode,
            "sensor": dict(sensor or {}),
            "controls": {
                "NoiseReductionMode": 1,
                "FrameDurationLimits": (33333, 33333),
                **(controls or {}),
            },
        }
        if lores is not None:
            config["lores"] = {"format": "YUV420", "size": (640, 480), **lores}
        return config

    def configure(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        main = camera_config["main"]
        if main["format"] not in FORMATS_MAIN:
            raise RuntimeError(f"Format {main['format']} not supported for main stream")
        lores = camera_config.get("lores")
        if lores is not None:
            self._check_lores(main, lores)
        sensor = camera_config.get("sensor") or {}
        if "output_size" in sensor:
            sizes = [tuple(m["size"]) for m in self.sensor_modes]
            if tuple(sensor["output_size"]) not in sizes:
                raise RuntimeError(f"sensor output_size {sensor['output_size']} is not a mode")
        self._check_controls(camera_config["controls"])
        self.camera_config = camera_config
        self.controls = dict(camera_config["controls"])

    @staticmethod
    def _check_lores(main: dict, lores: dict) -> None:
        if lores["format"] != "YUV420":
            raise RuntimeError("lores stream must be YUV")
        lw, lh = lores["size"]
        mw, mh = main["size"]
        if lw > mw or lh > mh:
            raise RuntimeError("lores stream dimensions may not exceed main stream")
        if lw % 2 or lh % 2:
            raise RuntimeError("lores stream sizes must be even for YUV420")

    def _check_controls(self, controls: dict[str, Any]) -> None:
        for name in controls:
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def set_controls(self, controls: dict[str, Any]) -> None:
        self._check_controls(controls)
        self.controls.update(controls)
        self.control_history.append(dict(controls))

    # -- running ------------------------------------------------------------------------
    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        self._scene = _Scene(self.scene or os.environ.get(SCENE_ENV))
        self._stop.clear()
        self.started = True
        self._thread = threading.Thread(target=self._run, name="standin-camera", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if not self.started:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.started = False
        if self._scene is not None:
            self._scene.close()
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        for encoder in list(self._encoders):
            self.stop_encoder(encoder)
        self.stop()
        self.closed = True

    def capture_arrays(
        self, names: list[str] | None = None, wait: float | None = None, signal_function: Any = None
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        """The next frame's arrays for ``names`` and its metadata (blocks like the camera)."""
        names = names or ["main"]
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            while self._latest is None or self._latest[0] <= self._delivered:
                if not self.started:
                    raise RuntimeError("Camera is not running")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("no frame from the camera in time")
                self._cond.wait(0.5 if remaining is None else min(0.5, remaining))
            seq, arrays, metadata = self._latest
            self._delivered = seq
        missing = [n for n in names if n not in arrays]
        if missing:
            raise RuntimeError(f"Stream {missing[0]} is not configured")
        return [arrays[n].copy() for n in names], dict(metadata)

    def start_encoder(
        self,
        encoder: Any = None,
        output: Any = None,
        pts: Any = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None:
        if encoder is None:
            raise RuntimeError("No encoder specified")
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        name = name or self.camera_config.get("encode") or "main"
        stream = self.camera_config.get(name)
        if stream is None:
            raise RuntimeError(f"Encode stream {name} is not configured")
        if output is not None:
            encoder.output = output
        encoder.size = tuple(stream["size"])
        if encoder.framerate is None:
            encoder.framerate = self._fps()
        encoder.start(quality=quality)
        self._encoders[encoder] = name

    def stop_encoder(self, encoders: Any = None) -> None:
        chosen = (
            list(self._encoders)
            if encoders is None
            else (encoders if isinstance(encoders, list) else [encoders])
        )
        for encoder in chosen:
            if self._encoders.pop(encoder, None) is not None:
                encoder.stop()

    # -- the sensor ---------------------------------------------------------------------
    def _fps(self) -> float:
        shortest = self.controls.get("FrameDurationLimits", (33333, 33333))[0]
        return 1_000_000 / max(1, int(shortest))

    def _run(self) -> None:
        assert self.camera_config is not None and self._scene is not None
        next_due = time.monotonic()
        while not self._stop.is_set():
            arrays, metadata = self._expose()
            for encoder, name in list(self._encoders.items()):
                encoder.encode(arrays[name], metadata["SensorTimestamp"])
            with self._cond:
                self.frames += 1
                self._latest = (self.frames, arrays, metadata)
                self._cond.notify_all()
            next_due += 1.0 / self._fps()
            delay = next_due - time.monotonic()
            if delay < -1.0:  # fell far behind (a loaded machine): do not race to catch up
                next_due = time.monotonic()
            if self._stop.wait(max(0.0, delay)):
                break

    def _expose(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        assert self.camera_config is not None and self._scene is not None
        cfg = self.camera_config
        sensor_ns = time.monotonic_ns()
        image = self._scene.next(tuple(cfg["main"]["size"]))
        transform = cfg["transform"]
        if transform.hflip:
            image = image[:, ::-1]
        if transform.vflip:
            image = image[::-1]
        image = np.ascontiguousarray(image)
        arrays: dict[str, np.ndarray] = {"main": self._as_format(image, cfg["main"]["format"])}
        if cfg["lores"] is not None:
            small = cv2.resize(image, tuple(cfg["lores"]["size"]), interpolation=cv2.INTER_AREA)
            arrays["lores"] = cv2.cvtColor(small, cv2.COLOR_BGR2YUV_I420)
        grey = float(image[::16, ::16].mean())
        metadata = {
            "SensorTimestamp": sensor_ns,
            "FrameDuration": round(1_000_000 / self._fps()),
            "ExposureTime": int(self.controls.get("ExposureTime", 20000)),
            "AnalogueGain": float(self.controls.get("AnalogueGain", 1.0)),
            "Lux": grey * 4.0,
        }
        return arrays, metadata

    @staticmethod
    def _as_format(bgr: np.ndarray, fmt: str) -> np.ndarray:
        if fmt == "RGB888":  # picamera2's RGB888 is B, G, R in memory
            return bgr
        if fmt == "BGR888":
            return bgr[:, :, ::-1].copy()
        if fmt in ("XBGR8888", "XRGB8888"):
            pixels = bgr if fmt == "XRGB8888" else bgr[:, :, ::-1]
            alpha = np.full((*bgr.shape[:2], 1), 255, np.uint8)
            return np.concatenate([pixels, alpha], axis=2)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
