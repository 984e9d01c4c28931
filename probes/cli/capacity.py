"""``probes capacity URL``: stepped Locust load until the SLO breaks; a capacity report.

A thin shell over ``probes.recording.capacity``: ``--start-users`` for ``--step-seconds``,
then ``--step-users`` more every ``--step-seconds`` up to ``--max-users``; each step is
judged as soon as its samples are in, and the first step that breaks a check stops the load.
``--mode rate`` steps the offered arrival rate instead (``--start-rate``, ``--step-rate``,
``--max-rate``), sent by the open-model probe on this machine.
"""

from __future__ import annotations

from typing import Any

import click

from probes import recording
from probes.canary import DEFAULT_MAX_IN_FLIGHT
from probes.cli.options import (
    announce_master,
    api_options,
    master_options,
    option,
    recording_options,
    request_options,
)
from probes.cli.verb import record
from probes.recording.capacity import DEFAULTS
from probes.settings import FLAGS


def _int_option(name: str, default: int, text: str) -> Any:
    return option(name, type=int, default=default, show_default=True, metavar="N", help=text)


@click.command()
@click.argument("url", required=False)
@recording_options
@request_options
@_int_option("--start-users", DEFAULTS["start_users"], "Users of the first step.")
@_int_option("--step-users", DEFAULTS["step_users"], "Users added at every step.")
@option(
    "--step-seconds",
    type=float,
    default=DEFAULTS["step_seconds"],
    show_default=True,
    metavar="S",
    help="Length of each step; its ramp-up (>= 1 s) is not measured.",
)
@_int_option("--max-users", DEFAULTS["max_users"], "Users of the last step.")
@option(
    "--spawn-rate",
    "-r",
    type=float,
    default=DEFAULTS["spawn_rate"],
    show_default=True,
    help="Users/second.",
)
@_int_option(
    "--workers", DEFAULTS["workers"], "Locust worker processes (--processes N); 0 runs one process."
)
@master_options
@option(
    "--mode",
    type=click.Choice(["users", "rate"]),
    default=DEFAULTS["mode"],
    show_default=True,
    help="Step Locust users (closed model), or the offered arrival rate (open model, the probe).",
)
@option(
    "--start-rate",
    type=float,
    default=DEFAULTS["start_rate"],
    show_default=True,
    metavar="R",
    help="--mode rate: requests/s offered in the first step.",
)
@option(
    "--step-rate",
    type=float,
    default=DEFAULTS["step_rate"],
    show_default=True,
    metavar="R",
    help="--mode rate: requests/s added at every step.",
)
@option(
    "--max-rate",
    type=float,
    default=DEFAULTS["max_rate"],
    show_default=True,
    metavar="R",
    help="--mode rate: requests/s offered in the last step.",
)
@_int_option(
    "--max-in-flight",
    DEFAULT_MAX_IN_FLIGHT,
    "--mode rate: requests the probe holds at once; beyond, a due request is not sent.",
)
@api_options
@option("--baseline", default=None, metavar="RUN_DIR",
        help="An earlier capacity run: compare with it step by step (Mann-Whitney on each "
             "step's latency, Fisher on errors, the change in max rps and knee; "
             "compare-<id>.json/.md/.html in RUN_DIR) and fail the verdict when "
             "worse.")  # fmt: skip
@click.pass_context
def command(ctx: click.Context, url: str | None, **params: Any) -> recording.Outcome:
    """Stepped Locust load on URL until a step breaks the SLO; a capacity report.

    Each step is judged on its own by every --slo (default error_rate<0.01 and p99_ms<1000);
    the load stops after the first step that breaks one, at --max-users, or at --duration
    (a hard cap; default: the plan's length). The verdict passes when a step passed.
    With --mode rate a step also needs its achieved rate >= 99 % of the offered one, its
    latency checks read the coordinated-omission-corrected latency, and the capacity is
    the highest offered rate that passed.
    Exit 0 pass, 1 fail, 2 bad flags, 3 target unusable (or Locust could not run).
    """  # fmt: skip
    source = ctx.get_parameter_source("duration")
    duration_given = source is not None and source.name != "DEFAULT"
    settings = recording.CapacitySettings.build(
        place=FLAGS,
        start_users=params["start_users"],
        step_users=params["step_users"],
        step_seconds=params["step_seconds"],
        max_users=params["max_users"],
        spawn_rate=params["spawn_rate"],
        duration=params["duration"] if duration_given else None,
        workers=params["workers"],
        expect_workers=params["expect_workers"],
        master_bind=params["master_bind"],
        worker_timeout=params["worker_timeout"],
        slos=params["slos"],
        max_body_bytes=params["max_body_bytes"],
        mode=params["mode"],
        start_rate=params["start_rate"],
        step_rate=params["step_rate"],
        max_rate=params["max_rate"],
        max_in_flight=params["max_in_flight"],
        baseline=params["baseline"],
    )
    announce_master(settings, params["quiet"])
    return record(recording.capacity, url, params, settings)
