"""``probes serve --config serve.toml``: the service, in the foreground until SIGTERM/Ctrl-C.

A thin shell: read the config (a bad key exits 2 naming it), run ``probes.serve.service``,
log to stderr. The first SIGTERM or SIGINT stops it cleanly (every open run closed, reported
and indexed; scheduled runs and their Locust children stopped) and it exits 0; a second one
ends it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from probes.serve.config import ServeConfig


@click.command(short_help="Run the service: canaries, rollout captures, schedules, API.")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The service's config (serve.toml; every key in docs/serve.md).",
)
def command(config_path: Path) -> int:
    """Watch every configured target all the time: a continuous canary per target, every
    rollout captured without anyone starting a run, scheduled observe/load/capacity runs,
    a run index, the verdict endpoint for Argo Rollouts and Flagger, and /metrics.

    Runs until SIGTERM or Ctrl-C, then closes every open run and exits 0.
    Exit 2: bad config (the message names the key), an unusable index file, or another
    probes serve already running on the same runs_dir (serve.runs_dir).
    """
    from probes.serve.config import load_config

    config = load_config(config_path)
    _logging()
    return asyncio.run(_serve(config))


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def _serve(config: ServeConfig) -> int:
    from probes.serve.service import Service

    service = Service(config)
    loop = asyncio.get_running_loop()
    seen: list[int] = []

    def on_signal(sig: signal.Signals) -> None:
        if seen:  # a second signal: no more waiting
            click.echo(f"probes serve: {sig.name} again, exiting now", err=True)
            os._exit(128 + sig.value)
        seen.append(sig.value)
        click.echo(f"probes serve: {sig.name}: closing open runs", err=True)
        service.request_stop(sig.name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    def listening(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"probes serve: listening on http://{shown}:{port}/", err=True)

    await service.run(on_listening=listening)
    click.echo("probes serve: stopped", err=True)
    return 0
