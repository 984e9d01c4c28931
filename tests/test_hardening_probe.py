"""Issue 14 hardening of the canary probe against hostile targets: bounded memory on endless
bodies, large headers answered, every request in flight a row, runs that always end, and a
user regex that cannot stall the schedule."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import psutil
import pytest

from probes.canary import (
    BODY_TOO_LARGE,
    CLIENT_LIMIT,
    INTERRUPTED,
    MAX_HEADER_BYTES,
    ProbeSettings,
    run_probe,
)
from probes.records import ERROR_CLASSES, Sample
from probes.settings import MAX_TIMEOUT_S, RequestSpec, build_request
from probes.tagging import TagRules


class RawServer:
    """An asyncio TCP server on 127.0.0.1 in its own thread and loop, answering each request
    with ``handler(reader, writer)``: the probe under test and the server share no loop."""

    def __init__(self, handler):
        self.handler = handler
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, reader, writer):
        try:
            while True:  # keep-alive: one handler call per request on the connection
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                if await self.handler(reader, writer) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _run(self):
        asyncio.set_event_loop(self._loop)

        async def start():
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/p"
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc):
        async def shutdown():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def _probe(url_or_spec, settings, *, stop_after=None, **request):
    """Rows and stats of one probe run (in this thread's own loop)."""
    spec = (
        url_or_spec
        if isinstance(url_or_spec, RequestSpec)
        else build_request(url_or_spec, **request)
    )
    rows: list[Sample] = []

    async def go():
        stop = asyncio.Event()
        if stop_after is not None:
            asyncio.get_running_loop().call_later(stop_after, stop.set)
        return await run_probe(spec, settings, None, stop=stop, on_sample=rows.append)

    stats = asyncio.run(go())
    return rows, stats


# --------------------------------------------------------------------------- bodies (item 2)

HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\nX-Proton-Version: v7\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNK = b"a" * 65536


async def _endless_chunked(_reader, writer):
    writer.write(HEAD_CHUNKED)
    frame = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
    while True:
        writer.write(frame)
        await writer.drain()


class PeakRss:
    """The process's peak RSS while inside, sampled by a thread every few ms."""

    def __init__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 1e6


def test_endless_chunked_body_keeps_rss_bounded():
    """Default settings: each endless body is cut at the drain bound; memory stays small."""
    settings = ProbeSettings(rate=2, duration=1.0)
    with RawServer(_endless_chunked) as srv, PeakRss() as rss:
        rows, stats = _probe(srv.url, settings, timeout=4)
    assert len(rows) == stats.scheduled == 2
    assert rss.growth_mb < 150, f"RSS grew by {rss.growth_mb:.0f} MB"
    for row in rows:
        # The status and the version arrived; the body never ended: cut, with what was read.
        assert (row.status, row.error, row.version) == (200, BODY_TOO_LARGE, "v7")
        assert row.bytes > settings.max_drain_bytes
        assert row.latency_ms < 4000  # cut at the bound, not at the timeout


async def _content_length_huge(_reader, writer):
    size = 200 << 20
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(size // len(CHUNK)):
        writer.write(CHUNK)
        await writer.drain()
    return False


def test_body_past_the_drain_bound_records_its_declared_size():
    settings = ProbeSettings(rate=5, duration=0.2, max_body_bytes=64 << 10, max_drain_bytes=1 << 20)
    with RawServer(_content_length_huge) as srv:
        rows, _ = _probe(srv.url, settings, timeout=5)
    assert [(r.status, r.error, r.bytes) for r in rows] == [(200, BODY_TOO_LARGE, 200 << 20)]


async def _three_mib_tagged(_reader, writer):
    body = b"build=v42;" + b"x" * (3 << 20)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()


def test_large_body_within_the_drain_bound_is_read_whole_and_tagged_from_its_head():
    settings = ProbeSettings(rate=5, duration=0.2)  # 3 MiB: above max_body_bytes, below drain
    with RawServer(_three_mib_tagged) as srv:
        rows, _ = _probe(srv.url, settings, timeout=5, tag_regex=r"build=(v\d+)")
    assert [(r.status, r.error, r.version, r.tag_source, r.bytes) for r in rows] == [
        (200, None, "v42", "regex", 10 + (3 << 20))
    ]


async def _trickle(_reader, writer):
    writer.write(HEAD_CHUNKED)
    while True:
        writer.write(b"1\r\na\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_timeout_bounds_the_whole_response_not_each_read(transport):
    """A body trickling a byte every 50 ms never trips a per-read timeout; the request's
    timeout still ends it."""
    settings = ProbeSettings(rate=5, duration=0.2, transport=transport)
    with RawServer(_trickle) as srv:
        rows, _ = _probe(srv.url, settings, timeout=0.5)
    assert [(r.status, r.error) for r in rows] == [(0, "timeout")]
    assert 450 <= rows[0].latency_ms < 1500


# --------------------------------------------------------------------------- headers (item 7)


def _big_header(size: int):
    async def handler(_reader, writer):
        body = b'{"version": "v1"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: c=%s\r\nContent-Length: %d\r\n\r\n%s"
            % (b"z" * size, len(body), body)
        )
        await writer.drain()

    return handler


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("size", [10_000, 65_536])
def test_large_response_header_is_answered(size, transport):
    settings = ProbeSettings(rate=5, duration=0.2, transport=transport)
    with RawServer(_big_header(size)) as srv:
        rows, _ = _probe(srv.url, settings, timeout=5)
    assert [(r.status, r.error, r.version) for r in rows] == [(200, None, "v1")]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_header_beyond_the_clients_limit_is_a_client_limit_not_protocol(transport):
    settings = ProbeSettings(rate=5, duration=0.2, transport=transport)
    with RawServer(_big_header(2 * MAX_HEADER_BYTES)) as srv:
        rows, _ = _probe(srv.url, settings, timeout=5)
    assert [(r.status, r.error) for r in rows] == [(0, CLIENT_LIMIT)]
    assert CLIENT_LIMIT in ERROR_CLASSES


# --------------------------------------------------------------------------- drains (item 9)


async def _silent(_reader, _writer):
    await asyncio.sleep(3600)


def test_requests_in_flight_at_a_stop_are_interrupted_rows():
    settings = ProbeSettings(rate=40, duration=30, drain_s=0.2)
    t0 = time.monotonic()
    with RawServer(_silent) as srv:
        rows, stats = _probe(srv.url, settings, stop_after=0.5, timeout=10)
    assert time.monotonic() - t0 < 25  # far short of the 30 s asked for
    assert stats.stopped_early and stats.sent >= 10
    assert len(rows) == stats.sent == stats.scheduled  # every request sent is a row
    assert stats.abandoned == stats.sent
    assert {(r.status, r.error) for r in rows} == {(0, INTERRUPTED)}
    # Latency runs to the abandon time: about stop + drain after each send.
    last_send = max(r.ts for r in rows)
    ends = [r.ts + r.latency_ms / 1000 for r in rows]
    # all at the one abandon time, not each at its own send time plus a constant (the sends
    # spread over the half second before the stop)
    sends = max(r.ts for r in rows) - min(r.ts for r in rows)
    assert min(ends) >= last_send + 0.15 and max(ends) - min(ends) < sends / 2


def test_a_run_ends_within_its_grace_even_with_an_endless_timeout():
    """A timeout no request reaches (a library caller may pass one) cannot hold a run."""
    with RawServer(_silent) as srv:
        spec = RequestSpec(url=srv.url, timeout=1e308)
        settings = ProbeSettings(rate=10, duration=0.3, end_grace_s=0.3)
        t0 = time.monotonic()
        rows, stats = _probe(spec, settings)
    assert time.monotonic() - t0 < 30  # ~0.6 s; forever without the grace
    assert not stats.stopped_early and len(rows) == stats.sent == 3
    assert {(r.status, r.error) for r in rows} == {(0, INTERRUPTED)}


def test_the_default_grace_is_bounded_by_the_timeout_limit():
    settings = ProbeSettings(rate=1, duration=1, drain_s=2.0)
    assert settings.grace_s(10.0) == 12.0
    assert settings.grace_s(1e308) == MAX_TIMEOUT_S + 2.0
    assert ProbeSettings(rate=1, duration=1, end_grace_s=0.5).grace_s(1e308) == 0.5
    with pytest.raises(ValueError):
        ProbeSettings(rate=1, duration=1e308)


# --------------------------------------------------------------------------- regex (item 10)

PATHOLOGICAL_BODY = b"x" * 60_000 + b"a" * 24 + b"!"


async def _pathological(_reader, writer):
    body = PATHOLOGICAL_BODY
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()


def test_a_pathological_regex_does_not_delay_the_schedule():
    """``(a+)+$`` backtracks exponentially in Python's engine (seconds per body here); the
    probe's lateness (ts - intended_ts) must stay that of an idle loop."""
    settings = ProbeSettings(rate=20, duration=1.0)
    with RawServer(_pathological) as srv:
        rows, stats = _probe(srv.url, settings, timeout=5, tag_regex=r"(a+)+$")
    assert len(rows) == stats.scheduled == 20
    assert {(r.status, r.error, r.version) for r in rows} == {(200, None, "unknown")}
    lateness = sorted(r.ts - r.intended_ts for r in rows)
    # Python's re put it 3.3 s behind here; an idle loop on a busy machine stays far below 1 s.
    assert lateness[-1] < 1.0, f"the probe fell {lateness[-1]:.3f} s behind"


@pytest.mark.parametrize(
    ("regex", "body", "version"),
    [
        (r"v(\d+)", b"model v12 ready", "12"),
        (r"(?P<version>\d+\.\d+)-(rc\d)", b"build 1.2-rc3", "1.2"),
        (r"release-\w+", b"this is release-blue", "release-blue"),
        (r"(?i)VERSION=(\w+)", b"version=abc", "abc"),
    ],
)
def test_regex_group_semantics_are_kept(regex, body, version):
    from probes.tagging import tag

    assert tag({}, body, TagRules.build(regex=regex)) == (version, "regex")


@pytest.mark.parametrize("regex", [r"(a)\1", r"(?<=x)v\d", r"(unclosed"])
def test_a_regex_re2_cannot_run_is_a_config_error(regex, capfd):
    from probes.errors import ConfigError
    from probes.settings import FLAGS

    with pytest.raises(ConfigError, match=r"^--tag-regex: "):
        TagRules.build(regex=regex, place=FLAGS)
    assert capfd.readouterr().err == ""  # RE2 logs nothing of its own


# --------------------------------------------------------------------------- SIGTERM, end to end


def _half_stalled():
    count = {"n": 0}

    async def handler(_reader, writer):
        count["n"] += 1
        if count["n"] % 2:
            await asyncio.sleep(3600)  # a slow target: this one is in flight at the stop
        writer.write(b"HTTP/1.1 200 OK\r\nX-Version: v1\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    return handler


@pytest.mark.slow
def test_sigterm_against_a_slow_target_leaves_a_row_for_every_request_sent(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from probes.records import read_manifest, read_samples
    from tests.helpers import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with RawServer(_half_stalled()) as srv:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "probes.cli", "observe", srv.url, "--quiet"),
                *("--runs-dir", str(tmp_path), "--run-id", "t", "--rate", "50"),
                *("--duration", "60", "--timeout", "30"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        deadline = time.monotonic() + 30
        while srv.requests < 40 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    run_dir = tmp_path / "t"
    probe = read_manifest(run_dir)["probe"]
    frame = read_samples(run_dir)
    interrupted = int((frame["error"] == INTERRUPTED).sum())
    assert probe["abandoned"] >= 15 and interrupted == probe["abandoned"]
    assert len(frame) == probe["sent"] == probe["recorded"]  # no request sent without a row
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] == interrupted
    assert summary["requests"] == len(frame) - interrupted and summary["errors"] == 0
