"""Control-plane routes under ``/api/v2`` (workload-api.md §2), bearer token required.

Shapes and status codes follow the reference; where it is silent, the decisions doc. Every
path also answers with a trailing slash. Every answer is one of the typed shapes of
:mod:`probes.sim.wire`. Lists page as documented: ``limit`` 1..100 (default 10),
``offset`` >= 0, ``next``/``previous`` keep every other query parameter; list filters take
repeated keys or comma-separated values and validate their vocabulary (422).
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web

from probes.sim import state, wire
from probes.sim.app import AppConfig
from probes.sim.engine import Engine
from probes.sim.models import (
    DEFAULT_RUNTIME,
    SIM_USER,
    Artifact,
    Replacement,
    Workload,
    iso,
    replica_count,
)
from probes.sim.scenarios import MAX_REPLICAS
from probes.sim.stats import Query

T = TypeVar("T")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API = "/api/v2"
IMPORTANCE = wire.IMPORTANCES
NO_REPLACEMENT = "There is no active replacement for this workload."
ENGINE_KEY = web.AppKey("engine", Engine)
TOKEN_KEY = web.AppKey("token", str)


class ApiError(Exception):
    """An HTTP error answer with a ``detail`` body."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status, self.detail = status, detail


def invalid(loc: list[str], msg: str, kind: str = "value_error", given: Any = None) -> ApiError:
    """A 422 in the documented validation-error shape."""
    return ApiError(422, [{"loc": loc, "msg": msg, "type": kind, "input": given, "ctx": {}}])


def reply(data: Any, status: int = 200) -> web.Response:
    """A JSON answer (``data`` is one of the :mod:`probes.sim.wire` shapes)."""
    return web.json_response(data, status=status)


def authed(handler: Callable[[Engine, web.Request], Awaitable[web.StreamResponse]]) -> Handler:
    """Bearer check (401 otherwise) and ``ApiError`` → JSON error answer."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        token = request.app[TOKEN_KEY]
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return reply({"detail": "Invalid or missing API token."}, 401)
        try:
            return await handler(request.app[ENGINE_KEY], request)
        except ApiError as exc:
            return reply({"detail": exc.detail}, exc.status)

    return wrapped


async def body_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise invalid(["body"], "Invalid JSON body", "json_invalid") from None
    if not isinstance(data, dict):
        raise invalid(["body"], "Expected a JSON object", "dict_type", data)
    return data


def page(request: web.Request, items: Sequence[T]) -> wire.Page[T]:
    """The paged list envelope ``{totalCount, count, next, previous, data}``.

    The links are this request's URL with ``offset`` (and ``limit``) moved, every other
    query parameter (filters, repeated or not) kept, so a client following ``next`` keeps
    its filter.
    """
    offset = _int_query(request, "offset", 0, 0)
    limit = _int_query(request, "limit", wire.DEFAULT_PAGE, 1, wire.MAX_PAGE)
    chunk = list(items[offset : offset + limit])
    kept = [(k, v) for k, v in request.query.items() if k not in ("offset", "limit")]

    def link(off: int) -> str:
        return str(request.url.with_query([*kept, ("offset", str(off)), ("limit", str(limit))]))

    return {
        "totalCount": len(items),
        "count": len(chunk),
        "next": link(offset + limit) if offset + limit < len(items) else None,
        "previous": link(max(0, offset - limit)) if offset > 0 else None,
        "data": chunk,
    }


def _int_query(
    request: web.Request, name: str, default: int, low: int, high: int | None = None
) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(
            ["query", name], "Input should be a valid integer", "int_parsing", raw
        ) from None
    if value < low:
        raise invalid(
            ["query", name],
            f"Input should be greater than or equal to {low}",
            "greater_than_equal",
            value,
        )
    if high is not None and value > high:
        raise invalid(
            ["query", name],
            f"Input should be less than or equal to {high}",
            "less_than_equal",
            value,
        )
    return value


def _number_query(
    request: web.Request, name: str, default: float, low: float, high: float
) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise invalid(
            ["query", name], "Input should be a valid number", "float_parsing", raw
        ) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise invalid(
            ["query", name], f"Input should be between {low:g} and {high:g}", "value_error", raw
        )
    return value


def list_query(request: web.Request, name: str, allowed: Iterable[str] | None = None) -> set[str]:
    """A list filter: repeated keys and comma-separated values alike; empty when absent.
    With ``allowed``, a value outside that vocabulary is a 422."""
    raw = request.query.getall(name, [])
    values = {part.strip() for text in raw for part in text.split(",") if part.strip()}
    if allowed is not None:
        vocabulary = tuple(allowed)
        wrong = sorted(values - set(vocabulary))
        if wrong:
            raise invalid(
                ["query", name],
                f"Input should be one of {', '.join(vocabulary)}",
                "enum",
                wrong[0],
            )
    return values


def _bool_query(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw.lower() in ("true", "1", "yes", "on"):
        return True
    if raw.lower() in ("false", "0", "no", "off"):
        return False
    raise invalid(["query", name], "Input should be a valid boolean", "bool_parsing", raw)


def workload_of(engine: Engine, request: web.Request) -> Workload:
    wl = engine.workloads.get(request.match_info["wid"])
    if wl is None:
        raise ApiError(404, "Workload not found.")
    return wl


def workload_json(engine: Engine, wl: Workload) -> wire.Workload:
    art = engine.artifacts.get(wl.artifact_id)
    rep = wl.replacement if wl.replacement is not None and not wl.replacement.hidden else None
    return {
        "id": wl.id,
        "name": wl.name,
        "description": wl.description,
        "importance": wl.importance,
        "type": wl.type,
        "status": engine.workload_status(wl),
        "artifactId": wl.artifact_id,
        "artifact": art.summary() if art else None,
        "protonId": wl.proton_id,
        "endpoint": engine.endpoint(wl.id),
        "runtime": wl.runtime,
        "replacement": rep.brief() if rep else None,
        "lastResponse": None,
        "statusDetails": None,
        "owners": [SIM_USER],
        "creator": SIM_USER,
        "permissions": ["*"],
        "tags": [],
        "createdAt": iso(wl.created),
        "updatedAt": iso(wl.updated),
    }


# ---- artifacts ----------------------------------------------------------------------------


def validate_spec(spec: Any) -> dict[str, Any]:
    """A minimal artifact spec check: container groups with containers; SIM_* knobs parse."""
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("containerGroups"), list)
        or not spec["containerGroups"]
    ):
        raise invalid(
            ["body", "spec", "containerGroups"],
            "At least one container group is required",
            "missing",
            spec,
        )
    for group in spec["containerGroups"]:
        if not isinstance(group, dict) or not group.get("containers"):
            raise invalid(
                ["body", "spec", "containerGroups", "containers"],
                "At least one container is required",
                "missing",
                group,
            )
    probe_art = Artifact(id="", name="x", spec=spec, repo_id="")
    try:
        AppConfig.from_env(probe_art.app_env())
    except ValueError as exc:
        raise invalid(["body", "spec", "environmentVars"], str(exc), "value_error") from None
    return spec


def create_artifact(engine: Engine, body: dict[str, Any]) -> Artifact:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(["body", "name"], "Field required", "missing", body)
    art = Artifact(
        id=engine.new_id(),
        name=name,
        spec=validate_spec(body.get("spec")),
        repo_id=engine.repo_id,
        description=str(body.get("description") or ""),
        type=str(body.get("type") or "service"),
    )
    engine.artifacts[art.id] = art
    return art


def lock(engine: Engine, art: Artifact) -> None:
    """Lock a draft: immutable from now on, next integer version of its name."""
    versions = [
        a.version for a in engine.artifacts.values() if a.name == art.name and a.version is not None
    ]
    art.status, art.version, art.updated = "locked", max(versions, default=0) + 1, time.time()


@authed
async def list_artifacts(engine: Engine, request: web.Request) -> web.Response:
    q = request.query
    ids = list_query(request, "ids")
    status = list_query(request, "status", wire.ARTIFACT_STATUSES)
    kind = list_query(request, "type", wire.ARTIFACT_TYPES)
    search = (q.get("search") or "").lower()
    items = [
        a.to_json()
        for a in engine.artifacts.values()
        if (not ids or a.id in ids)
        and (not status or a.status in status)
        and (not kind or a.type in kind)
        and q.get("repositoryId") in (None, a.repo_id)
        and search in a.name.lower()
    ]
    return reply(page(request, items))


@authed
async def post_artifact(engine: Engine, request: web.Request) -> web.Response:
    return reply(create_artifact(engine, await body_json(request)).to_json(), 201)


def artifact_of(engine: Engine, request: web.Request) -> Artifact:
    art = engine.artifacts.get(request.match_info["aid"])
    if art is None:
        raise ApiError(404, "Artifact not found.")
    return art


@authed
async def get_artifact(engine: Engine, request: web.Request) -> web.Response:
    return reply(artifact_of(engine, request).to_json())


@authed
async def patch_artifact(engine: Engine, request: web.Request) -> web.Response:
    art = artifact_of(engine, request)
    body = await body_json(request)
    if art.status == "locked":
        raise ApiError(409, "Artifact is locked and cannot be modified; clone it instead.")
    if "spec" in body:
        art.spec = validate_spec(body["spec"])
    for key in ("name", "description"):
        if key in body:
            setattr(art, key, str(body[key]))
    if body.get("status") == "locked":
        lock(engine, art)
    art.updated = time.time()
    return reply(art.to_json())


@authed
async def delete_artifact(engine: Engine, request: web.Request) -> web.Response:
    art = artifact_of(engine, request)
    in_use = any(p.artifact_id == art.id and not p.stopped for p in engine.protons.values())
    if art.status == "locked" or in_use:
        raise ApiError(409, "Artifact is locked or in use by a workload.")
    del engine.artifacts[art.id]
    return web.Response(status=204)


# ---- workloads ----------------------------------------------------------------------------


def validate_runtime(runtime: Any) -> dict[str, Any]:
    if runtime is None:
        return DEFAULT_RUNTIME
    if not isinstance(runtime, dict) or not isinstance(runtime.get("containerGroups"), list):
        raise invalid(["body", "runtime", "containerGroups"], "Field required", "missing", runtime)
    try:
        n = replica_count(runtime)
    except (TypeError, ValueError, IndexError, AttributeError):
        raise invalid(
            ["body", "runtime", "containerGroups", 0, "replicaCount"],  # type: ignore[list-item]
            "Input should be a valid integer",
            "int_parsing",
        ) from None
    if n < 1:
        raise invalid(
            ["body", "runtime", "containerGroups", 0, "replicaCount"],  # type: ignore[list-item]
            "Input should be greater than or equal to 1",
            "greater_than_equal",
            n,
        )
    if n > MAX_REPLICAS:
        raise ApiError(
            403, f"Requested replicas ({n}) exceeds the maximum allowed ({MAX_REPLICAS})."
        )
    return runtime


def create_workload(engine: Engine, body: dict[str, Any]) -> Workload:
    """Validate a ``CreateWorkloadRequest`` and start the workload's first proton."""
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(["body", "name"], "Field required", "missing", body)
    importance = body.get("importance", "low")
    if importance not in IMPORTANCE:
        raise invalid(
            ["body", "importance"], f"Input should be one of {IMPORTANCE}", "enum", importance
        )
    if ("artifact" in body) == ("artifactId" in body):
        raise invalid(
            ["body"], "Exactly one of artifact or artifactId is required", "value_error", body
        )
    runtime = validate_runtime(body.get("runtime"))
    if "artifactId" in body:
        art = engine.artifacts.get(str(body["artifactId"]))
        if art is None:
            raise ApiError(404, "Artifact not found.")
    else:
        art = create_artifact(
            engine, body["artifact"] if isinstance(body["artifact"], dict) else {}
        )
    if art.status == "draft":
        users = [w.id for w in engine.workloads.values() if w.artifact_id == art.id]
        if users:
            raise ApiError(409, f"Draft artifact {art.id} already backs workload {users[0]}.")
    wl = Workload(
        id=engine.new_id(),
        name=name,
        artifact_id=art.id,
        runtime=runtime,
        description=str(body.get("description") or ""),
        importance=importance,
        type=art.type,
    )
    engine.workloads[wl.id] = wl
    proton = engine.new_proton(wl, art, runtime, role="active")
    wl.proton_id = proton.id
    engine.event(wl, "workload", "submitted", {"protonId": proton.id, "artifactId": art.id})
    return wl


@authed
async def post_workload(engine: Engine, request: web.Request) -> web.Response:
    return reply(workload_json(engine, create_workload(engine, await body_json(request))), 201)


def _workload_filter(request: web.Request) -> Callable[[Engine, Workload], bool]:
    """The documented ``GET /workloads`` filters, validated once, as a predicate."""
    q = request.query
    ids = list_query(request, "ids")
    status = list_query(request, "status", wire.PROTON_STATUSES)
    importance = list_query(request, "importance", wire.IMPORTANCES)
    art_status = list_query(request, "artifactStatus", wire.ARTIFACT_STATUSES)
    kind = list_query(request, "type", wire.ARTIFACT_TYPES)
    tagged = list_query(request, "tagKeys") | list_query(request, "tagValues")
    search = (q.get("search") or "").lower()

    def keep(engine: Engine, wl: Workload) -> bool:
        art = engine.artifacts.get(wl.artifact_id)
        return (
            (not ids or wl.id in ids)
            and (not status or engine.workload_status(wl) in status)
            and (not importance or wl.importance in importance)
            and (not art_status or (art is not None and art.status in art_status))
            and (not kind or wl.type in kind)
            and q.get("artifactId") in (None, wl.artifact_id)
            and q.get("repositoryId") in (None, art.repo_id if art else None)
            and q.get("createdBy") in (None, SIM_USER["id"])
            and not tagged  # nothing here carries tags
            and search in wl.name.lower()
        )

    return keep


@authed
async def list_workloads(engine: Engine, request: web.Request) -> web.Response:
    keep = _workload_filter(request)
    with_stats = _bool_query(request, "serviceStats")
    order = request.query.get("orderBy", "createdAt")
    key = order.lstrip("-")
    if key not in ("name", "createdAt", "updatedAt", "status", "importance"):
        raise invalid(["query", "orderBy"], "Input should be a documented sort key", "enum", order)
    items = []
    for wl in engine.workloads.values():
        if not keep(engine, wl):
            continue
        data = workload_json(engine, wl)
        if with_stats:
            pid = wl.proton_id or ""
            data["requestStats"] = engine.stats.request_stats(pid, engine.concurrent(pid))
        items.append(data)
    items.sort(key=lambda d: str(d.get(key)), reverse=order.startswith("-"))
    return reply(page(request, items))


@authed
async def get_workload(engine: Engine, request: web.Request) -> web.Response:
    return reply(workload_json(engine, workload_of(engine, request)))


@authed
async def patch_workload(engine: Engine, request: web.Request) -> web.Response:
    wl = workload_of(engine, request)
    body = await body_json(request)
    if "importance" in body and body["importance"] not in IMPORTANCE:
        raise invalid(
            ["body", "importance"],
            f"Input should be one of {IMPORTANCE}",
            "enum",
            body["importance"],
        )
    for key in ("name", "description", "importance"):
        if key in body:
            setattr(wl, key, str(body[key]))
    wl.updated = time.time()
    return reply(workload_json(engine, wl))


def replacement_active(wl: Workload) -> bool:
    rep = wl.replacement
    return rep is not None and not rep.hidden and rep.status in state.IN_PROGRESS


@authed
async def delete_workload(engine: Engine, request: web.Request) -> web.Response:
    wl = workload_of(engine, request)
    del engine.workloads[wl.id]
    for proton in [p for p in engine.protons.values() if p.workload_id == wl.id]:
        await engine.stop_proton(proton)
    return web.Response(status=204)


def operation(wl: Workload, text: str, engine: Engine) -> web.Response:
    answer: wire.Operation = {
        "status": text,
        "workloadId": wl.id,
        "trackVia": f"{engine.base_url}{API}/workloads/{wl.id}/",
    }
    return reply(answer, 202)


@authed
async def start_workload(engine: Engine, request: web.Request) -> web.Response:
    wl = workload_of(engine, request)
    proton = engine.protons.get(wl.proton_id or "")
    if proton is None or not proton.stopped:
        raise ApiError(409, "Workload is not stopped.")
    engine.start_proton(proton)
    return operation(wl, "Workload start requested.", engine)


@authed
async def stop_workload(engine: Engine, request: web.Request) -> web.Response:
    wl = workload_of(engine, request)
    if replacement_active(wl):
        raise ApiError(409, "A replacement is in progress for this workload.")
    proton = engine.protons.get(wl.proton_id or "")
    if proton is None or proton.stopped or proton.stopping:
        raise ApiError(409, "Workload is not running.")
    engine.spawn_task(engine.stop_proton(proton))
    return operation(wl, "Workload stop requested.", engine)


# ---- settings, replacement, promote, history ------------------------------------------------


@authed
async def get_settings(engine: Engine, request: web.Request) -> web.Response:
    return reply({"runtime": workload_of(engine, request).runtime})


def begin_replacement(
    engine: Engine,
    wl: Workload,
    art: Artifact,
    config: dict[str, int],
    runtime: dict[str, Any],
    kind: wire.Kind,
) -> Replacement:
    """Record a new replacement (status ``submitted``); the tick loop takes it from there."""
    rep = Replacement(
        id=engine.new_id(),
        tenant_id=engine.tenant_id,
        workload_id=wl.id,
        candidate_artifact_id=art.id,
        previous_proton_ids=[wl.proton_id] if wl.proton_id else [],
        config=config,
        runtime=runtime,
        kind=kind,
        rollout=state.start(engine.clock.now(), engine.timing(config)),
        epoch_of=engine.clock.epoch_of,
    )
    wl.replacement = rep
    wl.updated = time.time()
    engine.event(wl, "replacement", "submitted", {"replacementId": rep.id, "message": None})
    return rep


def check_can_replace(engine: Engine, wl: Workload, busy_status: int) -> None:
    if replacement_active(wl):
        raise ApiError(busy_status, "A replacement is already in progress for this workload.")
    proton = engine.protons.get(wl.proton_id or "")
    if proton is None or proton.status not in ("running", "launching"):
        raise ApiError(422, "Workload has no active proton to replace.")


@authed
async def patch_settings(engine: Engine, request: web.Request) -> web.Response:
    wl = workload_of(engine, request)
    body = await body_json(request)
    if "runtime" not in body:
        raise invalid(["body", "runtime"], "Field required", "missing", body)
    runtime = validate_runtime(body["runtime"])
    check_can_replace(engine, wl, 409)
    rep = begin_replacement(
        engine,
        wl,
        engine.artifacts[wl.artifact_id],
        {"warmupDurationMinutes": 0, "keepOldVersionMinutes": 0},
        runtime,
        "settings",
    )
    return reply(rep.to_json(), 202)


def parse_config(raw: Any) -> dict[str, int]:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise invalid(["body", "config"], "Input should be an object", "dict_type", raw)
    out = {}
    for key in ("warmupDurationMinutes", "keepOldVersionMinutes"):
        value = raw.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise invalid(
                ["body", "config", key], "Input should be an integer >= 0", "int_type", value
            )
        out[key] = value
    return out


@authed
async def post_replacement(engine: Engine, request: web.Request) -> web.Response:
    wl = workload_of(engine, request)
    body = await body_json(request)
    if not body.get("artifactId"):
        raise invalid(["body", "artifactId"], "Field required", "missing", body)
    if body.get("strategy", "rolling") != "rolling":
        raise invalid(
            ["body", "strategy"], "Input should be 'rolling'", "enum", body.get("strategy")
        )
    config = parse_config(body.get("config"))
    runtime = validate_runtime(body["runtime"]) if body.get("runtime") else wl.runtime
    art = engine.artifacts.get(str(body["artifactId"]))
    if art is None:
        raise ApiError(404, "Artifact not found.")
    check_can_replace(engine, wl, 422)
    current = engine.artifacts[wl.artifact_id]
    if current.status != art.status:
        raise ApiError(
            400,
            f"Artifact status mismatch: current artifact is {current.status}, "
            f"candidate artifact is {art.status}.",
        )
    if art.id == current.id and art.status == "locked":
        raise ApiError(
            422,
            "Cannot replace with the same artifact — candidate artifact ID "
            "matches current artifact.",
        )
    rep = begin_replacement(engine, wl, art, config, runtime, "replacement")
    return reply(rep.to_json(), 202)


def visible_replacement(engine: Engine, request: web.Request) -> Replacement:
    wl = engine.workloads.get(request.match_info["wid"])
    rep = wl.replacement if wl is not None else None
    if rep is None or rep.hidden:
        raise ApiError(404, NO_REPLACEMENT)
    return rep


@authed
async def get_replacement(engine: Engine, request: web.Request) -> web.Response:
    return reply(visible_replacement(engine, request).to_json())


@authed
async def delete_replacement(engine: Engine, request: web.Request) -> web.Response:
    rep = visible_replacement(engine, request)
    if rep.status not in state.CANCELABLE:
        raise ApiError(
            409, f"Replacement is {rep.status}; it can only be canceled before promoting."
        )
    rep.cancel_requested = True
    engine.tick()  # move to `canceling` now, so the answer shows it
    return reply(rep.to_json(), 202)


@authed
async def promote(engine: Engine, request: web.Request) -> web.Response:
    wl = workload_of(engine, request)
    art = engine.artifacts[wl.artifact_id]
    proton = engine.protons.get(wl.proton_id or "")
    if art.status != "draft":
        raise ApiError(422, "Only a workload running a draft artifact can be promoted.")
    if replacement_active(wl):
        raise ApiError(422, "A replacement is in progress for this workload.")
    if proton is None or proton.status != "running":
        raise ApiError(422, "Workload has no active running proton.")
    lock(engine, art)
    proton.label = art.label
    await relabel(engine, proton.id, art.label)
    engine.stats.open(proton.id)  # promote resets statistics
    wl.history.insert(0, promote_record(engine, wl, proton.id, art).history_entry())
    engine.event(wl, "workload", "promoted", {"artifactId": art.id, "version": art.label})
    wl.updated = time.time()
    return reply(workload_json(engine, wl), 202)


def promote_record(engine: Engine, wl: Workload, proton_id: str, art: Artifact) -> Replacement:
    """Promote's history entry: a completed record on the same proton (no switch)."""
    now = engine.clock.now()
    rollout = state.Rollout(
        status="completed",
        since=now,
        created=now,
        timing=state.Timing(),
        message=f"Promoted draft artifact to locked version {art.version}.",
    )
    return Replacement(
        id=engine.new_id(),
        tenant_id=engine.tenant_id,
        workload_id=wl.id,
        candidate_artifact_id=art.id,
        previous_proton_ids=[proton_id],
        candidate_proton_ids=[proton_id],
        config={"warmupDurationMinutes": 0, "keepOldVersionMinutes": 0},
        runtime=wl.runtime,
        rollout=rollout,
        epoch_of=engine.clock.epoch_of,
        kind="promote",
        hidden=True,
    )


async def relabel(engine: Engine, proton_id: str, label: str) -> None:
    """Tell a running proton app its new version label (promote locks in place)."""
    assert engine.session is not None
    for replica in engine.protons[proton_id].replicas:
        if replica.port:
            url = f"http://127.0.0.1:{replica.port}/__sim/label"
            async with engine.session.post(url, json={"version": label}) as resp:
                await resp.read()


@authed
async def history(engine: Engine, request: web.Request) -> web.Response:
    return reply(page(request, list(workload_of(engine, request).history)))


# ---- protons, stats, events ---------------------------------------------------------------


def workload_protons(engine: Engine, wl: Workload) -> list[wire.Proton]:
    return [
        engine.protons[p].to_json(engine.endpoint(wl.id)) for p in engine.workload_proton_ids(wl)
    ]


@authed
async def list_protons(engine: Engine, request: web.Request) -> web.Response:
    return reply(page(request, workload_protons(engine, workload_of(engine, request))))


def proton_of(engine: Engine, request: web.Request) -> Any:
    wl = workload_of(engine, request)
    proton = engine.protons.get(request.match_info["pid"])
    if proton is None or proton.workload_id != wl.id:
        raise ApiError(404, "Proton not found.")
    return proton


@authed
async def get_proton(engine: Engine, request: web.Request) -> web.Response:
    wl = workload_of(engine, request)
    return reply(proton_of(engine, request).to_json(engine.endpoint(wl.id)))


@authed
async def proton_details(engine: Engine, request: web.Request) -> web.Response:
    proton = proton_of(engine, request)
    if not proton.snapshot:
        return web.Response(status=204)
    return reply(proton.details("sim/proton-app:" + proton.label))


def parse_time(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiError(400, f"{name} {raw!r}: expected an ISO 8601 date-time") from None


@authed
async def stats(engine: Engine, request: web.Request) -> web.Response:
    """``GET …/stats``: one proton's metrics, the current (active) one by default."""
    wl = workload_of(engine, request)
    proton_id = request.query.get("protonId") or wl.proton_id or ""
    proton = engine.protons.get(proton_id)
    if proton is None or proton.workload_id != wl.id:
        raise ApiError(404, "Proton not found.")
    start, end = parse_time(request, "startTime"), parse_time(request, "endTime")
    if start is not None and end is not None and end < start:
        raise ApiError(400, "endTime is before startTime.")
    query = Query(
        start=start,
        end=end,
        quantile=_number_query(request, "responseTimeQuantile", 0.5, 0.0, 1.0),
        slow_ms=float(_int_query(request, "slowRequestsThreshold", 2000, 0)),
    )
    return reply(engine.stats.report(proton_id, query, engine.concurrent(proton_id)))


@authed
async def events(engine: Engine, request: web.Request) -> web.Response:
    wl = workload_of(engine, request)
    return reply(page(request, list(reversed(wl.events))))


def routes(app: web.Application) -> None:
    """Register every control-plane route (each with and without a trailing slash)."""
    table: list[tuple[str, str, Handler]] = [
        ("GET", "/artifacts", list_artifacts),
        ("POST", "/artifacts", post_artifact),
        ("GET", "/artifacts/{aid}", get_artifact),
        ("PATCH", "/artifacts/{aid}", patch_artifact),
        ("DELETE", "/artifacts/{aid}", delete_artifact),
        ("GET", "/workloads", list_workloads),
        ("POST", "/workloads", post_workload),
        ("GET", "/workloads/{wid}", get_workload),
        ("PATCH", "/workloads/{wid}", patch_workload),
        ("DELETE", "/workloads/{wid}", delete_workload),
        ("POST", "/workloads/{wid}/start", start_workload),
        ("POST", "/workloads/{wid}/stop", stop_workload),
        ("GET", "/workloads/{wid}/settings", get_settings),
        ("PATCH", "/workloads/{wid}/settings", patch_settings),
        ("GET", "/workloads/{wid}/protons", list_protons),
        ("GET", "/workloads/{wid}/protons/{pid}", get_proton),
        ("GET", "/workloads/{wid}/protons/{pid}/statusDetails", proton_details),
        ("POST", "/workloads/{wid}/replacement", post_replacement),
        ("GET", "/workloads/{wid}/replacement", get_replacement),
        ("DELETE", "/workloads/{wid}/replacement", delete_replacement),
        ("POST", "/workloads/{wid}/promote", promote),
        ("GET", "/workloads/{wid}/history", history),
        ("GET", "/workloads/{wid}/stats", stats),
        ("GET", "/workloads/{wid}/events", events),
    ]
    for method, path, handler in table:
        app.router.add_route(method, API + path + "{slash:/?}", handler)
