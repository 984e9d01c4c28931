"""A run directory: ``RUN_DIR = <runs-dir>/<run-id>/`` with its manifest, shards and events.

Every recording verb (observe, load, capacity, demo, the service) creates one ``Run``, hands
its writers to the senders, and ``finish``-es it; ``reports`` reads it back from disk alone.

This module owns the directory's layout: every file name below is defined here once.

==================  ===========================================================
file                what it holds
==================  ===========================================================
``manifest.json``   run id, kind, trigger, target (masked), settings, start/end
``events.jsonl``    control-plane events and the tool's own markers
``samples/``        Parquet shards of sample rows (``records``)
``summary.json``    the report's machine-readable result (CONTRACT.md)
``report.html``     the self-contained HTML report; ``report.md`` its Markdown twin
``figures/``        the report's PNG figures
``locust.log``      Locust's own output (load and capacity runs)
``locust.json``     Locust's own request counts, written by the glue at its end
==================  ===========================================================
"""

from __future__ import annotations

import functools
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from probes.errors import ConfigError
from probes.records import (
    EVENTS_FILE,
    MANIFEST_FILE,
    SAMPLES_DIR,
    EventLog,
    ShardWriter,
    read_manifest,
    write_json_atomic,
)

__all__ = [
    "EVENTS_FILE",
    "FIGURES_DIR",
    "LOCUST_COUNTS_FILE",
    "LOCUST_LOG_FILE",
    "MANIFEST_FILE",
    "REPORT_HTML_FILE",
    "REPORT_MD_FILE",
    "RUN_KINDS",
    "SAMPLES_DIR",
    "SUMMARY_FILE",
    "TRIGGERS",
    "Run",
    "default_run_id",
    "fresh_run_id",
    "iso",
    "read_summary",
    "tool_versions",
    "worker_name",
]

SUMMARY_FILE = "summary.json"
REPORT_HTML_FILE = "report.html"
REPORT_MD_FILE = "report.md"
FIGURES_DIR = "figures"
LOCUST_LOG_FILE = "locust.log"
LOCUST_COUNTS_FILE = "locust.json"

#: What made a run: the CLI verbs, and the service's continuous canary and rollout captures.
RUN_KINDS = ("observe", "load", "capacity", "canary", "rollout", "scheduled", "demo")
#: Who started it (CONTRACT.md): a person at the CLI, or the service.
TRIGGERS = ("cli", "continuous", "auto", "schedule", "api")


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_run_id(now: float | None = None) -> str:
    return datetime.fromtimestamp(now or time.time(), UTC).strftime("%Y%m%dT%H%M%SZ")


def fresh_run_id(runs_dir: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``… when a run directory already has that name."""
    rid, n = base, 1
    while (runs_dir / rid).exists():
        n += 1
        rid = f"{base}-{n}"
    return rid


def tool_versions() -> dict[str, str]:
    """The versions of Python and of the packages a run's numbers depend on (a copy)."""
    return dict(_tool_versions())


@functools.cache
def _tool_versions() -> dict[str, str]:
    # Read once per process: scanning installed distributions costs milliseconds each time,
    # and the service creates a run per target per segment.
    versions = {"python": platform.python_version()}
    for dist in (
        "proton-probe",
        "httpx",
        "httpx-aiohttp",
        "aiohttp",
        "locust",
        "pandas",
        "pyarrow",
        "matplotlib",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def worker_name(role: str = "probe") -> str:
    """A stable identity for the recording process: ``role@host:pid``."""
    import os

    return f"{role}@{socket.gethostname()}:{os.getpid()}"


def _claim(runs_dir: Path, run_id: str | None, stamp: str, place: Callable[[str], str]) -> Path:
    """Create the run's directory, atomically; with no id, the timestamp (plus ``-N`` when a
    run of the same second has it)."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{place('runs_dir')}: cannot create {runs_dir}: {exc.strerror}") from exc
    names = [run_id] if run_id else [stamp, *(f"{stamp}-{n}" for n in range(2, 10_000))]
    for name in names:
        path = runs_dir / name
        try:
            path.mkdir()
            return path
        except FileExistsError:
            if run_id is None:
                continue
            what = "already holds a run" if (path / MANIFEST_FILE).exists() else "exists"
            raise ConfigError(f"{place('run_id')}: {path} {what}; choose another id") from None
        except OSError as exc:
            raise ConfigError(f"{place('runs_dir')}: cannot create {path}: {exc.strerror}") from exc
    raise ConfigError(f"{place('run_id')}: every run id of {stamp} is taken in {runs_dir}")


@dataclass
class Run:
    """An open run directory. Create with ``Run.create``; end with ``finish``."""

    path: Path
    manifest: dict[str, Any]
    _events: EventLog | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls,
        runs_dir: str | Path,
        run_id: str | None,
        kind: str,
        *,
        target: dict[str, Any],
        settings: dict[str, Any],
        started_at: float | None = None,
        trigger: str = "cli",
        schedule: str | None = None,
        place: Callable[[str], str] = str,
        target_name: str | None = None,
    ) -> Run:
        """Claim ``<runs_dir>/<run_id>/`` and write the first manifest.

        ``target`` and ``settings`` must already be masked (see ``RequestSpec.describe``).
        The directory is claimed atomically (``mkdir`` without ``exist_ok``), so of two runs
        started at once with one id exactly one gets it; an id naming any existing directory
        (a run, or something that is not a run) is refused. Errors name ``place("run_id")``
        and ``place("runs_dir")``.
        """
        if kind not in RUN_KINDS:
            raise ValueError(f"run kind must be one of {RUN_KINDS}")
        if trigger not in TRIGGERS:
            raise ValueError(f"run trigger must be one of {TRIGGERS}")
        start = time.time() if started_at is None else started_at
        path = _claim(Path(runs_dir), run_id, default_run_id(start), place)
        manifest = {
            "schema": "proton-probe/manifest/1",
            "run_id": path.name,
            "kind": kind,
            "trigger": trigger,
            "schedule": schedule,
            "target": target,
            "settings": settings,
            "tools": tool_versions(),
            "host": socket.gethostname(),
            "started_at": iso(start),
            "started_ts": start,
            "ended_at": None,
            "ended_ts": None,
        }
        if target_name is not None:  # the service's target (the run index lists runs by it)
            manifest["target_name"] = target_name
        run = cls(path=path, manifest=manifest)
        run.save_manifest()
        return run

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        """An existing run, for appending (e.g. a Locust master adding shards)."""
        path = Path(run_dir)
        return cls(path=path, manifest=read_manifest(path))

    @property
    def run_id(self) -> str:
        return str(self.manifest["run_id"])

    @property
    def started_ts(self) -> float:
        return float(self.manifest["started_ts"])

    def save_manifest(self) -> None:
        write_json_atomic(self.path / MANIFEST_FILE, self.manifest)

    def update(self, **fields: Any) -> None:
        """Merge fields into the manifest and write it."""
        self.manifest.update(fields)
        self.save_manifest()

    def shard_writer(self, prefix: str, **kwargs: Any) -> ShardWriter:
        return ShardWriter(self.path, prefix, **kwargs)

    @property
    def events(self) -> EventLog:
        if self._events is None:
            self._events = EventLog(self.path)
        return self._events

    def finish(self, ended_at: float | None = None, **fields: Any) -> None:
        """Record the end time (and any extra fields) and close the event log."""
        end = time.time() if ended_at is None else ended_at
        self.manifest.update(fields)
        self.manifest["ended_at"] = iso(end)
        self.manifest["ended_ts"] = end
        self.save_manifest()
        if self._events is not None:
            self._events.close()


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``summary.json``, or None when the report was not made (or is unreadable)."""
    import json

    try:
        data = json.loads((Path(run_dir) / SUMMARY_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
