"""The Locust glue: every Locust request becomes a version-tagged sample row, with no loss.

The only module of the package that imports Locust. A locustfile imports ``InvokeUser``
from here; importing this module registers two listeners on ``locust.events``: one adds
the ``--probes-*`` command-line options, the other (``init``) wires recording into the
Environment according to the runner's role:

* **local** (one process): a ``Recorder`` on ``events.request`` tags each response and
  hands the sample to a ``ShardWriter`` (Parquet shards on a timer, never one growing list).
* **worker**: the recorder buffers rows; the buffer rides to the master *in the same
  message as Locust's own stats* (``events.report_to_master``), so every request Locust
  counts arrives with its sample and the two counts agree exactly. A buffer that grows past
  ``BATCH_ROWS`` between two reports goes early over the message channel
  (``runner.send_message(MESSAGE, {"rows": rows})``); messages from one worker arrive in order.
* **master**: receives both (``events.worker_report`` and ``register_message``), writes the
  shards, keeps the last seconds for the Versions tab. Its ``quit`` first tells the workers
  to quit and waits until each has said goodbye (so their final reports are in) before
  Locust's own quit, which would otherwise give them half a second.

Where samples go: ``--probes-run-dir`` (``probes load`` creates the run and passes it),
else a new ``<--probes-runs-dir>/<timestamp>/`` with a manifest of kind ``load``. At the end
the master (or the single process) writes ``RUN_DIR/locust.json`` with Locust's own request
and failure counts beside the number of samples written.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import socket
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import gevent
from flask import Blueprint, jsonify, request
from geventhttpclient.header import Headers
from locust import FastHttpUser, LoadTestShape, events, task
from locust.env import Environment
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner

from probes.errors import ConfigError
from probes.locustglue import CALLER_KEY, HEADERS_ENV
from probes.locustglue.window import (
    DEFAULT_WINDOW_S,
    RecentSamples,
    SampleRow,
    rollout_state,
    table_rows,
)
from probes.records import (
    Sample,
    ShardWriter,
    http_error_class,
    read_events,
    samples_to_table,
    write_json_atomic,
)
from probes.run import Run, worker_name
from probes.settings import RequestSpec, build_request, mask_url
from probes.shapes import Shape, parse_shape, users_at
from probes.tagging import DEFAULT_RULES, MAX_LABEL, TagRules, tag

#: Custom message type of an early sample batch from a worker.
MESSAGE = "probes_samples"
#: Key of the sample rows in a worker's stats report.
REPORT_KEY = "probes_samples"
#: A worker sends its buffer early once it holds this many rows.
BATCH_ROWS = 10_000
#: How long a quitting master waits for its workers' final reports.
WORKER_QUIT_TIMEOUT_S = 15.0
COUNTS_FILE = "locust.json"
VERSIONS_PATH = "/probes/versions"
TAB_KEY = "versions"
MAX_BYTES = 2**31 - 1


# --------------------------------------------------------------------------- options


def _config_defaults() -> dict[str, Any]:
    """``[load]`` (or top-level) keys of probes.toml / PROBES_CONFIG as option defaults."""
    path = Path(os.environ.get("PROBES_CONFIG", "probes.toml"))
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("probes", {})
    merged = {k: v for k, v in data.items() if not isinstance(v, dict)}
    merged.update(data.get("load", {}) if isinstance(data.get("load"), dict) else {})
    return {k.replace("-", "_"): v for k, v in merged.items()}


#: (flag suffix, config key, kwargs) of every --probes-* option.
_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("run-dir", "run_dir", {"help": "Record into this existing run directory."}),
    ("runs-dir", "runs_dir", {"default": "runs", "help": "Where a new run directory goes."}),
    ("method", "method", {"default": "GET", "help": "HTTP method of each request."}),
    ("path", "path", {"help": "App path appended to the host, e.g. /chat/completions."}),
    ("header", "headers", {"action": "append", "help": "'Name: value', repeatable."}),
    ("body", "body", {"help": "Request body (JSON gets a JSON content type)."}),
    ("body-file", "body_file", {"help": "Read the request body from a file."}),
    ("timeout", "timeout", {"type": float, "default": 10.0, "help": "Seconds per request."}),
    (
        "token-env",
        "token_env",
        {
            "default": "DATAROBOT_API_TOKEN",
            "help": "Environment variable holding the bearer token.",
        },
    ),
    ("tag-header", "tag_headers", {"action": "append", "help": "Version header, repeatable."}),
    ("tag-json", "tag_json", {"action": "append", "help": "Version JSON path, repeatable."}),
    ("tag-regex", "tag_regex", {"help": "Regex over the body revealing the version."}),
    ("shape", "shape", {"help": "Load shape NAME[:key=value,...]: steady, ramp, step, spike."}),
    (
        "window",
        "window",
        {
            "type": float,
            "default": DEFAULT_WINDOW_S,
            "help": "Seconds of traffic in the Versions tab.",
        },
    ),
    ("api", "api", {"help": "Workload API base: record the control plane beside the load."}),
    ("workload", "workload", {"help": "Workload id (with --probes-api)."}),
)


def add_arguments(parser: Any) -> None:
    """Add the ``--probes-*`` options (each also read from ``PROBES_<NAME>`` and probes.toml)."""
    defaults = _config_defaults()
    for suffix, key, kwargs in _OPTIONS:
        kwargs = dict(kwargs)
        if key in defaults:
            value = defaults[key]
            kwargs["default"] = list(value) if kwargs.get("action") == "append" else value
        parser.add_argument(
            f"--probes-{suffix}",
            dest=f"probes_{suffix.replace('-', '_')}",
            env_var=f"PROBES_{suffix.replace('-', '_').upper()}",
            include_in_web_ui=False,
            **kwargs,
        )


def _opt(options: Any, name: str, default: Any = None) -> Any:
    value = getattr(options, f"probes_{name}", None) if options is not None else None
    return default if value is None else value


def _env_headers() -> tuple[str, ...]:
    raw = os.environ.get(HEADERS_ENV)
    if not raw:
        return ()
    try:
        values = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{HEADERS_ENV}: not a JSON list of 'Name: value' strings") from exc
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{HEADERS_ENV}: not a JSON list of 'Name: value' strings")
    return tuple(values)


def request_spec(options: Any, host: str | None) -> RequestSpec:
    """The RequestSpec of InvokeUser from Locust's parsed options and host."""
    if not host:
        raise ConfigError("--host: the invoke URL is required (e.g. --host http://127.0.0.1:8080/)")
    return build_request(
        host,
        method=_opt(options, "method", "GET"),
        path=_opt(options, "path"),
        headers=tuple(_opt(options, "header", ())) + _env_headers(),
        body=_opt(options, "body"),
        body_file=_opt(options, "body_file"),
        timeout=float(_opt(options, "timeout", 10.0)),
        token_env=_opt(options, "token_env", "DATAROBOT_API_TOKEN"),
        tag_headers=tuple(_opt(options, "tag_header", ())),
        tag_json=tuple(_opt(options, "tag_json", ())),
        tag_regex=_opt(options, "tag_regex"),
    )


# --------------------------------------------------------------------------- recording


def transport_error_class(exc: BaseException | None) -> str:
    """The sample ``error`` class of a request that got no HTTP response."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        if isinstance(cur, gevent.Timeout | TimeoutError | socket.timeout) or "Timeout" in name:
            return "timeout"
        if name == "HTTPConnectionClosed" or isinstance(
            cur, ConnectionResetError | BrokenPipeError
        ):
            return "reset"
        if isinstance(cur, ConnectionRefusedError | socket.gaierror):
            return "connect"
        if name in ("HTTPParseError", "HTTPProtocolViolationError"):
            return "protocol"
        if isinstance(cur, OSError) and cur.errno is not None:
            if cur.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
                return "reset"
            if cur.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                return "connect"
        # geventhttpclient keeps the cause of a RetriesExceeded in ``original``.
        cur = getattr(cur, "original", None) or cur.__cause__ or cur.__context__
    return "other"


class _Headers:
    """Case-insensitive ``.get`` over geventhttpclient's Headers (a dict subclass that
    ``tagging.tag`` would otherwise copy into a lower-cased dict on every response)."""

    __slots__ = ("_h",)

    def __init__(self, headers: Any) -> None:
        self._h = headers

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self._h.get(name, default)
        except Exception:
            return default


class Recorder:
    """``events.request`` listener: one tagged sample per request, handed to ``sink``."""

    def __init__(
        self, sink: Callable[[SampleRow], None], worker: str, rules: TagRules = DEFAULT_RULES
    ) -> None:
        self.sink = sink
        self.worker = worker
        self.rules = rules

    @property
    def rules(self) -> TagRules:
        return self._rules

    @rules.setter
    def rules(self, rules: TagRules) -> None:
        self._rules = rules
        self._lower = tuple(h.lower() for h in rules.headers)

    def tag(self, headers: Any, body: bytes | None) -> tuple[str, str]:
        """``tagging.tag`` with a fast path for geventhttpclient's Headers: a dict keyed by
        lower-cased name holding ``(name, value)`` (a list of them when repeated, which
        ``tag`` would not accept either)."""
        if isinstance(headers, Headers):
            for name in self._lower:
                entry = dict.get(headers, name)
                if isinstance(entry, tuple) and isinstance(entry[1], str):
                    text = entry[1].strip()
                    if text:
                        return text[:MAX_LABEL], "header"
            return tag(None, body, self._rules)  # the header rules did not match: JSON, regex
        return tag(_Headers(headers) if headers is not None else None, body, self._rules)

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        response: Any = None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        # Each InvokeUser is a caller of its own (``worker`` = process/user), so flips are
        # counted per caller; requests of other user classes stay on the process's name.
        worker = (context.get(CALLER_KEY) if context else None) or self.worker
        status = int(getattr(response, "status_code", 0) or 0) if response is not None else 0
        if status:
            headers = getattr(response, "headers", None)
            body = getattr(response, "content", None)
            version, tag_source = self.tag(headers, body)
            if status < 400 and exception is None:
                error = None
            else:  # an HTTP error, or a response a catch_response block marked as failed
                error = http_error_class(status) or "other"
        else:
            version, tag_source = "unknown", "none"
            error = transport_error_class(exception)
        latency = float(response_time or 0.0)
        ts = start_time if start_time is not None else time.time() - latency / 1000
        # A plain tuple in Sample order, not a Sample: CPython's collector untracks exact
        # tuples of plain values, never NamedTuple instances, and thousands of buffered rows
        # scanned by every collection cost more than the rest of this function (measured).
        self.sink(
            (
                ts,
                ts,
                latency,
                "locust",
                worker,
                request_type,
                name,
                status,
                error,
                version,
                tag_source,
                min(int(response_length or 0), MAX_BYTES),
                None,
            )
        )


class WorkerBuffer:
    """A worker's rows between two reports to the master."""

    def __init__(
        self, send: Callable[[list[SampleRow]], None], batch_rows: int = BATCH_ROWS
    ) -> None:
        self.rows: list[SampleRow] = []
        self.send = send
        self.batch_rows = batch_rows
        self.sent = 0

    def add(self, sample: SampleRow) -> None:
        self.rows.append(sample)
        if len(self.rows) >= self.batch_rows:
            self.send_now()

    def drain(self) -> list[SampleRow]:
        rows, self.rows = self.rows, []
        self.sent += len(rows)
        return rows

    def send_now(self) -> None:
        rows = self.drain()
        if rows:
            self.send(rows)

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        # Same message as Locust's stats for the same requests: the counts cannot diverge.
        data[REPORT_KEY] = self.drain()


class Store:
    """Where samples end up on the master or a single process: shards plus the live window."""

    def __init__(
        self, writer: ShardWriter, window_s: float = DEFAULT_WINDOW_S, live: bool = True
    ) -> None:
        self.writer = writer
        self.recent = RecentSamples(window_s)
        #: Keep the live window only when someone can look at it (the web UI is on).
        self.live = live
        self.received = 0

    def add_samples(self, rows: list[SampleRow]) -> None:
        """Rows in Sample order: Samples, tuples, or lists as they come off the wire."""
        self.writer.add_many(cast(list[Sample], rows))  # the writer only iterates them
        if self.live:
            self.recent.add_many(rows)
        self.received += len(rows)

    def add_rows(self, rows: list[Any]) -> None:
        """Rows off the wire (msgpack lists): as tuples, which the collector can untrack."""
        self.add_samples([tuple(row) for row in rows])


# --------------------------------------------------------------------------- state


class ProbesState:
    """What the glue keeps per Environment (``environment.probes``)."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.spec: RequestSpec | None = None
        self.run: Run | None = None
        self.owns_run = False
        self.store: Store | None = None
        self.buffer: WorkerBuffer | None = None
        self.recorder: Recorder | None = None
        self.closed = False
        self.watcher: Any = None
        #: Rows of this process's own users (single-process mode), moved to the store in
        #: batches by ``drain_local``: a list append is all a request pays.
        self.local_rows: list[SampleRow] = []

    def drain_local(self) -> None:
        if self.local_rows:
            # No greenlet switch between the copy and the clear: no row can slip between.
            rows = self.local_rows[:]
            self.local_rows.clear()
            self.open_store().add_samples(rows)

    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    def spec_for(self, host: str | None) -> RequestSpec:
        if self.spec is None or not self.spec.url.startswith((host or "").rstrip("/")):
            self.spec = request_spec(self.options, host)
            if self.recorder is not None:
                self.recorder.rules = self.spec.tag_rules
        return self.spec

    def open_store(self) -> Store:
        """Open (or create) the run directory and its shard writer, once."""
        if self.store is not None:
            return self.store
        run_dir = _opt(self.options, "run_dir")
        if run_dir:
            self.run = Run.open(run_dir)
        else:
            spec = self.spec_for(self.environment.host)
            self.run = Run.create(
                _opt(self.options, "runs_dir", "runs"),
                None,
                "load",
                target={"url": mask_url(spec.url)},
                settings=standalone_settings(self.options, spec),
            )
            self.owns_run = True
            self.watcher = start_watcher(self.options, self.run, spec)
        prefix = f"locust-{os.getpid()}"
        writer = self.run.shard_writer(prefix)
        window_s = float(_opt(self.options, "window", DEFAULT_WINDOW_S))
        self.store = Store(writer, window_s, live=self.environment.web_ui is not None)
        return self.store

    def close(self) -> None:
        """Write what is left and Locust's own counts; idempotent."""
        if self.closed or self.store is None or self.run is None:
            return
        self.drain_local()
        self.closed = True
        self.store.writer.close()
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher.client.close()
        total = self.environment.stats.total if self.environment.stats is not None else None
        counts = {
            "requests": total.num_requests if total else 0,
            "failures": total.num_failures if total else 0,
            "samples": self.store.writer.rows_written,
            "runner": type(self.environment.runner).__name__,
        }
        write_json_atomic(self.run.path / COUNTS_FILE, counts)
        if self.owns_run:
            self.run.finish(locust=counts)


def start_watcher(options: Any, run: Run, spec: RequestSpec) -> Any:
    """With ``--probes-api``/``--probes-workload``: the rollout watcher writing the control
    plane's lifecycle into the run (the Versions tab shows it). ``probes load`` runs its own
    watcher and passes ``--probes-run-dir`` instead."""
    api, workload = _opt(options, "api"), _opt(options, "workload")
    if not (api and workload):
        return None
    from probes.controlplane import poll_client, resolve_target
    from probes.watch import Watcher
    from probes.workload import WorkloadClient

    with WorkloadClient(api, token_env=spec.token_env) as client:
        target = resolve_target(client, workload)
        run.update(platform=target.manifest())
        watch_client = poll_client(client)
    watcher = Watcher(watch_client, workload, run.events, labels=target.labels)
    return watcher.start(deadline=time.time() + 7 * 86400)  # stopped at close


def standalone_settings(options: Any, spec: RequestSpec) -> dict[str, Any]:
    """Manifest settings of a run started by ``locust -f`` itself (no ``probes load``)."""
    return {
        "slos": [],
        "bucket_s": 1.0,
        "request": spec.describe(),
        "users": getattr(options, "num_users", None),
        "spawn_rate": getattr(options, "spawn_rate", None),
        "shape": _opt(options, "shape"),
        "processes": getattr(options, "processes", None),
    }


def state_of(environment: Environment) -> ProbesState:
    state = getattr(environment, "probes", None)
    if state is None:
        state = ProbesState(environment)
        environment.probes = state  # type: ignore[attr-defined]
    return state


# --------------------------------------------------------------------------- wiring


def warm_up_arrow() -> None:
    """Build and write one tiny shard in memory now: pyarrow's first table costs ~0.2 s of
    CPU, which would otherwise stall the load at the first flush."""
    import io

    import pyarrow.parquet as pq

    row = Sample(0.0, 0.0, 0.0, "locust", "w", "GET", "/", 200, None, "v", "header", 0, None)
    pq.write_table(samples_to_table([row]), io.BytesIO(), compression="zstd")


def setup(environment: Environment) -> ProbesState:
    """Wire recording into an Environment according to its runner's role."""
    state = state_of(environment)
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        warm_up_arrow()
    ev = environment.events
    if isinstance(runner, WorkerRunner):
        state.buffer = WorkerBuffer(lambda rows: runner.send_message(MESSAGE, {"rows": rows}))
        state.recorder = Recorder(state.buffer.add, worker_name("locust"))
        ev.report_to_master.add_listener(state.buffer.on_report_to_master)
    elif isinstance(runner, MasterRunner):
        runner.register_message(
            MESSAGE, lambda environment, msg, **_: _store(state).add_rows(msg.data["rows"])
        )
        ev.worker_report.add_listener(lambda client_id, data, **_: _on_worker_report(state, data))
        _wrap_master_quit(runner)
    else:
        state.recorder = Recorder(state.local_rows.append, worker_name("locust"))
        gevent.spawn(_drain_loop, state)
    if state.recorder is not None:
        ev.request.add_listener(state.recorder.on_request)
    ev.test_start.add_listener(lambda environment, **_: _on_test_start(state))
    ev.quitting.add_listener(lambda environment, **_: _on_quitting(state))
    headless = bool(getattr(environment.parsed_options, "headless", False))
    if headless and environment.host and not isinstance(runner, WorkerRunner):
        # Headless with a host: the run directory (manifest, tool versions) is made now,
        # not at test start where it would delay the first users. The web UI stays lazy,
        # so merely opening it leaves no empty run behind.
        with contextlib.suppress(ConfigError):  # bad options: reported at test start
            state.open_store()
    return state


DRAIN_INTERVAL_S = 0.25


def _drain_loop(state: ProbesState) -> None:
    while not state.closed:
        gevent.sleep(DRAIN_INTERVAL_S)
        state.drain_local()


def _store(state: ProbesState) -> Store:
    return state.open_store()


def _on_worker_report(state: ProbesState, data: dict[str, Any]) -> None:
    rows = data.pop(REPORT_KEY, None)
    if rows:
        _store(state).add_rows(rows)


def _on_test_start(state: ProbesState) -> None:
    env = state.environment
    spec = state.spec_for(env.host)  # validates the options on every node, early
    if state.recorder is not None:
        state.recorder.rules = spec.tag_rules
    if not isinstance(env.runner, WorkerRunner):
        state.open_store()


def _on_quitting(state: ProbesState) -> None:
    runner = state.environment.runner
    if isinstance(runner, WorkerRunner):
        # Killed directly (not told by the master): stop the users, then send what is left.
        if state.buffer is not None and state.buffer.rows:
            runner.stop()
            state.buffer.send_now()
        return
    if isinstance(runner, MasterRunner):
        runner.quit()  # our wrapper: waits for the workers' final reports
    elif runner is not None:
        runner.stop()  # no request fires after this, so nothing is recorded after close
    state.close()


def _wrap_master_quit(runner: MasterRunner) -> None:
    """Make ``runner.quit`` wait for every worker's final report before Locust's own quit."""
    original = runner.quit

    def quit_after_final_reports() -> None:
        # Stop dispatching first, or the master hands a quitting worker's users to the others.
        runner.stop(send_stop_to_client=False)
        clients = list(runner.clients.all)
        for client in clients:
            runner.server.send_to_client(Message("quit", None, client.id))
        deadline = time.monotonic() + WORKER_QUIT_TIMEOUT_S
        # A worker sends its final stats (with our rows) and then "quit", which removes it.
        while runner.clients.all and time.monotonic() < deadline:
            gevent.sleep(0.05)
        original()

    runner.quit = quit_after_final_reports  # type: ignore[method-assign]


# --------------------------------------------------------------------------- web UI


def versions_payload(state: ProbesState) -> dict[str, Any]:
    """What ``/probes/versions`` returns: the window, the rollout state and the counts."""
    if not state.closed:
        state.drain_local()
    store = state.store
    window = (
        store.recent.snapshot()
        if store is not None
        else {
            "end_ts": None,
            "window_s": float(_opt(state.options, "window", DEFAULT_WINDOW_S)),
            "requests": 0,
            "versions": [],
        }
    )
    rollout = rollout_state(read_events(state.run.path)) if state.run is not None else None
    stats = state.environment.stats
    return {
        "window": window,
        "rollout": rollout,
        "rows": table_rows(window, rollout),
        "samples": store.received if store is not None else 0,
        "locust_requests": stats.total.num_requests if stats is not None else 0,
        "run_dir": str(state.run.path) if state.run is not None else None,
    }


def install_web_ui(environment: Environment, state: ProbesState) -> None:
    """The Versions tab (Locust's extended tabs) and its JSON endpoint."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    blueprint = Blueprint("probes", __name__)

    @blueprint.route(VERSIONS_PATH)
    def versions() -> Any:
        return jsonify(versions_payload(state))

    app = web_ui.app
    assert app is not None
    app.register_blueprint(blueprint)
    web_ui.template_args["extended_tabs"] = [{"title": "Versions", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": TAB_KEY,
            "structure": [
                {"key": "version", "title": "Version"},
                {"key": "role", "title": "Role / rollout"},
                {"key": "share", "title": "Traffic share"},
                {"key": "rps", "title": "Req/s"},
                {"key": "errors", "title": "Error rate"},
                {"key": "p50", "title": "p50 ms"},
                {"key": "p99", "title": "p99 ms"},
            ],
        }
    ]

    @app.after_request
    def add_versions(response: Any) -> Any:
        # The UI polls /stats/requests and shows "extended_stats" in the extended tabs.
        if not request.path.endswith("/stats/requests") or response.status_code != 200:
            return response
        try:
            data = json.loads(response.get_data())
        except ValueError:
            return response
        data["extended_stats"] = [{"key": TAB_KEY, "data": versions_payload(state)["rows"]}]
        response.set_data(json.dumps(data))
        return response


def on_init(environment: Environment, **_: Any) -> None:
    """``events.init``: wire recording, the shape and the web UI."""
    state = setup(environment)
    install_shape(environment)
    install_web_ui(environment, state)


# --------------------------------------------------------------------------- shapes


class PolicyShape(LoadTestShape):
    """A ``LoadTestShape`` driven by a pure policy of ``probes.shapes``."""

    abstract = True
    use_common_options = True

    def __init__(self, shape: Shape | None = None) -> None:
        super().__init__()
        self.shape = shape or Shape()

    def tick(self) -> tuple[int, float] | None:
        return users_at(self.shape, self.get_run_time())


class SteadyShape(PolicyShape):
    """The same users from start to end."""

    abstract = True


class RampShape(PolicyShape):
    """Linear ramp, then hold."""

    abstract = True


class StepShape(PolicyShape):
    """Steps of users at fixed intervals."""

    abstract = True


class SpikeShape(PolicyShape):
    """Base users with one spike."""

    abstract = True


SHAPE_CLASSES: dict[str, type[PolicyShape]] = {
    "steady": SteadyShape,
    "ramp": RampShape,
    "step": StepShape,
    "spike": SpikeShape,
}


def shape_from_options(options: Any) -> PolicyShape | None:
    """The shape of ``--probes-shape`` (None without it: Locust's own -u/-r/-t apply)."""
    text = _opt(options, "shape")
    if not text:
        return None
    run_time = getattr(options, "run_time", None)
    shape = parse_shape(
        text,
        users=int(getattr(options, "num_users", None) or 1),
        spawn_rate=float(getattr(options, "spawn_rate", None) or 1.0),
        duration=float(run_time) if run_time else 3600.0,
        flag="--probes-shape",
    )
    return SHAPE_CLASSES[shape.name](shape)


def install_shape(environment: Environment) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # shapes run on the master
    shape = shape_from_options(environment.parsed_options)
    if shape is not None:
        shape.runner = environment.runner
        environment.shape_class = shape


# --------------------------------------------------------------------------- the user


_USER_IDS = itertools.count(1)


class InvokeUser(FastHttpUser):
    """Sends the configured request (``--probes-*``) to the invoke URL (``--host``), in a loop.

    The bearer token comes from the environment variable named by ``--probes-token-env``
    and is only ever put in the request's headers.
    """

    def __init__(self, environment: Environment) -> None:
        spec = state_of(environment).spec_for(environment.host or self.host)
        self.network_timeout = spec.timeout
        self.connection_timeout = spec.timeout
        super().__init__(environment)
        self._spec = spec
        # An origin without a path ("http://h:1") must still request "/".
        self._url = spec.url if urlsplit(spec.url).path else spec.url + "/"
        self._headers = spec.request_headers()
        self._body = spec.body
        self._context = {CALLER_KEY: f"{worker_name('locust')}/u{next(_USER_IDS)}"}

    def context(self) -> dict[str, Any]:
        """The request context: names this user as the caller of its samples."""
        return self._context

    @task
    def invoke(self) -> None:
        spec = self._spec
        self.client.request(
            spec.method,
            self._url,
            name=spec.name,
            data=self._body,  # type: ignore[arg-type]  # bytes are sent as they are
            headers=self._headers,
        )


events.init_command_line_parser.add_listener(add_arguments)
events.init.add_listener(on_init)
