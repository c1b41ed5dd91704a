"""Helpers for the central tests: database fixtures (SQLite, a real PostgreSQL) and a
publisher that speaks the wire contract as a box does (for tests of the station alone)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from roadside.central.config import CentralConfig, parse_central_config
from roadside.ids import new_id
from roadside.wire.messages import CountMsg, EventMsg, HealthMsg, Message, StatusMsg
from roadside.wire.topics import topic


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    import pg

    url, server, why = pg.find_or_start()
    if url is None:
        pytest.skip(why)
    yield url
    if server is not None:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test runs on SQLite and on a scratch database of a real PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'central.db'}"
        return
    import pg

    admin = request.getfixturevalue("pg_admin")
    with pg.scratch_database(admin) as url:
        yield url


def central_config(
    tmp_path: Path, port: int, db_url: str | None = None, **sections: dict
) -> CentralConfig:
    doc: dict = {"data_dir": str(tmp_path / "central"), "broker": {"port": port}}
    if db_url:
        doc["database"] = {"url": db_url}
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return parse_central_config(doc, "test")


class BoxPublisher:
    """Publishes protocol messages for a device at QoS 1 and waits for every PUBACK."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._pending: list[mqtt.MQTTMessageInfo] = []

    def send(self, device: str, kind: str, msg: Message | bytes, retain: bool = False) -> None:
        payload = msg if isinstance(msg, bytes) else msg.encode()
        self._pending.append(
            self.client.publish(topic(device, kind), payload, qos=1, retain=retain)
        )

    def flush(self, timeout: float = 30.0) -> None:
        for info in self._pending:
            info.wait_for_publish(timeout)
            assert info.is_published()
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


def event_pair(t: float, cls: str = "car", track: int = 1) -> tuple[EventMsg, EventMsg]:
    """The start and end messages of one event (shared id)."""
    eid = new_id(t)
    start = EventMsg(
        id=eid,
        phase="s",
        label=cls,
        score=0.6,
        first_seen=t,
        last_seen=t + 0.5,
        box=(0.1, 0.2, 0.1, 0.1),
        track=track,
    )
    end = EventMsg(
        id=eid,
        phase="e",
        label=cls,
        score=0.9,
        first_seen=t,
        last_seen=t + 4.0,
        box=(0.3, 0.2, 0.1, 0.1),
        track=track,
        direction="E",
        zones=["left-lanes"],
    )
    return start, end


def status(state: str, reason: str | None = None, at: float | None = None) -> StatusMsg:
    return StatusMsg(
        id=new_id(),
        state=state,
        reason=reason,
        at=at or time.time(),
        software="0.1.0",
        model="ssd_mobilenet_v1_coco_quant",
    )


def health(**fields: object) -> HealthMsg:
    return HealthMsg(id=new_id(), at=time.time(), **fields)


def count(t0: float, n: dict[str, int]) -> CountMsg:
    return CountMsg(id=new_id(t0), start=t0, end=t0 + 60, counts=n)
