"""A bad cellular link in user space: a TCP proxy between a box and its broker.

The kernel on a test machine often has no network emulation (no ``tc netem``), so tests,
benchmarks and soak runs put this proxy between the agent and mosquitto instead:

    box ──► BadLink(listen port) ──► broker

Each direction has its own rate (kbit/s), the same one-way latency, and a bounded queue
(the modem's buffer): a reader that gets ahead of the rate stops reading, so the sender
feels back-pressure the way it would on a real link. On top of that the link can be cut
(every connection closed on both sides, new ones refused for a while) and stalled (nothing
delivered for a while, connections kept open: a radio that goes quiet), on a schedule or on
demand from the test.

The proxy runs its own asyncio loop on one daemon thread; every public method may be
called from any other thread and returns once the change has taken effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

Direction = Literal["up", "down"]  # up: client (box) -> server (broker); down: the reverse

PACKET = 1460  # bytes read at a time on a rate-capped link: about one TCP segment
FAST_READ = 64 * 1024  # bytes read at a time on an uncapped link
SOCKET_BUFFER = 16 * 1024  # kernel buffers on the proxy's own sockets, kept small


@dataclass
class LinkShape:
    """How bad the link is. Rates of None mean unlimited; times are seconds."""

    latency_s: float = 0.0
    up_kbps: float | None = None
    down_kbps: float | None = None
    buffer_bytes: int = 32 * 1024
    cut_every_s: float | None = None
    down_for_s: float = 1.0
    stall_every_s: float | None = None
    stall_for_s: float = 0.0


@dataclass
class LinkStats:
    """What went through. Written on the proxy thread, read anywhere (plain numbers)."""

    bytes_up: int = 0
    bytes_down: int = 0
    connections: int = 0
    refused: int = 0
    cuts: int = 0
    stalls: int = 0
    started_mono: float = 0.0
    down_s: float = 0.0  # total time spent refusing connections after cuts
    cut_times: list[float] = field(default_factory=list)  # monotonic


class _Lane:
    """One direction of the link: a serialiser at ``kbps`` shared by every connection."""

    def __init__(self, kbps: float | None) -> None:
        self.kbps = kbps
        self.free_at = 0.0  # monotonic time the serialiser finishes what it holds

    def schedule(self, nbytes: int, now: float) -> float:
        """Book ``nbytes`` on the wire; returns when the last bit leaves."""
        start = max(now, self.free_at)
        if self.kbps:
            start += nbytes * 8 / (self.kbps * 1000)
        self.free_at = start
        return start

    def backlog_s(self, now: float) -> float:
        return max(0.0, self.free_at - now)


class _Pipe:
    """Copies one socket direction through a lane, with latency and stalls."""

    def __init__(
        self,
        link: BadLink,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.link = link
        self.direction = direction
        self.reader = reader
        self.writer = writer
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.wake = asyncio.Event()

    @property
    def lane(self) -> _Lane:
        return self.link._lanes[self.direction]

    async def pump_in(self) -> None:
        """Read from the source as fast as the lane's buffer allows."""
        while True:
            await self._wait_for_room()
            size = PACKET if self.lane.kbps else FAST_READ
            data = await self.reader.read(size)
            if not data:
                self.queue.append((0.0, b""))  # end of stream marker
                self.wake.set()
                return
            now = time.monotonic()
            now = max(now, self.link._stalled_until)
            leaves = self.lane.schedule(len(data), now)
            last = self.queue[-1][0] if self.queue else 0.0
            self.queue.append((max(last, leaves + self.link.shape.latency_s), data))
            self.queued += len(data)
            self.wake.set()

    async def _wait_for_room(self) -> None:
        shape = self.link.shape
        while True:
            now = time.monotonic()
            if self.lane.kbps:
                limit = shape.buffer_bytes * 8 / (self.lane.kbps * 1000)
                wait = self.lane.backlog_s(now) - limit
            else:
                wait = 0.01 if self.queued > 4 * 1024 * 1024 else 0.0
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def pump_out(self) -> None:
        """Deliver each piece at its time, unless the link is stalled."""
        while True:
            while not self.queue:
                self.wake.clear()
                await self.wake.wait()
            due, data = self.queue[0]
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    self.writer.write_eof()
                return
            now = time.monotonic()
            wait = max(due, self.link._stalled_until) - now
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self.queue.popleft()
            self.queued -= len(data)
            if self.direction == "up":
                self.link.stats.bytes_up += len(data)
            else:
                self.link.stats.bytes_down += len(data)
            self.writer.write(data)
            await self.writer.drain()


class BadLink:
    """A TCP proxy with latency, rate caps, cuts and stalls, controllable from a test.

    ``target_port`` is the broker; clients connect to ``port`` (chosen free when
    ``listen_port`` is 0). Use as a context manager or call ``start()``/``stop()``.
    """

    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        listen_port: int = 0,
        shape: LinkShape | None = None,
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.target = (target_host, target_port)
        self.listen = (listen_host, listen_port)
        self.shape = shape or LinkShape()
        self.stats = LinkStats()
        self.port = 0
        # Everything below is touched on the proxy thread only (control methods hop onto it).
        self._lanes: dict[Direction, _Lane] = {
            "up": _Lane(self.shape.up_kbps),
            "down": _Lane(self.shape.down_kbps),
        }
        self._down_until = 0.0
        self._stalled_until = 0.0
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task] = set()  # pumps and schedules: cancelled at shutdown
        self._handlers: set[asyncio.Task] = set()  # one per accepted connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> BadLink:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="badlink", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("bad link proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> BadLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control (any thread) ------------------------------------------------------------
    def cut(self, down_for_s: float | None = None) -> None:
        """Close every connection on both sides now and refuse new ones for a while."""
        self._call(self._cut(self.shape.down_for_s if down_for_s is None else down_for_s))

    def stall(self, seconds: float) -> None:
        """Deliver nothing for ``seconds``; connections stay open, data waits."""
        self._call(self._stall(seconds))

    def set_rate(self, up_kbps: float | None = None, down_kbps: float | None = None) -> None:
        """New rate caps (kbit/s; None = unlimited) for both directions."""

        async def apply() -> None:
            self.shape.up_kbps, self.shape.down_kbps = up_kbps, down_kbps
            self._lanes["up"].kbps, self._lanes["down"].kbps = up_kbps, down_kbps

        self._call(apply())

    def set_latency(self, seconds: float) -> None:
        async def apply() -> None:
            self.shape.latency_s = seconds

        self._call(apply())

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self._down_until

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def up_seconds(self) -> float:
        """Seconds since start during which the link accepted connections."""
        elapsed = time.monotonic() - self.stats.started_mono
        pending = max(0.0, self._down_until - time.monotonic())
        return max(0.0, elapsed - (self.stats.down_s - pending))

    # -- the proxy thread ----------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._open(ready))
        self._loop.run_forever()

    async def _open(self, ready: threading.Event) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)
        self.port = self._server.sockets[0].getsockname()[1]
        self.stats.started_mono = time.monotonic()
        if self.shape.cut_every_s:
            self._spawn(
                self._every(self.shape.cut_every_s, lambda: self._cut(self.shape.down_for_s))
            )
        if self.shape.stall_every_s and self.shape.stall_for_s > 0:
            self._spawn(
                self._every(self.shape.stall_every_s, lambda: self._stall(self.shape.stall_for_s))
            )
        ready.set()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            coro.close()
            raise RuntimeError("bad link proxy is not running")
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _every(self, period: float, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            await asyncio.sleep(period)
            await action()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        if me is not None:  # awaited, never cancelled, at shutdown (asyncio owns this task)
            self._handlers.add(me)
            me.add_done_callback(self._handlers.discard)
        if self.is_down:
            self.stats.refused += 1
            client_w.transport.abort()
            return
        _shrink_buffers(client_w)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            self.stats.refused += 1
            client_w.transport.abort()
            return
        _shrink_buffers(server_w)
        self.stats.connections += 1
        pair = (client_w, server_w)
        self._conns.add(pair)
        pipes = [_Pipe(self, "up", client_r, server_w), _Pipe(self, "down", server_r, client_w)]
        tasks = [self._spawn(p.pump_in()) for p in pipes] + [
            self._spawn(p.pump_out()) for p in pipes
        ]
        try:
            # The connection ends when both directions have delivered their end of stream,
            # or at once when either side fails.
            pending: set[asyncio.Task] = set(tasks)
            while pending & set(tasks[2:]):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(t.exception() is not None for t in done if not t.cancelled()):
                    break
        finally:
            for t in tasks:
                t.cancel()
            self._drop(pair)

    def _drop(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        for w in pair:
            w.transport.abort()
        self._conns.discard(pair)

    async def _cut(self, down_for_s: float) -> None:
        now = time.monotonic()
        self.stats.cuts += 1
        self.stats.cut_times.append(now)
        new_until = max(self._down_until, now + down_for_s)
        self.stats.down_s += new_until - max(self._down_until, now)
        self._down_until = new_until
        for pair in list(self._conns):
            self._drop(pair)
        for lane in self._lanes.values():
            lane.free_at = now  # whatever the modem held is gone with the connection
        log.info("bad link: cut, refusing connections for %.1f s", down_for_s)

    async def _stall(self, seconds: float) -> None:
        self.stats.stalls += 1
        self._stalled_until = max(self._stalled_until, time.monotonic() + seconds)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._conns):
            self._drop(pair)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)


def _shrink_buffers(writer: asyncio.StreamWriter) -> None:
    """Small kernel buffers keep the bytes 'on the link' in the proxy, where the rate applies."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
