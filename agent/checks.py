"""``roadside agent check``: each part of the box tried once, as a pass/fail list.

Checks run in order and later ones are skipped when what they need failed, so the first
failure a technician reads is the cause, not its consequences.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from roadside.agent.hardware.checks import CheckWarning
from roadside.config.agent import AgentConfig, load_config
from roadside.errors import RoadsideError


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    warn: bool = False  # passed, but the technician should read the detail


def _attempt(name: str, fn: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, fn())
    except CheckWarning as exc:
        return CheckResult(name, True, str(exc), warn=True)
    except RoadsideError as exc:
        return CheckResult(name, False, str(exc))
    except Exception as exc:  # a check must report, never crash the checker
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")


def run_checks(config_path: Path) -> list[CheckResult]:
    results: list[CheckResult] = []
    holder: dict[str, object] = {}

    def config() -> str:
        cfg = load_config(config_path)
        holder["cfg"] = cfg
        return f"device {cfg.device}, source {cfg.source.kind}, model {cfg.detector.model}"

    results.append(_attempt("config", config))
    if not results[-1].ok:
        return results
    cfg: AgentConfig = holder["cfg"]  # type: ignore[assignment]

    def source() -> str:
        from roadside.agent.sources import open_source

        src = open_source(cfg.source)
        try:
            frame = src.read()
            if frame is None:
                raise RoadsideError("the source opened but gave no frame")
            holder["frame"] = frame
            h, w = frame.image.shape[:2]
            return f"{w}x{h} at {src.fps:.1f} fps"
        finally:
            src.close()

    def model() -> str:
        from roadside.agent.vision.detector import Detector

        det = Detector(cfg.detector)
        holder["detector"] = det
        return f"{det.manifest.name} on {det.runtime}, {len(det.wanted)} classes of interest"

    results.append(_attempt("source", source))
    results.append(_attempt("model", model))
    if "frame" in holder and "detector" in holder:

        def inference() -> str:
            det = holder["detector"]
            frame = holder["frame"]
            start = time.perf_counter()
            found = det.detect(frame.detect_image)  # type: ignore[attr-defined]
            ms = (time.perf_counter() - start) * 1000
            return f"{len(found)} objects in {ms:.0f} ms"

        results.append(_attempt("inference", inference))
    results.extend(appliance_checks(cfg))
    return results


# -- the box around the pipeline: pins, broker, disk, clock, power ----------------------------
def appliance_checks(cfg: AgentConfig) -> list[CheckResult]:
    """GPIO devices, broker reachability, disk budget, clock sync and power, in that order."""
    from roadside.agent.hardware import checks as box_checks

    results = [_attempt("gpio", lambda: box_checks.gpio(cfg.hardware))]
    mqtt = getattr(cfg, "mqtt", None)
    if mqtt is not None:
        required = "mqtt" in cfg.events.sinks
        results.append(_attempt("broker", lambda: box_checks.broker(mqtt, required)))
    results.append(_attempt("disk", lambda: box_checks.disk(cfg)))
    results.append(_attempt("clock", box_checks.clock))
    results.append(_attempt("power", box_checks.power))
    return results
