"""Replacement lifecycle as a poller sees it: order, cancel before/after the switch, errored."""

from __future__ import annotations

import httpx

from probes.sim import Simulator
from tests.sim.conftest import AUTH, make_sim, replacement_status, wait_for, wait_gone

ORDER = ["submitted", "initializing", "staged", "promoting", "finalizing", "completed"]


def start(api: httpx.Client, wid: str, artifact: str, warmup: int = 0, keep: int = 0) -> dict:
    r = api.post(
        f"/workloads/{wid}/replacement",
        json={
            "artifactId": artifact,
            "strategy": "rolling",
            "config": {"warmupDurationMinutes": warmup, "keepOldVersionMinutes": keep},
        },
    )
    assert r.status_code == 202, r.text
    return r.json()


def test_lifecycle_order_then_404(api: httpx.Client, sim: Simulator) -> None:
    wid = sim.workload_id
    old_pid = api.get(f"/workloads/{wid}").json()["protonId"]
    rep = start(api, wid, sim.candidate_artifact_id, warmup=2, keep=2)
    assert rep["status"] == "submitted" and rep["previousProtonIds"] == [old_pid]
    seen: list = []
    proton_states: set = set()
    switched_at = None

    def step() -> bool:
        nonlocal switched_at
        r = api.get(f"/workloads/{wid}/replacement")
        st = r.json()["status"] if r.status_code == 200 else 404
        if r.status_code == 200:
            switched_at = r.json()["switchedAt"] or switched_at
        if not seen or seen[-1] != st:
            seen.append(st)
        for p in api.get(f"/workloads/{wid}/protons").json()["data"]:
            proton_states.add((p["role"], p["status"]))
        return st == 404

    wait_for(step, 30)
    assert seen[-1] == 404
    statuses = [s for s in seen if s != 404]
    assert statuses == [s for s in ORDER if s in statuses]  # never out of order
    assert {"submitted", "initializing", "promoting", "finalizing", "completed"} <= set(statuses)
    assert ("candidate", "warming") in proton_states
    assert (None, "draining") in proton_states
    wl = api.get(f"/workloads/{wid}").json()
    assert wl["replacement"] is None and wl["status"] == "running"
    assert wl["artifactId"] == sim.candidate_artifact_id and wl["protonId"] != old_pid
    hist = api.get(f"/workloads/{wid}/history").json()["data"][0]
    assert hist["outcome"] == "completed" and hist["switchedAt"] == switched_at
    assert httpx.get(sim.invoke_url + "version", headers=AUTH).json()["version"] == "proton-app:2"
    # and back to the baseline (a rollback is a replacement onto the previous artifact)
    start(api, wid, sim.baseline_artifact_id)
    assert wait_gone(api, wid)[-1] == 404
    assert api.get(f"/workloads/{wid}").json()["artifactId"] == sim.baseline_artifact_id


def test_cancel_before_switch(api: httpx.Client, sim: Simulator) -> None:
    wid = sim.workload_id
    start(api, wid, sim.candidate_artifact_id, warmup=60)  # 6 s real at scale 600
    wait_for(lambda: replacement_status(api, wid) == "initializing")
    r = api.delete(f"/workloads/{wid}/replacement/")
    assert r.status_code == 202 and r.json()["status"] == "canceling"
    seen = wait_gone(api, wid)
    assert seen[-1] == 404
    hist = api.get(f"/workloads/{wid}/history").json()["data"][0]
    assert hist["outcome"] == "canceled" and hist["switchedAt"] is None
    wl = api.get(f"/workloads/{wid}").json()
    assert wl["artifactId"] == sim.baseline_artifact_id and wl["replacement"] is None
    assert [p["role"] for p in api.get(f"/workloads/{wid}/protons").json()["data"]] == ["active"]
    assert httpx.get(sim.invoke_url, headers=AUTH).json()["version"] == "proton-app:1"


def test_cancel_after_switch_is_409(api: httpx.Client, sim: Simulator) -> None:
    wid = sim.workload_id
    start(api, wid, sim.candidate_artifact_id, keep=20)  # old kept 2 s real
    wait_for(lambda: replacement_status(api, wid) in ("promoting", "finalizing"))
    r = api.delete(f"/workloads/{wid}/replacement")
    assert r.status_code == 409
    assert replacement_status(api, wid) in ("promoting", "finalizing")
    # the switch happened: new requests reach the candidate while the old one is kept
    assert httpx.get(sim.invoke_url, headers=AUTH).json()["version"] == "proton-app:2"
    roles = {p["role"]: p["status"] for p in api.get(f"/workloads/{wid}/protons").json()["data"]}
    assert roles == {"active": "running", None: "draining"}
    assert wait_gone(api, wid)[-1] == 404
    start(api, wid, sim.baseline_artifact_id)
    wait_gone(api, wid)


def test_never_ready_errors_and_old_keeps_serving() -> None:
    with (
        make_sim(scenario="never-ready", ready_timeout=300.0) as s,
        httpx.Client(base_url=s.api_url, headers=AUTH) as api,
    ):
        wid = s.workload_id
        start(api, wid, s.candidate_artifact_id)
        versions = set()

        def step() -> bool:
            versions.add(httpx.get(s.invoke_url, headers=AUTH).json()["version"])
            return replacement_status(api, wid) == "errored"

        wait_for(step, 30)
        assert versions == {"proton-app:1"}
        rep = api.get(f"/workloads/{wid}/replacement").json()
        assert rep["status"] == "errored" and "did not become ready" in rep["message"]
        assert rep["switchedAt"] is None
        wl = api.get(f"/workloads/{wid}").json()
        assert wl["replacement"]["status"] == "errored"  # sticky until the next replacement
        assert wl["artifactId"] == s.baseline_artifact_id and wl["status"] == "running"
        assert api.get(f"/workloads/{wid}/history").json()["data"][0]["outcome"] == "errored"
        assert api.delete(f"/workloads/{wid}/replacement").status_code == 409
        cand = rep["candidateProtonIds"][0]
        wait_for(lambda: api.get(f"/workloads/{wid}/protons/{cand}").json()["status"] == "stopped")
        assert httpx.get(s.invoke_url, headers=AUTH).json()["version"] == "proton-app:1"
        # a new replacement replaces the errored record
        healthy = api.post(
            "/artifacts",
            json={
                "name": "fixed",
                "spec": {
                    "containerGroups": [
                        {
                            "name": "default",
                            "containers": [
                                {"name": "main", "primary": True, "port": 8080, "imageUri": "x"}
                            ],
                        }
                    ]
                },
            },
        ).json()
        api.patch(f"/artifacts/{healthy['id']}", json={"status": "locked"})
        assert start(api, wid, healthy["id"])["status"] == "submitted"
        assert replacement_status(api, wid) != "errored"
