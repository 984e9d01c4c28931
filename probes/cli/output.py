"""What a recording verb shows a person: the live status line, signals turned into a stop,
and the end of the run (report path, verdict line, what went wrong)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

import click

from probes.recording import Outcome, Stop
from probes.run import REPORT_HTML_FILE
from probes.statusline import StatusLine, Tally


class StatusProgress:
    """The recording's ``Progress`` as the terminal's status line (``probes.statusline``)."""

    def __init__(self, *, quiet: bool = False, stream: IO[str] | None = None) -> None:
        self.tally = Tally()
        self.quiet = quiet
        self.stream = stream
        self.line: StatusLine | None = None

    def started(self, total_s: float | None, platform_status: Callable[[], str] | None) -> None:
        self.line = StatusLine(
            self.tally, total_s, quiet=self.quiet, stream=self.stream, extra=platform_status
        ).start()

    def add(self, version: str, error: str | None, latency_ms: float) -> None:
        self.tally.add(version, error)

    def finished(self) -> None:
        if self.line is not None:
            self.line.close()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Stop]:
    """While inside, SIGINT and SIGTERM stop the recording (the first time) instead of
    killing us: the yielded ``Stop`` is set with the signal's name as its reason.

    A second signal restores the previous handlers and re-delivers itself, so a stuck drain
    can still be interrupted. Only the main thread may install handlers; elsewhere the stop
    is only the caller's to set.
    """
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():  # second signal: give up draining
            restore()
            signal.raise_signal(signum)
            return
        stop.request(signal.Signals(signum).name)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        restore()


def verdict_line(summary: dict[str, Any]) -> str:
    """``verdict: fail — error_rate=0.0153 (needs < 0.01) FAIL; …`` for terminals and CI."""
    verdict = summary.get("verdict") or {}
    parts = []
    for check in verdict.get("checks", []):
        mark = {True: "ok", False: "FAIL"}.get(check.get("passed"), "n/a")
        value = check.get("value")
        shown = f"{value:.4g}" if isinstance(value, int | float) else str(value)
        threshold = check.get("threshold")
        need = f"{threshold:.4g}" if isinstance(threshold, int | float) else str(threshold)
        parts.append(f"{check.get('name')}={shown} (needs {check.get('op')} {need}) {mark}")
    result = verdict.get("result", "inconclusive")
    return f"verdict: {result}" + (" — " + "; ".join(parts) if parts else "")


def stream_line(summary: dict[str, Any]) -> str | None:
    """``streams: v1 TTFT p50 24.2 / p99 58 ms, aborted 0/77; …``, None without streams."""
    parts = []
    for label, block in (summary.get("versions") or {}).items():
        stream = block.get("stream")
        if not stream:
            continue
        ttft = stream.get("ttft_ms") or {}
        p50, p99 = ttft.get("p50"), ttft.get("p99")
        shown = "—" if p50 is None else f"{p50:.4g} / p99 {p99:.4g}"
        parts.append(
            f"{label} TTFT p50 {shown} ms, aborted {stream['aborted']}/{stream['requests']}"
        )
    return "streams: " + "; ".join(parts) if parts else None


def show_outcome(outcome: Outcome, *, what: str = "requests") -> None:
    """Print the end of a run: stopped early, warnings, the report's path and the verdict,
    and on stderr why the target could not be used or the run failed."""
    sys.stderr.flush()
    if outcome.interrupted:
        click.echo(
            f"probes: {outcome.interrupted}: stopped early; {outcome.recorded} {what} recorded",
            err=True,
        )
    for warning in outcome.warnings:
        click.echo(f"probes: {warning}", err=True)
    if outcome.summary is not None:
        click.echo(str(outcome.run_dir / REPORT_HTML_FILE))
        click.echo(verdict_line(outcome.summary))
        streams = stream_line(outcome.summary)
        if streams:
            click.echo(streams)
        capacity = outcome.details.get("capacity")
        if capacity:
            version = capacity.get("version")
            click.echo(
                f"capacity{f' of {version}' if version else ''}: "
                f"max {capacity.get('max_rps_within_slo')} req/s within SLO; "
                f"knee {capacity.get('knee_rps')} req/s ({capacity.get('knee_case')}); "
                f"limit: {capacity.get('limit_reason')}"
            )
    if outcome.details.get("baseline"):
        click.echo(f"baseline: {outcome.details['baseline']}")
    if outcome.failure:
        click.echo(f"probes: {outcome.failure}", err=True)
    elif outcome.unusable:
        click.echo(f"probes: {outcome.unusable}", err=True)
