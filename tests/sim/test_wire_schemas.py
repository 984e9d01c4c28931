"""Every simulator route's answers, success and error bodies, against the Workload API's JSON
Schemas (``wire_schemas``), and the list and stats semantics real clients rely on.

One test per fidelity point of issue 11 (``test_point_N_…``), then one walk over every route.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from probes.sim import Simulator, wire
from tests.sim import wire_schemas as ws
from tests.sim.conftest import AUTH, make_sim, wait_for, wait_gone
from tests.sim.test_control import draft_body


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with make_sim(scenario="healthy") as s:
        yield s


@pytest.fixture(scope="module")
def api(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.api_url, headers=AUTH, timeout=10) as client:
        yield client


def conform(schema: ws.Schema, body: Any) -> None:
    errors = ws.problems(schema, body)
    assert not errors, "\n".join(errors)


def new_draft_workload(api: httpx.Client, name: str, importance: str = "low") -> str:
    art = api.post("/artifacts", json=draft_body(name)).json()
    wl = api.post(
        "/workloads", json={"name": name, "artifactId": art["id"], "importance": importance}
    )
    assert wl.status_code == 201, wl.text
    wid = str(wl.json()["id"])
    wait_for(lambda: api.get(f"/workloads/{wid}").json()["status"] == "running")
    return wid


def invoke(sim: Simulator, wid: str, n: int) -> None:
    url = f"{sim.base_url}/api/v2/endpoints/workloads/{wid}/version"
    with httpx.Client(headers=AUTH, timeout=10) as client:
        for _ in range(n):
            assert client.get(url).status_code == 200


def settle(api: httpx.Client, wid: str) -> None:
    """Replace a workload's proton (same artifact, via settings) and wait for the end."""
    runtime = {"containerGroups": [{"name": "default", "replicaCount": 1}]}
    r = api.patch(f"/workloads/{wid}/settings", json={"runtime": runtime})
    assert r.status_code == 202, r.text
    wait_gone(api, wid)


def test_point_1_creator_and_owners_are_user_objects(sim: Simulator, api: httpx.Client) -> None:
    wid = sim.workload_id
    wl = api.get(f"/workloads/{wid}").json()
    proton = api.get(f"/workloads/{wid}/protons/{wl['protonId']}").json()
    art = api.get(f"/artifacts/{wl['artifactId']}").json()
    for record in (wl, proton, art):
        conform(ws.nullable(ws.USER), record["creator"])
    conform(ws.array(ws.USER), wl["owners"])


def test_point_2_stats_are_integers_and_the_rate_is_per_minute(
    sim: Simulator, api: httpx.Client
) -> None:
    wid = new_draft_workload(api, "p2-rate")
    idle = api.get(f"/workloads/{wid}/stats/").json()
    conform(ws.STATS, idle)
    assert idle["metrics"]["responseTime"] == 0 and idle["metrics"]["requestsPerMinute"] == 0
    invoke(sim, wid, 5)
    busy = api.get(f"/workloads/{wid}/stats/").json()
    conform(ws.STATS, busy)
    m = busy["metrics"]
    # 5 requests within the proton's first minute are 5 per minute, not thousands
    assert m["totalRequests"] == 5 and 0 < m["requestsPerMinute"] <= 5
    listed = api.get("/workloads", params={"serviceStats": "true", "limit": 100}).json()
    stats = [w["requestStats"] for w in listed["data"]]
    conform(ws.array(ws.REQUEST_STATS), stats)
    assert [w["requestStats"]["totalRequests"] for w in listed["data"] if w["id"] == wid] == [5]


def test_point_3_stats_default_to_the_current_proton(sim: Simulator, api: httpx.Client) -> None:
    wid = new_draft_workload(api, "p3-current")
    old = api.get(f"/workloads/{wid}").json()["protonId"]
    invoke(sim, wid, 3)
    settle(api, wid)
    new = api.get(f"/workloads/{wid}").json()["protonId"]
    assert new != old
    invoke(sim, wid, 2)
    assert api.get(f"/workloads/{wid}/stats").json()["metrics"]["totalRequests"] == 2
    by_old = api.get(f"/workloads/{wid}/stats", params={"protonId": old}).json()
    assert by_old["metrics"]["totalRequests"] == 3


def test_point_4_promote_history_entry_is_a_replacement(api: httpx.Client) -> None:
    wid = new_draft_workload(api, "p4-promote")
    r = api.post(f"/workloads/{wid}/promote/")
    assert r.status_code == 202, r.text
    entry = api.get(f"/workloads/{wid}/history/").json()["data"][0]
    assert entry["kind"] == "promote"
    # the fields a Replacement requires and may not null (the full shape: the route walk)
    shape = {
        "type": "object",
        "required": ["name", "tenantId", "userId", "workloadId", "candidateArtifactId"],
        "properties": {"strategy": ws.enum("rolling"), "config": ws.CONFIG},
    }
    conform(shape, entry)


def test_point_5_canceled_keeps_a_documented_status(api: httpx.Client) -> None:
    wid = new_draft_workload(api, "p5-cancel")
    runtime = {"containerGroups": [{"name": "default", "replicaCount": 1}]}
    assert api.patch(f"/workloads/{wid}/settings", json={"runtime": runtime}).status_code == 202
    r = api.delete(f"/workloads/{wid}/replacement/")
    assert r.status_code == 202, r.text
    conform(ws.REPLACEMENT_STATUS, r.json()["status"])
    wait_gone(api, wid)
    entry = api.get(f"/workloads/{wid}/history").json()["data"][0]
    conform(ws.REPLACEMENT_STATUS, entry["status"])
    assert entry["outcome"] == "canceled"


def test_point_6_page_sizes(api: httpx.Client) -> None:
    for i in range(11):
        assert api.post("/artifacts", json=draft_body(f"p6-{i}")).status_code == 201
    too_big = api.get("/artifacts/", params={"limit": 101})
    assert too_big.status_code == 422
    conform(ws.VALIDATION_ERROR, too_big.json())
    assert api.get("/artifacts/", params={"limit": 100}).status_code == 200
    first = api.get("/artifacts/").json()
    assert first["count"] == 10 and first["totalCount"] > 10 and first["next"]


def test_point_7_ids_and_list_filters(api: httpx.Client) -> None:
    a = new_draft_workload(api, "p7-a", importance="high")
    b = new_draft_workload(api, "p7-b", importance="critical")
    assert api.post(f"/workloads/{b}/stop").status_code == 202
    wait_for(lambda: api.get(f"/workloads/{b}").json()["status"] == "stopped")

    def ids(**params: Any) -> set[str]:
        body = api.get("/workloads/", params={"limit": 100, **params}).json()
        return {w["id"] for w in body["data"]}

    assert ids(ids=[a]) == {a}
    assert ids(ids=[a, b]) == {a, b}
    assert ids(ids=f"{a},{b}") == {a, b}
    assert ids(ids=[a, b], status=["running", "stopped"]) == {a, b}
    assert ids(ids=[a, b], status=["stopped"]) == {b}
    assert ids(ids=[a, b], importance=["low", "high"]) == {a}
    assert ids(ids=[a, b], importance=["high", "critical"]) == {a, b}
    bad = api.get("/workloads", params={"status": "sleeping"})
    assert bad.status_code == 422
    conform(ws.VALIDATION_ERROR, bad.json())


def test_point_8_links_keep_the_query(api: httpx.Client) -> None:
    for i in range(3):
        api.post("/artifacts", json=draft_body(f"p8-{i}"))
    first = api.get("/artifacts", params={"limit": 1, "status": "draft"}).json()
    seen, url = [], None
    page = first
    for _ in range(200):
        seen += [a["id"] for a in page["data"]]
        assert all(a["status"] == "draft" for a in page["data"])
        url = page["next"]
        if url is None:
            break
        assert parse_qs(urlsplit(url).query)["status"] == ["draft"]
        page = httpx.get(url, headers=AUTH).json()
        assert parse_qs(urlsplit(page["previous"]).query)["status"] == ["draft"]
    assert len(seen) == len(set(seen)) == first["totalCount"]


# ---- every route ----------------------------------------------------------------------


def _exchanges(sim: Simulator, api: httpx.Client) -> Iterator[tuple[str, httpx.Response]]:
    """Call every control-plane route (success and error answers) and the invoke routes."""
    wid = new_draft_workload(api, "walk")
    other = sim.workload_id
    yield "GET /workloads", api.get("/workloads")
    yield "GET /workloads", api.get("/workloads", params={"serviceStats": "true"})
    yield "GET /workloads", api.get("/workloads", params={"limit": 0})
    yield "GET /workloads/{id}", api.get(f"/workloads/{wid}")
    yield "GET /workloads/{id}", api.get("/workloads/nope")
    yield "PATCH /workloads/{id}", api.patch(f"/workloads/{wid}", json={"description": "d"})
    yield "PATCH /workloads/{id}", api.patch(f"/workloads/{wid}", json={"importance": "x"})
    yield "POST /workloads", api.post("/workloads", json={"name": ""})
    yield "GET /workloads/{id}/settings", api.get(f"/workloads/{wid}/settings")
    yield "GET /workloads/{id}/protons", api.get(f"/workloads/{wid}/protons")
    pid = api.get(f"/workloads/{wid}").json()["protonId"]
    yield "GET /workloads/{id}/protons/{pid}", api.get(f"/workloads/{wid}/protons/{pid}")
    yield "GET /workloads/{id}/protons/{pid}", api.get(f"/workloads/{wid}/protons/nope")
    yield (
        "GET /workloads/{id}/protons/{pid}/statusDetails",
        api.get(f"/workloads/{wid}/protons/{pid}/statusDetails"),
    )
    yield "GET /workloads/{id}/replacement", api.get(f"/workloads/{wid}/replacement")
    yield "DELETE /workloads/{id}/replacement", api.delete(f"/workloads/{wid}/replacement")
    runtime = {"containerGroups": [{"name": "default", "replicaCount": 1}]}
    yield (
        "PATCH /workloads/{id}/settings",
        api.patch(f"/workloads/{wid}/settings", json={"runtime": runtime}),
    )
    yield (
        "PATCH /workloads/{id}/settings",
        api.patch(f"/workloads/{wid}/settings", json={"runtime": runtime}),
    )  # 409: one is running
    yield "GET /workloads/{id}/replacement", api.get(f"/workloads/{wid}/replacement")
    yield "GET /workloads/{id}", api.get(f"/workloads/{wid}")  # with its replacement
    yield "POST /workloads/{id}/stop", api.post(f"/workloads/{wid}/stop")  # 409
    yield "POST /workloads/{id}/promote", api.post(f"/workloads/{wid}/promote")  # 422
    wait_gone(api, wid)
    yield (
        "POST /workloads/{id}/replacement",
        api.post(f"/workloads/{other}/replacement", json={"artifactId": "nope"}),
    )
    yield (
        "POST /workloads/{id}/replacement",
        api.post(
            f"/workloads/{other}/replacement",
            json={"artifactId": sim.candidate_artifact_id, "config": {"warmupDurationMinutes": -1}},
        ),
    )
    yield (
        "POST /workloads/{id}/replacement",
        api.post(f"/workloads/{wid}/replacement", json={"artifactId": sim.candidate_artifact_id}),
    )  # 400: draft -> locked
    own = api.get(f"/workloads/{wid}").json()["artifactId"]
    yield (
        "POST /workloads/{id}/replacement",
        api.post(f"/workloads/{wid}/replacement", json={"artifactId": own}),
    )  # a draft may replace itself
    yield "DELETE /workloads/{id}/replacement", api.delete(f"/workloads/{wid}/replacement")
    wait_gone(api, wid)
    yield "POST /workloads/{id}/promote", api.post(f"/workloads/{wid}/promote")
    yield "GET /workloads/{id}/history", api.get(f"/workloads/{wid}/history")
    yield "GET /workloads/{id}/stats", api.get(f"/workloads/{wid}/stats")
    yield "GET /workloads/{id}/stats", api.get(f"/workloads/{wid}/stats", params={"endTime": "x"})
    yield "GET /workloads/{id}/events", api.get(f"/workloads/{wid}/events")
    yield "POST /workloads/{id}/stop", api.post(f"/workloads/{wid}/stop")
    wait_for(lambda: api.get(f"/workloads/{wid}").json()["status"] == "stopped")
    yield "POST /workloads/{id}/stop", api.post(f"/workloads/{wid}/stop")  # 409
    yield "POST /workloads/{id}/start", api.post(f"/workloads/{wid}/start")
    yield "POST /workloads/{id}/start", api.post(f"/workloads/{wid}/start")  # 409
    created = api.post("/artifacts", json=draft_body("walk-art"))
    yield "POST /artifacts", created
    yield "POST /artifacts", api.post("/artifacts", json={"name": "x"})  # 422
    aid = created.json()["id"]
    yield "GET /artifacts", api.get("/artifacts")
    yield "GET /artifacts/{id}", api.get(f"/artifacts/{aid}")
    yield "GET /artifacts/{id}", api.get("/artifacts/nope")
    yield "PATCH /artifacts/{id}", api.patch(f"/artifacts/{aid}", json={"description": "d"})
    yield "PATCH /artifacts/{id}", api.patch(f"/artifacts/{aid}", json={"status": "locked"})
    yield "PATCH /artifacts/{id}", api.patch(f"/artifacts/{aid}", json={"name": "y"})  # 409
    yield "DELETE /artifacts/{id}", api.delete(f"/artifacts/{aid}")  # 409: locked
    spare = api.post("/artifacts", json=draft_body("walk-spare")).json()["id"]
    yield "DELETE /artifacts/{id}", api.delete(f"/artifacts/{spare}")
    inline = {"name": "walk-inline", "artifact": draft_body("walk-inline")}
    made = api.post("/workloads", json=inline)
    yield "POST /workloads", made
    yield "DELETE /workloads/{id}", api.delete(f"/workloads/{made.json()['id']}")
    yield "GET /workloads", httpx.get(sim.api_url + "/workloads")  # 401
    invoke_base = f"{sim.base_url}/api/v2/endpoints/workloads"
    yield "invoke", httpx.get(f"{invoke_base}/{other}/version")  # 401
    yield "invoke", httpx.get(f"{invoke_base}/nope/version", headers=AUTH)  # 404


SUCCESS: dict[str, ws.Schema | None] = {
    "GET /workloads": ws.page_of(ws.WORKLOAD),
    "POST /workloads": ws.WORKLOAD,
    "GET /workloads/{id}": ws.WORKLOAD,
    "PATCH /workloads/{id}": ws.WORKLOAD,
    "DELETE /workloads/{id}": None,
    "POST /workloads/{id}/start": ws.OPERATION,
    "POST /workloads/{id}/stop": ws.OPERATION,
    "GET /workloads/{id}/settings": ws.SETTINGS,
    "PATCH /workloads/{id}/settings": ws.REPLACEMENT,
    "GET /workloads/{id}/protons": ws.page_of(ws.PROTON),
    "GET /workloads/{id}/protons/{pid}": ws.PROTON,
    "GET /workloads/{id}/protons/{pid}/statusDetails": ws.SNAPSHOT,
    "POST /workloads/{id}/replacement": ws.REPLACEMENT,
    "GET /workloads/{id}/replacement": ws.REPLACEMENT,
    "DELETE /workloads/{id}/replacement": ws.REPLACEMENT,
    "POST /workloads/{id}/promote": ws.WORKLOAD,
    "GET /workloads/{id}/history": ws.page_of(ws.HISTORY_ENTRY),
    "GET /workloads/{id}/stats": ws.STATS,
    "GET /workloads/{id}/events": ws.page_of(ws.EVENT),
    "GET /artifacts": ws.page_of(ws.ARTIFACT),
    "POST /artifacts": ws.ARTIFACT,
    "GET /artifacts/{id}": ws.ARTIFACT,
    "PATCH /artifacts/{id}": ws.ARTIFACT,
    "DELETE /artifacts/{id}": None,
}


def test_every_route_answers_in_the_documented_shapes(sim: Simulator, api: httpx.Client) -> None:
    failures, seen = [], set()
    for route, resp in _exchanges(sim, api):
        seen.add((route, resp.status_code < 400))
        if route == "invoke":
            schema: ws.Schema | None = ws.INVOKE_ERROR
        elif resp.status_code >= 400:
            schema = ws.error_schema(resp.status_code)
        else:
            schema = SUCCESS[route]
        if schema is None or resp.status_code == 204:
            assert not resp.content, f"{route} {resp.status_code} has a body"
            continue
        for problem in ws.problems(schema, resp.json()):
            failures.append(f"{route} -> {resp.status_code}: {problem}")
    assert not failures, "\n".join(failures)
    # every route answered at least once with success (and most with an error too)
    assert {r for r, ok in seen if ok} == set(SUCCESS)
    assert len({r for r, ok in seen if not ok}) >= 15


# ---- the typed models agree with the schemas -----------------------------------------------


@pytest.mark.parametrize(
    ("model", "schema"),
    [
        (wire.UserData, ws.USER),
        (wire.Artifact, ws.ARTIFACT),
        (wire.Workload, ws.WORKLOAD),
        (wire.WorkloadReplacement, ws.WORKLOAD_REPLACEMENT),
        (wire.RequestStats, ws.REQUEST_STATS),
        (wire.Proton, ws.PROTON),
        (wire.Replacement, ws.REPLACEMENT),
        (wire.HistoryEntry, ws.HISTORY_ENTRY),
        (wire.RequestMetrics, ws.METRICS),
        (wire.ProtonRequestStats, ws.STATS),
        (wire.WorkloadEvent, ws.EVENT),
        (wire.Operation, ws.OPERATION),
        (wire.ReplacementConfig, ws.CONFIG),
    ],
)
def test_typed_models_name_the_schema_fields(model: Any, schema: ws.Schema) -> None:
    """The simulator's TypedDicts (``probes.sim.wire``) declare exactly the schema's fields,
    and require at least what the schema requires: a field cannot drift on one side only."""
    fields = set(model.__required_keys__) | set(model.__optional_keys__)
    assert fields <= set(schema["properties"]), fields - set(schema["properties"])
    assert set(schema.get("required", ())) <= set(model.__required_keys__)
    if schema.get("additionalProperties") is False:
        # a closed schema: every field the model leaves out is one the spec allows us to omit
        assert not (set(schema["properties"]) - fields) - OMITTED.get(model.__name__, set())


#: documented optional fields the simulator never sends (nothing to put there)
OMITTED = {"RequestStats": {"errorRates", "requestRates"}}
