"""The canary probe: pure pacer, error classes, and real requests on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
import httpx
import pytest

from probes.canary import (
    SATURATED,
    ProbeSettings,
    ProbeThread,
    due_through,
    error_class,
    intended_offset,
    intended_time,
    request_count,
    run_probe,
    run_probe_blocking,
)
from probes.records import Sample, ShardWriter, read_samples
from probes.settings import build_request
from tests.helpers import ServerConfig, choose, closed_port, spread

# --------------------------------------------------------------------------- pacer


@pytest.mark.parametrize(
    ("i", "rate", "offset"),
    [
        (0, 10, 0.0),
        (1, 10, 0.1),
        (10, 10, 1.0),
        (3, 2000, 0.0015),
        (7, 0.5, 14.0),
        (999, 1000, 0.999),
    ],
)
def test_intended_offset(i, rate, offset):
    assert intended_offset(i, rate) == pytest.approx(offset, abs=1e-12)


def test_intended_time_does_not_accumulate_error():
    # Adding 0.1 a million times drifts; i / rate does not.
    assert intended_time(1_000_000, 10, 5.0) == 100_005.0
    assert intended_time(0, 10, 5.0) == 5.0


@pytest.mark.parametrize(
    ("duration", "rate", "count"),
    [
        (1, 10, 10),
        (1.05, 10, 11),
        (0.1, 10, 1),
        (0.09, 10, 1),
        (3, 50, 150),
        (0, 10, 0),
        (1, 0, 0),
        (2.5, 2, 5),
        (10, 0.3, 3),
    ],
)
def test_request_count(duration, rate, count):
    assert request_count(duration, rate) == count


@pytest.mark.parametrize(
    ("elapsed", "rate", "due"),
    [(-0.1, 10, 0), (0.0, 10, 1), (0.0999, 10, 1), (0.1, 10, 2), (1.0, 10, 11), (0.25, 2000, 501)],
)
def test_due_through(elapsed, rate, due):
    assert due_through(elapsed, rate) == due


# --------------------------------------------------------------------------- test server policy


@pytest.mark.parametrize(
    ("share", "first_n", "count"),
    [(0.1, 100, 10), (0.1, 9, 0), (0.1, 10, 1), (0.5, 7, 3), (0, 50, 0), (1, 5, 5)],
)
def test_spread_gives_exact_shares(share, first_n, count):
    assert sum(spread(n, share) for n in range(first_n)) == count


def test_choose_switches_at_the_instant_and_fails_per_version():
    config = ServerConfig(switch_at=100.0, error_share={"v2": 0.5})
    counts: dict[str, int] = {}
    assert choose(config, 99.999, 0, counts) == ("v1", 200)
    assert choose(config, 100.0, 1, counts) == ("v2", 200)
    assert choose(config, 100.1, 2, counts) == ("v2", 500)
    assert counts == {"v1": 1, "v2": 2}


# --------------------------------------------------------------------------- error classes


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (ConnectionRefusedError(111, "refused"), "connect"),
        (ConnectionResetError(104, "reset"), "reset"),
        (BrokenPipeError(32, "pipe"), "reset"),
        (TimeoutError(), "timeout"),
        (httpx.ConnectError("x"), "connect"),
        (httpx.ReadTimeout("x"), "timeout"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "reset"),
        (httpx.RemoteProtocolError("illegal status line"), "protocol"),
        (httpx.ReadError("x"), "reset"),
        # httpx-aiohttp maps every aiohttp connection error to ConnectTimeout: the cause decides.
        (_chained(httpx.ConnectTimeout("x"), aiohttp.ServerDisconnectedError()), "reset"),
        (_chained(httpx.ConnectTimeout("x"), ConnectionRefusedError(111, "r")), "connect"),
        (_chained(httpx.ReadError("x"), aiohttp.ClientPayloadError("bad")), "protocol"),
        (ValueError("something else"), "other"),
    ],
)
def test_error_class(exc, cls):
    assert error_class(exc) == cls


# --------------------------------------------------------------------------- real sockets


class RawServer:
    """A tiny asyncio TCP server on 127.0.0.1 whose handler a test writes by hand."""

    def __init__(self, handler):
        self.handler = handler
        self.requests: list[bytes] = []

    async def _handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/p"
        return self

    async def __aexit__(self, *exc):
        self.server.close()


async def _reset(_reader, writer):
    writer.transport.abort()  # RST instead of a response


async def _garbage(_reader, writer):
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()


async def _stall(_reader, _writer):
    await asyncio.sleep(5)


async def _ok(_reader, writer):
    body = b'{"version": "json-v"}'
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()


async def _probe_raw(handler, transport, rate=20.0, duration=0.2, timeout=0.3):
    rows: list[Sample] = []
    async with RawServer(handler) as srv:
        spec = build_request(srv.url, timeout=timeout)
        settings = ProbeSettings(rate=rate, duration=duration, transport=transport)
        stats = await run_probe(spec, settings, None, on_sample=rows.append)
    return rows, stats, srv


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize(
    ("handler", "cls"), [(_reset, "reset"), (_garbage, "protocol"), (_stall, "timeout")]
)
def test_transport_failures_become_rows(handler, cls, transport):
    rows, stats, _ = asyncio.run(_probe_raw(handler, transport))
    assert len(rows) == stats.scheduled == 4
    assert {(r.status, r.error, r.version, r.tag_source) for r in rows} == {
        (0, cls, "unknown", "none")
    }


def test_unreachable_port_gives_connect_rows():
    spec = build_request(f"http://127.0.0.1:{closed_port()}/", timeout=2)
    rows: list[Sample] = []
    stats = run_probe_blocking(
        spec, ProbeSettings(rate=20, duration=0.25), None, on_sample=rows.append
    )
    assert [r.error for r in rows] == ["connect"] * 5 and stats.ok == 0
    assert all(r.status == 0 for r in rows)


def test_token_is_sent_as_bearer_and_body_tagged(monkeypatch):
    monkeypatch.setenv("PROBE_TEST_TOKEN", "s3cret-value")

    async def go():
        async with RawServer(_ok) as srv:
            spec = build_request(srv.url, token_env="PROBE_TEST_TOKEN", headers=["X-Extra: 1"])
            rows: list[Sample] = []
            await run_probe(spec, ProbeSettings(rate=10, duration=0.1), None, on_sample=rows.append)
            return rows, srv.requests

    rows, heads = asyncio.run(go())
    assert len(heads) == 1
    head = heads[0].decode().lower()
    assert "authorization: bearer s3cret-value" in head and "x-extra: 1" in head
    (row,) = rows
    assert (row.status, row.error, row.version, row.tag_source, row.bytes) == (
        200,
        None,
        "json-v",
        "json",
        21,
    )
    assert row.name == "/p" and row.method == "GET" and row.source == "probe"


def test_rows_are_written_with_version_status_and_connection(tmp_path, version_server):
    srv = version_server(v2_share=0.5, error_share={"v2": 0.5})
    spec = build_request(srv.url)
    with ShardWriter(tmp_path, "probe") as writer:
        stats = run_probe_blocking(spec, ProbeSettings(rate=100, duration=0.4), writer)
    frame = read_samples(tmp_path)
    assert len(frame) == stats.recorded == 40
    by_version = frame.groupby("version", observed=True)["status"].value_counts().to_dict()
    assert by_version == {("v1", 200): 20, ("v2", 200): 10, ("v2", 500): 10}
    assert set(frame.loc[frame.status == 500, "error"]) == {"http_5xx"}
    assert frame["tag_source"].eq("header").all()
    assert frame["conn"].notna().all() and frame["conn"].str.startswith("127.0.0.1:").all()
    assert srv.stats()["requests"] == 40


def test_stalled_server_keeps_the_schedule(version_server):
    """Coordinated omission: while the server stalls, requests stay due on schedule; those
    beyond the in-flight bound are rows too, so the stall cannot thin out the record."""
    rate = 50.0
    # The stall's times are absolute and fixed before the server process starts: leave that
    # start-up (slow on a loaded machine) ample room, so the probe sees the whole stall.
    t0 = time.time() + 3.0
    srv = version_server(stall=(t0 + 0.5, t0 + 1.1))
    duration = t0 + 1.6 - time.time()
    spec = build_request(srv.url, timeout=5)
    rows: list[Sample] = []
    settings = ProbeSettings(rate=rate, duration=duration, max_in_flight=5)
    stats = run_probe_blocking(spec, settings, None, on_sample=rows.append)
    rows.sort(key=lambda r: r.intended_ts)
    assert len(rows) == stats.scheduled == request_count(duration, rate) >= 80
    start = rows[0].intended_ts
    for i, row in enumerate(rows):
        assert row.intended_ts == pytest.approx(intended_time(i, rate, start), abs=1e-6)
    saturated = [r for r in rows if r.error == SATURATED]
    assert saturated and all(r.ts == r.intended_ts and r.status == 0 for r in saturated)
    assert stats.sent == len(rows) - len(saturated)
    stalled = [r for r in rows if r.error is None and t0 + 0.55 <= r.ts < t0 + 1.0]
    # A request held by the server cannot have been answered before the stall ended.
    assert stalled and all(r.ts + r.latency_ms / 1000 >= t0 + 1.1 - 0.005 for r in stalled)


def test_probe_thread_stops_early_and_records_every_sent_request(version_server):
    srv = version_server()
    rows: list[Sample] = []
    thread = ProbeThread(
        build_request(srv.url), ProbeSettings(rate=50, duration=30), None, on_sample=rows.append
    )
    thread.start()
    deadline = time.monotonic() + 10
    while len(rows) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    thread.stop()
    thread.join(timeout=10)
    assert not thread.is_alive() and thread.error is None and thread.stats is not None
    assert thread.stats.stopped_early and 10 <= thread.stats.scheduled < 1500
    assert len(rows) == thread.stats.sent - thread.stats.abandoned


def test_settings_reject_bad_values():
    for kwargs in (
        {"rate": 0, "duration": 1},
        {"rate": float("inf"), "duration": 1},
        {"rate": 1, "duration": float("nan")},
        {"rate": 1, "duration": 1, "max_in_flight": 0},
        {"rate": 1, "duration": 1, "transport": "curl"},
    ):
        with pytest.raises(ValueError):
            ProbeSettings(**kwargs)


def test_stop_as_asyncio_event_too():
    async def go():
        stop = asyncio.Event()
        stop.set()
        spec = build_request(f"http://127.0.0.1:{closed_port()}/")
        return await run_probe(spec, ProbeSettings(rate=10, duration=5), None, stop=stop)

    stats = asyncio.run(go())
    assert stats.scheduled == 0 and stats.stopped_early
    assert threading.active_count() >= 1


async def _ok_then_reset(reader, writer):
    await _ok(reader, writer)  # the first request on this keep-alive connection is answered
    await reader.readuntil(b"\r\n\r\n")  # the second one is cut
    writer.transport.abort()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_reset_on_a_reused_connection_is_recorded_not_resent(transport):
    # aiohttp silently re-sends an idempotent request once on a fresh connection when a
    # reused one is reset; the second GET would then be a 200 and the cut would be hidden.
    rows, stats, srv = asyncio.run(_probe_raw(_ok_then_reset, transport, rate=5.0, duration=0.4))
    assert stats.scheduled == 2
    assert [(r.method, r.status, r.error) for r in rows] == [
        ("GET", 200, None),
        ("GET", 0, "reset"),
    ]
    assert len(srv.requests) == 1  # one connection: nothing was re-sent on a new one
