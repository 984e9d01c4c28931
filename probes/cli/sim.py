"""``probes sim``: run the embedded Workload platform in the foreground until Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

import click

from probes.cli.options import option
from probes.errors import ConfigError
from probes.sim import SCENARIO_HELP, SCENARIOS, SimConfig, Simulator
from probes.sim.scenarios import RANGES

KNOB_FLAGS = (
    ("ready_timeout", float, "Platform seconds after which a never-ready candidate errors."),
    ("shift_seconds", float, "Weighted shift: candidate share rises 0→1 over these platform s."),
    ("drain_s", float, "Longest drain of the old proton, platform s (pinned connections)."),
    ("gap_ms", float, "No proton routed for this many real ms after the switch (503)."),
    ("completed_ttl", float, "Real seconds a completed replacement stays readable (default 1)."),
    ("upstream_timeout", float, "Gateway → proton timeout, real seconds (504 after)."),
    ("replicas", int, "Replicas of the workload's proton."),
    (
        "baseline_latency_ms",
        str,
        "Baseline latency: MS, LOW-HIGH or lognorm:MEDIAN:SIGMA, 0..3600000 ms.",
    ),
    (
        "candidate_latency_ms",
        str,
        "Candidate latency: MS, LOW-HIGH or lognorm:MEDIAN:SIGMA, 0..3600000 ms.",
    ),
    ("baseline_error_rate", float, "Share of baseline responses that are 500."),
    ("candidate_error_rate", float, "Share of candidate responses that are 500."),
    ("candidate_startup_s", float, "Platform seconds before the candidate's /health is 200."),
    (
        "baseline_first_token_ms",
        str,
        "Streamed chat answers: baseline delay of the first token (latency forms), real ms.",
    ),
    (
        "candidate_first_token_ms",
        str,
        "Streamed chat answers: candidate delay of the first token (latency forms), real ms.",
    ),
    ("baseline_inter_token_ms", str, "Streamed chat answers: baseline delay of each next token."),
    ("candidate_inter_token_ms", str, "Streamed chat answers: candidate delay of each next token."),
    ("stream_tokens", int, "Content chunks per streamed chat answer (default 16)."),
    ("baseline_abort_share", float, "Share of baseline streams cut half-way."),
    ("candidate_abort_share", float, "Share of candidate streams cut half-way."),
)
BOOL_FLAGS = (
    ("pin_connections", "A client connection stays on the proton it first reached."),
    ("drop_inflight", "Cut in-flight requests on the old proton at the switch."),
    ("candidate_never_ready", "The candidate's readiness probe never passes."),
)


def _with_range(name: str, text: str) -> str:
    """A flag's help with the range its value must be in."""
    if name in RANGES:
        return f"{text} Expected: {RANGES[name].describe()}."
    return text


def _knob_options(func: Any) -> Any:
    for name, kind, text in reversed(KNOB_FLAGS):
        func = option(
            "--" + name.replace("_", "-"),
            name,
            type=kind,
            default=None,
            help=_with_range(name, text),
        )(func)
    for name, text in reversed(BOOL_FLAGS):
        flag = name.replace("_", "-")
        func = option(f"--{flag}/--no-{flag}", name, default=None, help=text)(func)
    return func


@click.command()
@option(
    "--scenario",
    default="healthy",
    show_default=True,
    type=click.Choice(list(SCENARIOS)),
    help="Named bundle of faults: "
    + "; ".join(f"{k}: {v}" for k, v in SCENARIO_HELP.items())
    + ".",
)
@option(
    "--time-scale",
    type=float,
    default=1.0,
    show_default=True,
    help=_with_range(
        "time_scale", "Platform seconds per real second (60 runs a 1-minute warmup in 1 s)."
    ),
)
@option(
    "--port",
    type=int,
    default=0,
    show_default=True,
    help=_with_range("port", "Port on 127.0.0.1 (0: any)."),
)
@option(
    "--token-env",
    default="DATAROBOT_API_TOKEN",
    show_default=True,
    metavar="NAME",
    help="Environment variable holding the bearer token the platform accepts.",
)
@option(
    "--seed",
    type=int,
    default=None,
    help=_with_range("seed", "Seed for ids, routing and app randomness."),
)
@option(
    "--reveal-version",
    type=click.Choice(["header", "body", "both", "none"]),
    default=None,
    help="How the proton app reveals its version (scenario default: both).",
)
@_knob_options
def command(scenario: str, time_scale: float, port: int, token_env: str, **knobs: Any) -> int:
    """Run the embedded Workload platform (control plane, invoke gateway, protons) on
    127.0.0.1 until Ctrl-C or SIGTERM; its proton processes stop with it."""
    token = os.environ.get(token_env, "")
    if not token:
        raise ConfigError(
            f"--token-env {token_env}: the environment variable {token_env} is not set. Set "
            f'it to a token of your choice (e.g. export {token_env}="$(openssl rand -hex 16)")'
            " and run again; clients use the same variable."
        )
    cfg = SimConfig(scenario=scenario, time_scale=time_scale, token=token, port=port, **knobs)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    sim = Simulator(cfg)
    try:
        sim.start()
        _print_banner(sim, token_env)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        signal.signal(signal.SIGTERM, previous)
    click.echo("probes sim: stopped", err=True)
    return 0


def _print_banner(sim: Simulator, token_env: str) -> None:
    knobs = {k: v for k, v in sim.knobs.items() if v not in (None, False, 0, 0.0, "0")}
    lines = [
        f"probes sim: scenario {sim.config.scenario}, time scale {sim.config.time_scale:g}",
        f"base URL:      {sim.base_url}",
        f"control plane: {sim.api_url}",
        f"workload id:   {sim.workload_id}",
        f"invoke URL:    {sim.invoke_url}",
        f"baseline:      {sim.baseline_artifact_id} ({sim.labels[sim.baseline_artifact_id]})",
        f"candidate:     {sim.candidate_artifact_id} ({sim.labels[sim.candidate_artifact_id]})",
        f"token:         send 'Authorization: Bearer ${token_env}' (the value of {token_env})",
        f"knobs:         {knobs}",
        f'try:          curl -H "Authorization: Bearer ${{{token_env}}}" {sim.invoke_url}version',
        "Ctrl-C stops the platform and its protons.",
    ]
    click.echo("\n".join(lines))
