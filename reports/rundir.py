"""Reading a run directory back: only the columns the analysis uses, as categoricals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from probes.errors import RunDirError
from probes.records import read_events, read_manifest, read_samples

#: Sample columns the report reads (method, name and bytes are not needed).
COLUMNS = (
    "ts",
    "intended_ts",
    "latency_ms",
    "source",
    "worker",
    "status",
    "error",
    "version",
    "tag_source",
    "conn",
    "conn_mode",
    "ttft_ms",
    "tokens",
    "itl_ms",
)


def load_run(run_dir: Path | str) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, Any]]:
    """(samples, events, manifest) of a run; RunDirError naming RUN_DIR when it is not one."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"RUN_DIR {run_dir}: no such directory")
    manifest = read_manifest(path)
    frame = read_samples(path, columns=COLUMNS)
    return frame, read_events(path), manifest
