"""``run_locust`` stops Locust so that it flushes, and never inside Locust's own shutdown.

A stand-in for Locust (a small Python process) behaves as Locust does around its end: while the
test runs, a SIGINT ends it cleanly (the glue's handler); once its ``--run-time`` is up it is in
its own shutdown, where a SIGINT raises KeyboardInterrupt and it dies before writing its counts
(``locust.json``). Beside a CPU hog, a rate step judged broken two seconds after its end asked
for a stop just then, and the run lost Locust's counts (exit -2).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from probes.locustglue.workers import LOAD_STARTED
from probes.recording import locustproc
from probes.recording.locustproc import LocustRun, LocustSettings, run_locust
from probes.run import LOCUST_COUNTS_FILE, LOCUST_LOG_FILE
from probes.settings import RequestSpec
from probes.shapes import Shape

FAKE_LOCUST = r"""
import json, os, signal, sys, time
run_dir, run_time, startup = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
stopped = False
def on_int(*_):
    global stopped
    stopped = True
signal.signal(signal.SIGINT, on_int)  # while the test runs: the glue ends it cleanly
time.sleep(startup)  # Locust imports itself and opens the run
from probes.records import EventLog
EventLog(run_dir).write("marker", "load started", role="locust", detail={"workers": 0})
end = time.monotonic() + run_time
while not stopped and time.monotonic() < end:
    time.sleep(0.02)
signal.signal(signal.SIGINT, signal.default_int_handler)  # Locust's own shutdown
print("shutting down", flush=True)
time.sleep(1.0)  # the workers quit, the final reports come in
with open(os.path.join(run_dir, "locust.json"), "w") as f:
    json.dump({"requests": 3, "stopped": stopped}, f)
"""


class _Follower:
    def poll(self) -> None:
        pass


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    duration: float,
    until: Callable[[], bool],
    startup: float = 0.0,
) -> LocustRun:
    def fake(spec: RequestSpec, locust: LocustSettings, run_dir: Path) -> list[str]:
        run_time = str(locust.run_time_s)
        return [sys.executable, "-c", FAKE_LOCUST, str(run_dir), run_time, str(startup)]

    monkeypatch.setattr(locustproc, "locust_command", fake)
    settings = LocustSettings(shape=Shape(duration=duration))
    return run_locust(RequestSpec(url="http://127.0.0.1:9/"), settings, tmp_path,
                      stop=threading.Event(), follower=_Follower(), until=until)  # fmt: skip


def test_a_stop_asked_as_locust_ends_by_itself_waits_for_its_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def shutting_down() -> bool:  # a step judged broken once Locust's run time is up
        log = tmp_path / LOCUST_LOG_FILE
        return log.exists() and "shutting down" in log.read_text()

    result = _run(tmp_path, monkeypatch, 3.0, shutting_down)
    assert result.returncode == 0, (tmp_path / LOCUST_LOG_FILE).read_text()
    assert result.counts == {"requests": 3, "stopped": False}
    assert result.stopped_ts is None  # it ended by itself
    assert (tmp_path / LOCUST_COUNTS_FILE).exists()


def test_a_stop_asked_before_the_end_still_stops_locust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(tmp_path, monkeypatch, 300.0, lambda: True)
    assert result.returncode == 0, (tmp_path / LOCUST_LOG_FILE).read_text()
    assert result.counts == {"requests": 3, "stopped": True}
    assert result.stopped_ts is not None


def test_a_stop_asked_seconds_before_a_slow_starting_locust_ends_still_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locust takes a second or more to import itself and open the run before its load (and
    its clock) starts. Its end is timed from its ``load started`` marker: a stop asked 2 s
    before that end stops it. Timed from the process's start, the stop waited for Locust's
    own end, and a capacity run went on into the step after the one that broke its SLO."""

    def two_seconds_before_its_end() -> bool:  # the load runs 4 s; asked 1 s into it
        started = locustproc._marker_ts(tmp_path, LOAD_STARTED)
        return started is not None and time.time() >= started + 1.0

    result = _run(tmp_path, monkeypatch, 4.0, two_seconds_before_its_end, startup=4.0)
    assert result.returncode == 0, (tmp_path / LOCUST_LOG_FILE).read_text()
    assert result.counts == {"requests": 3, "stopped": True}
    assert result.stopped_ts is not None
