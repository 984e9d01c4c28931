"""Run settings from a table of the verb's flags: a service schedule's ``args``.

``settings_from_args("capacity", {"start_users": 5, ...}, duration_s=600, slos=[...],
place="schedules[0].args")`` builds the same settings the CLI builds from ``probes capacity``'s
flags, with the same parsers; a bad or unknown key is a ConfigError naming
``schedules[0].args.start_users``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from probes.errors import ConfigError
from probes.recording.capacity import CapacitySettings
from probes.recording.load import LoadSettings
from probes.recording.observation import ObserveSettings
from probes.settings import Place

__all__ = ["ARGS", "settings_from_args"]

#: The keys each kind of run takes in ``args`` (the verb's flags, with underscores).
ARGS: dict[str, tuple[str, ...]] = {
    "observe": ("rate", "max_in_flight", "max_body_bytes", "connections"),
    "load": ("users", "spawn_rate", "shape", "probe_rate", "max_body_bytes"),
    "capacity": (
        "start_users",
        "step_users",
        "step_seconds",
        "max_users",
        "spawn_rate",
        "max_body_bytes",
        "mode",
        "start_rate",
        "step_rate",
        "max_rate",
        "max_in_flight",
        "baseline",
    ),
}


def settings_from_args(
    kind: str,
    args: Mapping[str, Any],
    *,
    duration_s: float,
    slos: Sequence[str],
    place: str,
    workers: int = 0,
    expect_workers: int = 0,
    master_bind: str | None = None,
    outer: Place | None = None,
) -> ObserveSettings | LoadSettings | CapacitySettings:
    """The settings of a ``kind`` run from ``args``; ConfigError naming ``{place}.{key}``.

    ``duration_s``, ``slos``, ``workers`` and ``expect_workers`` come from beside ``args``
    (a schedule's own keys); ``outer`` names them (default: keys of ``place``'s table).
    ``master_bind`` (``HOST:PORT``, the service's ``locust_master``) is where a master with
    ``expect_workers`` listens.
    """
    if kind not in ARGS:
        raise ConfigError(f"{place}: kind {kind!r} is not one of {', '.join(ARGS)}")
    if not isinstance(args, Mapping):
        raise ConfigError(f"{place}: must be a table of {kind} settings")
    known = ARGS[kind]
    for key in args:
        if key not in known:
            raise ConfigError(
                f"{place}.{key}: not a setting of {kind} runs (one of {', '.join(known)})"
            )
    inside = {key for keys in ARGS.values() for key in keys}
    table = place.rsplit(".", 1)[0] + "." if "." in place else ""
    beside = outer or Place.keys(table, {"duration": "duration_s", "slos": "slo"})

    def names(setting: str) -> str:
        return f"{place}.{setting}" if setting in inside else beside(setting)

    values = dict(args)
    if master_bind is not None and kind != "observe":
        values["master_bind"] = master_bind
    if kind == "observe":
        return ObserveSettings.build(duration=duration_s, slos=slos, place=names, **values)
    if kind == "load":
        return LoadSettings.build(
            duration=duration_s,
            slos=slos,
            workers=workers,
            expect_workers=expect_workers,
            place=names,
            **values,
        )
    return CapacitySettings.build(
        duration=duration_s,
        slos=slos,
        workers=workers,
        expect_workers=expect_workers,
        place=names,
        **values,
    )
