"""What every recording verb does once its own flags are parsed into settings: find the
target (a URL, or a Workload's invoke URL), build the request, record with signals turned
into a stop, and show the outcome."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from probes import recording
from probes.cli.options import request_kwargs
from probes.cli.output import StatusProgress, show_outcome, stop_on_signals
from probes.cli.platform import target_url
from probes.settings import FLAGS, build_request

#: ``probes.recording.observe`` / ``load`` / ``capacity``.
Recorder = Callable[..., recording.Outcome]


def record(
    record_fn: Recorder,
    url: str | None,
    params: dict[str, Any],
    settings: Any,
    *,
    replace_at_s: float | None = None,
) -> recording.Outcome:
    """Run ``record_fn`` (a ``probes.recording`` verb) with the verb's ``settings`` on the
    target its flags name; print the end of the run; the outcome (its exit code is decided
    in ``probes.cli``)."""
    where = recording.RunLocation(Path(params["runs_dir"]), params["run_id"], place=FLAGS)
    with target_url(url, params, replace_at_s=replace_at_s) as (invoke_url, platform):
        spec = build_request(invoke_url, **request_kwargs(params))
        with stop_on_signals() as stop:
            outcome = record_fn(
                spec,
                where,
                settings,
                stop=stop,
                progress=StatusProgress(quiet=params["quiet"]),
                platform=platform,
            )
    show_outcome(outcome)
    return outcome
