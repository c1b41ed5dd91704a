"""A real PostgreSQL server for tests: the one at $ROADSIDE_TEST_POSTGRES (default
127.0.0.1:5432, user postgres, trust auth), else a private one started with initdb/pg_ctl.

Each test gets its own database with a unique name, dropped afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> str | None:
    """None when a server answers at ``url``, else why not."""
    try:
        engine = sa.create_engine(
            url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc).strip().splitlines()[0]


class PrivateServer:
    """initdb + pg_ctl in a temporary folder, on a free port, stopped at exit."""

    def __init__(self) -> None:
        from broker import free_port

        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="roadside-pg-"))
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses root; run it as the postgres user if any
            try:
                pwd.getpwnam("postgres")
                self.user = "postgres"
            except KeyError as exc:
                raise RuntimeError("running as root and no 'postgres' user") from exc
            shutil.chown(self.dir, "postgres")

    def _run(self, *args: str) -> None:
        cmd = list(args) if self.user is None else ["runuser", "-u", self.user, "--", *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        for tool in ("initdb", "pg_ctl"):
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} is not installed")
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust")
        self._run(
            "pg_ctl",
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.dir / "log"),
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            "start",
        )
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def find_or_start() -> tuple[str | None, PrivateServer | None, str]:
    """(admin URL, private server to stop or None, reason when there is no server)."""
    url = os.environ.get("ROADSIDE_TEST_POSTGRES", DEFAULT_ADMIN_URL)
    why = _reachable(url)
    if why is None:
        return url, None, ""
    try:
        server = PrivateServer()
        private = server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return None, None, (f"no PostgreSQL at {url} ({why}) and none could be started ({exc})")
    return private, server, ""


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server; yields its URL, drops it afterwards."""
    name = f"roadside_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
