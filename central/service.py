"""``roadside central run``: one ingest worker (start several for more throughput) and, in one
of them, the clip and snapshot receiver; until SIGINT/SIGTERM or ``duration``. A stats line
goes to the log every ``report_s`` seconds.

A broker that does not answer is waited for, with a WARNING at every attempt (paho's waits,
1 s doubling to 30 s): at a station it is mosquitto starting late or restarting, the workers'
persistent sessions lose nothing meanwhile, and a service that exited instead would hit
systemd's start limit and stay down after the broker came back. A broker that refuses the
station's credentials ends the run at once (ExitCode.NO_PERMISSION, which the unit does not
restart): the same config gets the same answer. A ``duration`` run that never reached the
broker ends with ExitCode.UNAVAILABLE, so a script sees it."""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from roadside.central.config import CentralConfig
from roadside.central.ingest import IngestStats, IngestWorker
from roadside.central.mqtt import BrokerRefusedError, BrokerUnreachableError
from roadside.central.receiver import station_receiver
from roadside.central.receiver_service import ReceiverService
from roadside.central.store import Store
from roadside.errors import UnwritableError

log = logging.getLogger(__name__)

CHECK_S = 0.5  # how soon a refusal by the broker ends the run


def writable_folder(path: Path, setting: str) -> Path:
    """``path``, made if missing, once a file can be written in it; one line otherwise (the
    service's user, a read-only mount, a file where the folder should be)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UnwritableError(
            f"{setting} = {str(path)!r}: the station cannot write there "
            f"({exc.strerror or exc}); make it writable for this user or set another {setting}"
        ) from None
    return path


class CentralService:
    """Owns the store and the worker; ``run`` blocks on one stop event."""

    def __init__(
        self, cfg: CentralConfig, worker: str | None = None, receiver: bool | None = None
    ) -> None:
        self.cfg = cfg
        writable_folder(Path(cfg.data_dir), "data_dir")
        writable_folder(cfg.clips_path, "officer.clips_dir")
        self.store = Store(cfg.database_url, cfg.database.echo)
        self.ingest = IngestWorker(cfg, self.store, worker)
        self.receiver: ReceiverService | None = None
        if cfg.ingest.receiver if receiver is None else receiver:
            files = station_receiver(cfg, self.store)
            self.receiver = ReceiverService(
                cfg.broker,
                files,
                client_id=f"roadside-receiver-{cfg.ingest.group}",
                session_expiry_s=cfg.broker.session_expiry_s,
            )
        self.web = None
        if cfg.web.enabled:
            from roadside.central.web.server import WebServer

            self.web = WebServer(cfg, self.store)
        self.stop_event = threading.Event()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %s: stopping", signal.Signals(signum).name)
        self.stop_event.set()

    def run(self, duration: float | None = None, report_s: float = 60.0) -> IngestStats:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)
        log.info(
            "central: store %s, broker %s:%d, worker %s",
            self.store.safe_url,
            self.cfg.broker.host,
            self.cfg.broker.effective_port,
            self.ingest.worker,
        )
        self.ingest.start()
        if self.receiver is not None:
            self.receiver.start()
        if self.web is not None:
            self.web.start()
            log.warning("central: console at %s", self.web.url)
        deadline = None if duration is None else time.monotonic() + duration
        next_report = time.monotonic() + report_s
        try:
            while not self.ingest.gave_up.is_set():
                now = time.monotonic()
                if now >= next_report:
                    log.info("central: %s", self.ingest.stats)
                    next_report = now + report_s
                wait = min(next_report - now, CHECK_S)
                if deadline is not None:
                    wait = min(wait, deadline - now)
                if wait <= 0 or self.stop_event.wait(wait):
                    break
        finally:
            if self.web is not None:
                self.web.stop()
            if self.receiver is not None:
                self.receiver.stop()
                self.receiver.receiver.close()
            self.ingest.stop()
            self.store.close()
        self._check_broker(duration)
        return self.ingest.stats

    def _check_broker(self, duration: float | None) -> None:
        """Raise when the run ends because of the broker, or ran out without ever reaching it."""
        where = f"{self.cfg.broker.host}:{self.cfg.broker.effective_port}"
        if self.ingest.refused is not None:
            raise BrokerRefusedError(
                f"the broker at {where} refused the station ({self.ingest.refused}); check "
                "[broker] username, password_file and certificates in the config"
            )
        if self.ingest.stats.connects == 0 and not self.stop_event.is_set():
            raise BrokerUnreachableError(
                f"no broker answered at {where} in the {duration:.0f} s run; check [broker] "
                "host and port, and that mosquitto runs"
            )
