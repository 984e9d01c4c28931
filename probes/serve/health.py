"""A target's health at a glance: what the Targets overview colours and ``/api/v1/targets``
adds to each item (``health``, ``problems``, ``verdict``, and a ``current_version`` over the
last few seconds). Pure but for reading the view.

``health``: ``failing`` when recording stopped (the target's ``recording`` problems: a full
or broken disk refusing its segments, flushes, closes or captures) or more than
``FAILING_ERROR_RATE`` of the window's requests failed (or none succeeded); ``degraded`` with
another problem the service notes (a probe or start error, samples lost), above
``DEGRADED_ERROR_RATE``, or while the latest rollout's verdict is ``fail``; else ``ok``.
``judge`` is the one rule: the service calls it for its own items (``target_status``), and a
field the service sets itself (``health``, ``problems``, ``verdict``) is kept as it is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from probes.serve.history import CURRENT_S

FAILING_ERROR_RATE = 0.10
DEGRADED_ERROR_RATE = 0.01


def judge(
    item: dict[str, Any], recording: Sequence[str] = (), notes: Sequence[str] = ()
) -> tuple[str, list[str]]:
    """``(health, problems)`` of a target item; ``recording``: what stops its recording now
    (failing), ``notes``: other problems (degraded)."""
    problems = [*(item.get("problems") or []), *recording]
    rate, requests = item.get("error_rate"), item.get("requests") or 0
    window = item.get("window_s") or 60
    health = "failing" if problems else "ok"
    if notes:
        health = _worse(health, "degraded")
        problems.extend(notes)
    if isinstance(rate, int | float) and requests:
        shown = f"{100 * rate:.3g} % of {requests} requests failed over the last {window:g} s"
        if rate >= 1.0 or rate > FAILING_ERROR_RATE:
            health = "failing"
            problems.append(shown)
        elif rate > DEGRADED_ERROR_RATE:
            health = _worse(health, "degraded")
            problems.append(shown)
    if item.get("verdict") == "fail":
        health = _worse(health, "degraded")
        problems.append("the latest rollout's verdict is fail")
    return health, problems


def _worse(a: str, b: str) -> str:
    order = ("ok", "degraded", "failing")
    return max(a, b, key=order.index)


def latest_verdicts(view: Any) -> dict[str, str]:
    """target -> the one-hot ``proton_probe_verdict`` gauge's verdict (read once for a whole
    list: one pass over that gauge, not a scrape of the registry per target)."""
    metrics = getattr(view, "metrics", None)
    return metrics.verdicts() if metrics is not None else {}


def target_items(view: Any, now: float | None = None) -> list[dict[str, Any]]:
    """``target_item`` of every target, in the view's order."""
    verdicts = latest_verdicts(view)
    return [target_item(view, n, now, verdicts) for n in view.target_names()]


def target_item(
    view: Any, name: str, now: float | None = None, verdicts: dict[str, str] | None = None
) -> dict[str, Any]:
    """``view.target_status(name)`` with ``health``, ``problems``, ``verdict`` and a
    ``current_version`` over the last ``CURRENT_S`` seconds (``current_window_s``)."""
    item = dict(view.target_status(name))
    history = getattr(view, "history", None)
    if history is not None:
        current = history.current(name, time.time() if now is None else now)
        if current is not None:
            item["current_version"] = current
        item["current_window_s"] = CURRENT_S
    if "verdict" not in item:
        item["verdict"] = (latest_verdicts(view) if verdicts is None else verdicts).get(name)
    if "health" not in item:
        item["health"], item["problems"] = judge(item)
    return item
