"""The canary probe on streamed answers: a minimal SSE server on 127.0.0.1 whose sleeps are the
truth. The probe's TTFT is never below the server's first-token sleep, and not far above it
(the margin is wide: the machine is shared); cut and endless streams keep their partial
figures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from probes.canary import ProbeSettings, run_probe
from probes.records import Sample
from probes.settings import build_request

FIRST_MS = 80.0
GAP_MS = 25.0
TOKENS = 5
#: Scheduling noise allowed above a sleep: wide, as the tests share a loaded machine.
MARGIN_MS = 400.0


def chunk(content: str | None, finish: str | None = None, model: str = "m:7") -> bytes:
    delta = {} if content is None else {"content": content}
    doc = {
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


async def _stream(request: web.Request) -> web.StreamResponse:
    """``?mode=`` done (whole), cut (connection dropped after 2 tokens), eof (clean end
    without [DONE]), hang (2 tokens then nothing), plain (plain SSE events)."""
    mode = request.query.get("mode", "done")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if mode != "plain":
        await resp.write(chunk(""))  # the role-only chunk real servers send first: no token
    await asyncio.sleep(FIRST_MS / 1000)
    for i in range(TOKENS):
        if i:
            await asyncio.sleep(GAP_MS / 1000)
        if mode == "plain":
            await resp.write(b"event: token\ndata: t%d\n\n" % i)
        else:
            await resp.write(chunk(f"t{i}"))
        if i == 1 and mode == "cut":
            assert request.transport is not None
            request.transport.abort()
            return resp
        if i == 1 and mode == "eof":
            await resp.write_eof()
            return resp
        if i == 1 and mode == "hang":
            await asyncio.sleep(30)
        if i == 1 and mode == "huge":  # an endless stream of comments: past the drain bound
            while True:
                await resp.write(b": " + b"x" * 4000 + b"\n")
    if mode != "plain":
        await resp.write(chunk(None, "stop") + b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


@asynccontextmanager
async def sse_server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/stream", _stream)
    # A short shutdown: the hanging handler is cancelled, not waited for.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1/stream"
    finally:
        await runner.cleanup()


def probe(
    mode: str, transport: str, *, count: int = 2, timeout: float = 5.0, **limits: int
) -> list[Sample]:
    async def go() -> list[Sample]:
        rows: list[Sample] = []
        async with sse_server() as url:
            spec = build_request(f"{url}?mode={mode}", timeout=timeout, tag_json=["model"])
            settings = ProbeSettings(rate=10, duration=count / 10, transport=transport, **limits)
            await run_probe(spec, settings, None, on_sample=rows.append)
        return rows

    return asyncio.run(go())


TRANSPORTS = pytest.mark.parametrize("transport", ["aiohttp", "httpx"])


@TRANSPORTS
def test_ttft_and_inter_token_gap_follow_the_servers_sleeps(transport: str) -> None:
    rows = probe("done", transport)
    assert len(rows) == 2
    for row in rows:
        assert (row.status, row.error, row.tokens) == (200, None, TOKENS)
        assert (row.version, row.tag_source) == ("m:7", "json")  # from the first event
        assert row.ttft_ms is not None and row.itl_ms is not None
        assert FIRST_MS <= row.ttft_ms < FIRST_MS + MARGIN_MS
        # The mean gap is (last - first) / (tokens - 1): the last token's arrival, ttft + gaps,
        # comes after every sleep (a late first token may shorten the mean, not this sum).
        last = row.ttft_ms + row.itl_ms * (TOKENS - 1)
        assert FIRST_MS + GAP_MS * (TOKENS - 1) <= last < FIRST_MS + GAP_MS * TOKENS + MARGIN_MS
        # latency_ms stays send to last byte: after every sleep.
        assert row.latency_ms >= FIRST_MS + GAP_MS * (TOKENS - 1)
        assert row.latency_ms >= row.ttft_ms + row.itl_ms * (TOKENS - 1) - 1e-6


@TRANSPORTS
@pytest.mark.parametrize("mode", ["cut", "eof"])
def test_a_stream_cut_before_its_terminator_is_stream_aborted(mode: str, transport: str) -> None:
    rows = probe(mode, transport)
    assert len(rows) == 2
    for row in rows:
        assert (row.status, row.error, row.tokens, row.version) == (200, "stream_aborted", 2, "m:7")
        assert row.ttft_ms is not None and FIRST_MS <= row.ttft_ms < FIRST_MS + MARGIN_MS
        assert row.itl_ms is not None and row.ttft_ms + row.itl_ms >= FIRST_MS + GAP_MS
        assert row.bytes > 0


@TRANSPORTS
def test_a_stream_that_never_ends_is_a_timeout_with_its_partial_figures(transport: str) -> None:
    rows = probe("hang", transport, count=1, timeout=0.6)
    (row,) = rows
    assert (row.status, row.error, row.tokens, row.version) == (200, "timeout", 2, "m:7")
    assert row.ttft_ms is not None and FIRST_MS <= row.ttft_ms < 600
    assert row.latency_ms >= 600


@TRANSPORTS
def test_a_stream_past_the_drain_bound_is_cut_with_its_partial_figures(transport: str) -> None:
    rows = probe("huge", transport, count=1, max_body_bytes=1000, max_drain_bytes=100_000)
    (row,) = rows
    assert (row.status, row.error, row.tokens, row.version) == (200, "body_too_large", 2, "m:7")
    assert row.ttft_ms is not None and row.ttft_ms >= FIRST_MS
    assert row.bytes > 100_000


@TRANSPORTS
def test_plain_sse_events_are_tokens_and_a_clean_end_completes(transport: str) -> None:
    rows = probe("plain", transport, count=1)
    (row,) = rows
    assert (row.status, row.error, row.tokens) == (200, None, TOKENS)
    assert row.ttft_ms is not None and FIRST_MS <= row.ttft_ms < FIRST_MS + MARGIN_MS
    assert (row.version, row.tag_source) == ("unknown", "none")  # "t0" is no JSON


def test_a_non_stream_answer_keeps_null_stream_columns() -> None:
    async def plain(_request: web.Request) -> web.Response:
        return web.json_response({"version": "v1"})

    async def go() -> list[Any]:
        app = web.Application()
        app.router.add_get("/", plain)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        rows: list[Sample] = []
        try:
            spec = build_request(f"http://127.0.0.1:{port}/")
            await run_probe(spec, ProbeSettings(rate=10, duration=0.1), None, on_sample=rows.append)
        finally:
            await runner.cleanup()
        return rows

    (row,) = asyncio.run(go())
    assert (row.error, row.version, row.ttft_ms, row.tokens, row.itl_ms) == (
        None,
        "v1",
        None,
        None,
        None,
    )
