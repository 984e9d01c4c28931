"""Row classes and the run-complete check, shared by ``reports.analysis`` and
``reports.capacity`` (each imports them from here, so neither imports the other for them)."""

from __future__ import annotations

from typing import Any

#: Rows of requests the probe never sent (its in-flight bound was full): not the target's errors.
UNSENT_ERROR = "client_saturated"
#: Rows of requests abandoned in flight at the end of a stop's drain: outcome unknown.
INTERRUPTED_ERROR = "interrupted"


def run_complete_check(reason: str) -> dict[str, Any]:
    """The check a run that never finished fails, whatever its other checks say."""
    return {
        "name": "run_complete",
        "value": False,
        "op": "==",
        "threshold": True,
        "passed": False,
        "expr": "the run finished (manifest.json has an end time)",
        "reason": reason,
    }
