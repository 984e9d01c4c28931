"""Workload API client: error mapping, retries, pagination — against a tiny server on 127.0.0.1.

The simulator cannot be told to fail with a 5xx and then recover, so these cases use a
small scripted aiohttp server; the simulator-backed tests live in test_observe_api.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from probes.errors import TargetError
from probes.workload import (
    RejectedError,
    Retry,
    WorkloadClient,
    artifact_label,
    normalize_api_base,
    parse_time,
)

TOKEN = "s3cret-token-value"


class Server:
    """An aiohttp app in a background thread; ``routes`` maps (method, path) to a script of
    (status, json) answers (the last one repeats); every request is logged."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.log: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        key = (request.method, request.path)
        self.log.append((request.method, request.path, dict(request.query), dict(request.headers)))
        script = self.routes.get(key)
        if not script:
            return web.json_response({"detail": "no route"}, status=404)
        status, body = script.pop(0) if len(script) > 1 else script[0]
        if callable(body):
            body = body(request)
        return web.json_response(body, status=status)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, method: str, path: str) -> int:
        return sum(1 for m, p, _, _ in self.log if (m, p) == (method, path))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def client(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkloadClient]:
    monkeypatch.setenv("TEST_WL_TOKEN", TOKEN)
    sleeps: list[float] = []
    with WorkloadClient(
        server.url, token_env="TEST_WL_TOKEN", retry=Retry(attempts=4), sleep=sleeps.append
    ) as c:
        c.sleeps = sleeps  # type: ignore[attr-defined]
        yield c


WL_PATH = "/api/v2/workloads/wl-1"


def test_get_workload_sends_bearer_and_parses(server, client):
    server.routes[("GET", WL_PATH)] = [
        (
            200,
            {
                "id": "wl-1",
                "status": "running",
                "protonId": "pr-1",
                "artifactId": "art-1",
                "endpoint": "/api/v2/endpoints/workloads/wl-1/",
                "artifact": {"id": "art-1", "name": "agent", "version": 3},
                "replacement": {"status": "staged", "candidateProtonIds": ["pr-2"]},
            },
        )
    ]
    wl = client.get_workload("wl-1")
    assert (wl.id, wl.status, wl.proton_id, wl.replacement_status) == (
        "wl-1",
        "running",
        "pr-1",
        "staged",
    )
    assert wl.artifact is not None and wl.artifact.label == "agent:3"
    assert client.invoke_url(wl) == f"{server.url}/api/v2/endpoints/workloads/wl-1/"
    headers = server.log[-1][3]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(client)


@pytest.mark.parametrize("status", [401, 403])
def test_unauthorized_names_the_variable_never_the_token(server, client, status):
    server.routes[("GET", WL_PATH)] = [(status, {"message": "Invalid API key"})]
    with pytest.raises(TargetError) as err:
        client.get_workload("wl-1")
    text = str(err.value)
    assert text.startswith("unauthorized: check the token in $TEST_WL_TOKEN")
    assert "Invalid API key" in text and TOKEN not in text
    assert err.value.exit_code == 3 and server.hits("GET", WL_PATH) == 1  # not retried


def test_unset_token_is_said(server, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    server.routes[("GET", WL_PATH)] = [(401, {"message": "Invalid API key"})]
    with WorkloadClient(server.url, token_env="NO_SUCH_TOKEN_VAR") as c:
        with pytest.raises(TargetError, match=r"\$NO_SUCH_TOKEN_VAR is not set"):
            c.get_workload("wl-1")
        assert "Authorization" not in server.log[-1][3]


def test_not_found_names_the_id(server, client):
    with pytest.raises(TargetError, match="workload 'wl-1' not found"):
        client.get_workload("wl-1")
    with pytest.raises(TargetError, match="artifact 'art-9' not found"):
        client.get_artifact("art-9")


def test_no_active_replacement_is_none(server, client):
    path = WL_PATH + "/replacement"
    server.routes[("GET", path)] = [
        (404, {"detail": "There is no active replacement for this workload."}),
        (200, {"id": "rep-1", "status": "promoting", "switchedAt": "2026-07-01T12:00:00Z"}),
    ]
    assert client.get_replacement("wl-1") is None
    rep = client.get_replacement("wl-1")
    assert rep is not None and rep.status == "promoting"
    assert rep.switched_ts == parse_time("2026-07-01T12:00:00+00:00") == 1782907200.0


@pytest.mark.parametrize(
    ("status", "body", "detail"),
    [
        (422, {"detail": "There is already a replacement in progress."}, "already a replacement"),
        (409, {"detail": "A replacement is already in progress"}, "already in progress"),
        (
            422,
            {"detail": [{"loc": ["body", "artifactId"], "msg": "field required"}]},
            "body.artifactId: field required",
        ),
        (400, {"detail": "Artifact status mismatch: draft vs locked"}, "status mismatch"),
    ],
)
def test_refusals_carry_the_platform_detail(server, client, status, body, detail):
    path = WL_PATH + "/replacement"
    server.routes[("POST", path)] = [(status, body)]
    with pytest.raises(RejectedError) as err:
        client.start_replacement("wl-1", "art-2", warmup_minutes=1, keep_old_minutes=2)
    assert detail in err.value.detail and detail in str(err.value)
    assert err.value.status == status and server.hits("POST", path) == 1


def test_start_replacement_body(server, client):
    path = WL_PATH + "/replacement"
    server.routes[("POST", path)] = [
        (202, lambda r: {"id": "rep-1", "status": "submitted", "candidateArtifactId": "art-2"})
    ]
    rep = client.start_replacement("wl-1", "art-2", warmup_minutes=3, keep_old_minutes=4)
    assert (rep.id, rep.status, rep.candidate_artifact_id) == ("rep-1", "submitted", "art-2")


def test_5xx_then_success_is_retried_with_backoff(server, client):
    server.routes[("GET", WL_PATH)] = [
        (503, {"detail": "busy"}),
        (502, {"detail": "busy"}),
        (200, {"id": "wl-1", "status": "running"}),
    ]
    assert client.get_workload("wl-1").status == "running"
    assert server.hits("GET", WL_PATH) == 3
    assert client.sleeps == [0.2, 0.4]


def test_5xx_forever_gives_up_after_bounded_tries(server, client):
    server.routes[("GET", WL_PATH)] = [(500, {"detail": "boom"})]
    with pytest.raises(TargetError, match=r"answered 500 \(gave up after 4 tries"):
        client.get_workload("wl-1")
    assert server.hits("GET", WL_PATH) == 4 and client.sleeps == [0.2, 0.4, 0.8]


def test_retry_budget_bounds_total_time(server, monkeypatch):
    server.routes[("GET", WL_PATH)] = [(500, {"detail": "boom"})]
    retry = Retry(attempts=50, base_s=1.0, factor=2.0, max_delay_s=10.0, budget_s=3.5)
    sleeps: list[float] = []
    with (
        WorkloadClient(server.url, retry=retry, sleep=sleeps.append) as c,
        pytest.raises(TargetError),
    ):
        c.get_workload("wl-1")
    assert sleeps == [1.0, 2.0]  # the next delay (4 s) would pass the 3.5 s budget


def test_post_is_not_retried_on_5xx(server, client):
    path = WL_PATH + "/replacement"
    server.routes[("POST", path)] = [(503, {"detail": "busy"})]
    with pytest.raises(TargetError, match="answered 503"):
        client.start_replacement("wl-1", "art-2")
    assert server.hits("POST", path) == 1


def test_connect_error_is_retried_then_reported():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    with WorkloadClient(
        f"http://127.0.0.1:{port}", retry=Retry(attempts=3), sleep=sleeps.append
    ) as c:
        with pytest.raises(TargetError, match=r"cannot connect to http://127\.0\.0\.1:\d+/api/v2"):
            c.get_workload("wl-1")
        with pytest.raises(TargetError, match="cannot connect"):
            c.start_replacement("wl-1", "art-2")  # nothing was sent: safe to retry a POST too
    assert sleeps == [0.2, 0.4, 0.2, 0.4]


def test_pagination_follows_next(server, client):
    items = [{"id": f"art-{i}", "name": "agent", "version": i} for i in range(250)]

    def page(request):
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        chunk = items[offset : offset + limit]
        more = offset + limit < len(items)
        return {
            "totalCount": len(items),
            "count": len(chunk),
            "next": f"{request.url}&more" if more else None,
            "previous": None,
            "data": chunk,
        }

    server.routes[("GET", "/api/v2/artifacts")] = [(200, page)]
    result = client.list_artifacts(status="locked")
    assert [a.id for a in result] == [a["id"] for a in items]
    queries = [q for m, p, q, _ in server.log if p == "/api/v2/artifacts"]
    assert [(q["offset"], q["limit"], q["status"]) for q in queries] == [
        ("0", "100", "locked"),
        ("100", "100", "locked"),
        ("200", "100", "locked"),
    ]


def test_history_limit_and_stats(server, client):
    history = [{"id": f"rep-{i}", "status": "completed"} for i in range(5)]
    server.routes[("GET", WL_PATH + "/history")] = [
        (200, {"data": history, "next": None, "totalCount": 5})
    ]
    assert [r.id for r in client.history("wl-1", limit=2)] == ["rep-0", "rep-1"]
    server.routes[("GET", WL_PATH + "/stats")] = [
        (200, lambda r: {"period": {}, "metrics": {"totalRequests": 7, "q": dict(r.query)}})
    ]
    metrics = client.stats("wl-1", proton_id="pr-2")
    assert metrics == {"totalRequests": 7, "q": {"protonId": "pr-2"}}


def test_labels_and_bases():
    assert artifact_label("agent", 3) == "agent:3"
    assert artifact_label("agent", None) == "agent:draft"
    assert normalize_api_base("http://127.0.0.1:9/") == "http://127.0.0.1:9/api/v2"
    assert normalize_api_base("https://x.example/api/v2/") == "https://x.example/api/v2"
    assert parse_time(None) is None and parse_time("garbage") is None
