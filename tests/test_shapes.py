"""Load shape policies: table-driven, no clock, no Locust."""

from __future__ import annotations

import pytest

from probes.errors import ConfigError
from probes.shapes import Shape, parse_shape, users_at


def shape(text: str, users: int = 10, spawn_rate: float = 2.0, duration: float = 60.0) -> Shape:
    return parse_shape(text, users=users, spawn_rate=spawn_rate, duration=duration)


@pytest.mark.parametrize(
    ("text", "t", "expected"),
    [
        ("steady", 0.0, (10, 2.0)),
        ("steady", 59.9, (10, 2.0)),
        ("steady", 60.0, None),
        ("steady", -1.0, None),
        ("ramp:from=2,over=20", 0.0, (2, 2.0)),
        ("ramp:from=2,over=20", 10.0, (6, 2.0)),
        ("ramp:from=2,over=20", 20.0, (10, 2.0)),
        ("ramp:from=2,over=20", 45.0, (10, 2.0)),
        ("ramp", 15.0, (6, 2.0)),  # default: from 1 over half the duration
        ("step:step=3,every=10", 0.0, (3, 2.0)),
        ("step:step=3,every=10", 9.99, (3, 2.0)),
        ("step:step=3,every=10", 10.0, (6, 2.0)),
        ("step:step=3,every=10", 35.0, (10, 2.0)),  # capped at users
        ("spike:peak=50,at=20,for=5", 19.9, (10, 2.0)),
        ("spike:peak=50,at=20,for=5", 20.0, (50, 50.0)),
        ("spike:peak=50,at=20,for=5", 24.9, (50, 50.0)),
        ("spike:peak=50,at=20,for=5", 25.0, (10, 50.0)),  # back down quickly
        ("steady:users=4,duration=5", 4.0, (4, 2.0)),
        ("steady:users=4,duration=5", 5.0, None),
    ],
)
def test_policies(text: str, t: float, expected: tuple[int, float] | None) -> None:
    assert users_at(shape(text), t) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wave", "is not a shape"),
        ("ramp:over", "key=value"),
        ("ramp:peak=3", "has no key 'peak'"),
        ("step:every=0", "every= must be > 0"),
        ("spike:at=x", "is not a number"),
        ("steady:users=0", "users must be from 1 to"),
        ("ramp:over=-1", ">= 0"),
        ("steady:duration=nan", "finite"),
    ],
)
def test_bad_shapes_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_shape(text, users=10, spawn_rate=2.0, duration=60.0, flag="--shape")
    assert str(info.value).startswith("--shape")


def test_default_and_describe() -> None:
    s = parse_shape(None, users=3, spawn_rate=1.5, duration=9)
    assert (s.name, s.users, s.spawn_rate, s.duration) == ("steady", 3, 1.5, 9.0)
    assert shape("ramp:from=1,over=30").describe() == {
        "name": "ramp",
        "users": 10,
        "spawn_rate": 2.0,
        "duration_s": 60.0,
        "from": 1.0,
        "over": 30.0,
    }
