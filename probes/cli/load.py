"""``probes load URL``: Locust load on the invoke URL, tagged and recorded, as one run.

Locust runs headless in a subprocess (``python -m locust`` on the package's locustfile,
``probes/locustglue/locustfile.py``) in its own session, so a Ctrl-C in the terminal
reaches only this process; Locust's output goes to ``RUN_DIR/locust.log`` and our own
status line is shown instead. ``--workers N`` becomes Locust's ``--processes N``. The Locust
master writes its sample shards straight into ``RUN_DIR``; beside it, optionally, the
canary probe (``--probe-rate``) writes its own, and with ``--api/--workload`` the rollout
watcher records the control plane (``--replace-with ARTIFACT --replace-at S`` asks for a
replacement S seconds in). One run directory holds every source; then the report.

SIGINT/SIGTERM: the probe stops scheduling, Locust gets SIGTERM and quits the way it
always does (its master first collects every worker's final report, see the glue), its
shards are flushed; then the report is made from what was recorded. A second signal
aborts at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from probes.cli.common import (
    finish_recording,
    option,
    recording_options,
    request_kwargs,
    request_options,
)
from probes.errors import ConfigError, ProbesError
from probes.locustglue import HEADERS_ENV
from probes.records import shard_paths
from probes.run import Run
from probes.settings import RequestSpec, build_request, parse_env_name, parse_run_id
from probes.shapes import SHAPES, Shape, parse_shape
from probes.status import StatusLine, Tally

BUCKET_S = 1.0
#: How long Locust may take to quit after SIGTERM before its process group is killed.
LOCUST_QUIT_TIMEOUT_S = 60.0
MAX_WORKERS = 256
LOCUST_LOG = "locust.log"
COUNTS_FILE = "locust.json"  # written by the glue at the end of the Locust run


def locustfile_path() -> Path:
    """The package's own locustfile (found without importing Locust)."""
    import probes.locustglue

    return Path(probes.locustglue.__file__).with_name("locustfile.py")


@dataclass(frozen=True)
class LoadSettings:
    """What ``probes load`` asks of Locust, validated."""

    shape: Shape
    workers: int = 0
    probe_rate: float = 0.0

    @property
    def run_time_s(self) -> int:
        """Locust's ``--run-time`` is whole seconds."""
        return max(1, math.ceil(self.shape.duration))


def parse_load(params: dict[str, Any]) -> LoadSettings:
    """The load flags → LoadSettings; ConfigError naming the flag."""
    users, rate, duration = params["users"], params["spawn_rate"], params["duration"]
    if users is None or users < 1:
        raise ConfigError(f"--users: {users!r} must be a whole number >= 1")
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"--spawn-rate: {rate!r} must be a number of users per second > 0")
    if not (math.isfinite(duration) and duration > 0):
        raise ConfigError(f"--duration: {duration!r} must be a finite number of seconds > 0")
    workers = params["workers"]
    if not 0 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: {workers!r} must be from 0 (one process) to {MAX_WORKERS}")
    probe_rate = params["probe_rate"] or 0.0
    if not (math.isfinite(probe_rate) and probe_rate >= 0):
        raise ConfigError(f"--probe-rate: {probe_rate!r} must be requests per second >= 0")
    shape = parse_shape(params["shape"], users=users, spawn_rate=rate, duration=duration)
    return LoadSettings(shape=shape, workers=workers, probe_rate=probe_rate)


def locust_command(
    spec_url: str, params: dict[str, Any], load: LoadSettings, run_dir: Path
) -> list[str]:
    """The Locust command line (no secret in it: the token stays in the environment)."""
    shape = load.shape
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile_path()), "--headless",
        "--only-summary", "--host", spec_url,
        "--users", str(shape.users), "--spawn-rate", f"{shape.spawn_rate:g}",
        "--run-time", f"{load.run_time_s}s", "--stop-timeout", "0",
        "--probes-run-dir", str(run_dir),
        "--probes-method", params["method"],
        "--probes-timeout", f"{params['timeout']:g}",
        "--probes-token-env", params["token_env"],
    ]  # fmt: skip
    if params.get("path"):
        cmd += ["--probes-path", params["path"]]
    if params.get("body") is not None:
        cmd += ["--probes-body", params["body"]]
    if params.get("body_file"):
        cmd += ["--probes-body-file", str(Path(params["body_file"]).resolve())]
    # --header values never go on the command line (any user can read it in ps): the glue
    # reads them from HEADERS_ENV in Locust's environment (see locust_env).
    for flag, key in (
        ("tag-header", "tag_headers"),
        ("tag-json", "tag_json"),
    ):
        for value in params.get(key) or ():
            cmd += [f"--probes-{flag}", value]
    if params.get("tag_regex"):
        cmd += ["--probes-tag-regex", params["tag_regex"]]
    if shape.name != "steady" or shape.params:
        params_text = ",".join(f"{k}={v:g}" for k, v in shape.params)
        cmd += ["--probes-shape", f"{shape.name}:{params_text}" if params_text else shape.name]
    if load.workers:
        cmd += ["--processes", str(load.workers), *master_port_args()]
    return cmd


def master_port_args() -> list[str]:
    """Bind the Locust master to 127.0.0.1 on a free port: its default (``*:5557``) would
    listen on every interface and collide with any other Locust master on the machine."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    return ["--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--master-port", port]


def locust_env(params: dict[str, Any]) -> dict[str, str]:
    """Locust's environment: ours, plus the request headers (kept off its command line)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(HEADERS_ENV, None)
    if params.get("headers"):
        env[HEADERS_ENV] = json.dumps(list(params["headers"]))
    return env


def load_settings(
    spec: RequestSpec, load: LoadSettings, slos: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    """The manifest's ``settings`` block of a load run (secrets already masked)."""
    return {
        "slos": slos,
        "bucket_s": BUCKET_S,
        "request": spec.describe(),
        "users": load.shape.users,
        "spawn_rate": load.shape.spawn_rate,
        "duration_s": load.shape.duration,
        "shape": load.shape.describe(),
        "workers": load.workers,
        "probe_rate": load.probe_rate or None,
        **extra,
    }


class ShardFollower:
    """Reads new Locust shards as they land; counts their rows into a Tally for the live
    status line. Subclasses read more ``columns`` and extend ``on_table``."""

    columns: tuple[str, ...] = ("version", "error")

    def __init__(self, run_dir: Path, tally: Tally, prefix: str = "locust-") -> None:
        self.directory = run_dir / "samples"
        self.tally = tally
        self.prefix = prefix
        self.seen: set[str] = set()
        self.rows = 0

    def poll(self) -> None:
        import pyarrow.parquet as pq

        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob(f"{self.prefix}*.parquet")):
            if path.name in self.seen:
                continue
            self.seen.add(path.name)
            try:
                table = pq.read_table(path, columns=list(self.columns))
            except OSError:
                continue
            self.on_table(table)

    def on_table(self, table: Any) -> None:
        """Take one new shard (an Arrow table of ``columns``)."""
        errors = table.column("error").to_pylist()
        for version, error in zip(table.column("version").to_pylist(), errors, strict=True):
            self.tally.add(version, error)
        self.rows += table.num_rows


def stop_locust(proc: subprocess.Popen[bytes], timeout: float = LOCUST_QUIT_TIMEOUT_S) -> None:
    """Stop headless Locust so that it flushes: SIGINT, then wait; SIGTERM, then kill the
    whole process group, only if it does not finish in time.

    Not SIGTERM first: with a load shape, Locust's headless start blocks on the shape before
    it installs its SIGTERM handler, so a SIGTERM kills it outright (no final flush, no
    locust.json). A SIGINT is caught there and ends the test the way the shape's own end
    does, and without a shape it quits the same way as SIGTERM (the master first collects
    every worker's final report, see the glue).
    """
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def read_counts(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / COUNTS_FILE
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@dataclass
class LoadOutcome:
    """What one load run did."""

    returncode: int | None
    counts: dict[str, Any] | None
    probe: dict[str, Any] | None
    interrupted: str | None


def record_load(
    spec: RequestSpec,
    run: Run,
    load: LoadSettings,
    params: dict[str, Any],
    *,
    driver: Any = None,
    replace_at: float | None = None,
) -> LoadOutcome:
    """Run Locust (and the probe, and the rollout driver) into ``run``; finish the manifest."""
    from probes.cli.observe import stop_on_signals

    stop = threading.Event()
    tally = Tally()
    follower = ShardFollower(run.path, tally)
    cmd = locust_command(params["locust_host"], params, load, run.path)
    env = locust_env(params)
    probe_thread, probe_writer = _start_probe(spec, run, load, tally)
    proc: subprocess.Popen[bytes] | None = None
    with stop_on_signals(stop) as signals, (run.path / LOCUST_LOG).open("wb") as log:
        try:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            if driver is not None:
                # The driver requests the replacement after min(lead_in, remaining / 10):
                # a far deadline makes that exactly ``replace_at``; we stop it ourselves.
                horizon = max(load.shape.duration + 5.0, 10 * (replace_at or 0) + 1.0)
                driver.start(deadline=time.time() + horizon)
            # Locust ends itself at --run-time; the deadline only guards against a Locust that
            # never starts (e.g. workers that never connect).
            deadline = time.monotonic() + load.shape.duration + LOCUST_QUIT_TIMEOUT_S
            with StatusLine(tally, load.shape.duration, quiet=params["quiet"]):
                while proc.poll() is None and not stop.wait(0.25):
                    follower.poll()
                    if time.monotonic() > deadline:
                        click.echo("probes: Locust did not finish in time; stopping it", err=True)
                        break
                stop_locust(proc)
                follower.poll()
        finally:
            stop.set()
            if proc is not None and proc.poll() is None:
                stop_locust(proc, timeout=5.0)
            probe = _stop_probe(probe_thread, probe_writer)
            if driver is not None:
                driver.stop()
    counts = read_counts(run.path)
    interrupted = signals[0] if signals else None
    run.finish(locust=counts, probe=probe, interrupted=interrupted)
    if interrupted:
        n = (counts or {}).get("samples", follower.rows)
        click.echo(f"probes: {interrupted}: stopped early; {n} Locust requests recorded", err=True)
    return LoadOutcome(proc.returncode if proc else None, counts, probe, interrupted)


def _start_probe(spec: RequestSpec, run: Run, load: LoadSettings, tally: Tally) -> Any:
    if not load.probe_rate:
        return None, None
    from probes.canary import ProbeSettings, ProbeThread

    writer = run.shard_writer("probe")
    settings = ProbeSettings(rate=load.probe_rate, duration=load.shape.duration)
    thread = ProbeThread(spec, settings, writer, on_sample=tally.add_sample)
    thread.start()
    return thread, writer


def _stop_probe(thread: Any, writer: Any) -> dict[str, Any] | None:
    if thread is None:
        return None
    thread.stop()
    thread.join(timeout=30)
    if thread.is_alive():
        # Never close the writer under a live sender: what it still adds would be lost.
        click.echo("probes: the canary probe did not stop in 30 s; its last rows may be missing",
                   err=True)  # fmt: skip
    writer.close()
    stats = thread.stats.as_dict() if thread.stats is not None else {}
    if thread.error is not None:
        click.echo(f"probes: the canary probe failed: {thread.error}", err=True)
        stats["error"] = str(thread.error)
    return stats or None


def _platform(params: dict[str, Any]) -> tuple[Any, Any]:
    """With ``--api/--workload``: the client and the resolved target, else (None, None)."""
    from probes.cli.observe_api import wants_api

    if not wants_api(params.pop("url"), params):
        return None, None
    from probes.controlplane import resolve_target
    from probes.workload import WorkloadClient

    token_env = parse_env_name(params["token_env"])
    client = WorkloadClient(params["api"], token_env=token_env, timeout=params["timeout"])
    try:
        return client, resolve_target(client, params["workload"], params["replace_with"])
    except BaseException:
        client.close()
        raise


@click.command()
@click.argument("url", required=False)
@recording_options
@request_options
@option(
    "--users",
    "-u",
    type=int,
    default=10,
    show_default=True,
    help="Concurrent Locust users (closed model: each sends as fast as answered).",
)
@option(
    "--spawn-rate",
    "-r",
    type=float,
    default=10.0,
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
    default=0,
    show_default=True,
    metavar="N",
    help="Locust worker processes (--processes N); 0 runs one process.",
)
@option(
    "--probe-rate",
    type=float,
    default=0.0,
    show_default=True,
    metavar="PER_SECOND",
    help="Also run the canary probe at this rate beside the load (0: no probe).",
)
@option(
    "--api",
    default=None,
    metavar="BASE",
    help="Workload API base: load the Workload's invoke endpoint and record the control plane.",
)
@option("--workload", default=None, metavar="ID", help="Workload id (with --api).")
@option(
    "--replace-with",
    default=None,
    metavar="ARTIFACT_ID",
    help="Start a replacement onto this artifact during the load (with --api/--workload).",
)
@option(
    "--replace-at",
    type=float,
    default=None,
    metavar="SECONDS",
    help="When to start the replacement, in seconds from the start (default 2).",
)
@option(
    "--warmup-minutes",
    type=int,
    default=0,
    show_default=True,
    metavar="N",
    help="Replacement warmup (warmupDurationMinutes).",
)
@option(
    "--keep-old-minutes",
    type=int,
    default=0,
    show_default=True,
    metavar="N",
    help="Rollback window (keepOldVersionMinutes).",
)
def command(url: str | None, **params: Any) -> int:
    """Locust load on URL (headless), every request version-tagged and recorded.

    Writes RUN_DIR (manifest.json, samples/, locust.log, then summary.json and
    report.html), prints the report's path and the verdict. Exit 0 pass, 1 fail, 2 bad
    flags, 3 target unusable.
    """  # fmt: skip
    load = parse_load(params)
    from probes.cli.observe import parse_rate, validate_slos

    if load.probe_rate:
        parse_rate(load.probe_rate, "--probe-rate")
    slos = validate_slos(params["slos"])
    run_id = parse_run_id(params["run_id"])
    replace_at = params["replace_at"]
    if replace_at is not None and (not params.get("replace_with") or replace_at < 0):
        raise ConfigError("--replace-at: needs --replace-with ARTIFACT_ID and SECONDS >= 0")
    params["url"] = url
    client, target = _platform(params)
    try:
        return _load(url, params, load, slos, run_id, client, target, replace_at)
    finally:
        if client is not None:
            client.close()


def _load(
    url: str | None,
    params: dict[str, Any],
    load: LoadSettings,
    slos: list[str],
    run_id: str | None,
    client: Any,
    target: Any,
    replace_at: float | None,
) -> int:
    invoke_url = target.invoke_url if target is not None else url
    if invoke_url is None:  # wants_api already refused this; kept for -O and for readers
        raise ConfigError("URL: give an invoke URL, or --api BASE --workload ID")
    spec = build_request(invoke_url, **request_kwargs(params))
    params["locust_host"] = invoke_url
    extra = {"replace_at_s": replace_at} if replace_at is not None else {}
    run = Run.create(
        params["runs_dir"], run_id, "load", target=spec.describe(),
        settings=load_settings(spec, load, slos, extra),
    )  # fmt: skip
    driver = None
    if target is not None:
        from probes.controlplane import RolloutDriver

        run.update(platform=target.manifest())
        driver = RolloutDriver(
            client, target, run.events, warmup_minutes=params["warmup_minutes"],
            keep_old_minutes=params["keep_old_minutes"],
            lead_in_s=replace_at if replace_at is not None else 2.0,
        )  # fmt: skip
    outcome = record_load(spec, run, load, params, driver=driver, replace_at=replace_at)
    if driver is not None:
        run.update(platform={**target.manifest(), "outcome": driver.outcome})
    if outcome.counts is None:
        # Locust itself failed (a bad option, a crash): report what was recorded anyway
        # (the probe's rows, any Locust shard that landed), then fail as a set-up error.
        tail = _log_tail(run.path / LOCUST_LOG)
        if shard_paths(run.path):
            finish_recording(Path(run.path))
        raise ProbesError(
            f"Locust did not finish its run (exit {outcome.returncode}); see"
            f" {run.path / LOCUST_LOG}:\n{tail}"
        )
    sys.stderr.flush()
    code = finish_recording(Path(run.path))
    if driver is not None and driver.failure is not None:
        click.echo(f"probes: replacement not started: {driver.failure}", err=True)
        return 3
    return code
