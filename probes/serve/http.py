"""The service's HTTP API on aiohttp: exactly the routes of CONTRACT.md "probes serve".

Every handler answers from memory (the ``ServiceView``) or from the run index's read side and
run directories, which are read on a small thread pool of the app's own, so a slow disk never
blocks the event loop the canaries run on, and report-making in the default executor never
delays an answer.

Choices that rollout controllers depend on (their source, not guesses):

- ``GET /api/v1/verdict`` answers 200 with the full body whenever the service can judge at all:
  Argo Rollouts' ``web`` provider turns any non-2xx, timeout or unparsable body into an *Error*
  measurement and aborts the rollout after ``consecutiveErrorLimit`` (4) of them, so "not yet"
  is ``pending`` in a 200. Even an exception while judging becomes a 200 ``pending`` naming it:
  a bug here must pause a rollout, not abort it. An unknown target is a 404 (a wrong URL in an
  AnalysisTemplate is a configuration error that should surface); ``target`` may be left out
  when the service has exactly one.
- Flagger webhooks pass on 200-202 only, and show a failing body in the canary's events:
  ``gate`` (confirm-rollout / confirm-promotion / rollout hooks) is 200 on ``pass`` and 403 with
  a one-line reason on ``fail`` or ``pending`` (as Flagger's own load tester halts a gate);
  ``rollback`` is inverted (a 2xx rolls back now): 200 only on ``fail``; ``event`` is always 200
  and a ``Progressing`` event opens a capture for the mapped target. A judgement is never a 5xx
  (Flagger retries 5xx).
- The door (``probes.serve.door``): with a token, Bearer auth on every route but ``/healthz``
  (constant-time comparison; 401 with ``WWW-Authenticate: Bearer``), a login form and a signed
  session cookie for people. Flagger's webhooks cannot send headers (a webhook has only url,
  timeout, metadata, retries), so the Flagger routes also accept the token as
  ``metadata.token`` in the body, as Flagger's own docs show. Without a token: loopback
  ``Host`` values only, and JSON POSTs without a foreign ``Origin``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from probes.errors import ConfigError
from probes.run import FIGURES_DIR, REPORT_HTML_FILE
from probes.serve import pages
from probes.serve.door import BadBody, door_middleware, login_routes, read_json
from probes.serve.health import target_items
from probes.serve.history import History, parse_minutes
from probes.serve.index import RUN_ID_RE, RunIndex, inside
from probes.serve.metrics import Metrics
from probes.serve.params import BadParam, run_filters, start_fields
from probes.serve.verdict import pending_body

__all__ = ["Conflict", "ServiceView", "make_app"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RECENT_RUNS = 10
FLAGGER_HOOKS = ("gate", "rollback", "event")
FIGURE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class Conflict(Exception):
    """``start_run``: a run of a ``forbid`` kind is already running (-> 409)."""


class ServiceView(Protocol):
    """What the HTTP layer needs of the service (``probes.serve.service.Service`` has it)."""

    auth_token: str | None
    index: RunIndex
    metrics: Metrics
    runs_dir: Path

    def ready(self) -> bool: ...
    def target_names(self) -> list[str]: ...
    def target_status(self, name: str) -> dict[str, Any]: ...
    def verdict(
        self, target: str, candidate: str | None, baseline: str | None
    ) -> dict[str, Any]: ...
    def start_run(
        self, target: str, kind: str, duration_s: float | None, args: Mapping[str, Any]
    ) -> str: ...
    def flagger_target(self, namespace: str, name: str) -> str | None: ...
    def open_capture(self, target: str, reason: str, checksum: str | None = None) -> str | None: ...
    def flagger_verdict(self, target: str, checksum: str | None) -> dict[str, Any] | None: ...


VIEW: web.AppKey[ServiceView] = web.AppKey("view", ServiceView)
POOL: web.AppKey[ThreadPoolExecutor] = web.AppKey("pool", ThreadPoolExecutor)


# -- helpers -------------------------------------------------------------------------------


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _text(status: int, line: str) -> web.Response:
    """A one-line plain-text answer (what Flagger shows in the canary's events)."""
    return web.Response(status=status, text=line.replace("\n", " ") + "\n")


async def _off_loop(request: web.Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[POOL], functools.partial(fn, *args, **kwargs))


def _view(request: web.Request) -> ServiceView:
    return request.app[VIEW]


# -- middleware ----------------------------------------------------------------------------


async def _flagger_token(request: web.Request) -> bytes:
    """``metadata.token`` of a Flagger webhook body (Flagger cannot send headers; its docs
    put a token in the webhook's metadata). The body stays cached for the handler."""
    try:
        body = await read_json(request)
    except BadBody:
        return b""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    value = metadata.get("token") if isinstance(metadata, dict) else None
    return value.encode("utf-8", "replace") if isinstance(value, str) else b""


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own 404/405 as JSON under /api, like every other API error; a bug in a
    handler is a JSON 500 naming nothing secret, never aiohttp's text/plain page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except BadBody as exc:
        return _error(400, str(exc))
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, f"internal error: {type(exc).__name__}")


# -- routes --------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if _view(request).ready():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "starting"}, status=503)


async def targets(request: web.Request) -> web.Response:
    view = _view(request)
    return web.json_response(target_items(view))


def _known_target(view: ServiceView, name: str) -> web.Response | None:
    names = view.target_names()
    if name in names:
        return None
    return _error(404, f"target: unknown {name!r} (known: {', '.join(names) or 'none'})")


async def target(request: web.Request) -> web.Response:
    view, name = _view(request), request.match_info["name"]
    if (missing := _known_target(view, name)) is not None:
        return missing
    data = await pages.target_data(request, view, name, _off_loop, RECENT_RUNS)
    return web.json_response(data)


async def target_history(request: web.Request) -> web.Response:
    """``?minutes=N`` (1..1440, default 15) of the target's canary, in buckets."""
    view, name = _view(request), request.match_info["name"]
    if (missing := _known_target(view, name)) is not None:
        return missing
    unknown = [k for k in request.query if k != "minutes"]
    if unknown:
        return _error(400, f"{unknown[0]}: unknown parameter (known: minutes)")
    try:
        minutes = parse_minutes(request.query.get("minutes"))
    except ValueError as exc:
        return _error(400, str(exc))
    history = getattr(view, "history", None) or History()
    return web.json_response(history.buckets(name, minutes, time.time()))


async def runs(request: web.Request) -> web.Response:
    try:
        filters = run_filters(request.query)
    except BadParam as exc:
        return _error(400, str(exc))
    rows = await _off_loop(request, _view(request).index.query, **filters)
    return web.json_response([r.as_api() for r in rows])


def _run_dir(request: web.Request) -> Path | None:
    run_id = request.match_info["run_id"]
    if not RUN_ID_RE.match(run_id):
        return None
    return _view(request).runs_dir / run_id


async def run_summary(request: web.Request) -> web.Response:
    run_dir = _run_dir(request)
    runs_dir = _view(request).runs_dir
    summary = None if run_dir is None else await _off_loop(request, _summary, runs_dir, run_dir)
    if summary is None:
        return _error(404, f"run {request.match_info['run_id']!r}: no summary.json (no such run, "
                      "or its report is not made yet)")  # fmt: skip
    return web.json_response(summary)


#: A run's summary.json, never through a symlink out of runs_dir.
_summary = pages.run_summary


def _existing_file(runs_dir: Path, path: Path) -> bool:
    """A regular file within runs_dir: a symlink out of it is never served."""
    return path.is_file() and inside(runs_dir, path)


async def _file(request: web.Request, path: Path | None, what: str) -> web.StreamResponse:
    runs_dir = _view(request).runs_dir
    if path is None or not await _off_loop(request, _existing_file, runs_dir, path):
        return _error(404, f"run {request.match_info['run_id']!r}: no {what}")
    return web.FileResponse(path)


async def run_report(request: web.Request) -> web.StreamResponse:
    run_dir = _run_dir(request)
    return await _file(
        request, None if run_dir is None else run_dir / REPORT_HTML_FILE, "report.html"
    )


async def run_figure(request: web.Request) -> web.StreamResponse:
    run_dir, name = _run_dir(request), request.match_info["name"]
    path = None
    if run_dir is not None and FIGURE_RE.match(name) and ".." not in name:
        path = run_dir / FIGURES_DIR / name
    return await _file(request, path, f"figure {name!r}")


async def start_run(request: web.Request) -> web.Response:
    view, name = _view(request), request.match_info["name"]
    if (missing := _known_target(view, name)) is not None:
        return missing
    try:
        body = await read_json(request)
    except BadBody as exc:
        return _error(400, str(exc))
    try:
        kind, duration, args = start_fields(body)
        run_id = view.start_run(name, kind, duration, args)
    except BadParam as exc:
        return _error(400, str(exc))
    except ConfigError as exc:
        return _error(400, str(exc))
    except Conflict as exc:
        return _error(409, str(exc) or f"target {name!r}: a run of a forbid kind is running")
    except KeyError as exc:
        return _error(404, f"target: {exc.args[0] if exc.args else name!r} is not known")
    return web.json_response({"run_id": run_id}, status=202)


def _judge(
    view: ServiceView, name: str, candidate: str | None, baseline: str | None
) -> dict[str, Any]:
    """The view's verdict body; a failure while judging is a ``pending`` naming it."""
    try:
        return view.verdict(name, candidate, baseline)
    except Exception as exc:
        log.exception("verdict for %s failed", name)
        reason = f"verdict unavailable: {type(exc).__name__}: {exc}"
        return pending_body(name, reason, time.time())


async def verdict(request: web.Request) -> web.Response:
    """200 with a full body while the service runs (Argo Rollouts' ``web`` provider turns any
    non-2xx into an Error measurement): a question it cannot answer — an unknown parameter,
    no target named among several — is a ``pending`` saying why; an unknown target is a 404
    (CONTRACT.md 2026-12-07: a wrong name in an AnalysisTemplate must fail fast)."""
    view, query = _view(request), request.query
    names = view.target_names()
    name = query.get("target") or (names[0] if len(names) == 1 else None)
    unknown = [k for k in query if k not in ("target", "candidate", "baseline")]
    problem = None
    if unknown:
        problem = f"{unknown[0]}: unknown parameter (known: target, candidate, baseline)"
    elif name is None:
        problem = f"target: required (one of {', '.join(names) or 'none'})"
    elif name not in names:  # CONTRACT: a typo in an AnalysisTemplate fails fast
        return _error(404, f"target: unknown {name!r} (known: {', '.join(names) or 'none'})")
    if problem is not None:
        return web.json_response(pending_body(name or "", problem, time.time()))
    assert name is not None
    body = _judge(view, name, query.get("candidate") or None, query.get("baseline") or None)
    return web.json_response(body)


async def _flagger_payload(
    request: web.Request,
) -> tuple[str, str, str, str | None] | web.Response:
    """(namespace, name, phase, checksum) of a Flagger webhook body, or the 400 answer."""
    try:
        body = await read_json(request)
    except BadBody as exc:
        return _text(400, f"{exc}; expected Flagger's {{name, namespace, phase, ...}}")
    if not isinstance(body, dict):
        return _text(400, "body: expected a JSON object {name, namespace, phase, ...}")
    for key in ("name", "namespace"):
        if not isinstance(body.get(key), str) or not body[key]:
            return _text(400, f"{key}: required (a non-empty string)")
    phase, checksum = body.get("phase"), body.get("checksum")
    return (
        body["namespace"],
        body["name"],
        phase if isinstance(phase, str) else "",
        checksum if isinstance(checksum, str) and checksum else None,
    )


async def flagger(request: web.Request) -> web.Response:
    hook = request.match_info["gate"]
    if hook not in FLAGGER_HOOKS:
        return _text(404, f"gate: unknown hook {hook!r} (known: {', '.join(FLAGGER_HOOKS)})")
    payload = await _flagger_payload(request)
    if isinstance(payload, web.Response):
        if hook == "event":  # fire-and-forget: Flagger never acts on an event's answer
            return web.json_response({"status": "ignored", "reason": payload.text})
        return payload
    namespace, name, phase, checksum = payload
    view = _view(request)
    target_name = view.flagger_target(namespace, name)
    if hook == "event":
        return _flagger_event(view, target_name, namespace, name, phase, checksum)
    if target_name is None:
        return _text(403, f"unknown canary {namespace}/{name}: no target lists it in flagger")
    # The capture tied to this revision's checksum (open or closed), else the open one: a
    # previous rollout's fail never rolls the next one back, nor its pass promotes it.
    try:
        body = view.flagger_verdict(target_name, checksum)
    except Exception as exc:  # judging failed: pending, never a 5xx (Flagger retries those)
        log.exception("flagger verdict for %s failed", target_name)
        body = pending_body(target_name, f"verdict unavailable: {type(exc).__name__}", time.time())
    if body is None:
        return _text(403, f"{target_name}: pending: no rollout is being captured on it now")
    result, reason = body.get("verdict"), body.get("reason") or ""
    line = f"{target_name}: {result}: {reason}"
    if hook == "gate":
        return _text(200 if result == "pass" else 403, line)
    return _text(200 if result == "fail" else 403, line)  # rollback: a 2xx rolls back now


def _flagger_event(
    view: ServiceView,
    target_name: str | None,
    namespace: str,
    name: str,
    phase: str,
    checksum: str | None = None,
) -> web.Response:
    if target_name is None:
        return web.json_response(
            {"status": "ignored", "reason": f"unknown canary {namespace}/{name}"}
        )
    if phase != "Progressing":
        return web.json_response({"status": "ok", "target": target_name, "phase": phase})
    try:
        reason = f"flagger {namespace}/{name} Progressing"
        run_id = view.open_capture(target_name, reason, checksum)
    except Exception as exc:  # an event hook is fire-and-forget: never fail it
        log.exception("flagger event: opening a capture for %s failed", target_name)
        return web.json_response({"status": "error", "target": target_name, "reason": str(exc)})
    return web.json_response(
        {"status": "capturing", "target": target_name, "phase": phase, "run_id": run_id}
    )


# -- the app -------------------------------------------------------------------------------


def make_app(view: ServiceView) -> web.Application:
    """Every CONTRACT route, the auth middleware (when the view has a token), and /metrics."""
    door = door_middleware(view.auth_token or None, _flagger_token)
    app = web.Application(middlewares=[door, _json_errors])
    app[VIEW] = view

    async def pool_ctx(app: web.Application) -> Any:
        app[POOL] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="serve-http")
        yield
        app[POOL].shutdown(wait=False, cancel_futures=True)

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_routes(pages.routes(_view, _off_loop, _run_dir, RECENT_RUNS))
    if view.auth_token:
        app.router.add_routes(login_routes(view.auth_token, door.sessions, pages.login_page))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(view.metrics.registry))
    app.router.add_get("/api/v1/targets", targets)
    app.router.add_get("/api/v1/targets/{name}", target)
    app.router.add_get("/api/v1/targets/{name}/history", target_history)
    app.router.add_post("/api/v1/targets/{name}/runs", start_run)
    app.router.add_get("/api/v1/runs", runs)
    app.router.add_get("/api/v1/runs/{run_id}", run_summary)
    app.router.add_get("/api/v1/runs/{run_id}/report", run_report)
    app.router.add_get("/api/v1/runs/{run_id}/figures/{name}", run_figure)
    app.router.add_get("/api/v1/verdict", verdict)
    app.router.add_post("/api/v1/flagger/{gate}", flagger)
    return app
