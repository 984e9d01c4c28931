"""``probes observe URL``: the canary probe against any invoke URL, recorded as a run.

The verb parses and validates every flag first (a bad value is a ConfigError naming the
flag, exit 2), creates the run directory, runs the probe for ``--duration`` seconds while a
status line shows progress, then makes the report and exits with the verdict's code.

SIGTERM and Ctrl-C take the same path: the probe stops scheduling, requests in flight get
a short drain, every recorded row is flushed, the manifest is finished, and the report is
still made. A second signal falls back to the default behaviour (abort at once).

``record_observation`` is the reusable middle: modes that watch a control plane pass
*side tasks* (blocking callables run in threads beside the probe) that get the same stop
event; any of them may set it to end the observation early.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from probes.canary import DEFAULT_MAX_IN_FLIGHT, ProbeSettings, ProbeStats, run_probe_blocking
from probes.cli.common import (
    finish_recording,
    option,
    recording_options,
    request_kwargs,
    request_options,
)
from probes.cli.observe_api import api_options, observe_workload, wants_api
from probes.errors import ConfigError
from probes.run import Run
from probes.settings import RequestSpec, build_request, parse_run_id, positive
from probes.status import StatusLine, Tally

DEFAULT_RATE = 10.0
MAX_RATE = 100_000.0
MAX_IN_FLIGHT_LIMIT = 10_000
BUCKET_S = 1.0

#: A side task runs in its own thread beside the probe; it must return soon after the event
#: is set, and may set it itself to end the observation.
SideTask = Callable[[threading.Event], object]


def parse_rate(value: float, flag: str = "--rate") -> float:
    """``--rate`` (or ``flag``): requests per second, finite, > 0."""
    if not (isinstance(value, int | float) and math.isfinite(value)) or value <= 0:
        raise ConfigError(
            f"{flag}: {value!r} must be a number of requests per second > 0 (e.g. 10)"
        )
    if value > MAX_RATE:
        raise ConfigError(f"{flag}: {value:g} is above the limit of {MAX_RATE:g} per second")
    return float(value)


def parse_max_in_flight(value: int) -> int:
    """``--max-in-flight``: a whole number from 1 to ``MAX_IN_FLIGHT_LIMIT``."""
    if not 1 <= value <= MAX_IN_FLIGHT_LIMIT:
        raise ConfigError(f"--max-in-flight: {value!r} must be from 1 to {MAX_IN_FLIGHT_LIMIT}")
    return value


def parse_duration(value: float) -> float:
    """``--duration``: seconds, finite, > 0."""
    if not math.isfinite(positive(value, "--duration")):
        raise ConfigError(f"--duration: {value!r} must be a finite number of seconds > 0")
    return float(value)


def validate_slos(slos: Sequence[str]) -> list[str]:
    """Every ``--slo`` expression parsed once now, so a typo fails before any traffic."""
    from reports import parse_slo  # lazily: keep the CLI import light

    for expr in slos:
        try:
            parse_slo(expr)
        except ValueError as exc:
            raise ConfigError(f"--slo: {exc}") from None
    return list(slos)


def observe_settings(
    spec: RequestSpec, probe: ProbeSettings, slos: Sequence[str]
) -> dict[str, Any]:
    """The manifest's ``settings`` block of an observe run (secrets already masked)."""
    return {
        "slos": list(slos),
        "bucket_s": BUCKET_S,
        "rate": probe.rate,
        "duration_s": probe.duration,
        "max_in_flight": probe.max_in_flight,
        "transport": probe.transport,
        "request": spec.describe(),
    }


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[list[str]]:
    """While inside, SIGINT and SIGTERM set ``stop`` (the first time) instead of killing us.

    Yields a list that receives the names of signals seen. A second signal restores the
    previous handlers and re-delivers itself, so a stuck drain can still be interrupted.
    Only the main thread may install handlers; elsewhere this does nothing.
    """
    seen: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set() and seen:  # second signal: give up draining
            restore()
            signal.raise_signal(signum)
            return
        seen.append(signal.Signals(signum).name)
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield seen
    finally:
        restore()


def record_observation(
    spec: RequestSpec,
    run: Run,
    probe: ProbeSettings,
    *,
    quiet: bool = False,
    side_tasks: Sequence[SideTask] = (),
    status_stream: Any = None,
    status_extra: Callable[[], str] | None = None,
) -> ProbeStats:
    """Probe ``spec`` into ``run`` for ``probe.duration`` seconds; finish the run's manifest.

    ``side_tasks`` run in threads beside the probe with the observation's stop event (set
    by a signal, by a side task, or when the probe ends). Every recorded row is on disk when
    this returns. Returns the probe's counts (also written to the manifest as ``probe``).
    """
    stop = threading.Event()
    tally = Tally()
    writer = run.shard_writer("probe")
    threads = [
        threading.Thread(target=task, args=(stop,), name=f"side-task-{i}", daemon=True)
        for i, task in enumerate(side_tasks)
    ]
    stats = ProbeStats()
    with stop_on_signals(stop) as signals:
        status = StatusLine(
            tally, probe.duration, quiet=quiet, stream=status_stream, extra=status_extra
        )
        try:
            for thread in threads:
                thread.start()
            with status:
                stats = run_probe_blocking(
                    spec, probe, writer, stop=stop, on_sample=tally.add_sample
                )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=max(spec.timeout, 5.0))
            writer.close()
            run.finish(
                probe=stats.as_dict(),
                interrupted=signals[0] if signals else None,
            )
    if signals:
        click.echo(
            f"probes: {signals[0]}: stopped early; {stats.recorded} requests recorded",
            err=True,
        )
    return stats


@click.command()
@click.argument("url", required=False)
@recording_options
@request_options
@option(
    "--rate",
    type=float,
    default=DEFAULT_RATE,
    show_default=True,
    metavar="PER_SECOND",
    help="Requests per second, sent on schedule whatever the response times (open model).",
)
@option(
    "--max-in-flight",
    type=int,
    default=DEFAULT_MAX_IN_FLIGHT,
    show_default=True,
    metavar="N",
    help="Most requests outstanding at once; a request due beyond it is not sent but "
    "recorded as a client_saturated row (reported as not_sent, not as the target's error).",
)
@api_options
def command(url: str | None, **params: Any) -> int:
    """Probe URL at a constant rate and record which version answered each request.

    Writes RUN_DIR (manifest.json, samples/, then summary.json and report.html), prints the
    report's path and the verdict. Exit 0 pass, 1 fail, 2 bad flags, 3 target unusable.
    """
    if wants_api(url, params):  # --api BASE --workload ID: see probes.cli.observe_api
        return observe_workload(params)
    if not url:
        raise ConfigError("URL: give the invoke URL to probe (e.g. http://127.0.0.1:8080/)")
    spec = build_request(url, **request_kwargs(params))
    probe = ProbeSettings(
        rate=parse_rate(params["rate"]),
        duration=parse_duration(params["duration"]),
        max_in_flight=parse_max_in_flight(params["max_in_flight"]),
    )
    slos = validate_slos(params["slos"])
    run = Run.create(
        params["runs_dir"],
        parse_run_id(params["run_id"]),
        "observe",
        target=spec.describe(),
        settings=observe_settings(spec, probe, slos),
    )
    record_observation(spec, run, probe, quiet=params["quiet"])
    sys.stderr.flush()
    return finish_recording(Path(run.path))
