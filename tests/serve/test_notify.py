"""Notifications: the ``[[notify]]`` table, and delivery to a real webhook server on 127.0.0.1
(retries with backoff, give-ups, a dead webhook that must not stall anything)."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from probes.errors import ConfigError
from probes.serve.notify import (
    EVENTS,
    Notifier,
    NotifySettings,
    backoff,
    message,
    parse_notify,
    retryable,
    webhook_urls,
)


class Webhook:
    """A webhook receiver: answers ``statuses`` in order (the last one forever); keeps bodies."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.lock:
                    status = hook.statuses.pop(0) if len(hook.statuses) > 1 else hook.statuses[0]
                    hook.bodies.append(body)
                    hook.answers.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b, s in zip(self.bodies, self.answers, strict=True) if s == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Any]:
    hooks: list[Webhook] = []

    def start(statuses: list[int]) -> Webhook:
        hooks.append(Webhook(statuses))
        return hooks[-1]

    yield start
    for hook in hooks:
        hook.close()


class Records:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str | None, str | None, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, target: str | None, run_id: str | None, status: str,
                 detail: str) -> None:  # fmt: skip
        with self.lock:
            self.rows.append((kind, target, run_id, status, detail))


DETAILS: dict[str, dict[str, Any]] = {
    "rollout_opened": {"from_version": "v1", "to_version": "v2"},
    "rollout_closed": {"outcome": "completed", "verdict": "pass"},
    "verdict_fail": {"reason": "candidate.error_rate 0.05 >= 0.01"},
    "run_failed": {"schedule": "nightly", "reason": "locust exited 1"},
    "run_missed": {"schedule": "nightly", "scheduled_at": "2026-12-02T02:00:00Z"},
    "regression": {"series": "max_rps_within_slo", "change": -0.12},
    "recording_failed": {"step": "canary segment", "reason": "No space left on device"},
    "recording_recovered": {"rows_dropped": 0},
}


def channel(name: str = "oncall", **kw: Any) -> NotifySettings:
    return NotifySettings(name=name, url_env="HOOK", **kw)


def test_each_event_kind_arrives_once_with_retries(webhook: Any) -> None:
    hook = webhook([500, 500, 200])  # fails twice, then answers 200
    records = Records()
    notifier = Notifier([channel()], {"oncall": hook.url}, records, backoff_s=0.01)
    try:
        for kind in EVENTS:
            assert notifier.notify(kind, "chat", f"run-{kind}", DETAILS[kind]) == 1
        assert notifier.flush(timeout=20)
    finally:
        notifier.close()
    delivered = hook.delivered()
    assert [b["event"] for b in delivered] == list(EVENTS)  # each kind once, in order
    assert len(hook.bodies) == len(EVENTS) + 2 and hook.answers[:3] == [500, 500, 200]
    assert [b["event"] for b in hook.bodies[:3]] == ["rollout_opened"] * 3  # the retries
    for body in delivered:
        assert body["target"] == "chat" and body["run_id"] == f"run-{body['event']}"
        assert body["source"] == "proton-probe" and body["at"].endswith("Z")
        assert isinstance(body["text"], str) and "chat" in body["text"]
        assert body["details"] == DETAILS[body["event"]]
    assert delivered[0]["text"] == "Rollout on chat: v1 → v2 captured (run run-rollout_opened)"
    by_kind = {b["event"]: b["text"] for b in delivered}
    assert "-12.0%" in by_kind["regression"]
    assert [(r[0], r[3]) for r in records.rows] == [(k, "sent") for k in EVENTS]
    assert records.rows[0][4] == "oncall: HTTP 200, attempt 3"
    assert records.rows[1][4] == "oncall: HTTP 200, attempt 1"


def test_gives_up_after_max_attempts_and_never_retries_a_4xx(webhook: Any) -> None:
    down, wrong = webhook([503]), webhook([404])
    records = Records()
    settings = [channel("down", max_attempts=3), channel("wrong", max_attempts=3)]
    urls = {"down": down.url, "wrong": wrong.url}
    notifier = Notifier(settings, urls, records, backoff_s=0.01)
    try:
        notifier.notify("verdict_fail", "chat", "r1", DETAILS["verdict_fail"])
        assert notifier.flush(timeout=20)
    finally:
        notifier.close()
    assert len(down.bodies) == 3 and len(wrong.bodies) == 1
    assert sorted(r[3:] for r in records.rows) == [
        ("failed", "down: HTTP 503 after 3 attempt(s)"),
        ("failed", "wrong: HTTP 404 after 1 attempt(s)"),
    ]


def test_only_subscribed_events_are_sent(webhook: Any) -> None:
    hook = webhook([200])
    notifier = Notifier([channel(events=("verdict_fail",))], {"oncall": hook.url}, Records())
    try:
        assert notifier.notify("rollout_opened", "chat", "r1") == 0
        assert notifier.notify("verdict_fail", "chat", "r2", {"reason": "p99"}) == 1
        assert notifier.flush(timeout=10)
    finally:
        notifier.close()
    assert [b["event"] for b in hook.bodies] == ["verdict_fail"]
    with pytest.raises(ValueError, match="unknown notification kind"):
        notifier.notify("nope", None, None)


def test_a_dead_webhook_never_stalls_the_caller_nor_another_webhook(webhook: Any) -> None:
    """A webhook that accepts connections and never answers: notify() stays instant, its
    bounded queue drops the oldest (counted, recorded), the healthy webhook gets everything,
    and close() returns promptly."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections complete in the backlog; nothing is ever read or answered
    healthy = webhook([200])
    records = Records()
    settings = [
        channel("dead", timeout_s=0.5, max_attempts=2),
        channel("ok", events=("verdict_fail",)),
    ]
    urls = {"dead": f"http://127.0.0.1:{silent.getsockname()[1]}/", "ok": healthy.url}
    notifier = Notifier(settings, urls, records, queue_size=5, backoff_s=0.01)
    try:
        started = time.monotonic()
        for i in range(50):
            notifier.notify("regression", "chat", f"r{i}", DETAILS["regression"])
        took = time.monotonic() - started
        assert took < 0.5, took
        assert 40 <= notifier.dropped <= 45  # 5 queued, at most a few taken by the worker
        for i in range(3):  # the healthy webhook is not held up by the dead one
            assert notifier.notify("verdict_fail", "chat", f"v{i}", DETAILS["verdict_fail"]) == 2
        ok = next(c for c in notifier.channels if c.settings.name == "ok")
        with ok._cond:
            assert ok._cond.wait_for(ok.idle, timeout=20)
        assert [b["run_id"] for b in healthy.bodies] == ["v0", "v1", "v2"]
        dead = next(c for c in notifier.channels if c.settings.name == "dead")
        assert dead.thread is not None and dead.thread.is_alive() and dead._busy
        with dead._cond:  # the first attempt times out; then the drops are recorded
            assert dead._cond.wait_for(lambda: not dead._dropped_unrecorded, timeout=20)
        drops = [r for r in records.rows if r[3] == "dropped"]
        dropped_ids = [int(r[2][1:]) for r in drops]
        assert len(drops) == notifier.dropped and dropped_ids[0] in (0, 1)  # the oldest first
        assert dropped_ids == sorted(dropped_ids)
        assert drops[-1][4].startswith("dead: queue full (5);")
    finally:
        started = time.monotonic()
        notifier.close(timeout=3)
        closing = time.monotonic() - started
        silent.close()
    assert closing < 3.0
    assert all(not c.thread.is_alive() for c in notifier.channels if c.thread), closing


def test_backoff_and_retryable() -> None:
    assert [backoff(a, 1.0, 10.0) for a in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert retryable(None) and retryable(429) and retryable(500) and retryable(503)
    assert not retryable(400) and not retryable(404) and not retryable(301)


def test_message_of_every_kind() -> None:
    for kind in EVENTS:
        text = message(kind, "chat", "r1", DETAILS[kind])
        assert text and "\n" not in text
    assert message("run_missed", None, None, DETAILS["run_missed"]) == (
        "Schedule nightly missed its run due at 2026-12-02T02:00:00Z"
    )


@pytest.mark.parametrize(
    ("kind", "details", "text"),
    [
        # issue 21: the service's own details carry versions, reasons and times; no "?"
        ("rollout_opened",
         {"reason": "version v1 answering again (after v2)", "from_version": "v2",
          "to_version": "v1", "at": "2026-12-07T03:00:00Z"},
         "Rollout on chat: v2 → v1 captured at 2026-12-07T03:00:00Z"
         " (version v1 answering again (after v2)) (run r1)"),
        ("rollout_opened", {"reason": "flagger prod/chat Progressing"},
         "Rollout on chat: version change captured (flagger prod/chat Progressing) (run r1)"),
        ("rollout_closed", {"outcome": "completed", "verdict": "fail", "baseline": "v1",
                            "candidate": "v2", "reason": "error rate"},
         "Rollout on chat completed: v1 → v2, verdict fail (error rate) (run r1)"),
        ("run_failed", {"run_kind": "load", "schedule": None, "trigger": "api",
                        "result": "error", "failure": "locust exited 1"},
         "API-started load run on chat failed: locust exited 1 (run r1)"),
        ("run_failed", {"run_kind": "capacity", "schedule": "nightly", "trigger": "schedule",
                        "result": "fail", "failure": None},
         "Scheduled capacity run of nightly on chat failed: fail (run r1)"),
        ("run_missed", {"schedule": "nightly", "fire_at": "2026-12-02T02:00:00Z",
                        "reason": "deadline passed"},
         "Schedule nightly on chat missed its run due at 2026-12-02T02:00:00Z"
         " (deadline passed)"),
        ("recording_failed", {"step": "canary segment", "reason": "No space left on device",
                              "at": "2026-12-07T03:00:00Z"},
         "Recording on chat stopped at 2026-12-07T03:00:00Z: canary segment failed"
         " (No space left on device); retrying, rows held in memory"),
    ],
)  # fmt: skip
def test_messages_say_versions_reasons_times_and_who_started_a_run(
    kind: str, details: dict[str, Any], text: str
) -> None:
    got = message(kind, "chat", "r1", details)
    assert got == text
    assert "?" not in got


# -- config ---------------------------------------------------------------------------------


def test_parse_notify() -> None:
    assert parse_notify(None) == ()
    parsed = parse_notify(
        [
            {"name": "oncall", "url_env": "ONCALL_HOOK", "events": ["regression", "verdict_fail"]},
            {"name": "all", "url_env": "ALL_HOOK", "timeout_s": 2, "max_attempts": 3},
        ]
    )
    assert parsed == (
        NotifySettings("oncall", "ONCALL_HOOK", ("verdict_fail", "regression")),
        NotifySettings("all", "ALL_HOOK", EVENTS, 2.0, 3),
    )


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"name": "a", "url_env": "X"}, "notify:"),
        ([{"name": "a", "url_env": "X", "url": "http://x"}], "notify[0].url:"),
        ([{"name": "A b", "url_env": "X"}], "notify[0].name:"),
        ([{"name": "a"}], "notify[0].url_env:"),
        ([{"name": "a", "url_env": "https://hooks.example/x"}], "notify[0].url_env:"),
        ([{"name": "a", "url_env": "X", "events": []}], "notify[0].events:"),
        ([{"name": "a", "url_env": "X", "events": "regression"}], "notify[0].events:"),
        ([{"name": "a", "url_env": "X", "events": ["regression", "oops"]}], "notify[0].events[1]:"),
        ([{"name": "a", "url_env": "X", "timeout_s": True}], "notify[0].timeout_s:"),
        ([{"name": "a", "url_env": "X", "timeout_s": 0}], "notify[0].timeout_s:"),
        ([{"name": "a", "url_env": "X", "max_attempts": 0}], "notify[0].max_attempts:"),
        ([{"name": "a", "url_env": "X", "max_attempts": 2.5}], "notify[0].max_attempts:"),
        ([{"name": "a", "url_env": "X"}, {"name": "a", "url_env": "Y"}], "notify[1].name:"),
        (["oncall"], "notify[0]:"),
    ],
)
def test_parse_notify_names_the_key(table: Any, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_notify(table)
    assert str(err.value).startswith(key), str(err.value)


def test_webhook_urls_come_from_the_environment_and_are_never_shown(webhook: Any) -> None:
    token = secrets.token_hex(16)
    settings = parse_notify(
        [{"name": "a", "url_env": "HOOK_A"}, {"name": "b", "url_env": "HOOK_B"}]
    )
    with pytest.raises(ConfigError, match=r"^notify\[1\]\.url_env: environment variable HOOK_B"):
        webhook_urls(settings, {"HOOK_A": f"https://x/{token}"})
    with pytest.raises(ConfigError, match=r"^notify\[0\]\.url_env: HOOK_A must hold") as err:
        webhook_urls(settings, {"HOOK_A": f"ftp://x/{token}", "HOOK_B": "http://y/"})
    assert token not in str(err.value)
    hook = webhook([500, 200])
    urls = webhook_urls(
        settings, {"HOOK_A": f"{hook.url}?t={token}", "HOOK_B": "http://127.0.0.1:9/"}
    )
    records = Records()
    notifier = Notifier(settings, urls, records, backoff_s=0.01)
    try:
        notifier.notify("run_failed", "chat", "r1", DETAILS["run_failed"])
        assert notifier.flush(timeout=20)
    finally:
        notifier.close()
    assert {r[3] for r in records.rows} == {"sent", "failed"}
    assert all(token not in r[4] and "127.0.0.1" not in r[4] for r in records.rows), records.rows


def test_a_webhook_answering_garbage_is_a_failed_attempt_not_a_dead_channel() -> None:
    """A reply that is not HTTP (BadStatusLine) fails that attempt; later ones still go."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]

    def garbage() -> None:
        for _ in range(8):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"garbage\r\n\r\n")

    threading.Thread(target=garbage, daemon=True).start()
    records = Records()
    notifier = Notifier(
        [channel(max_attempts=1)], {"oncall": f"http://127.0.0.1:{port}/hook"}, records,
        backoff_s=0.01,
    )  # fmt: skip
    try:
        notifier.notify("run_failed", "chat", "r1")
        notifier.notify("run_failed", "chat", "r2")
        assert notifier.flush(10)
    finally:
        notifier.close()
        server.close()
    assert [r[3] for r in records.rows] == ["failed", "failed"], records.rows
