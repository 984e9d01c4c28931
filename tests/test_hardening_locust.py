"""Issue 14, item 2, the Locust side: a user reads bodies as the probe does, bounded."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest

from probes import recording
from probes.records import read_samples
from probes.settings import build_request
from tests.test_hardening_probe import RawServer, _endless_chunked


class ChildrenPeakRss:
    """Peak RSS of this process's children (Locust) while inside, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._done.wait(0.02):
            for child in me.children(recursive=True):
                try:
                    self.peak = max(self.peak, child.memory_info().rss)
                except psutil.Error:
                    continue

    def __enter__(self) -> ChildrenPeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


@pytest.mark.slow
def test_endless_body_keeps_locust_rss_bounded(tmp_path: Path) -> None:
    settings = recording.LoadSettings.build(duration=4, users=2, spawn_rate=10)
    with RawServer(_endless_chunked) as srv, ChildrenPeakRss() as rss:
        outcome = recording.load(
            build_request(srv.url, timeout=3.0),
            recording.RunLocation(tmp_path, "endless"),
            settings,
            stop=threading.Event(),
        )
    assert outcome.failure is None, outcome.failure
    rows = read_samples(outcome.run_dir)
    assert len(rows) > 0
    # every request was cut (or ran out of time), none read whole; the version still tagged
    assert set(rows["error"].astype(str)) <= {"body_too_large", "timeout"}
    assert (rows["version"].astype(str) == "v7").all()
    # before: Locust passed 3 GB within seconds; a user keeps 1 MiB and drains 64 MiB chunks
    assert rss.peak < 400e6, f"Locust peaked at {rss.peak / 1e6:.0f} MB"
