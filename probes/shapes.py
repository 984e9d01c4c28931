"""Load shapes as pure policies: elapsed seconds in, ``(users, spawn_rate)`` or ``None`` out.

``None`` means the test is over. The Locust glue wraps each policy in a ``LoadTestShape``
(``probes.locustglue``); here there is no clock and no Locust, so the policies are tested
table-driven.

A shape is written ``NAME[:key=value,...]`` on the command line (``--shape``):

==========  =========================================================================
``steady``  ``users`` from start to end (the default)
``ramp``    linear from ``from`` users to ``users`` over ``over`` seconds, then hold
``step``    ``from`` users (default ``step``), ``step`` more every ``every`` s, up to ``users``
``spike``   ``users`` all along, except ``peak`` users from ``at`` s for ``for`` s
==========  =========================================================================

``users``, ``spawn_rate`` and ``duration`` come from ``--users``, ``--spawn-rate`` and
``--duration`` and may also be given as keys (``users=50``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from probes.errors import ConfigError

#: Most users a shape may hold (as --users); longest duration (as --duration): 31 days.
MAX_USERS = 100_000
MAX_DURATION_S = 31 * 86400.0

SHAPES = ("steady", "ramp", "step", "spike")

#: Keys each shape accepts besides users, spawn_rate and duration.
SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    "steady": (),
    "ramp": ("from", "over"),
    "step": ("from", "step", "every"),
    "spike": ("peak", "at", "for"),
}
COMMON_KEYS = ("users", "spawn_rate", "duration")


@dataclass(frozen=True)
class Shape:
    """A parsed load shape: its name, the common settings and its own parameters."""

    name: str = "steady"
    users: int = 1
    spawn_rate: float = 1.0
    duration: float = 60.0
    params: tuple[tuple[str, float], ...] = field(default=())

    def param(self, key: str, default: float) -> float:
        return dict(self.params).get(key, default)

    def describe(self) -> dict[str, object]:
        """Plain data for the manifest."""
        return {
            "name": self.name,
            "users": self.users,
            "spawn_rate": self.spawn_rate,
            "duration_s": self.duration,
            **dict(self.params),
        }


def _number(key: str, text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag}: {key}={text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{flag}: {key}={text!r} must be a finite number >= 0")
    return value


def parse_shape(
    text: str | None,
    *,
    users: int = 1,
    spawn_rate: float = 1.0,
    duration: float = 60.0,
    flag: str = "shape",
) -> Shape:
    """``NAME[:key=value,...]`` → ``Shape``; ConfigError naming ``flag`` and the expected form."""
    name, _, rest = (text or "steady").strip().partition(":")
    name = name.strip().lower() or "steady"
    if name not in SHAPES:
        raise ConfigError(
            f"{flag}: {text!r} is not a shape; expected one of {', '.join(SHAPES)}"
            " optionally followed by :key=value,... (e.g. ramp:from=1,over=30)"
        )
    common = {"users": float(users), "spawn_rate": spawn_rate, "duration": duration}
    params: dict[str, float] = {}
    allowed = SHAPE_KEYS[name]
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"{flag}: {item!r} is not of the form key=value")
        if key in COMMON_KEYS:
            common[key] = _number(key, value.strip(), flag)
        elif key in allowed:
            params[key] = _number(key, value.strip(), flag)
        else:
            keys = ", ".join((*COMMON_KEYS, *allowed))
            raise ConfigError(f"{flag}: {name} has no key {key!r}; known keys: {keys}")
    shape = Shape(
        name=name,
        users=int(common["users"]),
        spawn_rate=float(common["spawn_rate"]),
        duration=float(common["duration"]),
        params=tuple(sorted(params.items())),
    )
    return validate(shape, flag)


def validate(shape: Shape, flag: str = "shape") -> Shape:
    """Check the values that would make a policy meaningless."""
    if not 1 <= shape.users <= MAX_USERS:
        raise ConfigError(f"{flag}: users must be from 1 to {MAX_USERS} (got {shape.users})")
    if not 0 < shape.spawn_rate <= MAX_USERS:
        raise ConfigError(
            f"{flag}: spawn_rate must be > 0 and <= {MAX_USERS} (got {shape.spawn_rate})"
        )
    if not 0 < shape.duration <= MAX_DURATION_S:
        raise ConfigError(
            f"{flag}: duration must be > 0 and <= {MAX_DURATION_S:g} s (got {shape.duration})"
        )
    for key, value in shape.params:
        if not math.isfinite(value) or abs(value) > MAX_DURATION_S:
            raise ConfigError(f"{flag}: {key}= must be a finite number (got {value})")
    if shape.name == "step" and shape.param("every", 10.0) <= 0:
        raise ConfigError(f"{flag}: step every= must be > 0 seconds")
    return shape


def with_defaults(shape: Shape, **common: float) -> Shape:
    """The same shape with other common settings (users, spawn_rate, duration)."""
    return validate(replace(shape, **common))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- policies


def steady(shape: Shape, t: float) -> tuple[int, float]:
    return shape.users, shape.spawn_rate


def ramp(shape: Shape, t: float) -> tuple[int, float]:
    start = int(shape.param("from", 1))
    over = shape.param("over", shape.duration / 2)
    if over <= 0 or t >= over:
        return shape.users, shape.spawn_rate
    users = start + (shape.users - start) * t / over
    return max(1, round(users)), shape.spawn_rate


def step(shape: Shape, t: float) -> tuple[int, float]:
    size = int(shape.param("step", max(1, shape.users // 5)))
    every = shape.param("every", 10.0)
    start = int(shape.param("from", size))
    users = start + size * int(t // every)
    return max(1, min(shape.users, users)), shape.spawn_rate


def spike(shape: Shape, t: float) -> tuple[int, float]:
    peak = int(shape.param("peak", shape.users * 5))
    at = shape.param("at", shape.duration / 3)
    length = shape.param("for", 10.0)
    # A spike is sudden both ways: its users start, and later stop, within about a second.
    fast = max(shape.spawn_rate, float(peak))
    if at <= t < at + length:
        return max(1, peak), fast
    return shape.users, (fast if t >= at else shape.spawn_rate)


POLICIES = {"steady": steady, "ramp": ramp, "step": step, "spike": spike}


def users_at(shape: Shape, t: float) -> tuple[int, float] | None:
    """``(users, spawn_rate)`` at ``t`` seconds into the test, or None once it is over."""
    if t >= shape.duration or t < 0:
        return None
    return POLICIES[shape.name](shape, t)
