"""The box as an appliance: the devices around the pipeline, built from ``[hardware]``.

``BoxHardware`` builds what the config names (watchdog always; LED, IR light, door switch and
PIR only when their tables are present) and starts and stops them together. It takes what the
devices read or call (the pipeline's stats, the newest frame, where alerts go, who hears of
night) and hands back what the pipeline must be built with: its capture ``taps`` and its
``gate``. The agent's assembly makes both connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from gpiozero.exc import GPIOZeroError

from roadside.agent.frames import LatestFrame
from roadside.agent.hardware.ir_light import BrightnessMeter, IrLight, NightListener
from roadside.agent.hardware.liveness import BoxState, LinkProbe, PipelineLiveness
from roadside.agent.hardware.pir import PirSensor, WakeGate
from roadside.agent.hardware.status_led import StatusLed
from roadside.agent.hardware.tamper import (
    TAMPER_SNAPSHOTS,
    Publish,
    SnapshotStore,
    TamperSwitch,
)
from roadside.agent.hardware.watchdog import StateListener, SystemdNotifier, Watchdog
from roadside.agent.pipeline import Gate, PipelineStats
from roadside.agent.sources.feed import FrameTap
from roadside.config.agent import AgentConfig
from roadside.errors import ConfigError

log = logging.getLogger(__name__)


class BoxHardware:
    """Owns the appliance devices; ``start`` before the pipeline runs, ``stop`` after.

    In: ``stats`` (the pipeline's, judged by the watchdog), ``motion`` (the pipeline's motion
    gate), ``latest`` (the newest frame, pictured when the door is forced), ``publish`` (where
    a door alert goes, from gpiozero's pin thread), ``night`` (told of each day/night switch,
    from the IR light's thread), and ``link``, which reports the uplink (connected, messages
    queued) to the LED and STATUS line from the watchdog thread and must be thread-safe.

    Out: ``taps`` for the capture thread (the IR brightness meter) and ``gate``, the gate the
    pipeline asks: ``motion`` itself, or wrapped so that the PIR can wake the detector.
    """

    def __init__(
        self,
        cfg: AgentConfig,
        stats: PipelineStats,
        motion: Gate,
        latest: LatestFrame,
        publish: Publish,
        night: Sequence[NightListener] = (),
        link: LinkProbe | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        hw = cfg.hardware
        if notifier is None:  # watchdog.enabled = false: judge health (for the LED), stay quiet
            notifier = SystemdNotifier() if hw.watchdog.enabled else SystemdNotifier({})
        self.notifier = notifier
        self.taps: list[FrameTap] = []
        self.gate: Gate = motion
        self.watchdog: Watchdog | None = None
        self.led: StatusLed | None = None
        self.ir: IrLight | None = None
        self.tamper: TamperSwitch | None = None
        self.pir: PirSensor | None = None
        self._closers: list[Callable[[], None]] = []
        try:
            if hw.status_led is not None:
                self.led = StatusLed(hw.status_led.pin, hw.status_led.active_high)
                self._closers.append(self.led.close)
                self.led.show(BoxState.STARTING)
            self._build_watchdog(cfg, stats, link, [self.led.show] if self.led else [])
            if hw.ir_light is not None:
                self._build_ir(cfg, night)
            if hw.tamper is not None:
                self._build_tamper(cfg, latest, publish)
            if hw.pir is not None:
                self._build_pir(cfg, motion)
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
    def _build_watchdog(
        self,
        cfg: AgentConfig,
        stats: PipelineStats,
        link: LinkProbe | None,
        listeners: Sequence[StateListener],
    ) -> None:
        wd = cfg.hardware.watchdog
        keepalive = cfg.motion.keepalive_s if cfg.motion.enabled else 0.0
        liveness = PipelineLiveness(stats, wd, keepalive)
        self.watchdog = Watchdog(
            liveness, self.notifier, link, wd.status_interval_s, listeners=listeners
        )
        period = self.notifier.watchdog_s
        if period is not None and wd.frame_timeout_s >= period:
            log.warning(
                "hardware.watchdog.frame_timeout_s (%.0f s) is not below systemd's WatchdogSec "
                "(%.0f s): a stalled camera is caught by systemd's timer instead",
                wd.frame_timeout_s,
                period,
            )

    def _build_ir(self, cfg: AgentConfig, night: Sequence[NightListener]) -> None:
        assert cfg.hardware.ir_light is not None
        meter = BrightnessMeter()
        self.taps.append(meter)
        self.ir = IrLight(cfg.hardware.ir_light, meter, listeners=night)

    def _build_tamper(self, cfg: AgentConfig, latest: LatestFrame, publish: Publish) -> None:
        assert cfg.hardware.tamper is not None
        store = SnapshotStore(
            Path(cfg.data_dir) / TAMPER_SNAPSHOTS, keep=cfg.hardware.tamper.keep_snapshots
        )
        self.tamper = TamperSwitch(cfg.hardware.tamper, publish, latest, store)
        self._closers.append(self.tamper.close)

    def _build_pir(self, cfg: AgentConfig, motion: Gate) -> None:
        assert cfg.hardware.pir is not None
        gate = WakeGate(motion)
        self.pir = PirSensor(cfg.hardware.pir, gate)
        self._closers.append(self.pir.close)
        self.gate = gate

    # -- life ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.watchdog is not None:
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
