"""The console for tests: a real console server on a free port, accounts of each
role, and an HTTP client that logs in through the login form as a browser does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from roadside.central.accounts import Accounts, Role
from roadside.central.config import CentralConfig
from roadside.central.store import Store
from roadside.central.web.server import WebServer
from roadside.testing.configs import central_config
from roadside.testing.ports import free_port
from roadside.testing.waiting import wait_until

# One account per role: minh views, lan investigates, thu administers.
PASSWORDS = {
    "minh": "viewer-password-1",
    "lan": "investigator-password-1",
    "thu": "admin-password-12",
}
ROLES = {"minh": Role.VIEWER, "lan": Role.INVESTIGATOR, "thu": Role.ADMIN}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class RunningConsole:
    cfg: CentralConfig
    store: Store
    server: WebServer
    url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)

    def login(self, name: str, lang: str = "vi") -> httpx.Client:
        """A client holding a session of ``name`` (one of PASSWORDS)."""
        c = self.client()
        c.cookies.set("roadside_lang", lang)
        page = c.get("/login")
        token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        r = c.post(
            "/login", data={"csrf": token, "name": name, "password": PASSWORDS[name], "next": "/"}
        )
        assert r.status_code == 303, r.text
        return c


def add_accounts(store: Store) -> None:
    accounts = Accounts(store.engine)
    for name, role in ROLES.items():
        accounts.add(name, role, PASSWORDS[name])


def start_console(cfg: CentralConfig, store: Store) -> RunningConsole:
    server = WebServer(cfg, store).start()
    url = f"http://127.0.0.1:{cfg.web.effective_port}"

    def answers() -> bool:
        try:
            return httpx.get(url + "/login", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, 20, "the console to answer")
    return RunningConsole(cfg, store, server, url)


@contextmanager
def running_console(tmp_path: Path, broker_port: int) -> Iterator[RunningConsole]:
    """A console on SQLite, its accounts made, talking to the broker on ``broker_port``."""
    cfg = central_config(
        tmp_path,
        broker_port,
        web={"host": "127.0.0.1", "port": free_port(), "login_failures": 3},
        officer={"clips_dir": str(tmp_path / "clips")},
    )
    store = Store(cfg.database_url)
    add_accounts(store)
    running = start_console(cfg, store)
    try:
        yield running
    finally:
        running.server.stop()
        store.close()
