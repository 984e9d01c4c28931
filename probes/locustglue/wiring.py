"""Recording wired into a Locust Environment by the runner's role (local, worker, master),
and the run directory it records into."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

import gevent
from locust import runners as locust_runners
from locust.env import Environment
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner

from probes.errors import ConfigError
from probes.live import DEFAULT_WINDOW_S, SampleRow
from probes.locustglue import BODY_ENV, HEADERS_ENV
from probes.locustglue.options import ENV_OPTIONS, _opt, request_spec
from probes.locustglue.ratepace import RATE_LEAD_S, RateSchedule, SlotQueue
from probes.locustglue.recorder import (
    REPORT_KEY,
    TTFT_REQUEST_TYPE,
    Recorder,
    Store,
    WorkerBuffer,
)
from probes.locustglue.workers import LOAD_STARTED, RATE_T0, WATCH_INTERVAL_S, WorkerTally
from probes.records import Sample, samples_to_table, write_json_atomic
from probes.run import LOCUST_COUNTS_FILE, Run, worker_name
from probes.settings import RequestSpec, mask_url

#: Where a row keeps its error class (Sample order), and the class of a slot not sent.
ERROR_COLUMN = 8
NOT_SENT = "client_saturated"
#: Custom message type of an early sample batch from a worker.
MESSAGE = "probes_samples"
#: How long a quitting master waits for its workers' final reports.
WORKER_QUIT_TIMEOUT_S = 15.0
COUNTS_FILE = LOCUST_COUNTS_FILE


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
        #: On a master: its workers, their rows and losses (``probes.locustglue.workers``).
        self.tally: WorkerTally | None = None
        self._slots: SlotQueue | None = None
        #: Open-model rate steps on workers: ``client_saturated`` rows received (slots not
        #: sent, so not in Locust's request count), or None in other runs.
        self.not_sent: int | None = None
        #: Marker events not yet written: (ts, status, detail).
        self.markers: list[tuple[float, str, dict[str, Any]]] = []
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

    def slot_queue(self) -> SlotQueue | None:
        """This process's share of an open-model rate plan (``probes.locustglue.ratepace``),
        shared by its users; None without one."""
        if self._slots is not None:
            return self._slots
        plan, t0 = _opt(self.options, "rate_plan"), _opt(self.options, "rate_t0")
        if not plan or t0 is None:
            return None
        workers = max(1, int(_opt(self.options, "rate_workers", 1)))
        index = getattr(self.environment.runner, "worker_index", 0) if workers > 1 else 0
        schedule = RateSchedule.from_plan(json.loads(plan), float(t0))
        self._slots = SlotQueue(schedule.slots(int(index) % workers, workers))
        return self._slots

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
        self.write_markers()
        return self.store

    def write_markers(self) -> None:
        """Write the held marker events into the run's ``events.jsonl``."""
        if self.run is None:
            return
        markers, self.markers = self.markers, []
        with contextlib.suppress(OSError):
            for ts, status, detail in markers:
                self.run.events.write("marker", status, ts=ts, role="locust", detail=detail)

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
        stats = self.environment.stats
        total = stats.total if stats is not None else None
        # The TTFT rows (one per streamed answer) are Locust statistics, not requests.
        entries: dict[Any, Any] = dict(stats.entries) if stats is not None else {}
        ttft: int = sum(e.num_requests for key, e in entries.items() if key[1] == TTFT_REQUEST_TYPE)
        counts = {
            "requests": total.num_requests - ttft if total else 0,
            "failures": total.num_failures if total else 0,
            "samples": self.store.writer.rows_written,
            "runner": type(self.environment.runner).__name__,
        }
        if self.tally is not None:
            counts["workers"] = self.tally.as_list()
        if self.not_sent is not None:
            counts["not_sent"] = self.not_sent  # samples == requests + not_sent
        write_json_atomic(self.run.path / COUNTS_FILE, counts)
        if self.owns_run:
            # the run ends at its last answer: time Locust idled after a stop (web UI) or
            # spent quitting is no part of it, so duration_s and req/s are the test's own
            self.run.finish(ended_at=self.store.last_answer_ts, locust=counts)
            sys.stderr.write(
                f"probes: {self.store.writer.rows_written} samples in {self.run.path}\n"
                f"probes: make the report with: probes report {self.run.path}\n"
            )
            sys.stderr.flush()


def start_watcher(options: Any, run: Run, spec: RequestSpec) -> Any:
    """With ``--probes-api``/``--probes-workload``: the rollout watcher writing the control
    plane's lifecycle into the run (the Versions tab shows it). ``probes load`` runs its own
    watcher and passes ``--probes-run-dir`` instead."""
    api, workload = _opt(options, "api"), _opt(options, "workload")
    if not (api and workload):
        return None
    from probes.rollout import poll_client, resolve_target
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
        _report_every(REPORT_INTERVAL_S)
        state.buffer = WorkerBuffer(lambda rows: runner.send_message(MESSAGE, {"rows": rows}))
        state.recorder = Recorder(state.buffer.add, worker_name("locust"))
        ev.report_to_master.add_listener(state.buffer.on_report_to_master)
    elif isinstance(runner, MasterRunner):
        setup_master(state, runner)
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

#: How often a worker sends its stats, and with them its rows, to the master (Locust's own
#: default is 3 s): a worker that crashes loses at most the rows of the last second.
REPORT_INTERVAL_S = 1.0


def _report_every(seconds: float) -> None:
    """Make this worker's stats reporter send every ``seconds`` (or more often, if set so).
    Locust's ``stats_reporter`` reads ``locust.runners.WORKER_REPORT_INTERVAL`` before each
    sleep; the master does not depend on it (worker liveness is the heartbeat's)."""
    locust_runners.WORKER_REPORT_INTERVAL = min(locust_runners.WORKER_REPORT_INTERVAL, seconds)


def _drain_loop(state: ProbesState) -> None:
    while not state.closed:
        gevent.sleep(DRAIN_INTERVAL_S)
        state.drain_local()


def _store(state: ProbesState) -> Store:
    return state.open_store()


def setup_master(state: ProbesState, runner: MasterRunner) -> None:
    """A master stores its workers' rows, accounts for every worker (``WorkerTally``) and
    hands its workers what they cannot read themselves (``share_request_env``)."""
    share_request_env(state.environment.parsed_options)
    if _opt(state.options, "rate_plan"):
        state.not_sent = 0
    state.tally = WorkerTally(lambda status, detail: _marker(state, status, detail))
    ev = state.environment.events
    runner.register_message(
        MESSAGE, lambda environment, msg, **_: _on_rows(state, msg.node_id, msg.data["rows"])
    )
    ev.worker_report.add_listener(
        lambda client_id, data, **_: _on_worker_report(state, client_id, data)
    )
    ev.worker_connect.add_listener(lambda client_id, **_: _on_connect(state, client_id))
    gevent.spawn(_watch_workers, state, runner)
    _wrap_master_quit(runner, state)


def share_request_env(options: Any) -> None:
    """Put the request's headers and body (``probes load`` passes them in the master's
    environment, off its command line) into the master's parsed options: Locust sends every
    custom option to its workers with each ``spawn``, so a worker started elsewhere needs no
    flag beyond Locust's own (and its token variable)."""
    if options is None:
        return
    for env, attr in zip((HEADERS_ENV, BODY_ENV), ENV_OPTIONS, strict=True):
        if env in os.environ and getattr(options, attr, None) is None:
            setattr(options, attr, os.environ[env])


def _marker(state: ProbesState, status: str, detail: dict[str, Any]) -> None:
    """A ``marker`` event of the master; held until the run directory is open (a worker
    may connect while ``open_store`` is creating it: opening it here would make another)."""
    state.markers.append((time.time(), status, detail))
    if state.store is not None:
        state.write_markers()


def _on_connect(state: ProbesState, client_id: str) -> None:
    if state.tally is not None:
        state.tally.connected(client_id)


def _on_rows(state: ProbesState, client_id: str | None, rows: list[Any]) -> None:
    if state.tally is not None:
        state.tally.add_rows(client_id, rows)
    if state.not_sent is not None:
        state.not_sent += sum(1 for row in rows if row[ERROR_COLUMN] == NOT_SENT)
    _store(state).add_rows(rows)


def _on_worker_report(state: ProbesState, client_id: str | None, data: dict[str, Any]) -> None:
    rows = data.pop(REPORT_KEY, None)
    if rows:
        _on_rows(state, client_id, rows)


def _watch_workers(state: ProbesState, runner: MasterRunner) -> None:
    """Every ``WATCH_INTERVAL_S``: a worker gone or missing mid-run is recorded as lost."""
    while not state.closed and state.tally is not None:
        gevent.sleep(WATCH_INTERVAL_S)
        states = {node.id: node.state for node in list(runner.clients.values())}
        state.tally.check(states, time.time())


def _on_test_start(state: ProbesState) -> None:
    env = state.environment
    spec = state.spec_for(env.host)  # validates the options on every node, early
    if state.recorder is not None:
        state.recorder.rules = spec.tag_rules
    if isinstance(env.runner, WorkerRunner):
        return
    # The load starts now (a master first waits for its workers; a shape's clock starts here):
    # the recording starts its rollout driver on this marker when it waited for workers, and
    # times Locust's own end from it. Held until the run directory is open.
    workers = env.runner.worker_count if isinstance(env.runner, MasterRunner) else 0
    _marker(state, LOAD_STARTED, {"workers": workers})
    state.open_store()
    if _opt(state.options, "rate_plan"):
        # Open-model rate steps: one clock for every worker, set before the users spawn
        # (a master fires test_start before it sends its spawn messages, with these options).
        t0 = time.time() + RATE_LEAD_S
        state.options.probes_rate_t0 = t0
        _marker(state, RATE_T0, {"t0": t0})


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
        stop_every_user(runner)  # no request fires after this, so nothing is recorded after close
    state.close()


def stop_every_user(runner: Any) -> None:
    """``runner.stop()``, then kill what it can leave behind.

    Locust's ``stop`` kills the spawning greenlet, then the shape's. While it waits on the
    first, a shape tick can run and start a new spawning greenlet, which then adds users after
    ``stop_users``: their requests would be counted by Locust after our last write (seen on
    Ctrl-C during a ramp, 1 request in 1,881)."""
    runner.stop()
    spawning = getattr(runner, "spawning_greenlet", None)
    if spawning is not None and not spawning.ready():
        spawning.kill(block=True)
    runner.user_greenlets.kill(block=True)


def _wrap_master_quit(runner: MasterRunner, state: ProbesState) -> None:
    """Make ``runner.quit`` wait for every worker's final report before Locust's own quit."""
    original = runner.quit

    def quit_after_final_reports() -> None:
        if state.tally is not None:
            state.tally.quitting = True  # workers leaving from now on were asked to
        # Stop dispatching first, or the master hands a quitting worker's users to the others.
        runner.stop(send_stop_to_client=False)
        clients = list(runner.clients.all)
        for client in clients:
            runner.server.send_to_client(Message("quit", None, client.id))
        deadline = time.monotonic() + WORKER_QUIT_TIMEOUT_S
        # A worker sends its final stats (with our rows) and then "quit", which removes it;
        # a missing one (lost, already recorded) never will.
        while _answering(runner) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        original()

    runner.quit = quit_after_final_reports  # type: ignore[method-assign]


def _answering(runner: MasterRunner) -> bool:
    """Whether a worker that still answers its heartbeat is connected."""
    return any(node.state != locust_runners.STATE_MISSING for node in runner.clients.all)


def on_init(environment: Environment, **_: Any) -> None:
    """``events.init``: wire recording, the shape and the web UI."""
    from probes.locustglue.shapes import install_shape
    from probes.locustglue.webui import install_web_ui

    state = setup(environment)
    install_shape(environment)
    install_web_ui(environment, state)
