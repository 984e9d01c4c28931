"""The HTTP API over real sockets on 127.0.0.1: every route, auth, Flagger and verdict codes.

The service is a fake ``ServiceView`` holding a real run index, real metrics and verdict bodies
made by ``verdict_body`` from synthetic samples.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from probes.errors import ConfigError
from probes.records import write_json_atomic
from probes.run import FIGURES_DIR, REPORT_HTML_FILE, SUMMARY_FILE, Run
from probes.serve.http import Conflict, make_app
from probes.serve.index import RunIndex, RunRow
from probes.serve.metrics import Metrics
from probes.serve.verdict import no_rollout_body, verdict_body

NOW = 1_800_000_000.0


def judged(target: str, *, cand_error: float = 0.0, n_cand: int = 3000) -> dict[str, Any]:
    # 3,000 a side: enough for the sequential guardrails to pass a healthy candidate
    rng = np.random.default_rng(2)
    versions = np.array(["v1"] * 3000 + ["v2"] * n_cand, dtype=object)
    latency = rng.lognormal(3.0, 0.3, versions.size)
    ok = np.ones(versions.size, dtype=bool)
    ok[3000:] = rng.random(n_cand) >= cand_error
    return verdict_body(
        target=target,
        run_id=f"{target}-rollout-1",
        baseline="v1",
        candidate="v2",
        versions=versions,
        latency_ms=latency,
        ok=ok,
        slos=[],
        updated_at=NOW,
    )


@dataclass
class FakeView:
    runs_dir: Path
    index: RunIndex
    metrics: Metrics
    auth_token: str | None = None
    is_ready: bool = True
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdict_calls: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    started: list[tuple[str, str, float | None, dict[str, Any]]] = field(default_factory=list)
    captures: list[tuple[str, str]] = field(default_factory=list)
    conflict: bool = False
    broken_verdict: bool = False
    ties: dict[str, str] = field(default_factory=dict)

    def ready(self) -> bool:
        return self.is_ready

    capturing: set[str] = field(default_factory=set)

    def target_names(self) -> list[str]:
        return ["chat", "emb"]

    def target_status(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "url": f"http://127.0.0.1:1/{name}",
            "state": "capturing" if name in self.capturing else "idle",
            "current_version": "v1",
            "versions": {"v1": 1.0},
            "window_s": 60,
            "requests": 60,
            "error_rate": 0.0,
            "p50_ms": 5.0,
            "p99_ms": 9.0,
            "rollout": None,
        }

    def verdict(self, target: str, candidate: str | None, baseline: str | None) -> dict[str, Any]:
        self.verdict_calls.append((target, candidate, baseline))
        if self.broken_verdict:
            raise RuntimeError("window store went away")
        return self.verdicts.get(target) or no_rollout_body(target, NOW)

    def start_run(
        self, target: str, kind: str, duration_s: float | None, args: Mapping[str, Any]
    ) -> str:
        if self.conflict:
            raise Conflict(f"target {target}: a {kind} run is already running (forbid)")
        if args.get("users") == 0:
            raise ConfigError("args.users: must be a positive integer, got 0")
        self.started.append((target, kind, duration_s, dict(args)))
        return f"{target}-api-{len(self.started)}"

    def flagger_target(self, namespace: str, name: str) -> str | None:
        return {("prod", "chat"): "chat"}.get((namespace, name))

    def open_capture(self, target: str, reason: str, checksum: str | None = None) -> str | None:
        self.captures.append((target, reason))
        if checksum:
            self.ties[checksum] = target
        return f"{target}-rollout-1"

    def flagger_verdict(self, target: str, checksum: str | None) -> dict[str, Any] | None:
        # the capture tied to the checksum (open or closed), else the open one
        if target not in self.capturing and self.ties.get(checksum or "") != target:
            return None
        return self.verdict(target, None, None)


@pytest.fixture
def view(tmp_path: Path) -> Any:
    runs = tmp_path / "runs"
    runs.mkdir()
    index = RunIndex(runs / "index.sqlite", runs)
    yield FakeView(runs_dir=runs, index=index, metrics=Metrics("9.9.9"))
    index.close()


Call = Callable[[TestClient], Awaitable[Any]]


def run(view: FakeView, fn: Call) -> Any:
    async def main() -> Any:
        server = TestServer(make_app(view), host="127.0.0.1", port=0)
        async with TestClient(server) as client:
            return await fn(client)

    return asyncio.run(main())


async def get(client: TestClient, path: str, **kw: Any) -> tuple[int, Any, Any]:
    resp = await client.get(path, **kw)
    ctype = resp.headers.get("Content-Type", "")
    body = await (resp.json() if ctype.startswith("application/json") else resp.text())
    return resp.status, body, resp.headers


async def post(client: TestClient, path: str, data: Any, **kw: Any) -> tuple[int, Any, Any]:
    payload = data if isinstance(data, str | bytes) else json.dumps(data)
    # a JSON POST, as the door asks (auth off: anything else is 415)
    kw["headers"] = {"Content-Type": "application/json", **kw.get("headers", {})}
    resp = await client.post(path, data=payload, **kw)
    ctype = resp.headers.get("Content-Type", "")
    body = await (resp.json() if ctype.startswith("application/json") else resp.text())
    return resp.status, body, resp.headers


def row(run_id: str, started: float, **kw: Any) -> RunRow:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "target": "chat",
        "kind": "canary",
        "trigger": "continuous",
        "schedule": None,
        "started_ts": started,
        "ended_ts": started + 60,
        "requests": 120,
        "error_rate": 0.0,
        "versions": ("v1",),
        "verdict": "pass",
        "from_version": None,
        "to_version": None,
        "pinned": False,
        "state": "closed",
    }
    fields.update(kw)
    return RunRow(**fields)


def test_health_readiness_and_index_page(view: FakeView) -> None:
    async def go(c: TestClient) -> None:
        assert (await get(c, "/healthz"))[:2] == (200, {"status": "ok"})
        assert (await get(c, "/readyz"))[0] == 200
        view.is_ready = False
        status, body, _ = await get(c, "/readyz")
        assert status == 503 and body == {"status": "starting"}
        status, page, headers = await get(c, "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        # the web UI's Targets page: its JSON twin, and each target's own page
        for href in ("/api/v1/targets", "/targets/chat", "/runs", "/rollouts"):
            assert f'href="{href}"' in page, href

        status, err, _ = await get(c, "/api/v1/nothing-here")
        assert status == 404 and "error" in err
        status, err, _ = await get(c, "/api/v1/flagger/gate")
        assert status == 405 and "error" in err

    run(view, go)


def test_metrics_route_serves_the_registry(view: FakeView) -> None:
    view.metrics.request("chat", "v1", "probe", "ok", 0.01)

    async def go(c: TestClient) -> None:
        status, text, headers = await get(c, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        assert {"proton_probe_build_info", "proton_probe_requests_total"} <= names

    run(view, go)


def test_targets_and_one_target_with_recent_runs(view: FakeView) -> None:
    for i in range(12):
        view.index.put(row(f"chat-{i:02d}", NOW + i))
    view.index.put(row("emb-1", NOW, target="emb"))
    view.index.flush()

    async def go(c: TestClient) -> None:
        status, body, _ = await get(c, "/api/v1/targets")
        assert status == 200 and [t["name"] for t in body] == ["chat", "emb"]
        assert "recent_runs" not in body[0]
        status, one, _ = await get(c, "/api/v1/targets/chat")
        assert status == 200 and one["current_version"] == "v1"
        assert [r["run_id"] for r in one["recent_runs"]] == [
            f"chat-{i:02d}" for i in range(11, 1, -1)
        ]
        status, err, _ = await get(c, "/api/v1/targets/nope")
        assert status == 404 and "nope" in err["error"]

    run(view, go)


def test_runs_filters_limits_and_bad_filters(view: FakeView) -> None:
    for i in range(60):
        view.index.put(row(f"c{i:02d}", NOW + i))
    view.index.put(
        row(
            "roll",
            NOW + 100,
            kind="rollout",
            trigger="auto",
            verdict="fail",
            pinned=True,
            ended_ts=None,
            state="open",
        )
    )
    view.index.put(
        row(
            "emb",
            NOW + 200,
            target="emb",
            kind="load",
            trigger="schedule",
            schedule="nightly",
            verdict="pass",
        )
    )
    view.index.flush()

    async def go(c: TestClient) -> None:
        status, body, _ = await get(c, "/api/v1/runs")
        assert status == 200 and len(body) == 50
        assert [r["run_id"] for r in body[:3]] == ["emb", "roll", "c59"]
        assert body[1]["ended_at"] is None and body[1]["pinned"] is True
        assert set(body[0]) >= {
            "run_id",
            "target",
            "kind",
            "trigger",
            "schedule",
            "started_at",
            "ended_at",
            "requests",
            "error_rate",
            "verdict",
            "from_version",
            "to_version",
            "pinned",
        }
        assert len((await get(c, "/api/v1/runs?limit=1000"))[1]) == 62
        assert [r["run_id"] for r in (await get(c, "/api/v1/runs?kind=rollout"))[1]] == ["roll"]
        got = (await get(c, "/api/v1/runs?target=emb&verdict=pass"))[1]
        assert [r["run_id"] for r in got] == ["emb"]
        since = "2027-01-15T08:01:40Z"  # NOW + 100
        assert [r["run_id"] for r in (await get(c, f"/api/v1/runs?since={since}"))[1]] == [
            "emb",
            "roll",
        ]
        assert len((await get(c, f"/api/v1/runs?since={NOW + 59}"))[1]) == 3
        for query, name in (
            ("limit=1001", "limit"),
            ("limit=0", "limit"),
            ("limit=x", "limit"),
            ("kind=nightly", "kind"),
            ("verdict=maybe", "verdict"),
            ("since=yesterday", "since"),
            ("colour=red", "colour"),
        ):
            status, err, _ = await get(c, f"/api/v1/runs?{query}")
            assert status == 400 and err["error"].startswith(f"{name}:"), (query, err)

    run(view, go)


def make_reported_run(runs_dir: Path, run_id: str) -> Path:
    run_obj = Run.create(runs_dir, run_id, "rollout", target={}, settings={}, trigger="auto")
    run_obj.finish()
    write_json_atomic(
        run_obj.path / SUMMARY_FILE,
        {"schema": "proton-probe/summary/1", "run_id": run_id, "requests": 3},
    )
    (run_obj.path / REPORT_HTML_FILE).write_text("<html><body>report</body></html>")
    (run_obj.path / FIGURES_DIR).mkdir()
    (run_obj.path / FIGURES_DIR / "timeline.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    return run_obj.path


def test_run_summary_report_and_figures(view: FakeView) -> None:
    make_reported_run(view.runs_dir, "chat-rollout-7")
    Run.create(view.runs_dir, "no-report-yet", "canary", target={}, settings={})
    (view.runs_dir / "secret.txt").write_text("outside any run")

    async def go(c: TestClient) -> None:
        status, body, _ = await get(c, "/api/v1/runs/chat-rollout-7")
        assert status == 200 and body["run_id"] == "chat-rollout-7" and body["requests"] == 3
        status, page, headers = await get(c, "/api/v1/runs/chat-rollout-7/report")
        assert (
            status == 200 and "report" in page and headers["Content-Type"].startswith("text/html")
        )
        resp = await c.get("/api/v1/runs/chat-rollout-7/figures/timeline.png")
        assert resp.status == 200 and (await resp.read()).startswith(b"\x89PNG")
        assert resp.headers["Content-Type"] == "image/png"
        for path in (
            "/api/v1/runs/nope",
            "/api/v1/runs/no-report-yet",
            "/api/v1/runs/no-report-yet/report",
            "/api/v1/runs/chat-rollout-7/figures/x.png",
            "/api/v1/runs/..%2Fsecret.txt/report",
            "/api/v1/runs/%2E%2E/report",
            "/api/v1/runs/chat-rollout-7/figures/..%2F..%2Fsecret.txt",
            "/api/v1/runs/chat-rollout-7/figures/..%2Freport.html",
            "/api/v1/runs/chat-rollout-7/figures/.hidden",
        ):
            resp = await c.get(path)
            assert resp.status == 404, path
            assert "outside any run" not in await resp.text()

    run(view, go)


def test_start_a_run(view: FakeView) -> None:
    async def go(c: TestClient) -> None:
        body = {"kind": "load", "duration_s": 30, "args": {"users": 5}}
        status, got, _ = await post(c, "/api/v1/targets/chat/runs", body)
        assert (status, got) == (202, {"run_id": "chat-api-1"})
        assert view.started == [("chat", "load", 30.0, {"users": 5})]
        status, got, _ = await post(c, "/api/v1/targets/chat/runs", {"kind": "observe"})
        assert status == 202 and view.started[-1] == ("chat", "observe", None, {})
        for bad, name in (
            ({}, "kind"),
            ({"kind": "canary"}, "kind"),
            ([], "body"),
            ({"kind": "load", "duration_s": -1}, "duration_s"),
            ({"kind": "load", "duration_s": "10"}, "duration_s"),
            ({"kind": "load", "args": [1]}, "args"),
            ({"kind": "load", "colour": 1}, "colour"),
            ({"kind": "load", "args": {"users": 0}}, "args.users"),
        ):
            status, got, _ = await post(c, "/api/v1/targets/chat/runs", bad)
            assert status == 400 and got["error"].startswith(f"{name}:"), (bad, got)
        status, got, _ = await post(c, "/api/v1/targets/chat/runs", "{not json")
        assert status == 400 and got["error"].startswith("body:")
        status, got, _ = await post(c, "/api/v1/targets/nope/runs", {"kind": "load"})
        assert status == 404
        view.conflict = True
        status, got, _ = await post(c, "/api/v1/targets/chat/runs", {"kind": "capacity"})
        assert status == 409 and "already running" in got["error"]

    run(view, go)


def test_verdict_is_always_200_with_the_full_body(view: FakeView) -> None:
    view.verdicts["chat"] = judged("chat")
    view.verdicts["emb"] = judged("emb", cand_error=0.3)
    keys = {
        "verdict",
        "reason",
        "target",
        "run_id",
        "baseline",
        "candidate",
        "samples",
        "candidate_error_rate",
        "error_rate_delta",
        "p50_delta_ms",
        "p99_delta_ms",
        "latency_p_value",
        "checks",
        "updated_at",
    }

    async def go(c: TestClient) -> None:
        status, body, _ = await get(c, "/api/v1/verdict?target=chat")
        assert status == 200 and body["verdict"] == "pass" and set(body) >= keys
        status, body, _ = await get(c, "/api/v1/verdict?target=emb&candidate=v2&baseline=v1")
        assert status == 200 and body["verdict"] == "fail"
        assert view.verdict_calls[-1] == ("emb", "v2", "v1")
        view.verdicts.clear()
        status, body, _ = await get(c, "/api/v1/verdict?target=chat")
        assert status == 200 and body["verdict"] == "pending" and set(body) >= keys
        view.broken_verdict = True
        status, body, _ = await get(c, "/api/v1/verdict?target=chat")
        assert status == 200 and body["verdict"] == "pending" and set(body) >= keys
        assert "window store went away" in body["reason"]
        # a question it cannot answer is still 200 (Argo: any non-2xx is an Error): pending
        for query, name in (("", "target:"), ("?target=chat&canddate=v2", "canddate:")):
            status, body, _ = await get(c, f"/api/v1/verdict{query}")
            assert status == 200 and body["verdict"] == "pending", (query, body)
            assert body["reason"].startswith(name) and set(body) >= keys, body
        # ... but an unknown target is a 404: a typo in an AnalysisTemplate fails fast
        status, body, _ = await get(c, "/api/v1/verdict?target=nope")
        assert status == 404 and body["error"].startswith("target: unknown 'nope'"), body

    run(view, go)


def hook(canary: str = "chat", namespace: str = "prod", phase: str = "Progressing") -> dict:
    return {
        "name": canary,
        "namespace": namespace,
        "phase": phase,
        "checksum": "abc",
        "metadata": {"eventMessage": "Advance chat.prod canary weight 10"},
    }


def test_flagger_gate_rollback_and_event(view: FakeView) -> None:
    async def go(c: TestClient) -> None:
        # no rollout being captured: a previous rollout's fail never rolls this one back
        view.verdicts["chat"] = judged("chat", cand_error=0.3)
        for gate in ("gate", "rollback"):
            status, text, _ = await post(c, f"/api/v1/flagger/{gate}", hook())
            assert status == 403 and "no rollout is being captured" in text, (gate, text)
        del view.verdicts["chat"]
        view.capturing = {"chat"}
        # pending (no evidence yet): the gate halts, rollback does not roll back
        status, text, _ = await post(c, "/api/v1/flagger/gate", hook())
        assert status == 403 and text.startswith("chat: pending: no rollout known")
        assert text.count("\n") == 1
        assert (await post(c, "/api/v1/flagger/rollback", hook()))[0] == 403
        view.verdicts["chat"] = judged("chat")
        status, text, _ = await post(c, "/api/v1/flagger/gate", hook())
        assert status == 200 and text.startswith("chat: pass")
        assert (await post(c, "/api/v1/flagger/rollback", hook()))[0] == 403
        view.verdicts["chat"] = judged("chat", cand_error=0.3)
        status, text, _ = await post(c, "/api/v1/flagger/gate", hook())
        assert status == 403 and text.startswith("chat: fail: failed: ")
        status, text, _ = await post(c, "/api/v1/flagger/rollback", hook())
        assert status == 200 and "fail" in text
        # thin evidence is pending even when the candidate looks bad (5 requests: the
        # guardrails' bounds cannot tell yet; 3 errors in 10 already fail it)
        view.verdicts["chat"] = judged("chat", cand_error=0.3, n_cand=5)
        assert (await post(c, "/api/v1/flagger/rollback", hook()))[0] == 403
        # event: a Progressing event opens a capture; any other phase is acknowledged only
        status, body, _ = await post(c, "/api/v1/flagger/event", hook(phase="Progressing"))
        assert status == 200 and body["run_id"] == "chat-rollout-1"
        assert view.captures and view.captures[0][0] == "chat"
        status, body, _ = await post(c, "/api/v1/flagger/event", hook(phase="Succeeded"))
        assert status == 200 and len(view.captures) == 1
        # an unknown canary: gates refuse, events are acknowledged
        for gate in ("gate", "rollback"):
            status, text, _ = await post(c, f"/api/v1/flagger/{gate}", hook(canary="other"))
            assert status == 403 and "unknown canary prod/other" in text
        status, body, _ = await post(c, "/api/v1/flagger/event", hook(canary="other"))
        assert status == 200 and body["status"] == "ignored" and len(view.captures) == 1
        # malformed bodies are 400 for the gates; an event is always 200 (ignored)
        for gate in ("gate", "rollback"):
            assert (await post(c, f"/api/v1/flagger/{gate}", "{nope"))[0] == 400
            status, text, _ = await post(c, f"/api/v1/flagger/{gate}", {"namespace": "prod"})
            assert status == 400 and text.startswith("name:")
        status, body, _ = await post(c, "/api/v1/flagger/event", "{nope")
        assert status == 200 and body["status"] == "ignored" and "JSON" in body["reason"]
        assert (await post(c, "/api/v1/flagger/promote", hook()))[0] == 404

    run(view, go)


ROUTES = (
    "/",
    "/readyz",
    "/metrics",
    "/api/v1/targets",
    "/api/v1/targets/chat",
    "/api/v1/runs",
    "/api/v1/runs/chat-rollout-7",
    "/api/v1/runs/chat-rollout-7/report",
    "/api/v1/runs/chat-rollout-7/figures/timeline.png",
    "/api/v1/verdict?target=chat",
)


def test_bearer_auth_on_every_route_but_healthz(view: FakeView, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    view.auth_token = token
    make_reported_run(view.runs_dir, "chat-rollout-7")

    async def go(c: TestClient) -> None:
        assert (await c.get("/healthz")).status == 200
        good = {"Authorization": f"Bearer {token}"}
        for path in ROUTES:
            resp = await c.get(path)
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert token not in await resp.text()
            for header in (f"Bearer {token}x", f"bearer {token}", token, "Bearer "):
                assert (await c.get(path, headers={"Authorization": header})).status == 401
            assert (await c.get(path, headers=good)).status == 200, path
        for path, body in (
            ("/api/v1/targets/chat/runs", {"kind": "load"}),
            ("/api/v1/flagger/event", hook()),
        ):
            assert (await post(c, path, body))[0] == 401
            assert (await post(c, path, body, headers=good))[0] in (200, 202)
        # Flagger cannot send headers: its routes take the token from the body's metadata
        with_token = hook()
        with_token["metadata"]["token"] = token
        assert (await post(c, "/api/v1/flagger/event", with_token))[0] == 200
        with_token["metadata"]["token"] = token + "x"
        assert (await post(c, "/api/v1/flagger/event", with_token))[0] == 401
        assert (
            await post(
                c, "/api/v1/targets/chat/runs", {"kind": "load", "metadata": {"token": token}}
            )
        )[0] == 401
        assert (await post(c, "/api/v1/flagger/gate", "{bad json"))[0] == 401

    run(view, go)
    view.index.flush()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_auth_off_needs_no_header(view: FakeView) -> None:
    make_reported_run(view.runs_dir, "chat-rollout-7")

    async def go(c: TestClient) -> None:
        for path in ROUTES:
            assert (await c.get(path)).status == 200, path

    run(view, go)


def test_a_slow_index_read_does_not_block_the_loop(view: FakeView) -> None:
    entered, release = threading.Event(), threading.Event()
    real_query = view.index.query

    def slow_query(**kw: Any) -> list[RunRow]:
        entered.set()
        release.wait(5)
        return real_query(**kw)

    view.index.query = slow_query  # type: ignore[method-assign]

    async def go(c: TestClient) -> None:
        slow = asyncio.ensure_future(c.get("/api/v1/runs"))
        assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 5)
        start = time.monotonic()
        assert (await c.get("/healthz")).status == 200
        assert (await c.get("/api/v1/verdict?target=chat")).status == 200
        elapsed = time.monotonic() - start
        assert not slow.done()
        release.set()
        assert (await slow).status == 200
        assert elapsed < 1.0

    run(view, go)


def test_the_http_layer_imports_no_cli_locust_or_gevent() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import probes.serve.http, probes.serve.index, probes.serve.metrics, probes.serve.verdict\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('click', 'locust', 'gevent')\n"
        "       or m.startswith('probes.cli')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "serve"


def test_deploy_manifests_use_the_routes_as_they_answer() -> None:
    """The Argo and Flagger manifests point at these routes with the codes they answer."""
    import tomllib

    yaml = pytest.importorskip("yaml")
    docs = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "workers.yaml":  # the Locust workers' Deployment and Service
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"]] = doc
    assert {
        "ConfigMap",
        "Deployment",
        "PersistentVolumeClaim",
        "Service",
        "ServiceMonitor",
        "AnalysisTemplate",
        "Canary",
        "Secret",
    } <= set(docs)
    assert docs["Deployment"]["spec"]["replicas"] == 1
    config = tomllib.loads(docs["ConfigMap"]["data"]["serve.toml"])
    assert config["serve"]["auth_token_env"] and config["targets"][0]["flagger"] == ["prod/chat"]
    metric = docs["AnalysisTemplate"]["spec"]["metrics"][0]
    assert metric["successCondition"] == 'result == "pass"'
    assert metric["failureCondition"] == 'result == "fail"'
    assert metric["inconclusiveLimit"] > 0
    web_provider = metric["provider"]["web"]
    assert (
        web_provider["jsonPath"] == "{$.verdict}"
        and "/api/v1/verdict?target=" in web_provider["url"]
    )
    hooks = {h["type"]: h["url"] for h in docs["Canary"]["spec"]["analysis"]["webhooks"]}
    assert hooks["confirm-promotion"].endswith("/api/v1/flagger/gate")
    assert hooks["rollback"].endswith("/api/v1/flagger/rollback")
    assert hooks["event"].endswith("/api/v1/flagger/event")
    endpoint = docs["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics" and endpoint["authorization"]["type"] == "Bearer"
