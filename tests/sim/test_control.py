"""Control-plane endpoints and their documented status codes, against a live simulator."""

from __future__ import annotations

import httpx
import pytest

from probes.sim import Simulator
from tests.sim.conftest import AUTH, wait_for, wait_gone

NO_REP = {"detail": "There is no active replacement for this workload."}


def draft_body(name: str, env: dict[str, str] | None = None) -> dict:
    return {
        "name": name,
        "spec": {
            "containerGroups": [
                {
                    "name": "default",
                    "containers": [
                        {
                            "name": "main",
                            "imageUri": "x",
                            "port": 8080,
                            "primary": True,
                            "environmentVars": [
                                {"source": "string", "name": k, "value": v}
                                for k, v in (env or {}).items()
                            ],
                            "readinessProbe": {
                                "path": "/health",
                                "initialDelaySeconds": 1,
                                "periodSeconds": 1,
                            },
                        }
                    ],
                }
            ]
        },
    }


@pytest.mark.parametrize("path", ["/workloads", "/artifacts", "/workloads/{wid}/protons"])
def test_token_required(sim: Simulator, path: str) -> None:
    url = sim.api_url + path.format(wid=sim.workload_id)
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers=AUTH).status_code == 200


def test_workload_get_list_and_trailing_slash(sim: Simulator, api: httpx.Client) -> None:
    wid = sim.workload_id
    one = api.get(f"/workloads/{wid}").json()
    assert api.get(f"/workloads/{wid}/").json()["id"] == wid
    assert one["status"] == "running" and one["replacement"] is None
    assert one["artifactId"] == sim.baseline_artifact_id
    assert one["artifact"]["version"] == 1 and one["artifact"]["status"] == "locked"
    assert one["endpoint"] == sim.invoke_url
    listed = api.get("/workloads", params={"status": "running"}).json()
    assert set(listed) == {"totalCount", "count", "next", "previous", "data"}
    assert wid in [w["id"] for w in listed["data"]]
    assert api.get("/workloads/nope").status_code == 404
    patched = api.patch(f"/workloads/{wid}", json={"importance": "high", "description": "d"})
    assert patched.status_code == 200 and patched.json()["importance"] == "high"
    bad = api.patch(f"/workloads/{wid}", json={"importance": "urgent"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "importance"]
    assert (
        api.get(f"/workloads/{wid}/settings").json()["runtime"]["containerGroups"][0][
            "replicaCount"
        ]
        == 1
    )


def test_artifacts(sim: Simulator, api: httpx.Client) -> None:
    assert api.get(f"/artifacts/{sim.candidate_artifact_id}").json()["version"] == 2
    made = api.post("/artifacts", json=draft_body("mine"))
    assert made.status_code == 201
    art = made.json()
    assert art["status"] == "draft" and art["version"] is None
    assert api.post("/artifacts", json={"spec": {}}).status_code == 422
    bad_knob = draft_body("x", {"SIM_ERROR_RATE": "lots"})
    assert api.post("/artifacts", json=bad_knob).status_code == 422
    locked = api.patch(f"/artifacts/{art['id']}", json={"status": "locked"}).json()
    assert locked["status"] == "locked" and locked["version"] == 1
    assert api.patch(f"/artifacts/{art['id']}", json={"name": "y"}).status_code == 409
    assert api.delete(f"/artifacts/{art['id']}").status_code == 409
    other = api.post("/artifacts", json=draft_body("scratch")).json()
    assert api.delete(f"/artifacts/{other['id']}/").status_code == 204
    assert api.get(f"/artifacts/{other['id']}").status_code == 404
    drafts = api.get("/artifacts", params={"status": "draft", "limit": 1}).json()
    assert all(a["status"] == "draft" for a in drafts["data"])


def test_create_errors(sim: Simulator, api: httpx.Client) -> None:
    assert api.post("/workloads", json={"artifactId": sim.baseline_artifact_id}).status_code == 422
    assert api.post("/workloads", json={"name": "x", "artifactId": "nope"}).status_code == 404
    both = {"name": "x", "artifactId": sim.baseline_artifact_id, "artifact": draft_body("a")}
    assert api.post("/workloads", json=both).status_code == 422
    many = {
        "name": "x",
        "artifactId": sim.baseline_artifact_id,
        "runtime": {"containerGroups": [{"name": "default", "replicaCount": 99}]},
    }
    assert api.post("/workloads", json=many).status_code == 403


def test_replacement_start_errors(sim: Simulator, api: httpx.Client) -> None:
    wid = sim.workload_id
    assert api.get(f"/workloads/{wid}/replacement").json() == NO_REP
    assert api.get(f"/workloads/{wid}/replacement").status_code == 404
    assert api.delete(f"/workloads/{wid}/replacement").status_code == 404
    body = {"artifactId": sim.candidate_artifact_id, "strategy": "rolling"}
    assert api.post("/workloads/nope/replacement", json=body).status_code == 404
    assert api.post(f"/workloads/{wid}/replacement", json={"artifactId": "nope"}).status_code == 404
    assert api.post(f"/workloads/{wid}/replacement", json={}).status_code == 422
    same = api.post(f"/workloads/{wid}/replacement", json={"artifactId": sim.baseline_artifact_id})
    assert same.status_code == 422 and "same artifact" in same.json()["detail"]
    draft = api.post("/artifacts", json=draft_body("d")).json()
    mismatch = api.post(f"/workloads/{wid}/replacement", json={"artifactId": draft["id"]})
    assert mismatch.status_code == 400
    assert mismatch.json()["detail"].startswith("Artifact status mismatch")
    bad_cfg = {**body, "config": {"warmupDurationMinutes": -1}}
    assert api.post(f"/workloads/{wid}/replacement", json=bad_cfg).status_code == 422


def test_settings_patch_is_a_replacement_and_blocks(sim: Simulator, api: httpx.Client) -> None:
    wid = sim.workload_id
    assert api.patch(f"/workloads/{wid}/settings", json={}).status_code == 422
    runtime = {"containerGroups": [{"name": "default", "replicaCount": 2}]}
    r = api.patch(f"/workloads/{wid}/settings", json={"runtime": runtime})
    assert r.status_code == 202
    rep = r.json()
    assert rep["status"] == "submitted" and rep["kind"] == "settings"
    artifact_before = api.get(f"/workloads/{wid}").json()["artifactId"]
    assert rep["candidateArtifactId"] == artifact_before
    assert api.patch(f"/workloads/{wid}/settings", json={"runtime": runtime}).status_code == 409
    busy = api.post(f"/workloads/{wid}/replacement", json={"artifactId": sim.candidate_artifact_id})
    assert busy.status_code == 422
    assert api.post(f"/workloads/{wid}/promote").status_code == 422
    assert api.post(f"/workloads/{wid}/stop").status_code == 409
    seen = wait_gone(api, wid)
    assert "completed" in seen
    protons = api.get(f"/workloads/{wid}/protons").json()["data"]
    assert [p["role"] for p in protons] == ["active"]
    assert protons[0]["runtime"] == runtime
    details = api.get(f"/workloads/{wid}/protons/{protons[0]['id']}/statusDetails").json()
    assert len(details["replicas"]) == 2
    assert all(rep["conditions"][0]["met"] for rep in details["replicas"])
    history = api.get(f"/workloads/{wid}/history").json()["data"]
    assert history[0]["outcome"] == "completed" and history[0]["kind"] == "settings"


def test_draft_workload_promote_start_stop_delete(sim: Simulator, api: httpx.Client) -> None:
    made = api.post("/workloads", json={"name": "draft-wl", "artifact": draft_body("drafty")})
    assert made.status_code == 201
    wl = made.json()
    wid, pid = wl["id"], wl["protonId"]
    # no status snapshot yet: the process has not even started Python
    assert api.get(f"/workloads/{wid}/protons/{pid}/statusDetails").status_code == 204
    again = api.post("/workloads", json={"name": "x", "artifactId": wl["artifactId"]})
    assert again.status_code == 409  # a draft backs one workload
    wait_for(lambda: api.get(f"/workloads/{wid}").json()["status"] == "running")
    invoke = f"{sim.base_url}/api/v2/endpoints/workloads/{wid}/version"
    assert httpx.get(invoke, headers=AUTH).json()["version"] == "drafty:draft"
    promoted = api.post(f"/workloads/{wid}/promote")
    assert promoted.status_code == 202
    assert promoted.json()["artifact"] == {
        **promoted.json()["artifact"],
        "status": "locked",
        "version": 1,
    }
    assert httpx.get(invoke, headers=AUTH).headers["X-Proton-Version"] == "drafty:1"
    assert api.get(f"/workloads/{wid}/history").json()["data"][0]["kind"] == "promote"
    assert api.post(f"/workloads/{wid}/promote").status_code == 422
    assert api.post(f"/workloads/{wid}/start").status_code == 409
    assert api.post(f"/workloads/{wid}/stop").status_code == 202
    wait_for(lambda: api.get(f"/workloads/{wid}").json()["status"] == "stopped")
    assert httpx.get(invoke, headers=AUTH).status_code == 503
    assert api.post(f"/workloads/{wid}/stop").status_code == 409
    started = api.post(f"/workloads/{wid}/start")
    assert started.status_code == 202 and started.json()["workloadId"] == wid
    wait_for(lambda: api.get(f"/workloads/{wid}").json()["status"] == "running")
    assert httpx.get(invoke, headers=AUTH).status_code == 200
    events = [e["eventType"] for e in api.get(f"/workloads/{wid}/events").json()["data"]]
    assert "workload.stopped" in events and "workload.running" in events
    assert api.delete(f"/workloads/{wid}").status_code == 204
    assert api.get(f"/workloads/{wid}").status_code == 404
    assert httpx.get(invoke, headers=AUTH).status_code == 404


def test_paging(sim: Simulator, api: httpx.Client) -> None:
    for i in range(3):
        api.post("/artifacts", json=draft_body(f"page-{i}"))
    first = api.get("/artifacts", params={"offset": 0, "limit": 2}).json()
    assert first["count"] == 2 and first["previous"] is None and first["next"]
    second = httpx.get(first["next"], headers=AUTH).json()
    assert second["previous"] and {a["id"] for a in second["data"]}.isdisjoint(
        {a["id"] for a in first["data"]}
    )
    assert api.get("/artifacts", params={"limit": 0}).status_code == 422


def test_stats_per_proton(sim: Simulator, api: httpx.Client) -> None:
    wid = sim.workload_id
    pid = api.get(f"/workloads/{wid}").json()["protonId"]
    before = api.get(f"/workloads/{wid}/stats", params={"protonId": pid}).json()["metrics"]
    with httpx.Client(headers=AUTH) as client:
        for i in range(30):
            client.get(sim.invoke_url + f"item/{i}")
        for _ in range(5):
            client.post(sim.invoke_url + "chat/completions", json={"messages": []})
    after = api.get(f"/workloads/{wid}/stats", params={"protonId": pid}).json()
    m = after["metrics"]
    assert m["totalRequests"] - before["totalRequests"] == 35
    assert m["serverErrors"] == 0 and m["serverErrorRate"] == 0.0
    assert m["responseTime"] is not None and m["responseTime"] >= 0
    assert sim.proton_request_counts()[pid] == m["totalRequests"]
    old = api.get(
        f"/workloads/{wid}/stats", params={"protonId": pid, "endTime": "2000-01-01T00:00:00Z"}
    ).json()
    assert old["metrics"]["totalRequests"] == 0
    assert api.get(f"/workloads/{wid}/stats", params={"startTime": "soon"}).status_code == 400
    assert api.get(f"/workloads/{wid}/stats", params={"protonId": "nope"}).status_code == 404


def test_protons_and_events(sim: Simulator, api: httpx.Client) -> None:
    wid = sim.workload_id
    protons = api.get(f"/workloads/{wid}/protons/").json()
    active = protons["data"][0]
    assert active["role"] == "active" and active["status"] == "running"
    assert active["runningSince"] is not None
    assert api.get(f"/workloads/{wid}/protons/{active['id']}").json()["id"] == active["id"]
    assert api.get(f"/workloads/{wid}/protons/nope").status_code == 404
    events = api.get(f"/workloads/{wid}/events").json()
    assert events["totalCount"] >= 2
    assert {"id", "workloadId", "timestamp", "eventType", "details"} <= set(events["data"][0])
