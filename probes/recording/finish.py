"""The end of every recording: the report, and the outcome the caller acts on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probes.recording.types import Outcome
from probes.records import recover_journals, shard_paths

#: Statuses that mean the target itself could not be used (no response, or refused us).
UNUSABLE_STATUSES = frozenset({"0", "401", "403", "407"})


def target_unusable(summary: dict[str, Any]) -> str | None:
    """Why the target could not be used at all, or None: every request failed in transport
    or was refused for credentials (no request reached the application)."""
    counts: dict[str, int] = summary.get("status_counts") or {}
    if not summary.get("requests"):
        return "no request was sent"
    if set(counts) <= UNUSABLE_STATUSES:
        classes = summary.get("error_classes") or {}
        worst = max(classes, key=lambda k: classes[k]) if classes else "error"
        if worst.startswith("http_4xx"):
            return "every request was refused (401/403): check the bearer token's variable"
        return f"no request got a response ({worst}): is the target reachable?"
    return None


def report(run_dir: Path, **options: Any) -> dict[str, Any]:
    """Make the run's report (``reports.make_report``); its summary."""
    from reports import make_report  # lazily: pandas and matplotlib are heavy

    return make_report(run_dir, **options)


def outcome_of_report(run_dir: Path, **options: Any) -> Outcome:
    """(Re)make the report of an existing run; its outcome (``interrupted`` from its
    manifest). ``options`` go to ``reports.make_report`` (``slos``, ``bucket_s``, ``figures``).
    Rows a crashed writer left in journals become shards first (``recover_journals``)."""
    recover_journals(run_dir)
    summary = report(run_dir, **options)
    reason = target_unusable(summary)
    extra = {"capacity": summary["capacity"]} if isinstance(summary.get("capacity"), dict) else {}
    return Outcome(
        run_dir=Path(run_dir),
        run_id=Path(run_dir).name,
        summary=summary,
        unusable=f"target unusable: {reason}" if reason else None,
        details=extra,
    )


def outcome(
    run_dir: Path,
    *,
    interrupted: str | None,
    warnings: Sequence[str] = (),
    platform_problem: str | None = None,
    failure: str | None = None,
    recorded: int = 0,
) -> Outcome:
    """Report the run (when anything was recorded or it did not fail) and say what it did.

    A run that failed (``failure``) is still reported when it has sample shards, so what was
    recorded is never lost. The target is unusable when every request failed in transport or
    was refused, or the platform could not be used (``platform_problem``).
    """
    summary = None
    if failure is None or shard_paths(run_dir):
        summary = report(run_dir)
    unusable = None
    if summary is not None and failure is None:
        reason = target_unusable(summary)
        unusable = f"target unusable: {reason}" if reason else None
    unusable = platform_problem or unusable
    extra: dict[str, Any] = {}
    if summary is not None and isinstance(summary.get("capacity"), dict):
        extra["capacity"] = summary["capacity"]
    return Outcome(
        run_dir=Path(run_dir),
        run_id=Path(run_dir).name,
        summary=summary,
        interrupted=interrupted,
        warnings=tuple(warnings),
        unusable=unusable,
        failure=failure,
        recorded=recorded,
        details=extra,
    )


def finish_capacity(
    run: Any, result: Any, interrupted: str | None, capacity: dict[str, Any], rows: int
) -> Outcome:
    """End a Locust-driven capacity run (users or rate steps): its manifest's ``capacity``
    block (``capacity`` plus when Locust stopped and why), Locust's counts, then the report.
    ``result`` is the ``LocustRun``; ``rows`` the samples seen when Locust counted none."""
    run.update(capacity={**capacity, "stopped_ts": result.stopped_ts, "interrupted": interrupted})
    run.finish(locust=result.counts, interrupted=interrupted)
    return outcome(
        run.path,
        interrupted=interrupted,
        warnings=result.warnings,
        failure=result.failure(run.path),
        recorded=int((result.counts or {}).get("samples", rows)),
    )
