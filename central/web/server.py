"""Serving the console with uvicorn: on its own (``roadside central web``) or on a thread of
``roadside central run`` (``[web] enabled = true``). HTTPS when ``web.tls_cert`` is set."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from roadside.central.config import CentralConfig
from roadside.central.store import Store
from roadside.central.web import require_web_extra
from roadside.errors import ConfigError

log = logging.getLogger(__name__)

GRACEFUL_S = 5  # open event streams get this long to end at shutdown


class WebServer:
    """One uvicorn server for the console on its own store handle."""

    def __init__(self, cfg: CentralConfig, store: Store | None = None) -> None:
        require_web_extra()
        import uvicorn

        from roadside.central.web.app import create_app

        web = cfg.web
        for key in ("tls_cert", "tls_key"):
            value = getattr(web, key)
            if value and not Path(value).is_file():
                raise ConfigError(f"web.{key} = {value!r}: no such file")
        self.cfg = cfg
        self.store = store or Store(cfg.database_url, cfg.database.echo)
        self.app = create_app(cfg, self.store)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=web.host,
                port=web.effective_port,
                ssl_certfile=web.tls_cert,
                ssl_keyfile=web.tls_key,
                log_level="warning",
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=GRACEFUL_S,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.cfg.web.uses_tls else "http"
        return f"{scheme}://{self.cfg.web.host}:{self.cfg.web.effective_port}"

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM (on the main thread) or ``stop``."""
        log.warning("console at %s", self.url)
        self.server.run()

    def start(self) -> WebServer:
        self._thread = threading.Thread(target=self.server.run, name="console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(GRACEFUL_S + 5)
