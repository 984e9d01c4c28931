"""A bare open-model loop on asyncio protocols and httptools, as its own process (a floor).

``python -m bench.bare_raw URL --rate R --duration S [--uvloop] [--rows FILE]``: the same
schedule, bound and rows as ``bench.bare_aiohttp``, but each request is written on a kept-alive
connection of our own (``asyncio.Protocol``) and its response parsed by httptools (the C parser
uvicorn uses), with no tasks: a timer per due request, a callback per response. It shows what
Python on one core can do below aiohttp, the floor any probe transport would stand on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

from bench.bare_cli import main


class Conn(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: Callable[[int], None] | None = None
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(0)
            if self.transport:
                self.transport.close()

    def on_message_complete(self) -> None:
        self._finish(self.parser.get_status_code())

    def _finish(self, status: int) -> None:
        done, self.done = self.done, None
        if done is not None:
            if status:
                self.pool.idle.append(self)
            done(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        self.transport = None
        self._finish(0)


class Pool:
    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        self.loop, self.host, self.port = loop, host, port
        self.idle: list[Conn] = []

    def send(self, request: bytes, done: Callable[[int], None]) -> None:
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                conn.done = done
                conn.transport.write(request)
                return
        fut = self.loop.create_task(
            self.loop.create_connection(lambda: Conn(self), self.host, self.port)
        )

        def made(f: asyncio.Task) -> None:
            if f.exception() is not None:
                done(0)
                return
            _, conn = f.result()
            conn.done = done
            conn.transport.write(request)

        fut.add_done_callback(made)


async def run(url: str, rate: float, duration: float, bound: int) -> tuple[list[list[float]], int]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: */*\r\n\r\n".encode()
    pool = Pool(loop, host, port)
    rows: list[list[float]] = []
    saturated = 0
    in_flight = 0
    total = int(rate * duration)
    mono0 = time.monotonic()
    wall0 = time.time() - (time.monotonic() - mono0)
    finished = loop.create_future()
    state = {"issued": 0}

    def fire(i: int) -> None:
        nonlocal in_flight, saturated
        intended = wall0 + i / rate
        state["issued"] = i + 1
        if i + 1 < total:
            loop.call_at(mono0 + (i + 1) / rate, fire, i + 1)
        if in_flight >= bound:
            saturated += 1
            return
        in_flight += 1
        ts = wall0 + (time.monotonic() - mono0)
        t0 = time.perf_counter()

        def done(status: int) -> None:
            nonlocal in_flight
            ok = 1.0 if status == 200 else 0.0
            rows.append([intended, ts, (time.perf_counter() - t0) * 1000.0, ok])
            in_flight -= 1
            if state["issued"] >= total and in_flight == 0 and not finished.done():
                finished.set_result(None)

        pool.send(request, done)

    loop.call_at(mono0, fire, 0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished, timeout=duration + 10.0)
    for conn in pool.idle:
        if conn.transport:
            conn.transport.close()
    return rows, saturated


if __name__ == "__main__":
    main(run, __doc__ or "")
