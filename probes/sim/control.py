"""Control-plane routes under ``/api/v2`` (workload-api.md §2), bearer token required.

Shapes and status codes follow the reference; where it is silent, the decisions doc. Every
path also answers with a trailing slash.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from probes.sim import state
from probes.sim.app import AppConfig
from probes.sim.cluster import Cluster
from probes.sim.models import (
    DEFAULT_RUNTIME,
    Artifact,
    Replacement,
    Workload,
    replica_count,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API = "/api/v2"
IMPORTANCE = ("critical", "high", "moderate", "low")
MAX_REPLICAS = 8
NO_REPLACEMENT = "There is no active replacement for this workload."
CLUSTER_KEY = web.AppKey("cluster", Cluster)
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
    return web.json_response(data, status=status)


def authed(handler: Callable[[Cluster, web.Request], Awaitable[web.StreamResponse]]) -> Handler:
    """Bearer check (401 otherwise) and ``ApiError`` → JSON error answer."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        token = request.app[TOKEN_KEY]
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return reply({"detail": "Invalid or missing API token."}, 401)
        try:
            return await handler(request.app[CLUSTER_KEY], request)
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


def page(request: web.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The paged list envelope ``{totalCount, count, next, previous, data}``."""
    offset = _int_query(request, "offset", 0, 0)
    limit = _int_query(request, "limit", 100, 1)
    chunk = items[offset : offset + limit]
    base = str(request.url.with_query(None))

    def link(off: int) -> str:
        return f"{base}?offset={off}&limit={limit}"

    return {
        "totalCount": len(items),
        "count": len(chunk),
        "next": link(offset + limit) if offset + limit < len(items) else None,
        "previous": link(max(0, offset - limit)) if offset > 0 else None,
        "data": chunk,
    }


def _int_query(request: web.Request, name: str, default: int, low: int) -> int:
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
    return value


def workload_of(cluster: Cluster, request: web.Request) -> Workload:
    wl = cluster.workloads.get(request.match_info["wid"])
    if wl is None:
        raise ApiError(404, "Workload not found.")
    return wl


def workload_json(cluster: Cluster, wl: Workload) -> dict[str, Any]:
    art = cluster.artifacts.get(wl.artifact_id)
    rep = wl.replacement if wl.replacement is not None and not wl.replacement.hidden else None
    return {
        "id": wl.id,
        "name": wl.name,
        "description": wl.description,
        "importance": wl.importance,
        "type": wl.type,
        "status": cluster.workload_status(wl),
        "artifactId": wl.artifact_id,
        "artifact": art.summary() if art else None,
        "protonId": wl.proton_id,
        "endpoint": cluster.endpoint(wl.id),
        "runtime": wl.runtime,
        "replacement": rep.brief() if rep else None,
        "lastResponse": None,
        "statusDetails": None,
        "owners": ["sim-user"],
        "creator": "sim-user",
        "permissions": ["*"],
        "tags": [],
        "createdAt": _iso(wl.created),
        "updatedAt": _iso(wl.updated),
    }


def _iso(ts: float) -> str | None:
    from probes.sim.models import iso

    return iso(ts)


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


def create_artifact(cluster: Cluster, body: dict[str, Any]) -> Artifact:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(["body", "name"], "Field required", "missing", body)
    art = Artifact(
        id=cluster.new_id(),
        name=name,
        spec=validate_spec(body.get("spec")),
        repo_id=cluster.repo_id,
        description=str(body.get("description") or ""),
        type=str(body.get("type") or "service"),
    )
    cluster.artifacts[art.id] = art
    return art


def lock(cluster: Cluster, art: Artifact) -> None:
    """Lock a draft: immutable from now on, next integer version of its name."""
    versions = [
        a.version
        for a in cluster.artifacts.values()
        if a.name == art.name and a.version is not None
    ]
    art.status, art.version, art.updated = "locked", max(versions, default=0) + 1, time.time()


@authed
async def list_artifacts(cluster: Cluster, request: web.Request) -> web.Response:
    status = request.query.get("status")
    items = [a.to_json() for a in cluster.artifacts.values() if status in (None, a.status)]
    return reply(page(request, items))


@authed
async def post_artifact(cluster: Cluster, request: web.Request) -> web.Response:
    return reply(create_artifact(cluster, await body_json(request)).to_json(), 201)


def artifact_of(cluster: Cluster, request: web.Request) -> Artifact:
    art = cluster.artifacts.get(request.match_info["aid"])
    if art is None:
        raise ApiError(404, "Artifact not found.")
    return art


@authed
async def get_artifact(cluster: Cluster, request: web.Request) -> web.Response:
    return reply(artifact_of(cluster, request).to_json())


@authed
async def patch_artifact(cluster: Cluster, request: web.Request) -> web.Response:
    art = artifact_of(cluster, request)
    body = await body_json(request)
    if art.status == "locked":
        raise ApiError(409, "Artifact is locked and cannot be modified; clone it instead.")
    if "spec" in body:
        art.spec = validate_spec(body["spec"])
    for key in ("name", "description"):
        if key in body:
            setattr(art, key, str(body[key]))
    if body.get("status") == "locked":
        lock(cluster, art)
    art.updated = time.time()
    return reply(art.to_json())


@authed
async def delete_artifact(cluster: Cluster, request: web.Request) -> web.Response:
    art = artifact_of(cluster, request)
    in_use = any(p.artifact_id == art.id and not p.stopped for p in cluster.protons.values())
    if art.status == "locked" or in_use:
        raise ApiError(409, "Artifact is locked or in use by a workload.")
    del cluster.artifacts[art.id]
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


def create_workload(cluster: Cluster, body: dict[str, Any]) -> Workload:
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
        art = cluster.artifacts.get(str(body["artifactId"]))
        if art is None:
            raise ApiError(404, "Artifact not found.")
    else:
        art = create_artifact(
            cluster, body["artifact"] if isinstance(body["artifact"], dict) else {}
        )
    if art.status == "draft":
        users = [w.id for w in cluster.workloads.values() if w.artifact_id == art.id]
        if users:
            raise ApiError(409, f"Draft artifact {art.id} already backs workload {users[0]}.")
    wl = Workload(
        id=cluster.new_id(),
        name=name,
        artifact_id=art.id,
        runtime=runtime,
        description=str(body.get("description") or ""),
        importance=importance,
        type=art.type,
    )
    cluster.workloads[wl.id] = wl
    proton = cluster.new_proton(wl, art, runtime, role="active")
    wl.proton_id = proton.id
    cluster.event(wl, "workload", "submitted", {"protonId": proton.id, "artifactId": art.id})
    return wl


@authed
async def post_workload(cluster: Cluster, request: web.Request) -> web.Response:
    return reply(workload_json(cluster, create_workload(cluster, await body_json(request))), 201)


@authed
async def list_workloads(cluster: Cluster, request: web.Request) -> web.Response:
    q = request.query
    items = []
    for wl in cluster.workloads.values():
        data = workload_json(cluster, wl)
        if any(
            q.get(k) not in (None, data[k]) for k in ("status", "importance", "artifactId", "type")
        ):
            continue
        if q.get("search") and q["search"].lower() not in wl.name.lower():
            continue
        if q.get("serviceStats") in ("true", "1"):
            m = cluster.stats_for(wl, None, None, None, 0.5, 2000.0)["metrics"]
            data["requestStats"] = {
                "totalRequests": m["totalRequests"],
                "errorRate": m["totalErrorRate"],
                "responseTime": m["responseTime"],
                "concurrentRequests": m["concurrentRequests"],
            }
        items.append(data)
    order = q.get("orderBy", "createdAt")
    key = order.lstrip("-")
    if key in ("name", "createdAt", "updatedAt", "status", "importance"):
        items.sort(key=lambda d: str(d.get(key)), reverse=order.startswith("-"))
    return reply(page(request, items))


@authed
async def get_workload(cluster: Cluster, request: web.Request) -> web.Response:
    return reply(workload_json(cluster, workload_of(cluster, request)))


@authed
async def patch_workload(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
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
    return reply(workload_json(cluster, wl))


def replacement_active(wl: Workload) -> bool:
    rep = wl.replacement
    return rep is not None and not rep.hidden and rep.status in state.IN_PROGRESS


@authed
async def delete_workload(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
    del cluster.workloads[wl.id]
    for proton in [p for p in cluster.protons.values() if p.workload_id == wl.id]:
        await cluster.stop_proton(proton)
    return web.Response(status=204)


def operation(wl: Workload, text: str, cluster: Cluster) -> web.Response:
    return reply(
        {
            "status": text,
            "workloadId": wl.id,
            "trackVia": f"{cluster.base_url}{API}/workloads/{wl.id}/",
        },
        202,
    )


@authed
async def start_workload(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
    proton = cluster.protons.get(wl.proton_id or "")
    if proton is None or not proton.stopped:
        raise ApiError(409, "Workload is not stopped.")
    cluster.start_proton(proton)
    return operation(wl, "Workload start requested.", cluster)


@authed
async def stop_workload(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
    if replacement_active(wl):
        raise ApiError(409, "A replacement is in progress for this workload.")
    proton = cluster.protons.get(wl.proton_id or "")
    if proton is None or proton.stopped or proton.stopping:
        raise ApiError(409, "Workload is not running.")
    cluster.spawn_task(cluster.stop_proton(proton))
    return operation(wl, "Workload stop requested.", cluster)


# ---- settings, replacement, promote, history ------------------------------------------------


@authed
async def get_settings(cluster: Cluster, request: web.Request) -> web.Response:
    return reply({"runtime": workload_of(cluster, request).runtime})


def begin_replacement(
    cluster: Cluster,
    wl: Workload,
    art: Artifact,
    config: dict[str, int],
    runtime: dict[str, Any],
    kind: str,
) -> Replacement:
    """Record a new replacement (status ``submitted``); the tick loop takes it from there."""
    rep = Replacement(
        id=cluster.new_id(),
        workload_id=wl.id,
        candidate_artifact_id=art.id,
        previous_proton_ids=[wl.proton_id] if wl.proton_id else [],
        config=config,
        runtime=runtime,
        kind=kind,
        rollout=state.start(cluster.clock.now(), cluster.timing(config)),
        epoch_of=cluster.clock.epoch_of,
    )
    wl.replacement = rep
    wl.updated = time.time()
    cluster.event(wl, "replacement", "submitted", {"replacementId": rep.id, "message": None})
    return rep


def check_can_replace(cluster: Cluster, wl: Workload, busy_status: int) -> None:
    if replacement_active(wl):
        raise ApiError(busy_status, "A replacement is already in progress for this workload.")
    proton = cluster.protons.get(wl.proton_id or "")
    if proton is None or proton.status not in ("running", "launching"):
        raise ApiError(422, "Workload has no active proton to replace.")


@authed
async def patch_settings(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
    body = await body_json(request)
    if "runtime" not in body:
        raise invalid(["body", "runtime"], "Field required", "missing", body)
    runtime = validate_runtime(body["runtime"])
    check_can_replace(cluster, wl, 409)
    rep = begin_replacement(
        cluster,
        wl,
        cluster.artifacts[wl.artifact_id],
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
async def post_replacement(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
    body = await body_json(request)
    if not body.get("artifactId"):
        raise invalid(["body", "artifactId"], "Field required", "missing", body)
    if body.get("strategy", "rolling") != "rolling":
        raise invalid(
            ["body", "strategy"], "Input should be 'rolling'", "enum", body.get("strategy")
        )
    config = parse_config(body.get("config"))
    runtime = validate_runtime(body["runtime"]) if body.get("runtime") else wl.runtime
    art = cluster.artifacts.get(str(body["artifactId"]))
    if art is None:
        raise ApiError(404, "Artifact not found.")
    check_can_replace(cluster, wl, 422)
    current = cluster.artifacts[wl.artifact_id]
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
    rep = begin_replacement(cluster, wl, art, config, runtime, "replacement")
    return reply(rep.to_json(), 202)


def visible_replacement(cluster: Cluster, request: web.Request) -> Replacement:
    wl = cluster.workloads.get(request.match_info["wid"])
    rep = wl.replacement if wl is not None else None
    if rep is None or rep.hidden:
        raise ApiError(404, NO_REPLACEMENT)
    return rep


@authed
async def get_replacement(cluster: Cluster, request: web.Request) -> web.Response:
    return reply(visible_replacement(cluster, request).to_json())


@authed
async def delete_replacement(cluster: Cluster, request: web.Request) -> web.Response:
    rep = visible_replacement(cluster, request)
    if rep.status not in state.CANCELABLE:
        raise ApiError(
            409, f"Replacement is {rep.status}; it can only be canceled before promoting."
        )
    rep.cancel_requested = True
    cluster.tick()  # move to `canceling` now, so the answer shows it
    return reply(rep.to_json(), 202)


@authed
async def promote(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
    art = cluster.artifacts[wl.artifact_id]
    proton = cluster.protons.get(wl.proton_id or "")
    if art.status != "draft":
        raise ApiError(422, "Only a workload running a draft artifact can be promoted.")
    if replacement_active(wl):
        raise ApiError(422, "A replacement is in progress for this workload.")
    if proton is None or proton.status != "running":
        raise ApiError(422, "Workload has no active running proton.")
    lock(cluster, art)
    proton.label = art.label
    await relabel(cluster, proton.id, art.label)
    cluster.stats[proton.id] = type(cluster.stats[proton.id])()  # promote resets statistics
    wl.history.insert(
        0,
        {
            "id": cluster.new_id(),
            "workloadId": wl.id,
            "kind": "promote",
            "outcome": "completed",
            "status": "completed",
            "candidateArtifactId": art.id,
            "candidateProtonIds": [proton.id],
            "previousProtonIds": [proton.id],
            "strategy": None,
            "config": None,
            "runtime": wl.runtime,
            "message": f"Promoted draft artifact to locked version {art.version}.",
            "switchedAt": None,
            "createdAt": _iso(time.time()),
            "updatedAt": _iso(time.time()),
            "userId": "sim-user",
        },
    )
    cluster.event(wl, "workload", "promoted", {"artifactId": art.id, "version": art.label})
    wl.updated = time.time()
    return reply(workload_json(cluster, wl), 202)


async def relabel(cluster: Cluster, proton_id: str, label: str) -> None:
    """Tell a running proton app its new version label (promote locks in place)."""
    assert cluster.session is not None
    for replica in cluster.protons[proton_id].replicas:
        if replica.port:
            url = f"http://127.0.0.1:{replica.port}/__sim/label"
            async with cluster.session.post(url, json={"version": label}) as resp:
                await resp.read()


@authed
async def history(cluster: Cluster, request: web.Request) -> web.Response:
    return reply(page(request, list(workload_of(cluster, request).history)))


# ---- protons, stats, events ---------------------------------------------------------------


def workload_protons(cluster: Cluster, wl: Workload) -> list[dict[str, Any]]:
    return [
        cluster.protons[p].to_json(cluster.endpoint(wl.id)) for p in cluster.workload_proton_ids(wl)
    ]


@authed
async def list_protons(cluster: Cluster, request: web.Request) -> web.Response:
    return reply(page(request, workload_protons(cluster, workload_of(cluster, request))))


def proton_of(cluster: Cluster, request: web.Request) -> Any:
    wl = workload_of(cluster, request)
    proton = cluster.protons.get(request.match_info["pid"])
    if proton is None or proton.workload_id != wl.id:
        raise ApiError(404, "Proton not found.")
    return proton


@authed
async def get_proton(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
    return reply(proton_of(cluster, request).to_json(cluster.endpoint(wl.id)))


@authed
async def proton_details(cluster: Cluster, request: web.Request) -> web.Response:
    proton = proton_of(cluster, request)
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
async def stats(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
    proton_id = request.query.get("protonId")
    if proton_id and (
        proton_id not in cluster.protons or cluster.protons[proton_id].workload_id != wl.id
    ):
        raise ApiError(404, "Proton not found.")
    start, end = parse_time(request, "startTime"), parse_time(request, "endTime")
    if start is not None and end is not None and end < start:
        raise ApiError(400, "endTime is before startTime.")
    try:
        quantile = float(request.query.get("responseTimeQuantile", 0.5))
        slow = float(request.query.get("slowRequestsThreshold", 2000))
    except ValueError:
        raise invalid(["query"], "Input should be a valid number", "float_parsing") from None
    return reply(cluster.stats_for(wl, proton_id, start, end, quantile, slow))


@authed
async def events(cluster: Cluster, request: web.Request) -> web.Response:
    wl = workload_of(cluster, request)
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
