"""``probes observe --api BASE --workload ID [--replace-with ARTIFACT]``: control-plane mode.

Not a verb of its own: ``probes.cli.observe`` adds these flags and hands over to
``observe_workload`` when ``--api``/``--workload`` are given. The invoke URL comes from the
workload's ``endpoint``; the rollout watcher records the lifecycle beside the probe; with
``--replace-with`` the tool requests the replacement itself and observes until it is over
plus ``--tail`` seconds, never longer than ``--duration``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from probes.cli.common import finish_recording, option, request_kwargs
from probes.controlplane import DEFAULT_TAIL_S, PlatformTarget, RolloutDriver, resolve_target
from probes.errors import ConfigError
from probes.run import Run
from probes.settings import build_request, parse_env_name, parse_run_id, positive
from probes.workload import WorkloadClient

F = TypeVar("F", bound=Callable[..., Any])

#: Failed polls in a row at the end of a run that make the platform "unusable" (exit 3).
UNREADABLE_POLLS = 3


def api_options(func: F) -> F:
    """The control-plane flags of ``probes observe``."""
    opts = [
        option("--api", default=None, metavar="BASE",
               help="Workload API base (e.g. https://app.datarobot.com/api/v2); "
                    "observe a Workload instead of a URL."),
        option("--workload", default=None, metavar="ID",
               help="Workload id (with --api); its invoke endpoint is probed."),
        option("--replace-with", default=None, metavar="ARTIFACT_ID",
               help="Start a replacement onto this artifact and observe it to the end."),
        option("--warmup-minutes", type=int, default=0, show_default=True, metavar="N",
               help="Replacement warmup (warmupDurationMinutes)."),
        option("--keep-old-minutes", type=int, default=0, show_default=True, metavar="N",
               help="Rollback window (keepOldVersionMinutes)."),
        option("--tail", type=float, default=DEFAULT_TAIL_S, show_default=True,
               metavar="SECONDS",
               help="Keep observing this long after the replacement ended "
                    "(--duration stays the hard cap)."),
    ]  # fmt: skip
    for opt in reversed(opts):
        func = opt(func)
    return func


def wants_api(url: str | None, params: dict[str, Any]) -> bool:
    """True for control-plane mode; ConfigError unless exactly one mode is asked for."""
    api, workload = params.get("api"), params.get("workload")
    if url and (api or workload):
        raise ConfigError("URL and --api/--workload: give exactly one (a URL, or a Workload)")
    if not url and not (api and workload):
        missing = "--workload ID" if api else "--api BASE" if workload else "URL"
        raise ConfigError(
            f"{missing}: give an invoke URL, or --api BASE --workload ID to observe a Workload"
        )
    if not (api and workload):
        for flag in ("replace_with", "warmup_minutes", "keep_old_minutes"):
            if params.get(flag):
                name = "--" + flag.replace("_", "-")
                raise ConfigError(f"{name}: only with --api BASE --workload ID")
    return bool(api and workload)


def _minutes(value: int, flag: str) -> int:
    if value < 0:
        raise ConfigError(f"{flag}: {value!r} must be a whole number of minutes >= 0")
    return value


def observe_workload(params: dict[str, Any]) -> int:
    """The control-plane mode of ``probes observe``; returns the exit code."""
    from probes.cli import observe as obs  # the URL mode's parsing and recording

    warmup = _minutes(params["warmup_minutes"], "--warmup-minutes")
    keep_old = _minutes(params["keep_old_minutes"], "--keep-old-minutes")
    tail = positive(params["tail"], "--tail", allow_zero=True)
    probe = obs.ProbeSettings(
        rate=obs.parse_rate(params["rate"]),
        duration=obs.parse_duration(params["duration"]),
        max_in_flight=obs.parse_max_in_flight(params["max_in_flight"]),
    )
    slos = obs.validate_slos(params["slos"])
    run_id = parse_run_id(params["run_id"])
    token_env = parse_env_name(params["token_env"])
    with WorkloadClient(params["api"], token_env=token_env, timeout=params["timeout"]) as client:
        target = resolve_target(client, params["workload"], params["replace_with"])
        spec = build_request(target.invoke_url, **request_kwargs(params))
        settings = obs.observe_settings(spec, probe, slos)
        settings.update(warmup_minutes=warmup, keep_old_minutes=keep_old, tail_s=tail)
        run = Run.create(
            params["runs_dir"], run_id, "observe", target=spec.describe(), settings=settings
        )
        run.update(platform=target.manifest())
        driver = RolloutDriver(
            client, target, run.events, warmup_minutes=warmup, keep_old_minutes=keep_old,
            tail_s=tail,
        )  # fmt: skip
        obs.record_observation(
            spec,
            run,
            probe,
            quiet=params["quiet"],
            side_tasks=[_side_task(driver, probe.duration)],
            status_extra=driver.status_line,
        )
        run.update(platform={**target.manifest(), "outcome": driver.outcome})
    sys.stderr.flush()
    code = finish_recording(Path(run.path))
    problem = platform_problem(driver, target)
    if problem:
        click.echo(f"probes: {problem}", err=True)
        return 3
    return code


def _side_task(driver: RolloutDriver, duration: float) -> Callable[[threading.Event], None]:
    """The driver as a side task of ``record_observation``: it ends the observation when
    the replacement is over plus the tail (or the platform failed)."""

    def task(stop: threading.Event) -> None:
        driver.start(deadline=time.time() + duration + 5.0)
        try:
            while not stop.is_set():
                if driver.finished.wait(0.05):
                    stop.set()
        finally:
            driver.stop()

    return task


def platform_problem(driver: RolloutDriver, target: PlatformTarget) -> str | None:
    """Why the control plane could not be used during the run (exit 3), or None."""
    if driver.failure is not None:
        return f"replacement not started: {driver.failure}"
    watcher = driver.watcher
    if watcher is None or not watcher.polls:
        return None
    if watcher.errors >= watcher.polls:
        return (
            f"control plane {target.api} could not be read during the run: "
            f"{watcher.timeline.last_error}"
        )
    if watcher.error_streak >= UNREADABLE_POLLS:
        return (
            f"control plane {target.api} stopped answering during the run "
            f"({watcher.error_streak} failed polls at the end): {watcher.timeline.last_error}"
        )
    return None
