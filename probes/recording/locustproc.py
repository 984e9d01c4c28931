"""Locust as a subprocess: the one place that builds its command line, starts it, follows
its shards, stops it and reads its counts. Load and capacity runs share ``run_locust``.

Locust runs headless (``python -m locust`` on the package's locustfile,
``probes/locustglue/locustfile.py``) in its own session, so a Ctrl-C in a terminal reaches
only the recording; its output goes to ``RUN_DIR/locust.log``. ``workers = N`` becomes
Locust's ``--processes N``; ``expect_workers = N`` starts a master on ``master_bind`` that
waits up to ``worker_timeout_s`` for N workers started elsewhere (plain ``locust -f
locustfiles/invoke.py --worker --master-host H --master-port P``: every ``--probes-*`` option
reaches them from the master). The Locust master writes its sample shards straight into
``RUN_DIR``, and marks in ``events.jsonl`` each worker that connects or is lost and the
moment the load starts (``probes.locustglue.workers``).

Nothing secret is on its command line (any local user can read it in ``ps``): the request's
headers and body reach the glue through its environment. Locust dies with the recording
whatever kills it (``probes.lifeline``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probes.canary import DEFAULT_MAX_BODY_BYTES
from probes.errors import ConfigError, ProbesError
from probes.lifeline import parent_env
from probes.locustglue import BODY_ENV, HEADERS_ENV
from probes.locustglue.workers import CONNECTED, LOAD_STARTED
from probes.recording.types import Progress
from probes.records import read_events
from probes.run import LOCUST_COUNTS_FILE, LOCUST_LOG_FILE
from probes.settings import RequestSpec
from probes.shapes import Shape

__all__ = [
    "DEFAULT_MASTER_BIND",
    "DEFAULT_WORKER_TIMEOUT_S",
    "LOCUST_QUIT_TIMEOUT_S",
    "MAX_WORKERS",
    "LocustRun",
    "LocustSettings",
    "MasterBind",
    "ShardFollower",
    "locust_command",
    "locust_env",
    "locustfile_path",
    "log_tail",
    "master_port_args",
    "parse_master_bind",
    "parse_worker_timeout",
    "read_counts",
    "run_locust",
    "stop_locust",
]

#: How long Locust may take to quit after SIGINT before its process group is killed.
LOCUST_QUIT_TIMEOUT_S = 60.0
#: A stop asked for this close to Locust's own end (or after it) waits for that end instead of
#: interrupting it: a SIGINT inside Locust's own shutdown aborts it before it writes its counts
#: (seen beside a CPU hog: a rate step judged broken 2 s after its end, as Locust quit by itself).
OWN_END_MARGIN_S = 1.0
MAX_WORKERS = 256
POLL_S = 0.25
#: Where a master waiting for workers from elsewhere listens, unless told otherwise.
DEFAULT_MASTER_BIND = "127.0.0.1:5557"
#: How long it waits for them.
DEFAULT_WORKER_TIMEOUT_S = 60.0
MAX_WORKER_TIMEOUT_S = 86_400.0


@dataclass(frozen=True)
class MasterBind:
    """Where a master waiting for workers from elsewhere listens, and how long it waits."""

    host: str = "127.0.0.1"
    port: int = 5557
    worker_timeout_s: float = DEFAULT_WORKER_TIMEOUT_S

    @classmethod
    def build(
        cls,
        master_bind: Any = DEFAULT_MASTER_BIND,
        worker_timeout: Any = DEFAULT_WORKER_TIMEOUT_S,
        *,
        place: Callable[[str], str],
    ) -> MasterBind:
        """From raw values; ConfigError naming ``place("master_bind")`` or
        ``place("worker_timeout")``."""
        host, port = parse_master_bind(master_bind, place("master_bind"))
        return cls(host, port, parse_worker_timeout(worker_timeout, place("worker_timeout")))

    @property
    def address(self) -> str:
        """``HOST:PORT`` (``[::1]:5557`` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def manifest(self) -> dict[str, Any]:
        """The manifest's settings of a master waiting for workers: where it listened (a
        non-loopback bind is open to other machines, and says so)."""
        return {
            "master_bind": self.address,
            "master_bind_loopback": self.loopback,
            "worker_timeout_s": self.worker_timeout_s,
        }


@dataclass(frozen=True)
class LocustSettings:
    """What Locust is asked to run: a load shape, on this many processes."""

    shape: Shape
    #: Locust worker processes on this machine (``--processes``); 0 runs one process.
    workers: int = 0
    #: Start a master that waits for this many workers started elsewhere.
    expect_workers: int = 0
    #: Where that master listens for them, and how long it waits.
    master: MasterBind = field(default_factory=lambda: MasterBind())
    #: Bytes of a body each user keeps (for tagging); see ``probes.locustglue.user``.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: More ``--probes-*`` arguments (an open-model rate plan: ``--probes-rate-plan``).
    extra_args: tuple[str, ...] = ()

    @property
    def run_time_s(self) -> int:
        """Locust's ``--run-time`` is whole seconds."""
        return max(1, math.ceil(self.shape.duration))


def locustfile_path() -> Path:
    """The package's own locustfile (found without importing Locust)."""
    import probes.locustglue

    return Path(probes.locustglue.__file__).with_name("locustfile.py")


def parse_master_bind(value: Any, place: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:5557`` for IPv6) of a master's bind; ConfigError naming
    ``place``."""
    text = str(value or "").strip()
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{place}: expected HOST:PORT (e.g. 0.0.0.0:5557), got {value!r}")
    if any(c.isspace() or c in "/*" for c in host):
        raise ConfigError(f"{place}: {host!r} is not a host name or address")
    return host, int(port_text)


def parse_worker_timeout(value: Any, place: str) -> float:
    """Seconds a master waits for its workers (> 0); ConfigError naming ``place``."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 < seconds <= MAX_WORKER_TIMEOUT_S:
        raise ConfigError(
            f"{place}: expected seconds > 0 and <= {MAX_WORKER_TIMEOUT_S:g}, got {value!r}"
        )
    return seconds


def is_loopback(host: str) -> bool:
    """Whether a bind host is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def master_port_args(host: str = "127.0.0.1") -> list[str]:
    """Bind the Locust master to ``host`` on a free port: its default (``*:5557``) would
    listen on every interface and collide with any other Locust master on the machine."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = str(sock.getsockname()[1])
    return ["--master-bind-host", host, "--master-bind-port", port, "--master-port", port]


def locust_command(spec: RequestSpec, locust: LocustSettings, run_dir: Path) -> list[str]:
    """The Locust command line of a recording into ``run_dir`` (no secret in it)."""
    shape = locust.shape
    rules = spec.tag_rules.describe()
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile_path()), "--headless",
        "--only-summary", "--host", spec.url,
        "--users", str(shape.users), "--spawn-rate", f"{shape.spawn_rate:g}",
        "--run-time", f"{locust.run_time_s}s", "--stop-timeout", "0",
        "--probes-run-dir", str(run_dir),
        "--probes-method", spec.method,
        "--probes-timeout", f"{spec.timeout:g}",
        "--probes-token-env", spec.token_env,
        "--probes-max-body-bytes", str(locust.max_body_bytes),
    ]  # fmt: skip
    for header in rules["headers"]:
        cmd += ["--probes-tag-header", header]
    for path in rules["json_paths"]:
        cmd += ["--probes-tag-json", path]
    if rules["regex"]:
        cmd += ["--probes-tag-regex", rules["regex"]]
    if shape.name != "steady" or shape.params:
        params_text = ",".join(f"{k}={v:g}" for k, v in shape.params)
        cmd += ["--probes-shape", f"{shape.name}:{params_text}" if params_text else shape.name]
    cmd += locust.extra_args
    if locust.expect_workers:
        cmd += ["--master", "--expect-workers", str(locust.expect_workers)]
        # Locust takes whole seconds here (0 would mean forever).
        wait_s = max(1, math.ceil(locust.master.worker_timeout_s))
        cmd += ["--expect-workers-max-wait", str(wait_s)]
        cmd += ["--master-bind-host", locust.master.host]
        cmd += ["--master-bind-port", str(locust.master.port)]
    elif locust.workers:
        cmd += ["--processes", str(locust.workers), *master_port_args()]
    return cmd


def locust_env(spec: RequestSpec) -> dict[str, str]:
    """Locust's environment: ours, the request's headers and body (kept off its command
    line), and the recording's pid (Locust dies with it)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **parent_env()}
    env.pop(HEADERS_ENV, None)
    env.pop(BODY_ENV, None)
    if spec.headers:
        env[HEADERS_ENV] = json.dumps([f"{k}: {v}" for k, v in spec.headers])
    if spec.body is not None:
        env[BODY_ENV] = base64.b64encode(spec.body).decode("ascii")
    return env


class ShardFollower:
    """Reads new Locust shards as they land and shows their rows live (``Progress``).
    Subclasses read more ``columns`` and extend ``on_table``."""

    columns: tuple[str, ...] = ("version", "error", "latency_ms")

    def __init__(self, run_dir: Path, progress: Progress, prefix: str = "locust-") -> None:
        self.directory = run_dir / "samples"
        self.progress = progress
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
            except (OSError, ValueError):
                continue
            self.on_table(table)

    def on_table(self, table: Any) -> None:
        """Take one new shard (an Arrow table of ``columns``)."""
        add = self.progress.add
        for version, error, latency in zip(
            table.column("version").to_pylist(),
            table.column("error").to_pylist(),
            table.column("latency_ms").to_pylist(),
            strict=True,
        ):
            add(version, error, latency)
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
    """Locust's own counts (``locust.json``, written by the glue at its end), or None."""
    try:
        data = json.loads((run_dir / LOCUST_COUNTS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@dataclass
class LocustRun:
    """What one Locust subprocess did."""

    returncode: int | None
    counts: dict[str, Any] | None
    #: When the recording stopped Locust before its own end (``until`` said so), or None.
    stopped_ts: float | None = None
    warnings: list[str] = field(default_factory=list)
    #: A master that gave up waiting for its workers: how many came, of how many.
    too_few_workers: str | None = None

    def failure(self, run_dir: Path) -> str | None:
        """Why Locust did not record, with the tail of its log; None when it did."""
        if self.too_few_workers is not None:
            return self.too_few_workers
        if self.counts is not None:
            return None
        log = run_dir / LOCUST_LOG_FILE
        tail = log_tail(log)
        return f"Locust did not finish its run (exit {self.returncode}); see {log}:\n{tail}"


def run_locust(
    spec: RequestSpec,
    locust: LocustSettings,
    run_dir: Path,
    *,
    stop: threading.Event,
    follower: ShardFollower,
    until: Callable[[], bool] | None = None,
    on_start: Callable[[], None] | None = None,
) -> LocustRun:
    """Run Locust into ``run_dir`` until it ends by itself, ``stop`` is set, or ``until()``
    says so (polled with the shards every ``POLL_S``); stop it so that it flushes.

    ``on_start`` runs once Locust's process exists (the rollout driver starts then).
    Locust ends itself at ``--run-time``; a deadline of the run's length plus
    ``LOCUST_QUIT_TIMEOUT_S`` guards against one that never starts (workers that never
    connect).
    """
    cmd = locust_command(spec, locust, run_dir)
    result = LocustRun(None, None)
    proc: subprocess.Popen[bytes] | None = None
    waiting = _LoadStart(run_dir, on_start, locust.expect_workers > 0)
    with (run_dir / LOCUST_LOG_FILE).open("wb") as log:
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=locust_env(spec),
                start_new_session=True,
            )
            waiting.poll()
            deadline = time.monotonic() + locust.shape.duration + LOCUST_QUIT_TIMEOUT_S
            if locust.expect_workers:
                deadline += locust.master.worker_timeout_s
            while proc.poll() is None and not stop.wait(POLL_S):
                waiting.poll()
                follower.poll()
                if until is not None and until():
                    break
                if time.monotonic() > deadline:
                    result.warnings.append("Locust did not finish in time; stopping it")
                    break
            if time.monotonic() <= deadline and waiting.ending(locust.shape.duration):
                # Locust is ending by itself (its --run-time is up): a SIGINT now lands in its
                # own shutdown, aborts it before it writes its counts, and the run loses them
                while proc.poll() is None and time.monotonic() <= deadline:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(POLL_S)
                    follower.poll()
            if proc.poll() is None:
                result.stopped_ts = time.time()
            stop_locust(proc)
            follower.poll()
        finally:
            if proc is not None and proc.poll() is None:
                stop_locust(proc, timeout=5.0)
    result.returncode = proc.returncode if proc is not None else None
    result.counts = read_counts(run_dir)
    if locust.expect_workers and not waiting.started and not stop.is_set():
        came = len(connected_workers(run_dir))
        result.too_few_workers = (
            f"only {came} of {locust.expect_workers} Locust workers connected to the master on "
            f"{locust.master.address} within {locust.master.worker_timeout_s:g} s"
        )
    return result


def connected_workers(run_dir: Path) -> list[str]:
    """Ids of the workers the master saw connect (its ``worker connected`` markers)."""
    try:
        events = read_events(run_dir)
    except ProbesError:
        return []
    return [
        str((e.get("detail") or {}).get("id"))
        for e in events
        if e.get("kind") == "marker" and e.get("status") == CONNECTED
    ]


class _LoadStart:
    """Calls ``on_start`` once the load starts: at once for Locust alone, at the master's
    ``load started`` marker when it first waits for workers from elsewhere (a replacement
    ``--replace-at S`` is then S seconds into the load, not into the wait)."""

    def __init__(self, run_dir: Path, on_start: Callable[[], None] | None, wait: bool) -> None:
        self.run_dir = run_dir
        self.on_start = on_start
        self.wait = wait
        self.started = False

    def poll(self) -> None:
        if self.started:
            return
        if self.wait and _marker_ts(self.run_dir, LOAD_STARTED) is None:
            return
        self.started = True
        if self.on_start is not None:
            self.on_start()

    def ending(self, duration: float) -> bool:
        """Whether Locust's own end (``duration`` after its load started, less
        ``OWN_END_MARGIN_S``) has come: it then stops by itself and is not interrupted.

        Timed from the glue's ``load started`` marker (Locust's ``test_start``, where its
        shape's clock starts), not from the process's start: Locust takes a second or more to
        import and open the run, and a stop asked that long before its end must still stop it.
        """
        started = _marker_ts(self.run_dir, LOAD_STARTED)
        return started is not None and time.time() >= started + duration - OWN_END_MARGIN_S


def _marker_ts(run_dir: Path, status: str) -> float | None:
    """When the first ``marker`` event of ``status`` was written (epoch seconds), or None."""
    try:
        events = read_events(run_dir)  # every row it returns has a ts in epoch seconds
    except ProbesError:
        return None
    for event in events:
        if event.get("kind") == "marker" and event.get("status") == status:
            return float(event["ts"])
    return None
