"""A real PostgreSQL for tests and benchmarks: a private server of their own, on a free port.

Tests start their own server, as they start their own broker, so its config and its life are
theirs and nobody else's data is at stake: ``initdb`` and ``pg_ctl`` in a temporary folder
(as the ``postgres`` user when run as root, since ``initdb`` refuses root), trust
authentication, listening on 127.0.0.1 only; stopped and deleted afterwards. The test suite
starts one per session. ``$ROADSIDE_TEST_POSTGRES`` names an existing server instead (an
SQLAlchemy URL of a database to connect to as a user who may create databases, for example
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``).

Each test gets its own scratch database with a unique name, dropped afterwards.
"""

from __future__ import annotations

import glob
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

from roadside.errors import RoadsideError
from roadside.testing.ports import free_port

ENV_SERVER = "ROADSIDE_TEST_POSTGRES"
SERVER_USER = "postgres"  # who runs initdb and the server when we are root
TOOLS = ("initdb", "pg_ctl")


class PostgresNotAvailable(RoadsideError):
    """No PostgreSQL server for the tests: none named, and none could be started."""


def reachable(url: str) -> str | None:
    """None when a server answers at ``url``, else why not (one line)."""
    engine = sa.create_engine(
        url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        return None
    except Exception as exc:
        return str(exc).strip().splitlines()[0]
    finally:
        engine.dispose()


def server_tool(name: str) -> str:
    """The path of a PostgreSQL server program: on $PATH, else Debian's versioned folders."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if versions:
        return versions[-1]
    raise PostgresNotAvailable(
        f"{name} is not installed (apt-get install postgresql), and ${ENV_SERVER} is not set"
    )


class PrivateServer:
    """One PostgreSQL server in a temporary folder, on a free port; ``with`` starts and stops it.

    ``url`` is the admin URL (user postgres, database postgres) once started.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir: Path | None = None
        self.url = ""
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresNotAvailable(
                    f"running as root and there is no '{SERVER_USER}' user to run initdb as"
                ) from None
            self.user = SERVER_USER

    def start(self) -> PrivateServer:
        initdb, pg_ctl = (server_tool(t) for t in TOOLS)
        self.dir = Path(tempfile.mkdtemp(prefix="roadside-pg-"))
        if self.user is not None:
            shutil.chown(self.dir, self.user)
        data = self.dir / "data"
        try:
            self._run(initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
            self._run(
                pg_ctl,
                "-D",
                str(data),
                "-w",
                "-l",
                str(self.dir / "log"),
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                "start",
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log = self.dir / "log"
            tail = log.read_text(errors="replace")[-1000:] if log.exists() else ""
            self._remove()
            raise PostgresNotAvailable(
                f"a private PostgreSQL would not start: {exc} {tail}"
            ) from None
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        return self

    def stop(self) -> None:
        if self.dir is None:
            return
        try:
            self._run(server_tool("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop")
        except (OSError, subprocess.SubprocessError):
            pass  # already gone; the folder goes anyway
        finally:
            self._remove()

    def __enter__(self) -> PrivateServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, *args: str) -> None:
        cmd = list(args) if self.user is None else ["runuser", "-u", self.user, "--", *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def _remove(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


@contextmanager
def server_for_tests() -> Iterator[str]:
    """The admin URL of the server to test against: ``$ROADSIDE_TEST_POSTGRES`` when set
    (it must answer), else a private server started here and stopped on exit.

    Raises ``PostgresNotAvailable`` with the reason when there is neither.
    """
    named = os.environ.get(ENV_SERVER)
    if named:
        why = reachable(named)
        if why is not None:
            raise PostgresNotAvailable(f"${ENV_SERVER} names {named}, which does not answer: {why}")
        yield named
        return
    with PrivateServer() as server:
        yield server.url


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
