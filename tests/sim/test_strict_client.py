"""The simulator driven by a minimal third-party-style client: a trailing slash on every path
(as ``wapi_mcp``'s client and the Terraform provider send), paging by following ``next``
under a filter (as the provider does), and every object decoded strictly into typed records:
a missing required field, an unknown field or a wrong type fails the decode.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from probes.sim import Simulator
from tests.sim.conftest import TOKEN, make_sim
from tests.sim.test_control import draft_body

# ---- the records, as a strict client declares them ----------------------------------------


@dataclass(frozen=True)
class User:
    id: str
    username: str | None = None
    fullName: str | None = None
    email: str | None = None
    userhash: str | None = None


@dataclass(frozen=True)
class ArtifactInfo:
    id: str
    name: str | None = None
    status: Literal["draft", "locked"] | None = None
    type: Literal["service", "nim"] | None = None
    version: int | None = None
    artifactRepositoryId: str | None = None


@dataclass(frozen=True)
class Config:
    warmupDurationMinutes: int = 0
    keepOldVersionMinutes: int = 0


ReplacementStatus = Literal[
    "unknown",
    "submitted",
    "initializing",
    "staged",
    "promoting",
    "canceling",
    "finalizing",
    "completed",
    "errored",
]


@dataclass(frozen=True)
class WorkloadReplacement:
    id: str
    workloadId: str
    candidateArtifactId: str
    candidateProtonIds: list[str]
    status: ReplacementStatus
    strategy: Literal["rolling"]
    config: Config
    runtime: dict[str, Any]
    message: str | None


@dataclass(frozen=True)
class RequestStats:
    totalRequests: int
    errorRate: float
    responseTime: int
    concurrentRequests: int
    lastRequestAt: str | None


@dataclass(frozen=True)
class Workload:
    id: str
    name: str
    createdAt: str
    updatedAt: str
    description: str
    importance: Literal["critical", "high", "moderate", "low"]
    status: str
    type: Literal["service", "nim"]
    artifactId: str | None
    artifact: ArtifactInfo | None
    protonId: str | None
    endpoint: str | None
    runtime: dict[str, Any]
    replacement: WorkloadReplacement | None
    lastResponse: str | None
    statusDetails: dict[str, Any] | None
    owners: list[User]
    creator: User | None
    permissions: list[str]
    tags: list[dict[str, str]]
    requestStats: RequestStats | None = None


@dataclass(frozen=True)
class Artifact:
    id: str
    name: str
    createdAt: str
    updatedAt: str
    spec: dict[str, Any]
    artifactRepositoryId: str | None
    description: str
    type: Literal["service", "nim"]
    status: Literal["draft", "locked"]
    version: int | None
    creator: User | None
    tags: list[dict[str, str]]
    permissions: list[str]


@dataclass(frozen=True)
class LogTail:
    logTail: list[str] | None


@dataclass(frozen=True)
class Proton:
    id: str
    name: str
    createdAt: str
    updatedAt: str
    status: str
    artifactId: str
    workloadId: str | None
    role: Literal["active", "candidate"] | None
    statusDetails: LogTail
    runtime: dict[str, Any]
    endpoint: str | None
    runningSince: str | None
    creator: User | None


@dataclass(frozen=True)
class Replacement:
    id: str
    name: str
    createdAt: str
    updatedAt: str
    userId: str
    tenantId: str
    workloadId: str
    candidateArtifactId: str
    candidateProtonIds: list[str]
    previousProtonIds: list[str] | None
    strategy: Literal["rolling"]
    status: ReplacementStatus
    config: Config
    runtime: dict[str, Any]
    message: str | None
    switchedAt: str | None
    deletedAt: str | None
    isDeleted: bool
    kind: Literal["replacement", "settings", "promote"]  # the simulator's own
    outcome: Literal["completed", "errored", "canceled"] | None = None  # ours, in history


@dataclass(frozen=True)
class Metrics:
    totalRequests: int
    serverErrors: int
    userErrors: int
    slowRequests: int
    responseTime: int
    requestsPerMinute: int
    concurrentRequests: int
    serverErrorRate: float
    userErrorRate: float
    totalErrorRate: float


@dataclass(frozen=True)
class Period:
    start: str | None
    end: str | None


@dataclass(frozen=True)
class Stats:
    metrics: Metrics
    period: Period | None


@dataclass(frozen=True)
class Event:
    id: str
    workloadId: str
    timestamp: str
    eventType: str
    actorId: str | None
    details: dict[str, Any] | None


# ---- a strict decoder ---------------------------------------------------------------------


class DecodeError(AssertionError):
    pass


def decode(kind: Any, value: Any, where: str = "$") -> Any:
    """``value`` as ``kind`` (a dataclass, builtin, list, dict, Literal or union), strictly."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return _decode_record(kind, value, where)
    if kind is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise DecodeError(f"{where}: {value!r} not in {typing.get_args(kind)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(kind):
            try:
                return decode(option, value, where)
            except DecodeError as exc:
                errors.append(str(exc))
        raise DecodeError(f"{where}: no option fits: {errors}")
    if kind is type(None):
        if value is not None:
            raise DecodeError(f"{where}: expected null, got {value!r}")
        return None
    if origin is list:
        if not isinstance(value, list):
            raise DecodeError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(kind)
        return [decode(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise DecodeError(f"{where}: expected an object, got {value!r}")
        _, item = typing.get_args(kind)
        return {k: decode(item, v, f"{where}.{k}") for k, v in value.items()}
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise DecodeError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _decode_record(kind: Any, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: expected an object for {kind.__name__}, got {value!r}")
    hints = typing.get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise DecodeError(f"{where}: unknown fields {unknown} for {kind.__name__}")
    args = {}
    for name, f in fields.items():
        if name not in value:
            if f.default is dataclasses.MISSING:
                raise DecodeError(f"{where}: {kind.__name__} misses required {name!r}")
            continue
        args[name] = decode(hints[name], value[name], f"{where}.{name}")
    return kind(**args)


# ---- the client ---------------------------------------------------------------------------


class StrictClient:
    """Trailing slash on every path, pages by ``next``, strict records."""

    def __init__(self, api_url: str, token: str) -> None:
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10)
        self.api = api_url.rstrip("/")
        self.urls: list[str] = []

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def slashed(url: str) -> str:
        parts = urlsplit(url)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        return urlunsplit(parts._replace(path=path))

    def call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        url = self.slashed(url if "://" in url else f"{self.api}/{url.strip('/')}")
        response = self.http.request(method, url, **kw)
        self.urls.append(str(response.request.url))
        return response

    def one(self, kind: Any, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return decode(kind, r.json())

    def all(self, kind: Any, path: str, params: dict[str, Any]) -> list[Any]:
        """Every item of a list, following ``next`` (never rebuilding the query)."""
        items: list[Any] = []
        r = self.call("GET", path, params=params)
        for _ in range(1000):
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) == {"totalCount", "count", "next", "previous", "data"}
            assert body["count"] == len(body["data"])
            items += [
                decode(kind, d, f"{path}[{len(items) + i}]") for i, d in enumerate(body["data"])
            ]
            if body["next"] is None:
                assert len(items) == body["totalCount"]
                return items
            r = self.call("GET", body["next"])
        raise AssertionError("the list never ended")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with make_sim(scenario="healthy") as s:
        yield s


@pytest.fixture()
def client(sim: Simulator) -> Iterator[StrictClient]:
    c = StrictClient(sim.api_url, TOKEN)
    yield c
    c.close()


def wait(fn: Any, timeout: float = 20.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met")


def test_decoder_is_strict() -> None:
    good = {"id": "u1", "username": None}
    assert decode(User, good) == User(id="u1", username=None)
    for bad in ({"username": "x"}, {"id": "u1", "nick": "x"}, {"id": 1}, "sim-user"):
        with pytest.raises(DecodeError):
            decode(User, bad)
    with pytest.raises(DecodeError):
        decode(Metrics, {**{f.name: 0 for f in dataclasses.fields(Metrics)}, "responseTime": 1.5})


def test_strict_client_drives_the_platform(sim: Simulator, client: StrictClient) -> None:
    # three moderate workloads among others; page through them one by one under the filter
    made = []
    for i in range(3):
        art = client.one(Artifact, "POST", "artifacts", 201, json=draft_body(f"strict-{i}"))
        body = {"name": f"strict-{i}", "artifactId": art.id, "importance": "moderate"}
        made.append(client.one(Workload, "POST", "workloads", 201, json=body).id)
    for wid in made:
        wait(lambda wid=wid: client.one(Workload, "GET", f"workloads/{wid}").status == "running")
    moderate = client.all(Workload, "workloads", {"importance": "moderate", "limit": 1})
    assert sorted(w.id for w in moderate) == sorted(made)
    assert all(w.importance == "moderate" for w in moderate)
    picked = client.all(
        Workload, "workloads", {"ids": made[:2], "limit": 1, "serviceStats": "true"}
    )
    assert sorted(w.id for w in picked) == sorted(made[:2])
    assert all(w.requestStats is not None for w in picked)
    everything = client.all(Workload, "workloads", {"limit": 2})
    assert {sim.workload_id, *made} <= {w.id for w in everything}
    drafts = client.all(Artifact, "artifacts", {"status": "draft", "limit": 1})
    assert len(drafts) >= 3 and all(a.status == "draft" for a in drafts)

    # a replacement (a draft may replace itself), followed to its end, then its traces
    wid = made[0]
    own = client.one(Workload, "GET", f"workloads/{wid}").artifactId
    started = client.one(
        Replacement, "POST", f"workloads/{wid}/replacement", 202, json={"artifactId": own}
    )
    seen = [started.status]

    def over() -> bool:
        r = client.call("GET", f"workloads/{wid}/replacement")
        if r.status_code == 404:
            return True
        rep = decode(Replacement, r.json())
        if rep.status != seen[-1]:
            seen.append(rep.status)
        decode(Workload, client.call("GET", f"workloads/{wid}").json())
        return False

    wait(over)
    assert seen[0] == "submitted" and "promoting" in seen
    history = client.all(Replacement, f"workloads/{wid}/history", {"limit": 1})
    assert history[0].id == started.id and history[0].outcome == "completed"
    protons = client.all(Proton, f"workloads/{wid}/protons", {"limit": 1})
    assert [p.role for p in protons] == ["active"]
    stats = client.one(Stats, "GET", f"workloads/{wid}/stats")
    assert stats.metrics.totalRequests == 0
    events = client.all(Event, f"workloads/{wid}/events", {"limit": 3})
    assert len(events) > 3 and any(e.eventType == "replacement.completed" for e in events)

    # promote, cancel: their history records decode as well
    client.one(Workload, "POST", f"workloads/{wid}/promote", 202)
    runtime = {"containerGroups": [{"name": "default", "replicaCount": 1}]}
    client.one(Replacement, "PATCH", f"workloads/{wid}/settings", 202, json={"runtime": runtime})
    canceled = client.one(Replacement, "DELETE", f"workloads/{wid}/replacement", 202)
    assert canceled.status == "canceling"
    wait(lambda: client.call("GET", f"workloads/{wid}/replacement").status_code == 404)
    history = client.all(Replacement, f"workloads/{wid}/history", {"limit": 2})
    assert [(h.kind, h.outcome) for h in history[:3]] == [
        ("settings", "canceled"),
        ("promote", "completed"),
        ("replacement", "completed"),
    ]
    assert history[0].status == "canceling"

    # every URL the client asked for had a trailing slash, and every page came from `next`
    assert client.urls and all(urlsplit(u).path.endswith("/") for u in client.urls)
