"""The invoke gateway: ``/api/v2/endpoints/workloads/{id}/…`` → the routed proton.

Bearer check (401 ``{"message": "Invalid API key"}``), 404 for an unknown workload, the
prefix stripped, method, path, query and body forwarded, ``Authorization`` consumed (never
forwarded). No routable proton: 503; upstream connection failure: 502; upstream timeout: 504.
Every request routed to a proton is counted for it (the stats endpoint reads these counts).

With ``pin_connections`` a client connection keeps the proton it first reached until that
proton is retired (after the drain and keep-old window); its connection is then closed and
the client's next connection lands on the new proton.

A streamed answer (``text/event-stream``) is passed on chunk by chunk as the proton writes it
(nginx-style with buffering off), so a caller's time to first token is the proton's; a
stream the proton cuts is cut for the caller too (its connection aborted).

With ``drop_inflight`` the platform cuts in-flight requests on the old proton at the switch by
aborting the client's connection: the caller sees a reset/closed connection (no status).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from probes.sim.control import ENGINE_KEY
from probes.sim.engine import Engine

PREFIX = "/api/v2/endpoints/workloads"
# hop-by-hop and edge-owned headers: never forwarded either way
DROP_REQUEST = frozenset(
    {
        "host",
        "authorization",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "content-length",
    }
)
DROP_RESPONSE = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "date",
        "server",
        "trailer",
        "upgrade",
    }
)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


async def invoke(request: web.Request) -> web.StreamResponse:
    """Forward one request to the proton the rollout state routes it to."""
    engine: Engine = request.app[ENGINE_KEY]
    expected: bytes = request.app[GATEWAY_AUTH_KEY]
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
        return _error(401, "Invalid API key")
    wl = engine.workloads.get(request.match_info["wid"])
    if wl is None:
        return _error(404, "Workload not found")
    router = engine.router
    transport = request.transport
    peer = transport.get_extra_info("peername") if router.pin_connections and transport else None
    picked = router.pick(wl, peer, transport)
    if picked is None:
        return _error(503, "No ready proton is serving this workload")
    proton, replica = picked
    started = time.time()
    status = 0
    task = asyncio.current_task()
    key = id(task)
    assert task is not None
    proton.inflight[key] = (task, transport)
    try:
        # the old proton retired while this request ran: close the (pinned) connection after
        # the answer, so the client reconnects to the new proton
        resp = await _forward(engine, request, replica.port, lambda: proton.retired)  # type: ignore[arg-type]
        status = resp.status
        if proton.retired and not resp.prepared:
            resp.force_close()
        return resp
    finally:
        del proton.inflight[key]
        engine.stats.record(proton.id, started, status, (time.time() - started) * 1000.0)


async def _forward(
    engine: Engine, request: web.Request, port: int, retired: Callable[[], bool]
) -> web.StreamResponse:
    tail = request.match_info.get("tail", "")
    url = f"http://127.0.0.1:{port}/{tail}"
    if request.query_string:
        url += "?" + request.query_string
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP_REQUEST}
    body = await request.read() if request.body_exists else None
    assert engine.session is not None
    try:
        async with engine.session.request(
            request.method,
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=request.app[TIMEOUT_KEY],
        ) as up:
            out = {k: v for k, v in up.headers.items() if k.lower() not in DROP_RESPONSE}
            if up.content_type == "text/event-stream":
                return await _pass_stream(request, up, out, retired())
            payload = await up.read()
            return web.Response(status=up.status, body=payload, headers=out)
    except TimeoutError:
        return _error(504, "Upstream proton timed out")
    except aiohttp.ClientError:
        return _error(502, "Upstream proton connection failed")


async def _pass_stream(
    request: web.Request, up: aiohttp.ClientResponse, headers: dict[str, str], close: bool
) -> web.StreamResponse:
    """Pass a streamed answer on as it comes; a cut upstream cuts the caller's connection."""
    resp = web.StreamResponse(status=up.status, headers=headers)
    if close:
        resp.force_close()
    await resp.prepare(request)
    try:
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
    except (aiohttp.ClientError, TimeoutError):
        if request.transport is not None:
            request.transport.abort()
        return resp
    await resp.write_eof()
    return resp


GATEWAY_AUTH_KEY = web.AppKey("gateway_auth", bytes)
TIMEOUT_KEY = web.AppKey("upstream_timeout", aiohttp.ClientTimeout)


def routes(app: web.Application, token: str, upstream_timeout_s: float) -> None:
    """Register the invoke routes (with and without a path after the workload id)."""
    app[GATEWAY_AUTH_KEY] = f"Bearer {token}".encode()
    app[TIMEOUT_KEY] = aiohttp.ClientTimeout(total=upstream_timeout_s)
    app.router.add_route("*", PREFIX + "/{wid}", invoke)
    app.router.add_route("*", PREFIX + "/{wid}/{tail:.*}", invoke)
