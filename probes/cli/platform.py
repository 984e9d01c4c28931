"""``--api BASE --workload ID``: a recording verb on a Workload instead of a bare URL.

Not a verb of its own: ``observe``, ``load`` and ``capacity`` take these flags. The invoke
URL comes from the workload's ``endpoint``; the recording watches the control plane beside
its senders (``probes.recording.Platform``); with ``--replace-with`` it requests the
replacement itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from probes.errors import ConfigError
from probes.recording import Platform
from probes.rollout import resolve_target
from probes.settings import parse_count, parse_env_name, parse_number, parse_timeout
from probes.workload import WorkloadClient

MAX_MINUTES = 7 * 24 * 60


def wants_api(url: str | None, params: dict[str, Any]) -> bool:
    """True for control-plane mode; ConfigError unless exactly one mode is asked for."""
    api, workload = params.get("api"), params.get("workload")
    if url and (api or workload):
        raise ConfigError("URL and --api/--workload: give exactly one (a URL, or a Workload)")
    if not url and not (api and workload):
        missing = "--workload ID" if api else "--api BASE" if workload else "URL"
        raise ConfigError(
            f"{missing}: give an invoke URL, or --api BASE --workload ID to use a Workload"
        )
    if not (api and workload):
        for flag in ("replace_with", "warmup_minutes", "keep_old_minutes", "replace_at"):
            if params.get(flag):
                name = "--" + flag.replace("_", "-")
                raise ConfigError(f"{name}: only with --api BASE --workload ID")
    return bool(api and workload)


def replacement_settings(params: dict[str, Any]) -> dict[str, Any]:
    """``--warmup-minutes``, ``--keep-old-minutes`` (and ``--tail``) checked, for Platform."""
    values: dict[str, Any] = {}
    for key in ("warmup_minutes", "keep_old_minutes"):
        if key in params:
            flag = "--" + key.replace("_", "-")
            values[key] = parse_count(params[key], flag, 0, MAX_MINUTES, "of minutes")
    if params.get("tail") is not None:
        values["tail_s"] = parse_number(
            params["tail"], "--tail", allow_min=True, maximum=86400.0, unit="seconds"
        )
    return values


@contextlib.contextmanager
def target_url(
    url: str | None, params: dict[str, Any], *, replace_at_s: float | None = None
) -> Iterator[tuple[str, Platform | None]]:
    """The invoke URL to load and, with ``--api/--workload``, the watched Platform (its
    client open while inside). TargetError (exit 3) when the Workload cannot be used."""
    options = replacement_settings(params)  # checked in either mode: a typo is never ignored
    if not wants_api(url, params):
        assert url is not None
        yield url, None
        return
    token_env = parse_env_name(params["token_env"], "--token-env")
    timeout = parse_timeout(params["timeout"], "--timeout")
    with WorkloadClient(
        params["api"], token_env=token_env, timeout=timeout, place="--api"
    ) as client:
        target = resolve_target(client, params["workload"], params.get("replace_with"))
        at = replace_at_s if target.replace_with else None
        yield target.invoke_url, Platform(client, target, replace_at_s=at, **options)
