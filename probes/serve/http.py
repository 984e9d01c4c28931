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
- Bearer-token auth on every route but ``/healthz`` when the view has a token (constant-time
  comparison; 401 with ``WWW-Authenticate: Bearer``). Flagger's webhooks cannot send headers
  (a webhook has only url, timeout, metadata, retries), so the Flagger routes also accept the
  token as ``metadata.token`` in the body, as Flagger's own docs show.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from probes.errors import ConfigError
from probes.run import FIGURES_DIR, REPORT_HTML_FILE, RUN_KINDS, read_summary
from probes.serve import pages
from probes.serve.index import RUN_ID_RE, RunIndex
from probes.serve.metrics import Metrics
from probes.serve.verdict import pending_body

__all__ = ["Conflict", "ServiceView", "make_app"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RUN_LIMIT_DEFAULT, RUN_LIMIT_MAX = 50, 1000
RECENT_RUNS = 10
RUN_VERDICTS = ("pass", "fail", "inconclusive")
START_KINDS = ("observe", "load", "capacity")
FLAGGER_HOOKS = ("gate", "rollback", "event")
FIGURE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
RUN_FILTERS = (
    "target",
    "kind",
    "trigger",
    "verdict",
    "schedule",
    "since",
    "until",
    "limit",
    "offset",
)


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


class BadParam(ValueError):
    """A query parameter or body field with a bad value; the message names it."""


def _parse_time(name: str, text: str) -> float:
    """Epoch seconds, or ISO 8601 (``Z`` or an offset; a naive time is UTC)."""
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadParam(
                f"{name}: {text!r} is not a time; expected ISO 8601 "
                f"(2026-01-31T02:00:00Z) or epoch seconds"
            ) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    if not math.isfinite(value):
        raise BadParam(f"{name}: {text!r} is not a finite number of epoch seconds")
    return value


def _parse_int(name: str, text: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadParam(f"{name}: {text!r} is not an integer ({lo}..{hi})") from None
    if not lo <= value <= hi:
        raise BadParam(f"{name}: {value} is out of range ({lo}..{hi})")
    return value


def _choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise BadParam(f"{name}: {text!r} is not one of {', '.join(choices)}")
    return text


def run_filters(query: Mapping[str, str]) -> dict[str, Any]:
    """The ``RunIndex.query`` keywords of a ``/api/v1/runs`` query string; BadParam naming
    the first bad or unknown parameter."""
    for key in query:
        if key not in RUN_FILTERS:
            raise BadParam(f"{key}: unknown filter (known: {', '.join(RUN_FILTERS)})")
    out: dict[str, Any] = {"limit": RUN_LIMIT_DEFAULT}
    for key in ("target", "schedule", "trigger"):
        if query.get(key):
            out[key] = query[key]
    if query.get("kind"):
        out["kind"] = _choice("kind", query["kind"], RUN_KINDS)
    if query.get("verdict"):
        out["verdict"] = _choice("verdict", query["verdict"], RUN_VERDICTS)
    for key in ("since", "until"):
        if query.get(key):
            out[key] = _parse_time(key, query[key])
    if "limit" in query:
        out["limit"] = _parse_int("limit", query["limit"], 1, RUN_LIMIT_MAX)
    if "offset" in query:
        out["offset"] = _parse_int("offset", query["offset"], 0, 10**9)
    return out


# -- middleware ----------------------------------------------------------------------------


def _auth_middleware(token: str) -> Any:
    expected = f"Bearer {token}".encode()
    secret = token.encode()

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if hmac.compare_digest(given, expected):
            return await handler(request)
        flagger = request.method == "POST" and request.path.startswith("/api/v1/flagger/")
        if flagger and hmac.compare_digest(await _flagger_token(request), secret):
            return await handler(request)
        return _error(
            401,
            "authorization required: send 'Authorization: Bearer <token>'",
            **{"WWW-Authenticate": 'Bearer realm="proton-probe"'},
        )

    return auth


async def _flagger_token(request: web.Request) -> bytes:
    """``metadata.token`` of a Flagger webhook body (Flagger cannot send headers; its docs
    put a token in the webhook's metadata). The body stays cached for the handler."""
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return b""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    value = metadata.get("token") if isinstance(metadata, dict) else None
    return value.encode("utf-8", "replace") if isinstance(value, str) else b""


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own 404/405 as JSON under /api, like every other API error."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        return _error(exc.status, exc.reason)


# -- routes --------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if _view(request).ready():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "starting"}, status=503)


async def targets(request: web.Request) -> web.Response:
    view = _view(request)
    return web.json_response([view.target_status(n) for n in view.target_names()])


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


def _summary(runs_dir: Path, run_dir: Path) -> dict[str, Any] | None:
    """A run's summary.json, unless its directory is a link out of runs_dir (issue 21)."""
    from probes.serve.index import inside

    return read_summary(run_dir) if inside(runs_dir, run_dir / "summary.json") else None


def _existing_file(runs_dir: Path, path: Path) -> bool:
    """A regular file within runs_dir: a symlink out of it is never served (issue 21)."""
    from probes.serve.index import inside

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


def start_fields(body: Any) -> tuple[str, float | None, dict[str, Any]]:
    """``(kind, duration_s, args)`` of a ``POST /api/v1/targets/{name}/runs`` body."""
    if not isinstance(body, dict):
        raise BadParam("body: expected a JSON object {kind, duration_s, args}")
    unknown = sorted(set(body) - {"kind", "duration_s", "args"})
    if unknown:
        raise BadParam(f"{unknown[0]}: unknown field (known: kind, duration_s, args)")
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise BadParam(f"kind: required, one of {', '.join(START_KINDS)}")
    _choice("kind", kind, START_KINDS)
    duration = body.get("duration_s")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not math.isfinite(duration)
        or duration <= 0
    ):
        raise BadParam(f"duration_s: {duration!r} is not a positive number of seconds")
    args = body.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadParam("args: expected a JSON object of the verb's flags")
    return kind, None if duration is None else float(duration), args


async def start_run(request: web.Request) -> web.Response:
    view, name = _view(request), request.match_info["name"]
    if (missing := _known_target(view, name)) is not None:
        return missing
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "body: not valid JSON")
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
    """Always 200 with a full body while the service runs (Argo Rollouts' ``web`` provider
    turns any non-2xx into an Error measurement): a question it cannot answer — an unknown
    parameter or target, no target named among several — is a ``pending`` saying why."""
    view, query = _view(request), request.query
    names = view.target_names()
    name = query.get("target") or (names[0] if len(names) == 1 else None)
    unknown = [k for k in query if k not in ("target", "candidate", "baseline")]
    problem = None
    if unknown:
        problem = f"{unknown[0]}: unknown parameter (known: target, candidate, baseline)"
    elif name is None:
        problem = f"target: required (one of {', '.join(names) or 'none'})"
    elif name not in names:
        problem = f"target: unknown {name!r} (known: {', '.join(names) or 'none'})"
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
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _text(400, "body: not valid JSON; expected Flagger's {name, namespace, phase, ...}")
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
    middlewares: list[Any] = [_json_errors]
    if view.auth_token:
        middlewares.insert(0, _auth_middleware(view.auth_token))
    app = web.Application(middlewares=middlewares)
    app[VIEW] = view

    async def pool_ctx(app: web.Application) -> Any:
        app[POOL] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="serve-http")
        yield
        app[POOL].shutdown(wait=False, cancel_futures=True)

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_routes(pages.routes(_view, _off_loop, _run_dir, RECENT_RUNS))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(view.metrics.registry))
    app.router.add_get("/api/v1/targets", targets)
    app.router.add_get("/api/v1/targets/{name}", target)
    app.router.add_post("/api/v1/targets/{name}/runs", start_run)
    app.router.add_get("/api/v1/runs", runs)
    app.router.add_get("/api/v1/runs/{run_id}", run_summary)
    app.router.add_get("/api/v1/runs/{run_id}/report", run_report)
    app.router.add_get("/api/v1/runs/{run_id}/figures/{name}", run_figure)
    app.router.add_get("/api/v1/verdict", verdict)
    app.router.add_post("/api/v1/flagger/{gate}", flagger)
    return app
