"""``probes demo``: the whole product on one machine, end to end.

Starts the embedded Workload platform (``probes sim``) with a fresh random token that never
leaves this process and its children, then runs ``probes load`` against the Workload's
stable invoke URL with the canary probe beside Locust, asks the platform to replace the
baseline with the candidate part-way through, records the control plane's lifecycle, and
makes the report. Everything it started is stopped before it returns.

With ``--stream`` the load is OpenAI-compatible streamed chat answers (``POST
/v1/chat/completions`` with ``"stream": true``, as LLM Workloads serve them), the scenario
``slow-first-token`` (unless ``--scenario`` names another): the candidate's first token comes
~150 ms later while its answers end as soon, and the default checks judge TTFT
(``STREAM_SLOS``), so the replacement's TTFT regression fails the verdict that total latency
alone would pass.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import click

from probes.cli.options import option
from probes.recording import Outcome
from probes.settings import parse_duration, parse_number
from probes.sim import SCENARIOS, SimConfig, Simulator

#: The demo's private token variable: set for Locust and the probe, never printed.
DEMO_TOKEN_ENV = "PROBES_DEMO_TOKEN"
#: ``--stream``: the scenario unless one is named, the request, and the default checks.
STREAM_SCENARIO = "slow-first-token"
STREAM_PATH = "/v1/chat/completions"
STREAM_BODY = json.dumps(
    {"model": "any", "stream": True, "messages": [{"role": "user", "content": "Hello!"}]}
)
STREAM_SLOS = ("error_rate<0.01", "candidate.ttft_p50_ms<1.2*baseline.ttft_p50_ms")


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
@option(
    "--stream",
    "stream",
    is_flag=True,
    help=f'Streamed chat answers (POST {STREAM_PATH} with "stream": true): scenario '
    f"{STREAM_SCENARIO} unless --scenario names another, and without --slo the checks "
    f"{', '.join(STREAM_SLOS)}: the candidate's later first token fails the verdict.",
)
@option("--serve", "serve", is_flag=True,
        help="Run the service instead (probes serve) on the simulator's workload, with a "
             "schedule, and trigger the replacement at --replace-at; prints the web UI's URL "
             "and runs for --duration seconds (or until Ctrl-C).")  # fmt: skip
@click.pass_context
def command(
    ctx: click.Context,
    scenario: str,
    time_scale: float,
    serve: bool,
    stream: bool,
    **params: Any,
) -> Outcome | int:
    """Simulator + Locust load + canary probe + a replacement + the report, end to end.

    Prints the report's path and the verdict; exit codes as for `probes load`. With --serve:
    simulator + the service (continuous canary, a schedule, the rollout captured by itself),
    exit 0 once stopped.
    """  # fmt: skip
    from probes.cli.load import command as load_command
    from probes.cli.load import load_settings

    os.environ[DEMO_TOKEN_ENV] = secrets.token_hex(16)
    request: dict[str, Any] = {}
    if stream:
        if ctx.get_parameter_source("scenario") is click.core.ParameterSource.DEFAULT:
            scenario = STREAM_SCENARIO
        request = {"method": "POST", "path": STREAM_PATH, "body": STREAM_BODY}
        params["slos"] = params["slos"] or STREAM_SLOS
    config = SimConfig(
        scenario=scenario, time_scale=time_scale, token=os.environ[DEMO_TOKEN_ENV], seed=1
    )
    if serve:
        duration = parse_duration(params["duration"], "--duration")
        replace_at = parse_number(
            params["replace_at"], "--replace-at", allow_min=True, maximum=duration
        )
        with Simulator(config) as sim:
            return _serve_demo(sim, Path(params["runs_dir"]), duration, replace_at)
    # Bad flags are refused before the simulator starts (it takes seconds to come up).
    defaults = {p.name: p.default for p in load_command.params if p.name}
    load_settings({**defaults, **params, "replace_with": "the candidate"})
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
            **request,
            **params,
        )
        counts = sim.proton_request_counts()
        click.echo(
            "simulator's own count of requests per proton: "
            + ", ".join(f"{pid} {n}" for pid, n in sorted(counts.items()))
        )
    return outcome


def _serve_config(sim: Simulator, runs_dir: Path) -> Any:
    """The service's config for the demo: the simulator's workload as an api target, and a
    schedule of short observe runs on it."""
    from probes.serve.config import parse_config

    data = {
        "serve": {"listen": "127.0.0.1:0", "runs_dir": str(runs_dir.resolve())},
        "targets": [
            {"name": "demo", "api": sim.api_url, "workload": sim.workload_id,
             "token_env": DEMO_TOKEN_ENV, "canary_rate": 5, "capture_rate": 20,
             "capture_tail_s": 3, "slo": ["error_rate<0.01"]},
        ],
        "schedules": [
            {"name": "demo-observe", "target": "demo", "kind": "observe", "every": "20s",
             "duration_s": 10, "args": {"rate": 5}},
        ],
    }  # fmt: skip
    return parse_config(data, Path.cwd())


def _serve_demo(sim: Simulator, runs_dir: Path, duration: float, replace_at: float) -> int:
    """The service on the simulator for ``duration`` seconds; someone else (this function,
    as a pipeline would) requests the replacement at ``replace_at``."""
    import asyncio
    import signal

    from probes.serve.service import Service
    from probes.workload import WorkloadClient

    service = Service(_serve_config(sim, runs_dir))

    def replace() -> None:
        with WorkloadClient(sim.api_url, token_env=DEMO_TOKEN_ENV) as client:
            client.start_replacement(sim.workload_id, sim.candidate_artifact_id)
        click.echo(f"probes demo: replacement requested at {replace_at:g} s (by 'a pipeline')")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.request_stop, sig.name)
        loop.call_later(duration, service.request_stop, "demo over")
        loop.call_later(replace_at, lambda: loop.run_in_executor(None, replace))

        def listening(host: str, port: int) -> None:
            click.echo(
                f"probes demo: the service's web UI is at http://{host}:{port}/ for"
                f" {duration:g} s (Ctrl-C stops it); runs go to {runs_dir}"
            )

        await service.run(on_listening=listening)

    asyncio.run(main())
    click.echo(f"probes demo: stopped; every run is in {runs_dir} (probes report RUN_DIR)")
    return 0
