"""``probes observe URL`` (or ``--api BASE --workload ID``): the canary probe, as one run.

Flags are parsed first (a bad value is a ConfigError naming the flag, exit 2); then
``probes.recording.observe`` probes for ``--duration`` seconds while a status line shows
progress, makes the report, and this verb prints where it is and the verdict.

SIGTERM and Ctrl-C stop the recording through its stop event: the probe stops scheduling,
requests in flight get a short drain, every recorded row is flushed, the manifest is
finished, and the report is still made. A second signal aborts at once.

With ``--api/--workload`` the rollout watcher records the control plane beside the probe;
with ``--replace-with`` the tool requests the replacement itself (a lead-in after the start)
and observes until it is over plus ``--tail`` seconds, never longer than ``--duration``.
"""

from __future__ import annotations

from typing import Any

import click

from probes import recording
from probes.canary import DEFAULT_MAX_IN_FLIGHT
from probes.cli.options import (
    api_options,
    option,
    recording_options,
    replacement_options,
    request_options,
)
from probes.cli.verb import record
from probes.recording.observation import DEFAULT_RATE
from probes.rollout import DEFAULT_TAIL_S, lead_in_s
from probes.settings import FLAGS


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
    "--connections",
    default="reused",
    show_default=True,
    metavar="reused|new|both",
    help="reused: a keep-alive pool; new: a fresh connection per request, closed after it; "
    "both: the two interleaved at half the rate each (the report compares them).",
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
@replacement_options
@option("--tail", type=float, default=DEFAULT_TAIL_S, show_default=True, metavar="SECONDS",
        help="With --api: keep observing this long after the replacement ended "
             "(--duration stays the hard cap).")  # fmt: skip
def command(url: str | None, **params: Any) -> recording.Outcome:
    """Probe URL at a constant rate and record which version answered each request.

    Writes RUN_DIR (manifest.json, samples/, then summary.json and report.html), prints the
    report's path and the verdict. Exit 0 pass, 1 fail, 2 bad flags, 3 target unusable.
    """
    settings = recording.ObserveSettings.build(
        place=FLAGS,
        rate=params["rate"],
        duration=params["duration"],
        max_in_flight=params["max_in_flight"],
        slos=params["slos"],
        max_body_bytes=params["max_body_bytes"],
        connections=params["connections"],
    )
    lead_in = lead_in_s(settings.probe.duration)
    return record(recording.observe, url, params, settings, replace_at_s=lead_in)
