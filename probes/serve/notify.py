"""Notifications: ``[[notify]]`` webhooks, sent off the probe loop, never stalling the service.

Config (``serve.toml``; ``parse_notify`` checks every key and names it)::

    [[notify]]
    name = "oncall"                      # [a-z0-9-]+, unique
    url_env = "PROBES_ONCALL_WEBHOOK"    # the environment variable holding the webhook URL
    events = ["rollout_closed", "verdict_fail", "run_failed", "run_missed", "regression"]
    timeout_s = 5                        # per attempt (default 5)
    max_attempts = 5                     # 1 try + retries (default 5)

``events`` is a subset of ``EVENTS`` (all of them when omitted). The URL is a secret (a Slack
incoming-webhook URL is a credential): it is read from the environment once, at start, and
never written to a log, a record or an error message.

Each webhook gets one POST of a JSON body per notification::

    {"text": "...", "event": "verdict_fail", "target": "chat", "run_id": "...",
     "at": "2026-12-02T05:00:00.000Z", "details": {...}, "source": "proton-probe"}

``text`` is a one-line summary, so a Slack (or Mattermost, Rocket.Chat, Teams-workflow)
incoming webhook shows it as it is; any other receiver reads the structured fields.

Delivery (``Notifier``): ``notify`` only appends to a bounded queue per webhook and returns;
each webhook has its own worker thread, so a dead or slow one delays nobody else. An attempt
that fails (connection error, timeout, HTTP 429 or 5xx) is retried with exponential backoff
(``backoff_s`` doubling up to ``max_backoff_s``) up to ``max_attempts``; any other 4xx is not
retried (the request itself is wrong). A full queue drops its *oldest* notification and counts
it. Every outcome is recorded through ``record(kind, target, run_id, status, detail)`` with
status ``sent``, ``failed`` or ``dropped`` (the service passes ``RunIndex.record_notification``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from probes.errors import ConfigError
from probes.run import iso

EVENTS = (
    "rollout_opened",
    "rollout_closed",
    "verdict_fail",
    "run_failed",
    "run_missed",
    "regression",
    "recording_failed",
    "recording_recovered",
)
KEYS = ("name", "url_env", "events", "timeout_s", "max_attempts")
NAME = re.compile(r"[a-z0-9-]+")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_ATTEMPTS = 5
MAX_ATTEMPTS = 20
QUEUE_SIZE = 1000

Record = Callable[[str, str | None, str | None, str, str], None]


@dataclass(frozen=True)
class NotifySettings:
    """One ``[[notify]]`` entry."""

    name: str
    url_env: str
    events: tuple[str, ...] = EVENTS
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


def _number(value: Any, key: str, *, integer: bool = False) -> float:
    ok_types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        want = "an integer" if integer else "a number"
        raise ConfigError(f"{key}: must be {want}, got {value!r}")
    return value


def _entry(raw: Any, place: str) -> NotifySettings:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{place}: must be a table ([[notify]]), got {type(raw).__name__}")
    for key in raw:
        if key not in KEYS:
            raise ConfigError(f"{place}.{key}: unknown key (known: {', '.join(KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"{place}.name: must be a name of [a-z0-9-]+, got {name!r}")
    url_env = raw.get("url_env")
    if not isinstance(url_env, str) or not ENV_NAME.fullmatch(url_env):
        raise ConfigError(
            f"{place}.url_env: must name the environment variable holding the webhook URL "
            f'(e.g. "PROBES_ONCALL_WEBHOOK"), got {url_env!r}'
        )
    events = raw.get("events", list(EVENTS))
    if not isinstance(events, list) or not events:
        raise ConfigError(f"{place}.events: must be a non-empty list of {', '.join(EVENTS)}")
    for i, event in enumerate(events):
        if event not in EVENTS:
            raise ConfigError(
                f"{place}.events[{i}]: unknown event {event!r} (known: {', '.join(EVENTS)})"
            )
    timeout = float(_number(raw.get("timeout_s", DEFAULT_TIMEOUT_S), f"{place}.timeout_s"))
    if not 0 < timeout <= 300:
        raise ConfigError(f"{place}.timeout_s: must be > 0 and <= 300 seconds, got {timeout!r}")
    attempts = int(
        _number(
            raw.get("max_attempts", DEFAULT_MAX_ATTEMPTS), f"{place}.max_attempts", integer=True
        )
    )
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise ConfigError(f"{place}.max_attempts: must be from 1 to {MAX_ATTEMPTS}, got {attempts}")
    ordered = tuple(e for e in EVENTS if e in events)
    return NotifySettings(name, url_env, ordered, timeout, attempts)


def parse_notify(table: Any, place: str = "notify") -> tuple[NotifySettings, ...]:
    """The ``[[notify]]`` array of tables (None: no webhook) into frozen settings.

    ConfigError naming the key at fault: ``notify[0].url_env: ...``.
    """
    if table is None:
        return ()
    if not isinstance(table, list):
        raise ConfigError(f"{place}: must be an array of tables ([[notify]]), got {table!r}")
    out = [_entry(raw, f"{place}[{i}]") for i, raw in enumerate(table)]
    seen: set[str] = set()
    for i, entry in enumerate(out):
        if entry.name in seen:
            raise ConfigError(f"{place}[{i}].name: {entry.name!r} is used twice")
        seen.add(entry.name)
    return tuple(out)


def webhook_urls(
    settings: Sequence[NotifySettings],
    environ: Mapping[str, str] | None = None,
    place: str = "notify",
) -> dict[str, str]:
    """name -> webhook URL, read from the environment; ConfigError naming ``url_env``.

    The message names the variable, never its value.
    """
    env = os.environ if environ is None else environ
    urls = {}
    for i, entry in enumerate(settings):
        url = env.get(entry.url_env, "")
        if not url:
            raise ConfigError(
                f"{place}[{i}].url_env: environment variable {entry.url_env} is not set or empty"
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{place}[{i}].url_env: {entry.url_env} must hold an http:// or https:// URL"
            )
        urls[entry.name] = url
    return urls


# -- the message --------------------------------------------------------------------------------


def _run(run_id: str | None) -> str:
    return f" (run {run_id})" if run_id else ""


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    """The first of ``keys`` with a value (the service and older callers name them apart)."""
    return next((d[k] for k in keys if d.get(k) not in (None, "")), None)


def _move(d: Mapping[str, Any]) -> str:
    """``v1 → v2``; never a ``?``: an unknown side is left out."""
    old = _first(d, "from_version", "baseline")
    new = _first(d, "to_version", "candidate")
    if old and new:
        return f"{old} → {new}"
    if new:
        return f"→ {new}"
    return f"from {old}" if old else "version change"


def _at(d: Mapping[str, Any]) -> str:
    at = _first(d, "at", "opened_at", "closed_at")
    return f" at {at}" if at else ""


def _why(d: Mapping[str, Any], *keys: str) -> str:
    why = _first(d, *keys)
    return f" ({why})" if why else ""


def _who(d: Mapping[str, Any], on: str) -> str:
    """Who started a run: a schedule, the API, or the CLI; its kind."""
    kind = d.get("run_kind") or "run"
    schedule, trigger = d.get("schedule"), d.get("trigger")
    if schedule:
        return f"Scheduled {kind} run of {schedule}{on}"
    if trigger == "api":
        return f"API-started {kind} run{on}"
    return f"{str(kind).capitalize()} run{on}" + (f" ({trigger})" if trigger else "")


def message(kind: str, target: str | None, run_id: str | None, details: Mapping[str, Any]) -> str:
    """The one-line ``text`` of a notification (Slack-compatible), from its details: the
    versions, the reason and the time where known; never a bare ``?``."""
    d = details
    where = target or "the service"
    on = f" on {target}" if target else ""
    if kind == "rollout_opened":
        return f"Rollout on {where}: {_move(d)} captured{_at(d)}{_why(d, 'reason')}{_run(run_id)}"
    if kind == "rollout_closed":
        verdict = d.get("verdict") or "no verdict"
        outcome = d.get("outcome") or "closed"
        return (
            f"Rollout on {where} {outcome}: {_move(d)}, verdict {verdict}{_at(d)}"
            f"{_why(d, 'reason')}{_run(run_id)}"
        )
    if kind == "verdict_fail":
        reason = d.get("reason") or "a check failed"
        return f"FAIL verdict on {where}: {_move(d)}: {reason}{_at(d)}{_run(run_id)}"
    if kind == "run_failed":
        reason = _first(d, "reason", "failure", "result") or "no reason given"
        return f"{_who(d, on)} failed: {reason}{_at(d)}{_run(run_id)}"
    if kind == "run_missed":
        at = _first(d, "scheduled_at", "fire_at")
        due = f" due at {at}" if at else ""
        return (
            f"Schedule {d.get('schedule') or 'unnamed'}{on} missed its run{due}{_why(d, 'reason')}"
        )
    if kind == "regression":
        change = d.get("change")
        pct = f" {100 * change:+.1f}%" if isinstance(change, int | float) else ""
        return f"Regression on {where}: {d.get('series') or 'a series'}{pct} from run {run_id}"
    if kind == "recording_failed":
        step = d.get("step") or "writing its runs"
        return (
            f"Recording on {where} stopped{_at(d)}: {step} failed"
            f"{_why(d, 'reason')}; retrying, rows held in memory"
        )
    if kind == "recording_recovered":
        dropped = d.get("rows_dropped")
        lost = f"; {dropped} rows lost" if dropped else ""
        return f"Recording on {where} works again{_at(d)}{lost}"
    raise ValueError(f"unknown notification kind {kind!r}")


def payload(
    kind: str,
    target: str | None,
    run_id: str | None,
    details: Mapping[str, Any],
    now: float,
    text: str | None = None,
) -> dict[str, Any]:
    """The JSON body of one webhook POST."""
    return {
        "text": text or message(kind, target, run_id, details),
        "event": kind,
        "target": target,
        "run_id": run_id,
        "at": iso(now),
        "details": dict(details),
        "source": "proton-probe",
    }


# -- delivery -----------------------------------------------------------------------------------


@dataclass
class _Item:
    kind: str
    target: str | None
    run_id: str | None
    body: bytes


def retryable(status: int | None) -> bool:
    """Whether a failed attempt is worth retrying (no answer, 429 or 5xx)."""
    return status is None or status == 429 or status >= 500


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (attempt 1 failed: ``base_s``)."""
    return min(max_s, base_s * 2 ** (attempt - 1))


@dataclass
class _Channel:
    """One webhook: its bounded queue and its worker thread."""

    settings: NotifySettings
    url: str
    record: Record
    queue_size: int
    backoff_s: float
    max_backoff_s: float
    items: collections.deque[_Item] = field(default_factory=collections.deque)
    dropped: int = 0
    _dropped_unrecorded: list[_Item] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _busy: bool = False
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._loop, name=f"notify-{self.settings.name}", daemon=True
        )
        self.thread.start()

    def put(self, item: _Item) -> None:
        with self._cond:
            if len(self.items) >= self.queue_size:
                self._dropped_unrecorded.append(self.items.popleft())
                self.dropped += 1
            self.items.append(item)
            self._cond.notify()

    def idle(self) -> bool:
        """Nothing queued, nothing in flight (call with ``_cond`` held)."""
        return not self.items and not self._busy and not self._dropped_unrecorded

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _next(self) -> tuple[_Item | None, list[_Item], int]:
        with self._cond:
            while not self.items and not self._dropped_unrecorded and not self._stop.is_set():
                self._cond.wait()
            dropped, self._dropped_unrecorded = self._dropped_unrecorded, []
            item = self.items.popleft() if self.items and not self._stop.is_set() else None
            self._busy = item is not None or bool(dropped)
            return item, dropped, self.dropped

    def _loop(self) -> None:
        while True:
            item, dropped, total = self._next()
            for old in dropped:
                self._record(old, "dropped", f"{self.settings.name}: queue full "
                             f"({self.queue_size}); {total} dropped so far")  # fmt: skip
            if item is not None:
                self._deliver(item)
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            if self._stop.is_set():
                return

    def _post(self, body: bytes) -> tuple[int | None, str]:
        """(HTTP status or None, what went wrong) of one attempt.

        urllib, not httpx: httpx logs every request's URL at INFO, and this URL is a secret.
        Only exception class names are kept: some messages quote the URL.
        """
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                return int(response.status), ""
        except urllib.error.HTTPError as exc:
            return int(exc.code), f"HTTP {exc.code}"
        except Exception as exc:  # URLError, timeouts, resets, a reply that is not HTTP
            reason = getattr(exc, "reason", None)
            return None, type(reason if isinstance(reason, BaseException) else exc).__name__

    def _deliver(self, item: _Item) -> None:
        name = self.settings.name
        last = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            status, last = self._post(item.body)
            if status is not None and 200 <= status < 300:
                self._record(item, "sent", f"{name}: HTTP {status}, attempt {attempt}")
                return
            last = last or f"HTTP {status}"
            if not retryable(status) or attempt == self.settings.max_attempts:
                break
            if self._stop.wait(backoff(attempt, self.backoff_s, self.max_backoff_s)):
                last += " (service stopping)"
                break
        self._record(item, "failed", f"{name}: {last} after {attempt} attempt(s)")

    def _record(self, item: _Item, status: str, detail: str) -> None:
        # a broken recorder must not stop the notifications
        with contextlib.suppress(Exception):
            self.record(item.kind, item.target, item.run_id, status, detail)


class Notifier:
    """Sends notifications to every ``[[notify]]`` webhook subscribed to their kind.

    ``notify`` never blocks and never raises for a delivery problem; ``close`` stops the
    workers (an attempt in flight finishes or times out; queued notifications are left).
    """

    def __init__(
        self,
        settings: Sequence[NotifySettings],
        urls: Mapping[str, str],
        record: Record,
        *,
        queue_size: int = QUEUE_SIZE,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.channels = [
            _Channel(s, urls[s.name], record, queue_size, backoff_s, max_backoff_s)
            for s in settings
        ]
        for channel in self.channels:
            channel.start()

    def notify(
        self,
        kind: str,
        target: str | None,
        run_id: str | None,
        details: Mapping[str, Any] | None = None,
        *,
        text: str | None = None,
    ) -> int:
        """Queue one notification for every webhook subscribed to ``kind``; how many."""
        if kind not in EVENTS:
            raise ValueError(f"unknown notification kind {kind!r} (known: {', '.join(EVENTS)})")
        body = payload(kind, target, run_id, details or {}, self.clock(), text)
        data = json.dumps(body, default=str).encode("utf-8")
        count = 0
        for channel in self.channels:
            if kind in channel.settings.events:
                channel.put(_Item(kind, target, run_id, data))
                count += 1
        return count

    @property
    def dropped(self) -> int:
        return sum(c.dropped for c in self.channels)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queue is empty and no attempt is in flight (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        for channel in self.channels:
            with channel._cond:
                while not channel.idle():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    channel._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop every worker; waits at most ``timeout`` seconds in all."""
        for channel in self.channels:
            channel.stop()
        deadline = time.monotonic() + timeout
        for channel in self.channels:
            if channel.thread is not None:
                channel.thread.join(max(0.0, deadline - time.monotonic()))
