"""The live status of a recording: one redrawn line on a terminal, plain lines otherwise.

Independent of who sends: feed a ``Tally`` one ``(version, error)`` per finished request
(the canary probe, the Locust glue, the service), and a ``StatusLine`` draws it. The text
is made by ``format_status``, a pure function of plain numbers.

    12.0s/60s  rate 49.8/s  requests 600  now v1 88% v2 12%  errors 3 (0.5%)

Rate and split are over the last interval (what answers *now*, so a switch shows as it
happens); requests and errors are totals since the start.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

TTY_INTERVAL_S = 0.5
PLAIN_INTERVAL_S = 10.0
MAX_VERSIONS_SHOWN = 4


@dataclass(frozen=True)
class Snapshot:
    """Counts at one instant."""

    requests: int
    errors: int
    versions: dict[str, int]


class Tally:
    """Thread-safe running counts of finished requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._errors = 0
        self._versions: Counter[str] = Counter()

    def add(self, version: str, error: str | None = None) -> None:
        """Count one finished request."""
        with self._lock:
            self._requests += 1
            if error is not None:
                self._errors += 1
            self._versions[version] += 1

    def add_sample(self, sample: object) -> None:
        """Count a ``records.Sample`` (anything with ``version`` and ``error``)."""
        self.add(getattr(sample, "version", "unknown"), getattr(sample, "error", None))

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._requests, self._errors, dict(self._versions))


def format_status(
    elapsed: float,
    total: float | None,
    rate: float,
    requests: int,
    errors: int,
    versions: dict[str, int],
) -> str:
    """The status text: elapsed of total, recent rate, totals, recent split, errors.

    ``versions`` are the counts of the recent window the split is computed over.
    """
    when = f"{elapsed:.1f}s/{total:g}s" if total else f"{elapsed:.1f}s"
    parts = [when, f"rate {rate:.1f}/s", f"requests {requests}"]
    recent = sum(versions.values())
    if recent:
        top = sorted(versions.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = [f"{v} {n / recent:.0%}" for v, n in top[:MAX_VERSIONS_SHOWN] if n]
        if len(top) > MAX_VERSIONS_SHOWN:
            shown.append(f"+{len(top) - MAX_VERSIONS_SHOWN} more")
        parts.append("now " + " ".join(shown))
    if requests:
        parts.append(f"errors {errors} ({errors / requests:.1%})")
    else:
        parts.append("errors 0")
    return "  ".join(parts)


def plain_interval(total_s: float | None) -> float:
    """Seconds between plain lines: about six per run, from 1 s to ``PLAIN_INTERVAL_S``."""
    if not total_s:
        return PLAIN_INTERVAL_S
    return min(PLAIN_INTERVAL_S, max(1.0, total_s / 6))


class StatusLine:
    """Draws a ``Tally`` every so often from a background thread until ``close``.

    On a terminal the line is redrawn in place (``\\r``); otherwise a plain line is printed
    every ``PLAIN_INTERVAL_S`` seconds; ``quiet`` draws nothing. The rate shown is over the
    last interval, so it tracks what the sender achieves now.
    """

    def __init__(
        self,
        tally: Tally,
        total_s: float | None,
        *,
        stream: IO[str] | None = None,
        quiet: bool = False,
        tty: bool | None = None,
        interval: float | None = None,
        extra: Callable[[], str] | None = None,
    ) -> None:
        self.tally = tally
        self.extra = extra  # more text for the line, e.g. the control plane's rollout status
        self.total_s = total_s
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = self._isatty() if tty is None else tty
        self.interval = interval or (TTY_INTERVAL_S if self.tty else plain_interval(total_s))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()
        self._last = (self._start, Snapshot(0, 0, {}))
        self._width = 0

    def _isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError):
            return False

    def start(self) -> StatusLine:
        self._start = time.monotonic()
        self._last = (self._start, Snapshot(0, 0, {}))
        if not self.quiet:
            self._thread = threading.Thread(target=self._loop, name="status-line", daemon=True)
            self._thread.start()
        return self

    def line(self, now: float | None = None) -> str:
        """The current status text (advances the rate window)."""
        now = time.monotonic() if now is None else now
        snap = self.tally.snapshot()
        t0, before = self._last
        rate = (snap.requests - before.requests) / (now - t0) if now > t0 else 0.0
        self._last = (now, snap)
        recent = {v: n - before.versions.get(v, 0) for v, n in snap.versions.items()}
        text = format_status(
            now - self._start, self.total_s, rate, snap.requests, snap.errors, recent
        )
        more = self.extra() if self.extra is not None else ""
        return f"{text} · {more}" if more else text

    def draw(self) -> None:
        text = self.line()
        try:
            if self.tty:
                pad = " " * max(self._width - len(text), 0)  # erase a longer previous line
                self.stream.write(f"\r{text}{pad}")
                self._width = len(text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # closed or broken stream: status is not worth a crash
            self.quiet = True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.quiet:
                return
            self.draw()

    def close(self) -> None:
        """Stop drawing; on a terminal, end the line so later output starts clean."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
            if self.tty and not self.quiet:
                try:
                    self.draw()
                    self.stream.write("\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass

    def __enter__(self) -> StatusLine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
