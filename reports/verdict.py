"""SLO expressions and the verdict.

An SLO is ``[SCOPE.]METRIC OP RIGHT``:

- SCOPE: nothing (the whole run), ``baseline``, ``candidate``, a connection mode
  (``reused``, ``new``: that mode's requests, ``summary.connections.by_mode``) or a version
  label (``app:1.2.p99_ms`` — the metric is the part after the last dot);
- OP: ``<`` ``<=`` ``>`` ``>=`` ``==``;
- RIGHT: a finite number, or ``[K*]SCOPE.METRIC`` (``1.2*baseline.p99_ms``).

A typo must not pass CI as an undecidable check, so parsing is strict: an unknown metric, a
non-finite number (``nan``, ``inf``) and an unknown scope are errors. A scope that is a plain
word (letters only, like ``candiate``) or that looks like a misspelt ``baseline``/``candidate``
is taken for a typo, not for a version; version labels normally carry a digit (``v2``,
``app:1.2``). A version spelt as a plain word is written in brackets: ``[green].p99_ms<500``
(brackets take any label, dots included).

Streamed answers (``summary.stream``, ``versions.LABEL.stream``): ``ttft_p50_ms``,
``ttft_p99_ms``, ``itl_p50_ms``, ``itl_p99_ms``, ``tokens_per_s_p50``, scoped as the latency
metrics (``ttft_p99_ms<800``, ``candidate.ttft_p50_ms<1.2*baseline.ttft_p50_ms``); without
streamed answers their checks are undecided (``passed: null``).

``disruption_s`` is the total time callers got no successful answer (``summary.disruption``,
``reports.connections``): run-wide, or per connection mode (``new.disruption_s<1``); it
takes no version scope.

A check whose value (or reference) is not available has ``passed: null``; the verdict is
``fail`` if any check failed, else ``inconclusive`` if any check could not be decided, else
``pass``. Without SLOs the default check is ``error_rate<0.01``. Once a comparison exists,
every verdict (with or without SLOs) also holds the check that the candidate is not worse,
``comparison.sequential.decision != "fail"`` (``reports.sequential``); the SLO entry
``comparison=off`` drops it, and ``comparison.KEY=VALUE`` entries set the comparison's alpha
and margins (they are settings, not checks). Whatever the SLOs, a run that never finished (its
manifest has no end: the recorder was killed) also gets a failing ``run_complete`` check
(``reports.analysis``): a gate must not pass on a run that stopped part-way unseen.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EXAMPLES = (
    "error_rate<0.01, p99_ms<500, candidate.p99_ms<1.2*baseline.p99_ms, availability>=0.999,"
    " disruption_s<2, new.disruption_s<1, ttft_p99_ms<800"
)

#: metric -> key of a latency block, for the latency metrics.
LATENCY_METRICS = {
    "p50_ms": "p50",
    "p90_ms": "p90",
    "p95_ms": "p95",
    "p99_ms": "p99",
    "p999_ms": "p999",
    "max_ms": "max",
    "mean_ms": "mean",
}
#: metric -> (block of the ``stream`` block, its key), for the streamed answers' metrics.
STREAM_METRICS = {
    "ttft_p50_ms": ("ttft_ms", "p50"),
    "ttft_p99_ms": ("ttft_ms", "p99"),
    "itl_p50_ms": ("itl_ms", "p50"),
    "itl_p99_ms": ("itl_ms", "p99"),
    "tokens_per_s_p50": ("tokens_per_s", "p50"),
}
#: metrics every scope (run or version) has.
SCOPED_METRICS = (
    frozenset({"error_rate", "availability", "throughput_rps", "requests"})
    | set(LATENCY_METRICS)
    | set(STREAM_METRICS)
)
#: metrics of the run as a whole (the rollout block); no scope allowed.
RUN_METRICS = frozenset(
    {"errors_during_switch", "longest_gap_s", "cutover_s", "mixed_window_s", "flips"}
)
#: run-wide metrics that also take a connection-mode scope (and no other).
MODE_METRICS = frozenset({"disruption_s"})
METRICS = SCOPED_METRICS | RUN_METRICS | MODE_METRICS

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}
_OP_RE = re.compile(r"<=|>=|==|<|>")
_REF_RE = re.compile(r"^(?:(?P<k>[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<ref>\S+)$")
#: Scopes with a meaning of their own; any other scope is a version label.
ROLE_SCOPES = ("baseline", "candidate")
#: Connection-mode scopes (``records.CONN_MODES``).
MODE_SCOPES = ("reused", "new")
#: A bare scope of letters only is a word, and a word that is not a role is a typo.
_WORD_RE = re.compile(r"[A-Za-z_]+")


@dataclass(frozen=True)
class Operand:
    """``scope.metric`` (scope None = the whole run)."""

    scope: str | None
    metric: str
    #: The scope was written in brackets: a version label, whatever it looks like.
    label: bool = False

    def __str__(self) -> str:
        return f"{self.scope}.{self.metric}" if self.scope else self.metric

    @property
    def mode(self) -> str | None:
        """The connection mode this operand is scoped to, or None."""
        return self.scope if self.scope in MODE_SCOPES and not self.label else None


@dataclass(frozen=True)
class Slo:
    """A parsed SLO check: ``left op (number | factor * ref)``."""

    expr: str
    left: Operand
    op: str
    number: float | None = None
    factor: float = 1.0
    ref: Operand | None = None

    @property
    def threshold_expr(self) -> str:
        if self.ref is None:
            return f"{self.number:g}"
        return f"{self.factor:g}*{self.ref}" if self.factor != 1.0 else str(self.ref)


def _bad(expr: str, why: str) -> ValueError:
    return ValueError(
        f"bad SLO {expr!r}: {why}; expected [SCOPE.]METRIC OP NUMBER|[K*]SCOPE.METRIC, "
        f"e.g. {EXAMPLES}"
    )


def _scope(scope: str, expr: str) -> str | None:
    """The scope of an operand: a role, a version label, or None (the whole run)."""
    if not scope:
        return None
    if scope.startswith("[") and scope.endswith("]") and len(scope) > 2:
        return scope[1:-1]  # an explicit version label, whatever it looks like
    if scope in ROLE_SCOPES or scope in MODE_SCOPES:
        return scope
    close = difflib.get_close_matches(scope.lower(), ROLE_SCOPES + MODE_SCOPES, n=1, cutoff=0.75)
    if close or _WORD_RE.fullmatch(scope):
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise _bad(
            expr,
            f"unknown scope {scope!r} ({hint}scopes: baseline, candidate, reused, new,"
            " a version label"
            f" such as v2 or app:1.2, or any label in brackets: [{scope}].METRIC)",
        )
    return scope


def _operand(text: str, expr: str) -> Operand:
    scope, _, metric = text.rpartition(".")
    if metric not in METRICS:
        raise _bad(expr, f"unknown metric {metric!r} (known: {', '.join(sorted(METRICS))})")
    if scope and metric in RUN_METRICS:
        raise _bad(expr, f"{metric} is a run-wide metric and takes no scope")
    found = _scope(scope, expr)
    operand = Operand(found, metric, label=scope.startswith("[") and found is not None)
    if found is not None and metric in MODE_METRICS and operand.mode is None:
        raise _bad(expr, f"{metric} takes only a connection-mode scope (reused, new)")
    return operand


def _finite(value: float, what: str, expr: str) -> float:
    if not math.isfinite(value):
        raise _bad(expr, f"{what} {value!r} is not a finite number")
    return value


def is_setting(expr: str) -> bool:
    """Whether an SLO-list entry sets the comparison (``comparison=off``,
    ``comparison.latency_p99_ratio=1.5``; ``reports.sequential``) instead of being a check."""
    from reports.sequential import is_setting as _is_setting

    return _is_setting(expr)


def checks_of(slos: Sequence[str] | None) -> list[str]:
    """The entries of an SLO list that are checks (comparison settings left out)."""
    return [s for s in slos or () if not is_setting(s)]


def parse_slo(expr: str) -> Slo:
    """Parse one SLO expression; ValueError showing the expected form when it is malformed.
    A comparison setting (``is_setting``) is validated and comes back with op ``=`` and
    scope ``comparison``: it is not a check (``checks_of`` leaves it out)."""
    if is_setting(expr):
        from reports.sequential import parse_setting

        key, value = parse_setting(expr)
        return Slo(str(expr).strip(), Operand("comparison", key), "=", number=float(value))
    text = "".join(str(expr).split())
    found = _OP_RE.search(text)
    if not found:
        raise _bad(expr, "no comparison operator (< <= > >= ==)")
    left_text, op, right = text[: found.start()], found.group(), text[found.end() :]
    if not left_text or not right:
        raise _bad(expr, "missing left or right side")
    if _OP_RE.search(right):
        raise _bad(expr, "more than one operator")
    left = _operand(left_text, expr)
    try:
        number = float(right)
    except ValueError:
        pass
    else:
        return Slo(expr.strip(), left, op, number=_finite(number, "threshold", expr))
    match = _REF_RE.match(right)
    if not match:
        raise _bad(expr, f"right side {right!r} is neither a number nor [K*]SCOPE.METRIC")
    try:
        factor = float(match.group("k")) if match.group("k") else 1.0
    except ValueError:
        raise _bad(expr, f"factor {match.group('k')!r} is not a number") from None
    factor = _finite(factor, "factor", expr)
    return Slo(expr.strip(), left, op, factor=factor, ref=_operand(match.group("ref"), expr))


def _version_of_scope(summary: Mapping[str, Any], scope: str) -> Mapping[str, Any] | None:
    versions: Mapping[str, Any] = summary.get("versions") or {}
    if scope in ("baseline", "candidate"):
        for block in versions.values():
            if block.get("role") == scope:
                return block
        return None
    return versions.get(scope)


def metric_value(summary: Mapping[str, Any], operand: Operand) -> float | None:
    """The value of ``scope.metric`` in a summary, or None when not available."""
    metric = operand.metric
    if metric in MODE_METRICS:
        block = summary.get("disruption") or {}
        if operand.mode is not None:
            block = (block.get("by_mode") or {}).get(operand.mode) or {}
        value = block.get("total_s")
        return None if value is None else float(value)
    if operand.mode is not None:
        modes = (summary.get("connections") or {}).get("by_mode") or {}
        scoped = modes.get(operand.mode)
        if scoped is None:
            return None
        return metric_value(scoped, Operand(None, metric))
    if metric in RUN_METRICS:
        if metric == "longest_gap_s":
            return summary.get("longest_gap_s")
        return (summary.get("rollout") or {}).get(metric)
    block = summary if operand.scope is None else _version_of_scope(summary, operand.scope)
    if block is None:
        return None
    if metric in LATENCY_METRICS:
        return (block.get("latency_ms") or {}).get(LATENCY_METRICS[metric])
    if metric in STREAM_METRICS:
        part, key = STREAM_METRICS[metric]
        return ((block.get("stream") or {}).get(part) or {}).get(key)
    if metric == "availability":
        er = block.get("error_rate")
        return None if er is None else 1.0 - er
    value = block.get(metric)
    return None if value is None else float(value)


def evaluate(slo: Slo, summary: Mapping[str, Any]) -> dict[str, Any]:
    """One check ``{name, value, op, threshold, passed}`` (+ ``expr``, ``threshold_expr``)."""
    value = metric_value(summary, slo.left)
    if slo.ref is None:
        threshold = slo.number
    else:
        ref = metric_value(summary, slo.ref)
        threshold = None if ref is None else slo.factor * ref
    passed = None if value is None or threshold is None else OPS[slo.op](value, threshold)
    return {
        "name": str(slo.left),
        "value": value,
        "op": slo.op,
        "threshold": threshold,
        "passed": passed,
        "expr": slo.expr,
        "threshold_expr": slo.threshold_expr,
    }


def comparison_check(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """The default check that the candidate is not worse: ``sequential.decision != "fail"``
    (CONTRACT.md); its name ends with the guardrail that failed it (``ttft`` for TTFT). A
    comparison without a sequential block (an older summary) falls back to the fixed-horizon
    ``judgement != "worse"`` (inconclusive -> null)."""
    sequential = comparison.get("sequential")
    if isinstance(sequential, Mapping):
        decision = sequential.get("decision")
        name = "comparison.sequential"
        if decision == "fail":
            beyond = [
                g["metric"]
                for g in sequential.get("guardrails") or []
                if (g.get("at_decision") or {}).get("state") == "beyond"
            ]
            name += "." + (beyond[0] if beyond else "no_evidence")
        return {
            "name": name,
            "value": decision,
            "op": "!=",
            "threshold": "fail",
            "passed": decision != "fail",
            "expr": "candidate not worse than baseline (sequential guardrails)",
        }
    judgement = comparison.get("judgement")
    passed = None if judgement == "inconclusive" else judgement != "worse"
    return {
        "name": "comparison.judgement",
        "value": judgement,
        "op": "!=",
        "threshold": "worse",
        "passed": passed,
        "expr": "candidate not judged worse than baseline",
    }


def combine(checks: Sequence[Mapping[str, Any]]) -> str:
    """``fail`` if any check failed, ``inconclusive`` if any is undecided, else ``pass``."""
    results = [c.get("passed") for c in checks]
    if any(r is False for r in results):
        return "fail"
    if any(r is None for r in results):
        return "inconclusive"
    return "pass"


DEFAULT_SLOS = ("error_rate<0.01",)


def verdict(summary: Mapping[str, Any], slos: Sequence[str] | None) -> dict[str, Any]:
    """The ``verdict`` block: the given SLO checks, or the default checks when there are none;
    plus, once a comparison exists, the check that the candidate is not worse, whatever the
    SLOs, unless they hold ``comparison=off``."""
    given = checks_of(slos)
    parsed = [parse_slo(s) for s in (given or DEFAULT_SLOS)]
    checks = [evaluate(s, summary) for s in parsed]
    from reports.sequential import settings_from_slos

    if summary.get("comparison") and settings_from_slos(slos).enabled:
        checks.append(comparison_check(summary["comparison"]))
    return {"result": combine(checks), "checks": checks, "defaults": not given}
