"""``roadside central run``: one ingest worker (start several for more throughput) and, in one
of them, the clip and snapshot receiver; until SIGINT/SIGTERM or ``duration``. A stats line
goes to the log every ``report_s`` seconds."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from roadside.central.config import CentralConfig
from roadside.central.ingest import IngestStats, IngestWorker
from roadside.central.receiver import station_receiver
from roadside.central.receiver_service import ReceiverService
from roadside.central.store import Store

log = logging.getLogger(__name__)


class CentralService:
    """Owns the store and the worker; ``run`` blocks on one stop event."""

    def __init__(
        self, cfg: CentralConfig, worker: str | None = None, receiver: bool | None = None
    ) -> None:
        self.cfg = cfg
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
        try:
            while True:
                wait = report_s if deadline is None else min(report_s, deadline - time.monotonic())
                if wait <= 0 or self.stop_event.wait(wait):
                    break
                log.info("central: %s", self.ingest.stats)
        finally:
            if self.web is not None:
                self.web.stop()
            if self.receiver is not None:
                self.receiver.stop()
                self.receiver.receiver.close()
            self.ingest.stop()
            self.store.close()
        return self.ingest.stats
