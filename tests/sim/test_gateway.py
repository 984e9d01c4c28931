"""The invoke gateway and the named scenarios, through real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from probes.sim import Simulator
from tests.sim.conftest import AUTH, alive, make_sim, replacement_status, wait_for, wait_gone


def replace(sim: Simulator, warmup: int = 0, keep: int = 0) -> None:
    r = httpx.post(
        f"{sim.api_url}/workloads/{sim.workload_id}/replacement",
        headers=AUTH,
        json={
            "artifactId": sim.candidate_artifact_id,
            "strategy": "rolling",
            "config": {"warmupDurationMinutes": warmup, "keepOldVersionMinutes": keep},
        },
    )
    assert r.status_code == 202, r.text


@dataclass
class Traffic:
    """Background senders; each row (sent_ts, status or 0, version or error class)."""

    sim: Simulator
    threads: int = 1
    rows: list[tuple[float, int, str]] = field(default_factory=list)
    per_thread: dict[int, list[tuple[float, int, str]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def _send(self, index: int) -> None:
        mine = self.per_thread.setdefault(index, [])
        with httpx.Client(headers=AUTH, timeout=10) as client:
            for _ in range(20000):  # bounded
                if self.stop.is_set():
                    return
                ts = time.time()
                try:
                    r = client.get(self.sim.invoke_url + "work")
                    row = (ts, r.status_code, r.headers.get("X-Proton-Version", "-"))
                except httpx.TransportError as exc:
                    row = (ts, 0, type(exc).__name__)
                self.rows.append(row)
                mine.append(row)

    def __enter__(self) -> Traffic:
        self._workers = [
            threading.Thread(target=self._send, args=(i,)) for i in range(self.threads)
        ]
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for w in self._workers:
            w.join(20)


ORDER = ["submitted", "initializing", "staged", "promoting", "finalizing", "completed"]


def api(sim: Simulator) -> httpx.Client:
    return httpx.Client(base_url=sim.api_url, headers=AUTH, timeout=10)


def test_forwarding_auth_and_errors(sim: Simulator) -> None:
    r = httpx.put(
        sim.invoke_url + "a/b?x=1&y=2", content=b"hello", headers={**AUTH, "X-Custom": "1"}
    )
    assert r.status_code == 200
    body = r.json()
    assert body == {
        "method": "PUT",
        "path": "/a/b",
        "query": "x=1&y=2",
        "bytes": 5,
        "authorization": False,
        "version": "proton-app:1",
    }
    assert r.headers["X-Proton-Version"] == "proton-app:1"
    bare = httpx.get(sim.invoke_url.rstrip("/"), headers=AUTH)
    assert bare.json()["path"] == "/"
    chat = httpx.post(
        sim.invoke_url + "chat/completions",
        headers=AUTH,
        json={"messages": [{"role": "user", "content": "hi there"}]},
    ).json()
    assert chat["choices"][0]["message"]["content"] == "echo: hi there"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "test-token"}):
        denied = httpx.get(sim.invoke_url, headers=headers)
        assert (denied.status_code, denied.json()) == (401, {"message": "Invalid API key"})
    unknown = httpx.get(f"{sim.base_url}/api/v2/endpoints/workloads/nope/", headers=AUTH)
    assert unknown.status_code == 404
    assert httpx.get(sim.invoke_url + "health", headers=AUTH).status_code == 200


def proton_metrics(c: httpx.Client, sim: Simulator, proton_id: str) -> dict[str, Any]:
    r = c.get(f"/workloads/{sim.workload_id}/stats", params={"protonId": proton_id})
    assert r.status_code == 200, r.text
    metrics: dict[str, Any] = r.json()["metrics"]
    return metrics


def test_upstream_timeout_is_504_and_a_server_error() -> None:
    # The app delays every non-health answer 800 ms; the gateway waits 0.3 s real.
    with (
        make_sim(upstream_timeout=0.3, baseline_latency_ms="800") as s,
        api(s) as c,
        httpx.Client(headers=AUTH, timeout=10) as client,
    ):
        pid = c.get(f"/workloads/{s.workload_id}").json()["protonId"]
        r = client.get(s.invoke_url + "slow")
        assert (r.status_code, r.json()) == (504, {"message": "Upstream proton timed out"})
        assert "X-Proton-Version" not in r.headers  # the edge answered, not the app
        # /health is never delayed: the same route answers within the timeout
        assert client.get(s.invoke_url + "health").status_code == 200
        m = proton_metrics(c, s, pid)
        assert (m["totalRequests"], m["serverErrors"], m["userErrors"]) == (2, 1, 0)
        assert m["serverErrorRate"] == 0.5
        assert s.proton_request_counts() == {pid: 2}


def active_replica_pid(c: httpx.Client, sim: Simulator) -> tuple[str, int]:
    """The active proton's id and the pid of its (only) replica process."""
    proton_id = c.get(f"/workloads/{sim.workload_id}").json()["protonId"]
    pids = sim.call(lambda: [r.proc.pid for r in sim.cluster.protons[proton_id].replicas if r.proc])
    assert len(pids) == 1 and pids[0] in sim.proton_pids()
    return proton_id, pids[0]


def test_killed_proton_is_502_in_flight_then_503() -> None:
    """SIGKILL the active proton's process while a request waits on it: the gateway's
    upstream connection fails (502). Once the platform has seen the exit the proton is no
    longer routable and requests get 503 (no ready proton), not counted for any proton."""
    with (
        make_sim(baseline_latency_ms="5000") as s,
        api(s) as c,
        httpx.Client(headers=AUTH, timeout=10) as client,
    ):
        proton_id, pid = active_replica_pid(c, s)
        answers: list[httpx.Response] = []
        sender = threading.Thread(target=lambda: answers.append(client.get(s.invoke_url + "x")))
        sender.start()
        wait_for(lambda: proton_metrics(c, s, proton_id)["concurrentRequests"] == 1, 5)
        os.kill(pid, signal.SIGKILL)
        sender.join(8)
        assert not sender.is_alive() and len(answers) == 1
        first = answers[0]
        assert (first.status_code, first.json()) == (
            502,
            {"message": "Upstream proton connection failed"},
        )
        wait_for(lambda: not alive(pid), 5)  # the reset can reach us before the exit ends
        later: list[int] = []

        def settled() -> bool:
            later.append(client.get(s.invoke_url + "x").status_code)
            return later[-1] == 503

        wait_for(settled, 5, 0.05)
        # until the exit is noticed a request may still reach the dead port: 502, never 200
        assert set(later[:-1]) <= {502}
        gone = client.get(s.invoke_url + "x")
        assert (gone.status_code, gone.json()) == (
            503,
            {"message": "No ready proton is serving this workload"},
        )
        n502 = 1 + later.count(502)
        m = proton_metrics(c, s, proton_id)
        assert (m["totalRequests"], m["serverErrors"]) == (n502, n502)
        assert s.proton_request_counts() == {proton_id: n502}


def test_bad_candidate_error_share_and_stats() -> None:
    with make_sim(scenario="bad-candidate") as s, api(s) as c:
        replace(s)
        wait_gone(c, s.workload_id)
        pid = c.get(f"/workloads/{s.workload_id}").json()["protonId"]
        statuses = []
        with httpx.Client(headers=AUTH) as client:
            for _ in range(600):
                r = client.get(s.invoke_url + "x")
                assert r.headers["X-Proton-Version"] == "proton-app:2"
                statuses.append(r.status_code)
        share = statuses.count(500) / len(statuses)
        assert 0.13 < share < 0.27, share
        m = c.get(f"/workloads/{s.workload_id}/stats", params={"protonId": pid}).json()["metrics"]
        assert m["totalRequests"] == 600 and m["serverErrors"] == statuses.count(500)
        assert abs(m["serverErrorRate"] - share) < 1e-9
        assert s.proton_request_counts()[pid] == 600


def test_gap_503s_between_versions() -> None:
    with make_sim(scenario="gap", gap_ms=300.0) as s, api(s) as c:
        with Traffic(s) as t:
            wait_for(lambda: len(t.rows) > 5)
            replace(s)
            wait_gone(c, s.workload_id)
            n = len(t.rows)
            wait_for(lambda: len(t.rows) > n + 5)
        kinds = [(st, v) for _, st, v in t.rows]
        assert set(kinds) == {(200, "proton-app:1"), (503, "-"), (200, "proton-app:2")}
        first_503 = kinds.index((503, "-"))
        first_v2 = kinds.index((200, "proton-app:2"))
        assert (200, "proton-app:1") not in kinds[first_503:]
        assert (503, "-") not in kinds[first_v2:]
        gap_ts = [ts for ts, st, _ in t.rows if st == 503]
        assert len(gap_ts) >= 2


def test_drop_inflight_cuts_requests_on_old() -> None:
    # 300-600 ms answers on 6 threads: some request is in flight at the switch however busy
    # the machine is (with fast answers a starved client may have none out at that moment)
    with make_sim(scenario="drop-inflight", baseline_latency_ms="300-600") as s, api(s) as c:
        old = c.get(f"/workloads/{s.workload_id}").json()["protonId"]
        with Traffic(s, threads=6) as t:
            wait_for(lambda: len(t.rows) > 12)
            replace(s)
            wait_gone(c, s.workload_id)
        cut = [r for r in t.rows if r[1] == 0]
        assert cut, "no in-flight request was cut at the switch"
        assert {r[1] for r in t.rows} == {0, 200}
        counts = s.proton_request_counts()
        assert sum(counts.values()) == len(t.rows)  # the cut ones are counted too
        # the cut requests were the old proton's (stats default to the current one)
        stats = proton_metrics(c, s, old)
        assert stats["serverErrors"] == len(cut)
        assert c.get(f"/workloads/{s.workload_id}/stats").json()["metrics"]["serverErrors"] == 0


def test_default_switch_drains_without_errors() -> None:
    with make_sim(scenario="healthy", baseline_latency_ms="50-100") as s, api(s) as c:
        with Traffic(s, threads=4) as t:
            wait_for(lambda: len(t.rows) > 8)
            replace(s)
            wait_gone(c, s.workload_id)
        assert {r[1] for r in t.rows} == {200}
        versions = [r[2] for r in sorted(t.rows)]
        assert versions[0] == "proton-app:1" and versions[-1] == "proton-app:2"
        counts = s.proton_request_counts()
        by_version = {v: sum(1 for r in t.rows if r[2] == v) for v in set(versions)}
        assert sorted(counts.values()) == sorted(by_version.values())


def test_sticky_connection_stays_on_old_proton() -> None:
    with make_sim(scenario="sticky") as s, api(s) as c:
        one = httpx.Client(headers=AUTH, limits=httpx.Limits(max_connections=1))
        assert one.get(s.invoke_url).headers["X-Proton-Version"] == "proton-app:1"
        old = c.get(f"/workloads/{s.workload_id}").json()["protonId"]
        replace(s, keep=30)  # old kept 3 s real
        wait_for(lambda: c.get(f"/workloads/{s.workload_id}").json()["protonId"] != old)
        pinned = [one.get(s.invoke_url).headers["X-Proton-Version"] for _ in range(20)]
        fresh = httpx.get(s.invoke_url, headers=AUTH).headers["X-Proton-Version"]
        assert replacement_status(c, s.workload_id) in ("promoting", "finalizing")  # old kept
        assert pinned == ["proton-app:1"] * 20
        assert fresh == "proton-app:2"
        # Once the old proton is stopped, its pinned connection was closed: the same client
        # reconnects and lands on the new proton.
        assert wait_gone(c, s.workload_id)[-1] == 404
        assert one.get(s.invoke_url).headers["X-Proton-Version"] == "proton-app:2"
        one.close()
        assert c.get(f"/workloads/{s.workload_id}/protons/{old}").json()["status"] == "stopped"


def test_sticky_busy_keepalive_traffic_does_not_hold_the_replacement() -> None:
    """Busy pinned keep-alive connections on a slow baseline: the replacement still goes
    promoting -> finalizing -> completed (drain bounded by ``drain_s``), each caller stays on
    the old proton while it is kept and moves to the new one when it stops."""
    with (
        make_sim(scenario="sticky", time_scale=60.0, baseline_latency_ms="5-150") as s,
        api(s) as c,
    ):
        with Traffic(s, threads=4) as t:
            wait_for(lambda: all(len(t.per_thread.get(i, ())) > 3 for i in range(4)))
            replace(s, keep=1)  # drain 180 s platform (3 s real), then keep is over
            seen = wait_gone(c, s.workload_id, timeout=30)
            n = {i: len(rows) for i, rows in t.per_thread.items()}
            wait_for(lambda: all(len(t.per_thread[i]) > n[i] + 3 for i in range(4)))
        assert [x for x in ORDER if x in seen] == ORDER and seen[-1] == 404
        wl = c.get(f"/workloads/{s.workload_id}").json()
        assert wl["artifactId"] == s.candidate_artifact_id
        for rows in t.per_thread.values():
            versions = [v for _, st, v in rows if st == 200]
            k = versions.index("proton-app:2")
            # one caller, one connection: the old proton until it stopped, then the new one
            assert k > 3 and versions == ["proton-app:1"] * k + ["proton-app:2"] * (
                len(versions) - k
            )
        counts = s.proton_request_counts()
        ok = sum(1 for r in t.rows if r[1] == 200)
        assert sum(counts.values()) >= ok and len(counts) == 2


def test_gradual_shift_weights_rise() -> None:
    with make_sim(scenario="gradual", time_scale=60.0) as s, api(s) as c:  # 2 s real shift
        with Traffic(s) as t:
            wait_for(lambda: len(t.rows) > 5)
            replace(s)
            wait_for(lambda: replacement_status(c, s.workload_id) in ("finalizing", 404), 30)
        rows = sorted(t.rows)
        first_v2 = next(ts for ts, _, v in rows if v == "proton-app:2")
        last_v1 = max(ts for ts, _, v in rows if v == "proton-app:1")
        mixed = [v for ts, _, v in rows if first_v2 <= ts <= last_v1]
        half = len(mixed) // 2
        assert half >= 20
        early, late = mixed[:half], mixed[half:]
        share_early = early.count("proton-app:2") / len(early)
        share_late = late.count("proton-app:2") / len(late)
        assert share_early < share_late
        assert 0 < share_early < 0.6 and 0.4 < share_late < 1


def test_hidden_version() -> None:
    with make_sim(scenario="hidden-version") as s:
        r = httpx.get(s.invoke_url + "x", headers=AUTH)
        assert r.status_code == 200
        assert "X-Proton-Version" not in r.headers and "version" not in r.json()


def test_no_orphan_protons_after_exit() -> None:
    with make_sim(replicas=2) as s:
        pids = s.proton_pids()
        assert len(pids) == 2 and all(alive(p) for p in pids)
    assert not any(alive(p) for p in pids)
