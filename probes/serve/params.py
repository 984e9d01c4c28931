"""Query strings and request bodies of the HTTP API, parsed into plain values.

Pure: ``run_filters`` turns a ``/api/v1/runs`` query string into ``RunIndex.query``
keywords, ``start_fields`` a ``POST /api/v1/targets/{name}/runs`` body into
``(kind, duration_s, args)``; a bad or unknown one raises ``BadParam`` naming it (a 400).
Both the API (``http``) and the UI routes (``pages``) use them, so neither imports the other
for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from probes.run import RUN_KINDS

RUN_LIMIT_DEFAULT, RUN_LIMIT_MAX = 50, 1000
RUN_VERDICTS = ("pass", "fail", "inconclusive")
START_KINDS = ("observe", "load", "capacity")
RUN_FILTERS = (
    "target",
    "kind",
    "trigger",
    "verdict",
    "schedule",
    "since",
    "until",
    "limit",
    "offset",
)


class BadParam(ValueError):
    """A query parameter or body field with a bad value; the message names it."""


def _parse_time(name: str, text: str) -> float:
    """Epoch seconds, or ISO 8601 (``Z`` or an offset; a naive time is UTC)."""
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadParam(
                f"{name}: {text!r} is not a time; expected ISO 8601 "
                f"(2026-01-31T02:00:00Z) or epoch seconds"
            ) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    if not math.isfinite(value):
        raise BadParam(f"{name}: {text!r} is not a finite number of epoch seconds")
    return value


def _parse_int(name: str, text: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadParam(f"{name}: {text!r} is not an integer ({lo}..{hi})") from None
    if not lo <= value <= hi:
        raise BadParam(f"{name}: {value} is out of range ({lo}..{hi})")
    return value


def _choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise BadParam(f"{name}: {text!r} is not one of {', '.join(choices)}")
    return text


def run_filters(query: Mapping[str, str]) -> dict[str, Any]:
    """The ``RunIndex.query`` keywords of a ``/api/v1/runs`` query string; BadParam naming
    the first bad or unknown parameter."""
    for key in query:
        if key not in RUN_FILTERS:
            raise BadParam(f"{key}: unknown filter (known: {', '.join(RUN_FILTERS)})")
    out: dict[str, Any] = {"limit": RUN_LIMIT_DEFAULT}
    for key in ("target", "schedule", "trigger"):
        if query.get(key):
            out[key] = query[key]
    if query.get("kind"):
        out["kind"] = _choice("kind", query["kind"], RUN_KINDS)
    if query.get("verdict"):
        out["verdict"] = _choice("verdict", query["verdict"], RUN_VERDICTS)
    for key in ("since", "until"):
        if query.get(key):
            out[key] = _parse_time(key, query[key])
    if "limit" in query:
        out["limit"] = _parse_int("limit", query["limit"], 1, RUN_LIMIT_MAX)
    if "offset" in query:
        out["offset"] = _parse_int("offset", query["offset"], 0, 10**9)
    return out


def start_fields(body: Any) -> tuple[str, float | None, dict[str, Any]]:
    """``(kind, duration_s, args)`` of a ``POST /api/v1/targets/{name}/runs`` body."""
    if not isinstance(body, dict):
        raise BadParam("body: expected a JSON object {kind, duration_s, args}")
    unknown = sorted(set(body) - {"kind", "duration_s", "args"})
    if unknown:
        raise BadParam(f"{unknown[0]}: unknown field (known: kind, duration_s, args)")
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise BadParam(f"kind: required, one of {', '.join(START_KINDS)}")
    _choice("kind", kind, START_KINDS)
    duration = body.get("duration_s")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not math.isfinite(duration)
        or duration <= 0
    ):
        raise BadParam(f"duration_s: {duration!r} is not a positive number of seconds")
    args = body.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadParam("args: expected a JSON object of the verb's flags")
    return kind, None if duration is None else float(duration), args
