"""Telling systemd the agent is ready and alive (the sd_notify protocol).

systemd passes ``NOTIFY_SOCKET`` (a datagram socket path, ``@`` for the abstract namespace)
and, with ``WatchdogSec=``, ``WATCHDOG_USEC``. The agent sends ``READY=1`` once the pipeline has
processed its first frame, ``WATCHDOG=1`` every half watchdog period *only while the pipeline
is healthy*, and ``STATUS=`` lines that ``systemctl status`` shows. A stuck camera or detector
therefore stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from roadside.agent.hardware.liveness import (
    BoxState,
    LinkProbe,
    LinkSummary,
    PipelineLiveness,
    Verdict,
    box_state,
)

log = logging.getLogger(__name__)

TICK_S = 0.25  # how often the pipeline is looked at (LED changes show within this)
FPS_WINDOW_S = 5.0  # the STATUS frame rate is measured over this long


class SystemdNotifier:
    """Sends sd_notify datagrams; does nothing when not started by systemd (no NOTIFY_SOCKET).

    Threading: only the watchdog thread sends after startup; ``send`` holds no state besides
    the socket, which the kernel serialises.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = self._address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = self._watchdog_period(env)
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.failures = 0

    @staticmethod
    def _address(value: str) -> str | None:
        if not value:
            return None
        if value.startswith("@"):
            return "\0" + value[1:]
        return value if value.startswith("/") else None

    @staticmethod
    def _watchdog_period(env: Mapping[str, str]) -> float | None:
        """The watchdog period in seconds, or None when systemd expects no pings from us."""
        try:
            usec = int(env.get("WATCHDOG_USEC", "0"))
        except ValueError:
            return None
        pid = env.get("WATCHDOG_PID")
        if usec <= 0 or (pid is not None and pid.isdigit() and int(pid) != os.getpid()):
            return None
        return usec / 1_000_000

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines in one datagram, e.g. ``send(READY=1, STATUS="…")``."""
        if self._sock is None or self.address is None:
            return False
        payload = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            self._sock.sendto(payload, self.address)
            return True
        except OSError as exc:  # systemd gone or socket full: count it, never crash the agent
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning("sd_notify failed (%d times): %s", self.failures, exc)
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


StateListener = Callable[[BoxState], None]


class Watchdog(threading.Thread):
    """Looks at the pipeline every ``TICK_S``: readiness, pings, STATUS, and the box state.

    One loop, ``while not stop.wait(tick)``, so stopping is one event away. State listeners
    (the status LED) and the link probe are called from this thread. ``state``, ``ready``,
    ``pings`` and ``fps`` are written by this thread only; others read them without a lock.
    """

    def __init__(
        self,
        liveness: PipelineLiveness,
        notifier: SystemdNotifier,
        link: LinkProbe | None = None,
        status_interval_s: float = 10.0,
        tick_s: float = TICK_S,
        listeners: Sequence[StateListener] = (),
    ) -> None:
        super().__init__(name="watchdog", daemon=True)
        self.liveness = liveness
        self.notifier = notifier
        self.link = link
        self.status_interval_s = status_interval_s
        self.tick_s = tick_s
        if notifier.watchdog_s is not None:
            self.tick_s = min(tick_s, notifier.watchdog_s / 4)
        self.listeners = tuple(listeners)
        self.state = BoxState.STARTING
        self.pings = 0
        self.ready = False
        self._stop_event = threading.Event()
        self._last_ping = 0.0
        self._last_status = 0.0
        self._status = ""
        self._healthy = True
        self._fps_mark: tuple[float, int] = (time.monotonic(), 0)
        self.fps = 0.0

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> None:
        self._announce()
        self._look()
        while not self._stop_event.wait(self.tick_s):
            self._look()

    def stop(self) -> None:
        """Stop looking and tell systemd the agent is stopping (no restart on purpose)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)
        self.notifier.send(STOPPING=1, STATUS="stopping")

    def _look(self) -> None:
        now = time.monotonic()
        verdict = self.liveness.check(now)
        link = self._probe_link()
        self._set_state(box_state(verdict, link))
        self._log_health(verdict)
        fields: dict[str, str | int] = {}
        if verdict.ready and not self.ready:
            self.ready = True
            fields["READY"] = 1
            log.info("pipeline running: ready")
        status = self._status_line(verdict, link, now)
        if status != self._status or now - self._last_status >= self.status_interval_s:
            fields["STATUS"] = status
            self._status, self._last_status = status, now
        if self._ping_due(verdict, now):
            fields["WATCHDOG"] = 1
            self._last_ping = now
            self.pings += 1
        if fields:
            self.notifier.send(**fields)

    # -- named steps --------------------------------------------------------------------
    def _probe_link(self) -> LinkSummary | None:
        if self.link is None:
            return None
        try:
            return self.link()
        except Exception:  # a broken probe must not silence the watchdog
            log.exception("link probe failed")
            return None

    def _ping_due(self, verdict: Verdict, now: float) -> bool:
        period = self.notifier.watchdog_s
        if period is None or not (verdict.ready and verdict.healthy):
            return False
        return now - self._last_ping >= period / 2

    def _status_line(self, verdict: Verdict, link: LinkSummary | None, now: float) -> str:
        if not verdict.ready or not verdict.healthy:
            return verdict.reason
        stats = self.liveness.stats
        mark_t, mark_frames = self._fps_mark
        if now - mark_t >= FPS_WINDOW_S:
            self.fps = max(0, stats.frames - mark_frames) / (now - mark_t)
            self._fps_mark = (now, stats.frames)
        elif self.fps == 0.0 and stats.started_mono:
            self.fps = stats.fps
        return ", ".join(
            (
                f"running: {self.fps:.1f} fps",
                f"detector {stats.detect_latency_s * 1000:.0f} ms",
                link.describe() if link is not None else "no uplink",
            )
        )

    def _log_health(self, verdict: Verdict) -> None:
        if verdict.healthy != self._healthy:
            if verdict.healthy:
                log.warning("healthy again: %s", verdict.reason)
            else:
                log.error("unhealthy, watchdog pings stop: %s", verdict.reason)
            self._healthy = verdict.healthy

    def _set_state(self, state: BoxState) -> None:
        if state != self.state:
            self.state = state
            log.info("box state: %s", state.value)
            self._announce()

    def _announce(self) -> None:
        for listener in self.listeners:
            try:
                listener(self.state)
            except Exception:
                log.exception("state listener failed")
