"""``probes load URL``: Locust load on the invoke URL, tagged and recorded, as one run.

A thin shell over ``probes.recording.load``: Locust runs headless in a subprocess (see
``probes.recording.locustproc``), ``--workers N`` becomes its ``--processes N``, the canary
probe may run beside it (``--probe-rate``), and with ``--api/--workload`` the rollout watcher
records the control plane (``--replace-with ARTIFACT --replace-at S`` asks for a replacement
S seconds in). ``--expect-workers N`` starts a Locust master on ``--master-bind`` that waits
for N workers started elsewhere. Our status line is shown instead of Locust's output (in
``RUN_DIR/locust.log``).

SIGINT/SIGTERM stop the recording: the probe stops scheduling, Locust gets SIGINT and quits
the way it always does, its shards are flushed, and the report is made from what was
recorded. A second signal aborts at once.
"""

from __future__ import annotations

from typing import Any

import click

from probes import recording
from probes.cli.options import (
    announce_master,
    api_options,
    master_options,
    option,
    recording_options,
    replacement_options,
    request_options,
)
from probes.cli.verb import record
from probes.errors import ConfigError
from probes.recording.load import DEFAULTS
from probes.settings import FLAGS, parse_number
from probes.shapes import SHAPES

#: When the replacement is requested without --replace-at, in seconds from the start.
DEFAULT_REPLACE_AT_S = 2.0


def parse_replace_at(params: dict[str, Any]) -> float | None:
    """``--replace-at``: seconds from the start, only with ``--replace-with``."""
    value = params.get("replace_at")
    if value is None:
        return DEFAULT_REPLACE_AT_S if params.get("replace_with") else None
    if not params.get("replace_with"):
        raise ConfigError("--replace-at: needs --replace-with ARTIFACT_ID and SECONDS >= 0")
    return parse_number(value, "--replace-at", allow_min=True, maximum=params["duration"])


def load_settings(params: dict[str, Any]) -> tuple[recording.LoadSettings, float | None]:
    """The load's settings and ``--replace-at`` from the flags; bad ones raise ConfigError."""
    settings = recording.LoadSettings.build(
        place=FLAGS,
        duration=params["duration"],
        users=params["users"],
        spawn_rate=params["spawn_rate"],
        shape=params["shape"],
        workers=params["workers"],
        expect_workers=params["expect_workers"],
        master_bind=params["master_bind"],
        worker_timeout=params["worker_timeout"],
        probe_rate=params["probe_rate"],
        slos=params["slos"],
        max_body_bytes=params["max_body_bytes"],
    )
    return settings, parse_replace_at(params)


@click.command()
@click.argument("url", required=False)
@recording_options
@request_options
@option(
    "--users",
    "-u",
    type=int,
    default=DEFAULTS["users"],
    show_default=True,
    help="Concurrent Locust users (closed model: each sends as fast as answered).",
)
@option(
    "--spawn-rate",
    "-r",
    type=float,
    default=DEFAULTS["spawn_rate"],
    show_default=True,
    help="Users started per second.",
)
@option(
    "--shape",
    default=None,
    metavar="NAME[:k=v,...]",
    help=f"Load shape: {', '.join(SHAPES)} (e.g. ramp:from=1,over=30; "
    "step:step=5,every=10; spike:peak=100,at=20,for=5). Default steady.",
)
@option(
    "--workers",
    type=int,
    default=DEFAULTS["workers"],
    show_default=True,
    metavar="N",
    help="Locust worker processes (--processes N); 0 runs one process.",
)
@master_options
@option(
    "--probe-rate",
    type=float,
    default=DEFAULTS["probe_rate"],
    show_default=True,
    metavar="PER_SECOND",
    help="Also run the canary probe at this rate beside the load (0: no probe).",
)
@api_options
@replacement_options
@option("--replace-at", type=float, default=None, metavar="SECONDS",
        help="When to start the replacement, in seconds from the start "
             f"(default {DEFAULT_REPLACE_AT_S:g}).")  # fmt: skip
def command(url: str | None, **params: Any) -> recording.Outcome:
    """Locust load on URL (headless), every request version-tagged and recorded.

    Writes RUN_DIR (manifest.json, samples/, locust.log, then summary.json and
    report.html), prints the report's path and the verdict. Exit 0 pass, 1 fail, 2 bad
    flags, 3 target unusable (or Locust could not run).
    """  # fmt: skip
    settings, replace_at = load_settings(params)
    announce_master(settings, params["quiet"])
    return record(recording.load, url, params, settings, replace_at_s=replace_at)
