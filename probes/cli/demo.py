"""``probes demo``: the whole product on one machine, end to end.

Starts the embedded Workload platform (``probes sim``) with a fresh random token that never
leaves this process and its children, then runs ``probes load`` against the Workload's
stable invoke URL with the canary probe beside Locust, asks the platform to replace the
baseline with the candidate part-way through, records the control plane's lifecycle, and
makes the report. Everything it started is stopped before it returns.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import click

from probes.cli.options import option
from probes.recording import Outcome
from probes.sim import SCENARIOS, SimConfig, Simulator

#: The demo's private token variable: set for Locust and the probe, never printed.
DEMO_TOKEN_ENV = "PROBES_DEMO_TOKEN"


@click.command()
@option(
    "--runs-dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the run directory is created.",
)
@option("--run-id", default=None, help="Run directory name (default: a UTC timestamp).")
@option(
    "--scenario",
    default="healthy",
    show_default=True,
    type=click.Choice(list(SCENARIOS)),
    help="Simulator scenario: the kind of rollout to rehearse.",
)
@option(
    "--duration", type=float, default=30.0, show_default=True, help="Seconds of load and probing."
)
@option(
    "--replace-at",
    type=float,
    default=8.0,
    show_default=True,
    metavar="SECONDS",
    help="When the replacement is requested, in seconds from the start.",
)
@option("--users", type=int, default=4, show_default=True, help="Locust users.")
@option(
    "--probe-rate",
    type=float,
    default=20.0,
    show_default=True,
    metavar="PER_SECOND",
    help="Canary probe rate beside Locust.",
)
@option(
    "--time-scale",
    type=float,
    default=60.0,
    show_default=True,
    help="Simulator platform seconds per real second.",
)
@option("--slo", "slos", multiple=True, metavar="EXPR", help="Verdict check, repeatable.")
@option("--quiet", "-q", is_flag=True, help="No live status line.")
@click.pass_context
def command(ctx: click.Context, scenario: str, time_scale: float, **params: Any) -> Outcome:
    """Simulator + Locust load + canary probe + a replacement + the report, end to end.

    Prints the report's path and the verdict; exit codes as for `probes load`.
    """  # fmt: skip
    from probes.cli.load import command as load_command

    os.environ[DEMO_TOKEN_ENV] = secrets.token_hex(16)
    config = SimConfig(
        scenario=scenario, time_scale=time_scale, token=os.environ[DEMO_TOKEN_ENV], seed=1
    )
    with Simulator(config) as sim:
        base, cand = sim.baseline_artifact_id, sim.candidate_artifact_id
        click.echo(
            f"probes demo: simulator at {sim.base_url} (scenario {scenario}); workload "
            f"{sim.workload_id} serves {sim.labels[base]}; replacing it with "
            f"{sim.labels[cand]} at {params['replace_at']:g} s under load"
        )
        outcome: Outcome = ctx.invoke(
            load_command,
            url=None,
            api=sim.api_url,
            workload=sim.workload_id,
            replace_with=cand,
            token_env=DEMO_TOKEN_ENV,
            **params,
        )
        counts = sim.proton_request_counts()
        click.echo(
            "simulator's own count of requests per proton: "
            + ", ".join(f"{pid} {n}" for pid, n in sorted(counts.items()))
        )
    return outcome
