"""The bad-link proxy: forwards intact, adds latency, caps the rate, cuts and stalls."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from roadside.testing.badlink import BadLink, LinkShape
from roadside.testing.waiting import eventually


class EchoServer:
    """A TCP server that echoes everything back and records how each connection ended."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.closed = threading.Event()  # set when a connection ends from the far side
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                try:
                    conn.sendall(data)
                except OSError:
                    break
        self.closed.set()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def connect(link: BadLink) -> socket.socket:
    return socket.create_connection(("127.0.0.1", link.port), timeout=5)


def test_forwards_both_ways_intact(echo: EchoServer) -> None:
    payload = os.urandom(500_000)
    with BadLink(echo.port) as link, connect(link) as s:
        sender = threading.Thread(target=s.sendall, args=(payload,))
        sender.start()
        back = recv_exactly(s, len(payload))
        sender.join()
        assert back == payload
        assert eventually(lambda: link.stats.bytes_up == len(payload))
        assert eventually(lambda: link.stats.bytes_down == len(payload))
        assert link.stats.connections == 1


def test_latency_applies_each_way(echo: EchoServer) -> None:
    with BadLink(echo.port, shape=LinkShape(latency_s=0.15)) as link, connect(link) as s:
        t0 = time.monotonic()
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"
        rtt = time.monotonic() - t0
    assert 0.30 <= rtt < 0.60


@pytest.mark.slow
def test_rate_cap_paces_delivery(echo: EchoServer) -> None:
    size = 48 * 1024
    kbps = 256.0
    with BadLink(echo.port, shape=LinkShape(up_kbps=kbps)) as link, connect(link) as s:
        threading.Thread(target=s.sendall, args=(b"x" * size,), daemon=True).start()
        first = recv_exactly(s, 1)
        t0 = time.monotonic()
        rest = recv_exactly(s, size - 1)
        took = time.monotonic() - t0
    assert first + rest == b"x" * size
    expected = size * 8 / (kbps * 1000)  # 1.54 s
    assert expected * 0.8 <= took <= expected * 1.6, took


def test_set_rate_takes_effect(echo: EchoServer) -> None:
    with BadLink(echo.port, shape=LinkShape(up_kbps=64.0)) as link, connect(link) as s:
        link.set_rate(up_kbps=None, down_kbps=None)
        t0 = time.monotonic()
        s.sendall(b"y" * 200_000)
        assert recv_exactly(s, 200_000) == b"y" * 200_000
        assert time.monotonic() - t0 < 1.0  # 64 kbit/s would take 25 s


def test_cut_closes_both_sides_and_refuses_then_recovers(echo: EchoServer) -> None:
    with BadLink(echo.port) as link:
        s = connect(link)
        s.sendall(b"hello")
        assert recv_exactly(s, 5) == b"hello"
        link.cut(down_for_s=0.5)
        assert recv_exactly(s, 1, timeout=5) == b""  # box side closed
        assert echo.closed.wait(5)  # broker side closed
        assert link.is_down
        refused = connect(link)
        assert recv_exactly(refused, 1, timeout=5) == b""
        refused.close()
        assert link.stats.refused >= 1
        assert eventually(lambda: not link.is_down, timeout=3)
        with connect(link) as again:
            again.sendall(b"back")
            assert recv_exactly(again, 4) == b"back"
        assert link.stats.cuts == 1
        assert 0.4 <= link.stats.down_s <= 0.6
        s.close()


def test_scheduled_cuts(echo: EchoServer) -> None:
    shape = LinkShape(cut_every_s=0.3, down_for_s=0.1)
    with BadLink(echo.port, shape=shape) as link:
        assert eventually(lambda: link.stats.cuts >= 3, timeout=3)
        gaps = [b - a for a, b in zip(link.stats.cut_times, link.stats.cut_times[1:], strict=False)]
        assert all(0.25 <= g <= 0.6 for g in gaps), gaps


def test_stall_holds_data_then_delivers(echo: EchoServer) -> None:
    with BadLink(echo.port) as link, connect(link) as s:
        link.stall(0.5)
        t0 = time.monotonic()
        s.sendall(b"wait")
        assert recv_exactly(s, 4) == b"wait"
        assert time.monotonic() - t0 >= 0.4
        assert link.stats.stalls == 1
        assert link.open_connections == 1  # a stall keeps the connection


def test_control_after_stop_is_an_error(echo: EchoServer) -> None:
    link = BadLink(echo.port).start()
    link.stop()
    with pytest.raises(RuntimeError):
        link.cut()
