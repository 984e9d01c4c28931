"""The Service on real sockets (test servers on 127.0.0.1), with small in-test fakes for the
run index, the metrics and the scheduled-run runner, so it runs without the HTTP side.

What it shows: canary segments rolled, reported and indexed; a url target's version switch
captured at capture_rate with the cutover located within one probe interval; a dead target
never stalls another; an ``every`` schedule firing runs (forbid skips, deferral during a
capture); stop closing a capture and a scheduled run; crash recovery; start_run checks.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
import threading
import time
import types
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from probes.errors import ConfigError
from probes.records import Sample, read_events, read_manifest, read_samples
from probes.run import Run, read_summary
from probes.serve import finishing as finishing_mod
from probes.serve.config import ServeConfig, parse_config
from probes.serve.finishing import RunFinisher
from probes.serve.http import Conflict
from probes.serve.runner import Job, JobResult
from probes.serve.segments import max_in_flight, segment_end
from probes.serve.service import Service
from probes.serve.tasks import Tasks
from tests.helpers import VersionServer, closed_port

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- fakes


class FakeIndex:
    """Records what the service indexes (the real RunIndex is serve-http's)."""

    def __init__(self) -> None:
        self.put_dirs: list[Path] = []
        self.closed = False

    def put_run_dir(self, run_dir: Path) -> None:
        self.put_dirs.append(Path(run_dir))

    def put(self, row: Any) -> None:
        return None

    def query(self, **kw: Any) -> list[Any]:
        return []

    def expire(self, now: float, retention_days: float) -> list[str]:
        return []

    def flush(self, timeout: float = 5.0) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def ids(self) -> set[str]:
        return {p.name for p in self.put_dirs}


class FakeMetrics:
    """Every call, by method name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]


class FakeRunner:
    """Makes a real run directory (manifest, no samples) and holds it ``hold_s`` or until
    stopped; records every job and whether it was stopped."""

    def __init__(self, hold_s: float = 0.3) -> None:
        self.hold_s = hold_s
        self.jobs: list[Job] = []
        self.stopped: list[str] = []
        self.lock = threading.Lock()

    def run(self, job: Job, stop: threading.Event) -> JobResult:
        with self.lock:
            self.jobs.append(job)
        run = Run.create(
            job.runs_dir, job.run_id, job.kind, target={}, settings={},
            trigger=job.trigger, schedule=job.schedule,
        )  # fmt: skip
        run.update(target_name=job.target.name)
        interrupted = "stopped" if stop.wait(self.hold_for(job)) else None
        if interrupted:
            with self.lock:
                self.stopped.append(job.run_id)
        run.finish(interrupted=interrupted)
        return JobResult(job.run_id, run.path, "pass", interrupted)

    def hold_for(self, job: Job) -> float:
        return self.hold_s


@pytest.fixture(autouse=True)
def verdict_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``probes.serve.verdict`` when present; else a small stand-in that counts."""
    try:
        import probes.serve.verdict  # noqa: F401
    except ModuleNotFoundError:
        fake = types.ModuleType("probes.serve.verdict")

        def no_rollout_body(target: str, updated_at: float) -> dict[str, Any]:
            return {"verdict": "pending", "reason": "no rollout known", "target": target}

        def verdict_body(**kw: Any) -> dict[str, Any]:
            n = {v: int(np.sum(kw["versions"] == v)) for v in (kw["baseline"], kw["candidate"])}
            verdict = "pending" if min(n.values(), default=0) < 50 else "pass"
            keys = ("target", "run_id", "baseline", "candidate")
            return {"verdict": verdict, "samples": n, **{k: kw[k] for k in keys}}

        fake.no_rollout_body = no_rollout_body  # type: ignore[attr-defined]
        fake.verdict_body = verdict_body  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "probes.serve.verdict", fake)


def config(tmp_path: Path, targets: list[dict[str, Any]], **extra: Any) -> ServeConfig:
    serve = {"runs_dir": "runs", "segment_s": 3600, **extra.pop("serve", {})}
    return parse_config({"serve": serve, "targets": targets, **extra}, tmp_path, env={})


async def wait_until(cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def run_service(
    cfg: ServeConfig, body: Callable[[Service], Coroutine[Any, Any, None]], **kw: Any
) -> Service:
    """Start a Service (no HTTP) with fakes, run ``body``, stop it; returns it."""
    kw.setdefault("index", FakeIndex())
    kw.setdefault("metrics", FakeMetrics())
    svc = Service(cfg, **kw)

    async def main() -> None:
        await svc.start()
        try:
            await wait_until(svc.ready, 15)
            await body(svc)
        finally:
            await svc.stop("test over")

    asyncio.run(main())
    return svc


def runs_of(runs_dir: Path, kind: str) -> list[Path]:
    out = []
    for p in sorted(runs_dir.iterdir()):
        if (p / "manifest.json").exists() and read_manifest(p)["kind"] == kind:
            out.append(p)
    return out


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(("start", "seg", "name"), [(1000.0, 60.0, "a"), (5.5, 3600.0, "chat")])
def test_segment_end_phase_and_minimum(start: float, seg: float, name: str) -> None:
    end = segment_end(start, seg, name)
    assert seg / 10 <= end - start <= seg * 1.1
    assert segment_end(end, seg, name) == end + seg  # later segments are whole


def test_max_in_flight_bound() -> None:
    assert max_in_flight(1.0, 10.0) == 11
    assert max_in_flight(0.1, 1.0) == 4
    assert max_in_flight(1000.0, 10.0) == 256


# --------------------------------------------------------------------------- canary, capture


def test_canary_segments_rolled_reported_indexed(tmp_path: Path) -> None:
    with VersionServer() as srv:
        cfg = config(tmp_path, [{"name": "a", "url": srv.url, "canary_rate": 10}],
                     serve={"segment_s": 2})  # fmt: skip

        async def body(svc: Service) -> None:
            await wait_until(lambda: len(runs_of(cfg.serve.runs_dir, "canary")) >= 3, 15)

        svc = run_service(cfg, body)
    canaries = runs_of(cfg.serve.runs_dir, "canary")
    assert len(canaries) >= 3
    total = 0
    for path in canaries:
        manifest = read_manifest(path)
        assert manifest["trigger"] == "continuous" and manifest["target_name"] == "a"
        assert manifest["ended_ts"] is not None
        summary = read_summary(path)
        assert summary is not None and summary["errors"] == 0
        total += summary["requests"]
    assert svc.index.ids() >= {p.name for p in canaries}
    # No row lost between segments: every due request is in exactly one segment.
    frames = [read_samples(p) for p in canaries]
    stamps = np.concatenate([f["intended_ts"].to_numpy() for f in frames])
    assert len(np.unique(stamps)) == len(stamps) == total
    gaps = np.diff(np.sort(stamps))
    assert gaps.max() < 0.1 + 0.02  # 10/s, no hole at a segment boundary
    requests = svc.metrics.named("request")
    assert len(requests) == total and all(args[2] == "probe" for args in requests)


def test_canary_segments_are_created_off_the_loop(tmp_path: Path, monkeypatch: Any) -> None:
    # A segment's directory and manifest (mkdir, fsyncs) are made in a worker thread: a slow
    # disk delays that target's next segment, not the loop every target's requests leave from.
    made_on: list[tuple[str, bool]] = []
    real_create = Run.create

    def create(*args: Any, **kw: Any) -> Run:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        made_on.append((args[2], on_loop))
        return real_create(*args, **kw)

    monkeypatch.setattr(Run, "create", create)
    with VersionServer() as srv:
        cfg = config(tmp_path, [{"name": "a", "url": srv.url, "canary_rate": 10}],
                     serve={"segment_s": 1})  # fmt: skip

        async def body(svc: Service) -> None:
            await wait_until(lambda: len(runs_of(cfg.serve.runs_dir, "canary")) >= 3, 15)

        run_service(cfg, body)
    canaries = [on_loop for kind, on_loop in made_on if kind == "canary"]
    assert len(canaries) >= 3 and not any(canaries)
    for path in runs_of(cfg.serve.runs_dir, "canary"):  # every one closed, none left open
        assert read_manifest(path)["ended_ts"] is not None


@pytest.mark.parametrize("stop_while_opening", [False, True], ids=["released", "stopped"])
def test_a_capture_opened_on_a_stuck_disk_stalls_no_request_and_loses_no_row(
    tmp_path: Path, monkeypatch: Any, stop_while_opening: bool
) -> None:
    # Opening a capture claims its directory and fsyncs its manifest: on a stuck disk that
    # must hold up this capture's files only. The loop keeps sending meanwhile, the rows and
    # events wait in the capture, and all of them reach its run once the disk answers, even
    # when the service stops first.
    entered, release = threading.Event(), threading.Event()
    made_on_loop: list[bool] = []
    real_create = Run.create

    def create(*args: Any, **kw: Any) -> Run:
        if args[2] == "rollout":
            try:
                asyncio.get_running_loop()
                made_on_loop.append(True)
            except RuntimeError:
                made_on_loop.append(False)
            entered.set()
            release.wait(20)  # the stuck disk
        return real_create(*args, **kw)

    monkeypatch.setattr(Run, "create", create)
    with VersionServer() as srv:
        cfg = config(tmp_path, [{"name": "a", "url": srv.url, "canary_rate": 20,
                                 "capture_rate": 20, "settle_s": 600}])  # fmt: skip
        rid: list[str | None] = []

        async def body(svc: Service) -> None:
            def requests() -> int:
                return len(svc.metrics.named("request"))

            await wait_until(lambda: requests() >= 5)
            rid.append(svc.open_capture("a", "test"))
            assert svc.workers["a"].status()["state"] == "capturing"
            await wait_until(entered.is_set)
            n = requests()
            await wait_until(lambda: requests() >= n + 10)  # sent while the disk is stuck
            if stop_while_opening:
                threading.Timer(0.5, release.set).start()  # the disk answers during the stop
                return
            release.set()
            capture = svc.workers["a"].capture
            await wait_until(lambda: capture is not None and capture.run is not None)
            m = requests()
            await wait_until(lambda: requests() >= m + 5)

        svc = run_service(cfg, body)
        sent = list(svc.metrics.named("request"))
    assert made_on_loop == [False]
    (capture_dir,) = runs_of(cfg.serve.runs_dir, "rollout")
    assert capture_dir.name == rid[0]
    manifest = read_manifest(capture_dir)
    assert manifest["ended_ts"] is not None and manifest["interrupted"] == "test over"
    assert manifest["capture"]["reason"] == "test" and manifest["target_name"] == "a"
    assert len(read_samples(capture_dir)) == len(sent)  # the preroll holds the whole test
    markers = [e["status"] for e in read_events(capture_dir) if e["kind"] == "marker"]
    assert markers[0] == "capture opened" and markers[-1] == "capture closed"
    assert read_summary(capture_dir) is not None


def test_stop_puts_every_row_on_disk_however_slow_the_reports(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # Reports queue on one thread; with hundreds of targets they outlast stop's bounded wait.
    # Flushing rows and ending manifests must not queue behind them: every row sent is on
    # disk and every segment closed after stop, and the next start reports what was left.
    real_report = finishing_mod._report
    started = threading.Event()

    def slow_report(path: Path, *, figures: bool = True) -> Any:
        started.set()
        time.sleep(0.3)
        return real_report(path, figures=figures)

    monkeypatch.setattr(finishing_mod, "_report", slow_report)
    monkeypatch.setattr(finishing_mod, "SHUTDOWN_REPORT_S", 0.2)
    with VersionServer() as srv:
        targets = [{"name": f"t{i}", "url": srv.url, "canary_rate": 20} for i in range(6)]
        cfg = config(tmp_path, targets)

        async def body(svc: Service) -> None:
            await wait_until(lambda: len(svc.metrics.named("request")) >= 6 * 20, 15)

        svc = run_service(cfg, body)
        sent = list(svc.metrics.named("request"))
    # the report a stop found running goes on in its thread (a real stop ends the process)
    svc.report_pool.shutdown(wait=True)
    canaries = runs_of(cfg.serve.runs_dir, "canary")
    assert len(canaries) == 6
    rows = 0
    for path in canaries:
        assert read_manifest(path)["ended_ts"] is not None
        rows += len(read_samples(path))
    assert rows == len(sent)  # every row the service saw, on disk
    unreported = [p for p in canaries if read_summary(p) is None]
    assert unreported  # 6 reports x 0.3 s could not fit in 0.2 s
    monkeypatch.setattr(finishing_mod, "_report", real_report)
    with ThreadPoolExecutor(1) as pool:  # the next start's recovery, on its own
        again = RunFinisher(cfg.serve.runs_dir, FakeIndex(), pool, pool, Tasks())  # type: ignore[arg-type]
        recovered = again.recover()
    assert set(recovered) >= {p.name for p in unreported}
    assert all(read_summary(p) is not None for p in canaries)


def test_url_target_switch_captured_cutover_within_one_capture_interval(tmp_path: Path) -> None:
    # Every 10th request goes to v2 before the switch, all after it: the canary (2/s) sees v2
    # at its 10th request (~4.5 s), the capture probes at 20/s through the switch.
    capture_rate = 20.0
    switch_at = time.time() + 11.0
    with VersionServer(v2_share=0.1, switch_at=switch_at) as srv:
        cfg = config(tmp_path, [{
            "name": "web", "url": srv.url, "canary_rate": 2, "capture_rate": capture_rate,
            "settle_s": 1.5, "capture_tail_s": 1,
        }])  # fmt: skip
        seen: dict[str, Any] = {}

        async def body(svc: Service) -> None:
            worker = svc.workers["web"]
            await wait_until(lambda: worker.capture is not None, 15)
            seen["during"] = svc.target_status("web")
            seen["verdict"] = svc.verdict("web", None, None)
            await wait_until(lambda: worker.capture is None and worker.recent, 25)
            await wait_until(lambda: not svc.tasks.pending("reports"), 20)

        svc = run_service(cfg, body)
    assert seen["during"]["state"] == "capturing"
    assert seen["during"]["rollout"]["to_version"] == "v2"
    # started_at is when the capture opened (its run id's second), not its pre-roll's first row
    rollout = seen["during"]["rollout"]
    stamp = rollout["run_id"].rsplit("-", 1)[-1]  # web-rollout-20261207T044903Z
    opened = f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
    assert rollout["started_at"][:19] == opened, rollout
    assert seen["verdict"]["verdict"] == "pending"  # a handful of v2 answers so far
    (rollout,) = runs_of(cfg.serve.runs_dir, "rollout")
    manifest = read_manifest(rollout)
    assert (manifest["trigger"], manifest["target_name"]) == ("auto", "web")
    assert manifest["capture"]["outcome"] == "completed"
    summary = read_summary(rollout)
    assert summary is not None
    ro = summary["rollout"]
    assert (ro["from_version"], ro["to_version"]) == ("v1", "v2")
    frame = read_samples(rollout)
    v1 = frame[frame["version"] == "v1"]
    last_v1 = float(v1["ts"].max())
    after = frame[frame["ts"] > last_v1]
    # The cutover is located within one probe interval at capture_rate: the last v1 answer
    # was sent at most 1/capture_rate (+ scheduling slack) before the switch, and every
    # later answer is v2.
    assert switch_at - 1.0 / capture_rate - 0.05 <= last_v1 < switch_at + 0.01
    assert (after["version"] == "v2").all() and len(after) > capture_rate
    assert abs((ro["last_baseline_s"] + manifest["started_ts"]) - last_v1) < 0.01
    # It probed at capture_rate while open (the pre-roll before it at the canary's 2/s).
    opened = next(e["ts"] for e in read_events(rollout) if e["status"] == "capture opened")
    during = frame[(frame["intended_ts"] > opened + 0.5) & (frame["intended_ts"] < switch_at)]
    span = switch_at - opened - 0.5
    assert abs(len(during) - span * capture_rate) <= 3 + 0.05 * span * capture_rate
    assert rollout.name in svc.index.ids()
    assert ("rollout", ("web", True)) in svc.metrics.calls
    assert svc.metrics.named("rollout_done") == [("web", "completed")]


def test_dead_target_never_stalls_another(tmp_path: Path) -> None:
    stall = (time.time(), time.time() + 8)  # requests received in it wait for its end
    with VersionServer() as good, VersionServer(stall=stall) as stalled:
        cfg = config(tmp_path, [
            {"name": "good", "url": good.url, "canary_rate": 20},
            {"name": "stalled", "url": stalled.url, "canary_rate": 20},
            {"name": "refused", "url": f"http://127.0.0.1:{closed_port()}/", "canary_rate": 20},
        ])  # fmt: skip

        async def body(svc: Service) -> None:
            await asyncio.sleep(max(0.0, stall[1] + 1.5 - time.time()))

        svc = run_service(cfg, body)
    frames = {p.name.split("-")[0]: read_samples(p) for p in runs_of(cfg.serve.runs_dir, "canary")}
    good_rows = frames["good"]
    assert good_rows["error"].isna().all()
    # One row per due request all through the stall, from whenever the service started
    # probing (a busy machine starts it seconds late: count from there, not from the stall)
    start = max(stall[0], float(good_rows["intended_ts"].min()))
    assert stall[1] - start > 2.0, "the service never probed during the stall"
    due = good_rows["intended_ts"].between(start, stall[1], inclusive="left")
    assert int(due.sum()) >= 20 * (stall[1] - start) - 2
    # A stall passed on would show as seconds of lateness or latency; a busy machine (the
    # suite runs beside other work) adds tens of milliseconds at most, so the bounds are an
    # order of magnitude below the 5 s stall rather than a timing goal.
    lateness = (good_rows["ts"] - good_rows["intended_ts"]).to_numpy()
    assert np.percentile(lateness, 99) < 0.5
    # The stalled target's requests waited seconds, on their own schedule; the refused one
    # recorded connect errors; each kept the open-model schedule (one row per due request).
    stalled_rows = frames["stalled"]
    assert stalled_rows["latency_ms"].max() > 2000
    assert good_rows["latency_ms"].max() < stalled_rows["latency_ms"].max() / 4
    assert abs(len(stalled_rows) - len(good_rows)) <= 3
    assert (frames["refused"]["error"] == "connect").all()
    assert abs(len(frames["refused"]) - len(good_rows)) <= 3
    assert svc.index.closed


# --------------------------------------------------------------------------- schedules


def test_every_schedule_fires_runs_forbid_skips(tmp_path: Path) -> None:
    with VersionServer() as srv:
        cfg = config(
            tmp_path,
            [{"name": "a", "url": srv.url, "canary_rate": 1}],
            schedules=[
                {"name": "quick", "target": "a", "kind": "observe", "every": "1s",
                 "duration_s": 0.2, "args": {"rate": 5}},
                {"name": "slow", "target": "a", "kind": "load", "every": "1s",
                 "concurrency": "forbid", "duration_s": 5, "args": {"users": 2}},
            ],
        )  # fmt: skip
        runner = SlowForOne(hold={"quick": 0.2, "slow": 2.5})

        async def body(svc: Service) -> None:
            await wait_until(lambda: len([j for j in runner.jobs if j.schedule == "quick"]) >= 4)

        svc = run_service(cfg, body, runner=runner)
    quick = [j for j in runner.jobs if j.schedule == "quick"]
    fires = [int(j.run_id.rsplit("-", 1)[1]) for j in quick]
    assert fires == sorted(set(fires)) and all(b - a == 1 for a, b in itertools.pairwise(fires))
    assert all(j.trigger == "schedule" and j.kind == "observe" for j in quick)
    assert all((cfg.serve.runs_dir / j.run_id / "manifest.json").exists() for j in quick)
    slow = [j for j in runner.jobs if j.schedule == "slow"]
    assert 1 <= len(slow) <= 2
    assert len(svc.metrics.named("missed")) >= 1  # forbid skipped fire times of "slow"
    skipped = [e for e in svc.schedule_log if e["action"] == "skip"]
    assert skipped and all(e["schedule"] == "slow" and "forbid" in e["reason"] for e in skipped)
    results = svc.metrics.named("scheduled_run")
    assert ("quick", "pass") in results
    assert svc.index.ids() >= {j.run_id for j in quick}
    # the service's stop ended the runs still going, through their stop events
    for rid in runner.stopped:
        assert read_manifest(cfg.serve.runs_dir / rid)["interrupted"] == "stopped"
    assert not svc.jobs
    log_lines = (cfg.serve.runs_dir / "scheduler.jsonl").read_text().splitlines()
    assert any('"skip"' in line for line in log_lines)


class SlowForOne(FakeRunner):
    def __init__(self, hold: dict[str, float]) -> None:
        super().__init__()
        self.hold = hold

    def hold_for(self, job: Job) -> float:
        return self.hold.get(job.schedule or "", 0.3)


def test_load_deferred_while_a_capture_is_open(tmp_path: Path) -> None:
    with VersionServer() as srv:
        cfg = config(
            tmp_path,
            [{"name": "a", "url": srv.url, "canary_rate": 5, "capture_rate": 10,
              "settle_s": 2.5, "capture_tail_s": 0}],
            schedules=[{"name": "load", "target": "a", "kind": "load", "every": "1s",
                        "duration_s": 0.1, "args": {"users": 1}}],
        )  # fmt: skip
        runner = FakeRunner(hold_s=0.1)
        marks: dict[str, float] = {}

        async def body(svc: Service) -> None:
            await wait_until(lambda: runner.jobs)
            rid = svc.open_capture("a", "flagger prod/a Progressing")
            assert rid is not None and svc.open_capture("a", "again") == rid
            marks["opened"] = time.time()
            n = len(runner.jobs)
            await wait_until(lambda: svc.workers["a"].capture is None, 10)
            marks["closed"] = time.time()
            assert len(runner.jobs) <= n + 1  # at most one started as the capture opened
            await wait_until(lambda: len(runner.jobs) > n + 1, 5)

        svc = run_service(cfg, body, runner=runner)
    deferred = [e for e in svc.schedule_log if e["action"] == "defer"]
    assert deferred and all("rollout capture" in e["reason"] for e in deferred)
    assert ("load", "deferred") in svc.metrics.named("scheduled_run")
    after = [j for j in runner.jobs if int(j.run_id.rsplit("-", 1)[1]) >= marks["opened"]]
    assert after  # the deferred fire time (or a later one) ran once the capture closed


def test_start_run_checks_and_conflicts(tmp_path: Path) -> None:
    with VersionServer() as srv:
        cfg = config(tmp_path, [{"name": "a", "url": srv.url, "canary_rate": 1}])
        runner = FakeRunner(hold_s=1.0)

        async def body(svc: Service) -> None:
            with pytest.raises(KeyError):
                svc.start_run("nope", "load", 5, {})
            with pytest.raises(ConfigError, match=r"^kind:"):
                svc.start_run("a", "soak", 5, {})
            with pytest.raises(ConfigError, match=r"^duration_s:"):
                svc.start_run("a", "load", -1, {})
            with pytest.raises(ConfigError, match=r"^args\.users:"):
                svc.start_run("a", "load", 5, {"users": "many"})
            rid = svc.start_run("a", "load", 5, {"users": 2})
            assert rid.startswith("a-load-")
            await wait_until(lambda: runner.jobs)
            assert svc.target_status("a")["state"] == "running"
            with pytest.raises(Conflict, match="still running"):  # load-ish runs exclude each other
                svc.start_run("a", "capacity", 5, {})
            await wait_until(lambda: not svc.jobs, 5)

        run_service(cfg, body, runner=runner)
    (job,) = runner.jobs
    assert (job.trigger, job.kind, job.duration_s, dict(job.args)) == (
        "api",
        "load",
        5.0,
        {"users": 2},
    )


def test_target_status_window(tmp_path: Path) -> None:
    with VersionServer(v2_share=0.25) as srv:
        cfg = config(tmp_path, [{"name": "a", "url": srv.url, "canary_rate": 20}])
        seen: dict[str, Any] = {}

        async def body(svc: Service) -> None:
            await asyncio.sleep(2.0)
            seen.update(svc.target_status("a"))
            assert svc.target_names() == ["a"] and svc.flagger_target("x", "y") is None

        run_service(cfg, body)
    assert seen["name"] == "a" and seen["window_s"] == 60.0
    assert seen["current_version"] == "v1"
    assert seen["versions"]["v1"] == pytest.approx(0.75, abs=0.06)
    assert seen["requests"] >= 30 and seen["error_rate"] == 0.0
    assert 0 < seen["p50_ms"] <= seen["p99_ms"] < 1000
    # v2 answering is a version not seen before on a url target: a capture is open
    assert seen["state"] == "capturing" and seen["rollout"]["to_version"] == "v2"


# --------------------------------------------------------------------------- lifecycle


def test_stop_closes_capture_and_scheduled_run(tmp_path: Path) -> None:
    with VersionServer() as srv:
        cfg = config(
            tmp_path,
            [{"name": "a", "url": srv.url, "canary_rate": 5, "capture_rate": 10,
              "settle_s": 60}],
            schedules=[{"name": "obs", "target": "a", "kind": "observe", "every": "1s",
                        "duration_s": 30, "args": {"rate": 1}}],
        )  # fmt: skip
        runner = FakeRunner(hold_s=30)
        t0 = time.monotonic()

        async def body(svc: Service) -> None:
            await wait_until(lambda: runner.jobs)
            assert svc.open_capture("a", "test") is not None
            await asyncio.sleep(1.0)
            t0_stop[0] = time.monotonic()

        t0_stop = [t0]
        svc = run_service(cfg, body, runner=runner)
        stop_s = time.monotonic() - t0_stop[0]
    assert stop_s < 10
    (capture,) = runs_of(cfg.serve.runs_dir, "rollout")
    manifest = read_manifest(capture)
    assert manifest["ended_ts"] is not None and manifest["interrupted"] == "test over"
    assert read_summary(capture) is not None
    (scheduled,) = [p for p in runs_of(cfg.serve.runs_dir, "observe")]
    assert read_manifest(scheduled)["interrupted"] == "stopped"
    assert runner.stopped == [scheduled.name]
    assert {capture.name, scheduled.name} <= svc.index.ids()
    assert all(read_manifest(p)["ended_ts"] for p in runs_of(cfg.serve.runs_dir, "canary"))


def test_restart_marks_crashed_runs_interrupted(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    crashed = Run.create(runs, "a-canary-x", "canary", target={}, settings={}, trigger="continuous")
    with crashed.shard_writer("probe") as writer:
        writer.add(Sample(time.time(), time.time(), 5.0, "probe", "w", "GET", "/",
                                      200, None, "v1", "header", 2, None))  # fmt: skip
    closed_unreported = Run.create(
        runs, "s-1", "observe", target={}, settings={}, trigger="schedule"
    )
    closed_unreported.finish()
    cli_run = Run.create(runs, "mine", "observe", target={}, settings={})  # a CLI run: not ours
    with VersionServer() as srv:
        cfg = config(tmp_path, [{"name": "a", "url": srv.url, "canary_rate": 1}])

        async def body(svc: Service) -> None:
            return None

        svc = run_service(cfg, body)
    manifest = read_manifest(crashed.path)
    assert manifest["ended_ts"] is not None and "crash" in manifest["interrupted"]
    summary = read_summary(crashed.path)
    assert summary is not None and summary["requests"] == 1
    assert read_summary(closed_unreported.path) is not None
    assert read_manifest(cli_run.path)["ended_ts"] is None
    assert set(svc.recovered) == {"a-canary-x", "s-1"}
    assert {"a-canary-x", "s-1"} <= svc.index.ids()
    assert math.isfinite(manifest["ended_ts"])


def test_a_failing_flush_warns_once_per_writer_until_it_works_again(tmp_path, monkeypatch, caplog):
    import logging

    import probes.records as records
    from probes.records import ShardWriter
    from probes.serve.segments import flush_all
    from tests.test_records import sample

    writers = [ShardWriter(tmp_path / f"r{i}", "canary", background=False) for i in range(3)]

    def full(table, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records, "write_table_atomic", full)
    caplog.set_level(logging.INFO, logger="probes.serve")
    for second in range(5):
        for w in writers:
            w.add(sample(second))
        flush_all(writers[:2], writers[2:])
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 2  # one per flushed writer, not one per second
    monkeypatch.undo()
    caplog.clear()
    flush_all(writers[:2], writers[2:])
    mended = [r.getMessage() for r in caplog.records]
    assert len(mended) == 2 and all("works again" in m for m in mended)
    for w in writers[:2]:
        assert len(read_samples(w.directory.parent)) == 5  # every queued row, once
    assert writers[2].pending == 5 and writers[2].last_error is None
