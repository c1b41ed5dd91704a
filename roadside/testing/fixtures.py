"""The pytest plugin of Roadside's test suite: real parts, started per test or per session.

Loaded by ``tests/conftest.py`` (``pytest_plugins = ["roadside.testing.fixtures"]``).

* ``shared``, ``models_dir``, ``footage`` (session): the real weights and footage;
* ``broker``: a private mosquitto on a free port, with persistence, stopped after the test;
* ``pg_admin`` (session): the admin URL of a private PostgreSQL started for the session (or
  the server ``$ROADSIDE_TEST_POSTGRES`` names);
* ``db_url``: each test that asks for it runs twice, on SQLite and on a scratch PostgreSQL
  database;
* ``no_failed_link_steps`` (autouse): fails a test in which the uplink's sender logged a
  failing step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from roadside.testing import postgres
from roadside.testing.broker import LocalBroker
from roadside.testing.pki import DistrictKeys
from roadside.testing.ports import free_port
from roadside.testing.shared import shared_dir

if TYPE_CHECKING:
    from roadside.testing.console import RunningConsole


@pytest.fixture(scope="session")
def shared() -> Path:
    folder = shared_dir()
    if not ((folder / "models").is_dir() and (folder / "footage").is_dir()):
        pytest.fail(f"real models and footage are needed in {folder} (set ROADSIDE_SHARED)")
    return folder


@pytest.fixture(scope="session")
def models_dir(shared: Path) -> Path:
    return shared / "models"


@pytest.fixture(scope="session")
def footage(shared: Path) -> Path:
    return shared / "footage"


@pytest.fixture(scope="session")
def district_keys(tmp_path_factory: pytest.TempPathFactory) -> DistrictKeys:
    """A project CA for the session; boxes get signing keys from it by name."""
    return DistrictKeys(tmp_path_factory.mktemp("district-keys"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A real mosquitto on a free port, with persistence, stopped after the test."""
    with LocalBroker(tmp_path / "broker") as b:
        yield b


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """A PostgreSQL server for the whole session, started on first use."""
    try:
        with postgres.server_for_tests() as url:
            yield url
    except postgres.PostgresNotAvailable as exc:
        if os.environ.get(postgres.ENV_SERVER):
            pytest.fail(str(exc))  # a server was named: its absence is an error
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test runs on SQLite and on a scratch database of a real PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'central.db'}"
        return
    admin = request.getfixturevalue("pg_admin")
    with postgres.scratch_database(admin) as url:
        yield url


@pytest.fixture(autouse=True)
def no_failed_link_steps(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The uplink's sender survives a failing step by logging it; in a test that is a bug."""
    yield
    failed = [
        r
        for r in caplog.get_records("call")
        if r.name == "roadside.agent.uplink.sender" and r.levelname == "ERROR"
    ]
    assert not failed, f"the uplink sender failed: {failed[0].getMessage()} {failed[0].exc_text}"


@pytest.fixture(name="console")
def console_fixture(tmp_path: Path) -> Iterator[RunningConsole]:
    """A console with a broker port nobody listens on (for tests that send nothing)."""
    from roadside.testing.console import running_console  # the console's web stack, on use

    with running_console(tmp_path, free_port()) as running:
        yield running
