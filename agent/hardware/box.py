"""The box as an appliance: the devices around the pipeline, built from ``[hardware]``.

``BoxHardware`` assembles what the config names (watchdog always; LED, IR light, door switch
and PIR only when their tables are present), hooks them to the pipeline (capture taps, the
motion gate, its stats) and starts and stops them together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from gpiozero.exc import GPIOZeroError

from roadside.agent.hardware.ir_light import BrightnessMeter, IrLight
from roadside.agent.hardware.liveness import BoxState, LinkProbe, PipelineLiveness
from roadside.agent.hardware.pir import PirSensor, WakeGate
from roadside.agent.hardware.status_led import StatusLed
from roadside.agent.hardware.tamper import (
    TAMPER_SNAPSHOTS,
    Publish,
    SnapshotStore,
    TamperSwitch,
)
from roadside.agent.hardware.watchdog import SystemdNotifier, Watchdog
from roadside.agent.pipeline import Pipeline
from roadside.config.agent import AgentConfig
from roadside.errors import ConfigError

log = logging.getLogger(__name__)


@runtime_checkable
class NightAware(Protocol):
    """A source that has night settings (the Pi camera)."""

    def set_night(self, night: bool) -> None: ...


class BoxHardware:
    """Owns the appliance devices; ``start`` before the pipeline runs, ``stop`` after.

    ``link`` reports the uplink (connected, messages queued) to the LED and STATUS line; it is
    called on the watchdog thread and must be thread-safe.
    """

    def __init__(
        self,
        cfg: AgentConfig,
        pipeline: Pipeline,
        publish: Publish,
        link: LinkProbe | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        hw = cfg.hardware
        if notifier is None:  # watchdog.enabled = false: judge health (for the LED), stay quiet
            notifier = SystemdNotifier() if hw.watchdog.enabled else SystemdNotifier({})
        self.notifier = notifier
        self.watchdog: Watchdog | None = None
        self.led: StatusLed | None = None
        self.ir: IrLight | None = None
        self.tamper: TamperSwitch | None = None
        self.pir: PirSensor | None = None
        self._closers: list[Callable[[], None]] = []
        try:
            self._build_watchdog(cfg, pipeline, link)
            if hw.status_led is not None:
                self.led = StatusLed(hw.status_led.pin, hw.status_led.active_high)
                self._closers.append(self.led.close)
                self.led.show(BoxState.STARTING)
            if hw.ir_light is not None:
                self._build_ir(cfg, pipeline)
            if hw.tamper is not None:
                self._build_tamper(cfg, pipeline, publish)
            if hw.pir is not None:
                gate = WakeGate(pipeline.gate)
                pipeline.gate = gate  # type: ignore[assignment]
                self.pir = PirSensor(hw.pir, gate)
                self._closers.append(self.pir.close)
        except GPIOZeroError as exc:
            self.stop()
            named = ", ".join(f"hardware.{name}.pin = {pin!r}" for name, pin in hw.pins().items())
            raise ConfigError(
                f"{named}: cannot claim the pins ({exc}); gpiozero drives Raspberry Pi pins "
                "only: on other boards leave the [hardware] pin tables out"
            ) from None
        except Exception:
            self.stop()
            raise

    # -- assembly -----------------------------------------------------------------------
    def _build_watchdog(self, cfg: AgentConfig, pipeline: Pipeline, link: LinkProbe | None) -> None:
        wd = cfg.hardware.watchdog
        keepalive = cfg.motion.keepalive_s if cfg.motion.enabled else 0.0
        liveness = PipelineLiveness(pipeline.stats, wd, keepalive)
        self.watchdog = Watchdog(liveness, self.notifier, link, wd.status_interval_s)
        period = self.notifier.watchdog_s
        if period is not None and wd.frame_timeout_s >= period:
            log.warning(
                "hardware.watchdog.frame_timeout_s (%.0f s) is not below systemd's WatchdogSec "
                "(%.0f s): a stalled camera is caught by systemd's timer instead",
                wd.frame_timeout_s,
                period,
            )

    def _build_ir(self, cfg: AgentConfig, pipeline: Pipeline) -> None:
        assert cfg.hardware.ir_light is not None
        meter = BrightnessMeter()
        pipeline.capture.taps.append(meter)
        self.ir = IrLight(cfg.hardware.ir_light, meter)
        source = pipeline.source
        if isinstance(source, NightAware):
            self.ir.listeners.append(source.set_night)

    def _build_tamper(self, cfg: AgentConfig, pipeline: Pipeline, publish: Publish) -> None:
        assert cfg.hardware.tamper is not None
        latest = pipeline.latest
        store = SnapshotStore(
            Path(cfg.data_dir) / TAMPER_SNAPSHOTS, keep=cfg.hardware.tamper.keep_snapshots
        )
        self.tamper = TamperSwitch(cfg.hardware.tamper, publish, latest, store)
        self._closers.append(self.tamper.close)

    # -- life ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.watchdog is not None:
            if self.led is not None:
                self.watchdog.listeners.append(self.led.show)
            self.watchdog.start()
        if self.ir is not None:
            self.ir.start()
        if self.tamper is not None:
            self.tamper.check_at_start()

    def stop(self) -> None:
        """Stop every device; safe to call more than once and after a failed build."""
        if self.watchdog is not None and self.watchdog.is_alive():
            self.watchdog.stop()
        if self.ir is not None:
            self.ir.stop()
            self.ir = None
        while self._closers:
            close = self._closers.pop()
            try:
                close()
            except Exception:
                log.exception("closing a device failed")
        self.notifier.close()
