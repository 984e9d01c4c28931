"""The Locust glue fed synthetic request events: tagging, error classes, batching, wiring.

Imports Locust (and gevent): runs in its own pytest process (see the Makefile).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from geventhttpclient.header import Headers
from geventhttpclient.response import HTTPConnectionClosed
from geventhttpclient.useragent import RetriesExceeded
from locust import events as global_events
from locust.env import Environment
from locust.event import Events
from locust.rpc.protocol import Message

from probes.locustglue import glue
from probes.records import Sample, read_samples


class FakeResponse:
    """What FastHttpSession hands the request event: status_code, headers, content."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: bytes = b""):
        self.status_code = status
        self.headers = Headers(headers) if headers is not None else None
        self.content = body


def fire_kwargs(response: Any, exception: BaseException | None = None, **over: Any) -> dict:
    kwargs = {
        "request_type": "POST", "name": "/chat/completions", "response_time": 12.5,
        "response_length": len(getattr(response, "content", b"") or b""), "response": response,
        "exception": exception, "start_time": 1000.0, "context": {}, "url": "http://x/",
    }  # fmt: skip
    kwargs.update(over)
    return kwargs


CASES = [
    # (response, exception, status, error, version, tag_source)
    (FakeResponse(200, {"x-proton-version": "m:1"}), None, 200, None, "m:1", "header"),
    (FakeResponse(200, {}, b'{"version": "m:2"}'), None, 200, None, "m:2", "json"),
    (FakeResponse(503, {"X-Proton-Version": "m:2"}), RuntimeError("503"), 503, "http_5xx", "m:2",
     "header"),
    (FakeResponse(404, None, b"nope"), RuntimeError("404"), 404, "http_4xx", "unknown", "none"),
    # catch_response marked a 200 as failed: an error row, so failures agree with Locust's
    (FakeResponse(200, {"X-Version": "m:1"}), RuntimeError("bad body"), 200, "other", "m:1",
     "header"),
    (FakeResponse(0), ConnectionRefusedError(111, "refused"), 0, "connect", "unknown", "none"),
    (FakeResponse(0), RetriesExceeded("u", 1, original=TimeoutError()), 0, "timeout", "unknown",
     "none"),
    (FakeResponse(0), HTTPConnectionClosed("closed"), 0, "reset", "unknown", "none"),
    (None, ValueError("?"), 0, "other", "unknown", "none"),
]  # fmt: skip


@pytest.mark.parametrize(("response", "exc", "status", "error", "version", "source"), CASES)
def test_recorder_rows(response, exc, status, error, version, source) -> None:
    rows: list[Sample] = []
    glue.Recorder(rows.append, "w1").on_request(**fire_kwargs(response, exc))
    (raw,) = rows
    assert type(raw) is tuple  # a plain tuple: see Recorder.on_request
    row = Sample(*raw)
    assert (row.status, row.error, row.version, row.tag_source) == (status, error, version, source)
    assert (row.ts, row.intended_ts, row.latency_ms) == (1000.0, 1000.0, 12.5)
    assert (row.source, row.worker, row.method, row.name) == (
        "locust",
        "w1",
        "POST",
        "/chat/completions",
    )


def test_recorder_without_start_time_derives_it() -> None:
    rows: list[Sample] = []
    glue.Recorder(rows.append, "w").on_request(**fire_kwargs(FakeResponse(200), start_time=None))
    assert rows[0][0] == rows[0][1] > 0


def options(tmp_path: Path, **over: Any) -> argparse.Namespace:
    values = {f"probes_{s.replace('-', '_')}": kw.get("default") for s, _, kw in glue._OPTIONS}
    values.update(probes_runs_dir=str(tmp_path / "runs"), num_users=3, spawn_rate=1.0,
                  run_time=None, processes=None)  # fmt: skip
    values.update(over)
    return argparse.Namespace(**values)


def test_local_environment_records_every_event_and_counts_match(tmp_path: Path) -> None:
    env = Environment(events=Events(), parsed_options=options(tmp_path), host="http://127.0.0.1:9/")
    env.create_local_runner()
    state = glue.setup(env)
    env.events.test_start.fire(environment=env)
    assert state.store is not None and state.store.live is False  # no web UI: no live window
    state.store.live = True
    for i in range(250):
        version = "v1" if i % 5 else "v2"
        response = FakeResponse(200 if i % 10 else 500, {"X-Proton-Version": version})
        env.events.request.fire(**fire_kwargs(response, None if i % 10 else RuntimeError("500"),
                                              start_time=2000.0 + i))  # fmt: skip
    state.run.events.write("replacement", "promoting", replacement_id="r1")
    state.run.events.write("proton", "running", proton_id="p1", role="active",
                           detail={"version": "v1", "artifact_id": "a1"})  # fmt: skip
    payload = glue.versions_payload(state)
    assert payload["rollout"]["status"] == "promoting"
    assert [(r["version"], r["role"]) for r in payload["rows"]] == [
        ("v1", "active"), ("v2", ""), ("(rollout)", "promoting")]  # fmt: skip
    assert payload["samples"] == 250 == payload["locust_requests"]
    assert {v["version"]: v["requests"] for v in payload["window"]["versions"]} == {
        "v1": 8,
        "v2": 2,
    }
    env.events.quitting.fire(environment=env)
    run_dir = state.run.path
    frame = read_samples(run_dir)
    assert len(frame) == 250
    assert frame["version"].value_counts().to_dict() == {"v1": 200, "v2": 50}
    assert int(frame["error"].notna().sum()) == 25
    counts = json.loads((run_dir / "locust.json").read_text())
    assert counts == {"requests": 250, "failures": 25, "samples": 250, "runner": "LocalRunner"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "load" and manifest["locust"]["samples"] == 250
    assert manifest["target"]["url"] == "http://127.0.0.1:9/"


def test_quitting_stops_users_a_late_spawn_left_so_every_counted_request_is_on_disk(
    tmp_path: Path,
) -> None:
    import gevent

    env = Environment(events=Events(), parsed_options=options(tmp_path), host="http://127.0.0.1:9/")
    runner = env.create_local_runner()
    state = glue.setup(env)
    env.events.test_start.fire(environment=env)

    def user_loop() -> None:
        for i in range(100_000):  # bounded; killed long before
            env.events.request.fire(**fire_kwargs(FakeResponse(200), start_time=3000.0 + i))
            gevent.sleep(0.001)

    real_stop = runner.stop

    def stop_that_leaves_a_user() -> None:
        # what a shape tick that ran inside Locust's stop() leaves: a user spawned after
        # stop_users, still sending
        real_stop()
        runner.user_greenlets.spawn(user_loop)
        gevent.sleep(0.02)

    runner.stop = stop_that_leaves_a_user  # type: ignore[method-assign]
    env.events.quitting.fire(environment=env)
    gevent.sleep(0.05)  # a surviving user would send now, after the counts were written
    counts = json.loads((state.run.path / "locust.json").read_text())
    assert counts["requests"] == counts["samples"] == len(read_samples(state.run.path)) > 0
    assert env.stats.total.num_requests == counts["requests"]
    assert not runner.user_greenlets


def sample(i: int) -> Sample:
    return Sample(float(i), float(i), 1.5, "locust", "w", "GET", "/", 200, None, "v1", "header",
                  3, None)  # fmt: skip


def test_worker_buffer_rides_on_reports_and_sends_early_when_full() -> None:
    sent: list[list[Sample]] = []
    buffer = glue.WorkerBuffer(sent.append, batch_rows=3)
    for i in range(7):
        buffer.add(sample(i))
    assert [len(b) for b in sent] == [3, 3] and len(buffer.rows) == 1
    data: dict[str, Any] = {}
    buffer.on_report_to_master(client_id="c", data=data)
    assert data[glue.REPORT_KEY] == [sample(6)] and buffer.rows == [] and buffer.sent == 7


def test_master_store_takes_rows_after_the_wire(tmp_path: Path) -> None:
    rows = [sample(i) for i in range(5)]
    wire = Message.unserialize(Message("stats", {glue.REPORT_KEY: rows}, "n").serialize())
    writer = glue.ShardWriter(tmp_path, "locust-1", background=False)
    store = glue.Store(writer)
    store.add_rows(wire.data[glue.REPORT_KEY])
    writer.close()
    frame = read_samples(tmp_path)
    assert frame["ts"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert set(frame["source"]) == {"locust"} and set(frame["version"]) == {"v1"}
    assert store.received == 5 and len(store.recent) == 5


@pytest.mark.parametrize(
    ("text", "cls", "at", "expected"),
    [
        ("step:step=2,every=5", glue.StepShape, 6.0, (4, 3.0)),
        ("ramp:from=1,over=10", glue.RampShape, 5.0, (4, 3.0)),
        ("spike:peak=9,at=2,for=1", glue.SpikeShape, 2.5, (9, 9.0)),
        ("steady", glue.SteadyShape, 19.0, (6, 3.0)),
        ("steady", glue.SteadyShape, 20.0, None),
    ],
)
def test_shapes_from_options(tmp_path, text, cls, at, expected, monkeypatch) -> None:
    opts = options(tmp_path, probes_shape=text, num_users=6, spawn_rate=3.0, run_time=20)
    shape = glue.shape_from_options(opts)
    assert isinstance(shape, cls)
    monkeypatch.setattr(shape, "get_run_time", lambda: at)
    assert shape.tick() == expected
    assert glue.shape_from_options(options(tmp_path)) is None


def test_options_are_registered_on_locusts_parser() -> None:
    from locust.argument_parser import get_parser

    parsed = get_parser().parse_args(["--probes-method", "POST", "--probes-header", "A: b",
                                      "--probes-header", "C: d"])  # fmt: skip
    assert parsed.probes_method == "POST" and parsed.probes_header == ["A: b", "C: d"]
    assert glue.add_arguments in global_events.init_command_line_parser._handlers


def test_request_spec_from_options_keeps_the_token_out(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "s3cret")
    opts = options(tmp_path, probes_method="post", probes_path="/chat/completions",
                   probes_body='{"messages": []}', probes_token_env="MY_TOKEN")  # fmt: skip
    spec = glue.request_spec(opts, "http://127.0.0.1:1/api/v2/endpoints/workloads/w/")
    assert spec.url.endswith("/workloads/w/chat/completions") and spec.method == "POST"
    assert spec.request_headers()["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in json.dumps(spec.describe())
    with pytest.raises(glue.ConfigError, match="--host"):
        glue.request_spec(opts, None)


def test_headers_come_from_the_environment_and_users_are_callers(tmp_path, monkeypatch) -> None:
    from probes.locustglue import CALLER_KEY, HEADERS_ENV

    monkeypatch.setenv(HEADERS_ENV, json.dumps(["X-A: 1", "X-B: two words"]))
    spec = glue.request_spec(options(tmp_path, probes_header=["X-C: 3"]), "http://127.0.0.1:1/")
    assert dict(spec.headers) == {"X-C": "3", "X-A": "1", "X-B": "two words"}
    monkeypatch.setenv(HEADERS_ENV, "not json")
    with pytest.raises(glue.ConfigError, match=HEADERS_ENV):
        glue.request_spec(options(tmp_path), "http://127.0.0.1:1/")
    rows: list[Sample] = []
    recorder = glue.Recorder(rows.append, "proc")
    recorder.on_request(**fire_kwargs(FakeResponse(200), context={CALLER_KEY: "proc/u7"}))
    recorder.on_request(**fire_kwargs(FakeResponse(200)))
    assert [Sample(*r).worker for r in rows] == ["proc/u7", "proc"]


def test_a_worker_reports_its_rows_every_second_so_a_crash_loses_at_most_one(
    tmp_path: Path, monkeypatch
) -> None:
    import locust.runners as runners

    monkeypatch.setattr(runners, "WORKER_REPORT_INTERVAL", 3.0)  # Locust's default

    class Worker(runners.WorkerRunner):
        def __init__(self) -> None:  # no master to connect to, no greenlets
            pass

        def __del__(self) -> None:
            pass

    worker = Worker()
    env = Environment(events=Events(), parsed_options=options(tmp_path), host="http://127.0.0.1:9/")
    env.runner = worker
    glue.setup(env)
    # Locust's own reporter loop, as it runs on a worker: send the stats, sleep, again
    slept: list[float] = []

    class Done(Exception):
        pass

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            raise Done

    sends: list[dict[str, Any]] = []
    worker._send_stats = lambda: sends.append({})  # type: ignore[method-assign]
    monkeypatch.setattr(runners.gevent, "sleep", sleep)
    with pytest.raises(Done):
        worker.stats_reporter()
    assert slept == [1.0, 1.0] and len(sends) == 2


def test_a_shard_writer_under_gevent_leaves_the_process_priority_alone(tmp_path: Path) -> None:
    """Under Locust's monkey-patching a writer's timer "thread" is a greenlet on this thread:
    lowering its priority niced the whole process (and every process it started after)."""
    import os

    from probes.records import ShardWriter

    before = os.getpriority(os.PRIO_PROCESS, 0)
    writer = ShardWriter(tmp_path / "run", "locust", background=True)
    try:
        assert os.getpriority(os.PRIO_PROCESS, 0) == before
    finally:
        writer.close()
