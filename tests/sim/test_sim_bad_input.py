"""Every numeric flag of ``probes sim``: a bad value exits 2 with one line naming the flag
and its range, never a traceback, and never starts a platform.

Table-driven over negative, 0 (where 0 is not valid), NaN, infinity, 1e308 and non-numeric
values, in-process through ``probes.cli.main``.
"""

from __future__ import annotations

import math

import click
import pytest

from probes.cli import main
from probes.errors import ConfigError
from probes.sim import SimConfig
from probes.sim.scenarios import LATENCY_KNOBS, MAX_REPLICAS, RANGES

TOKEN_ENV = "SIM_BAD_INPUT_TOKEN"
BAD = ("-1", "nan", "inf", "-inf", "1e308", "abc", "")
#: flags where 0 itself is invalid
ZERO_INVALID = {
    "--time-scale",
    "--ready-timeout",
    "--upstream-timeout",
    "--replicas",
    "--stream-tokens",
}
LATENCY_BAD = (*BAD, "5-nan", "5-inf", "20-5", "-5-5", "lognorm:nan:1", "lognorm:10:inf")
LATENCY_BAD += ("lognorm:0:1", "lognorm:10:-1", "lognorm:10", "3600001")
#: the flags of `probes sim` that take a number (or a latency made of numbers)
NUMERIC = (
    "--time-scale",
    "--port",
    "--seed",
    "--ready-timeout",
    "--shift-seconds",
    "--drain-s",
    "--gap-ms",
    "--completed-ttl",
    "--upstream-timeout",
    "--replicas",
    "--baseline-error-rate",
    "--candidate-error-rate",
    "--candidate-startup-s",
    "--baseline-latency-ms",
    "--candidate-latency-ms",
    "--baseline-first-token-ms",
    "--candidate-first-token-ms",
    "--baseline-inter-token-ms",
    "--candidate-inter-token-ms",
    "--stream-tokens",
    "--baseline-abort-share",
    "--candidate-abort-share",
)
LATENCY_FLAGS = (
    "--baseline-latency-ms",
    "--candidate-latency-ms",
    "--baseline-first-token-ms",
    "--candidate-first-token-ms",
    "--baseline-inter-token-ms",
    "--candidate-inter-token-ms",
)
#: values just out of range, flag by flag
OUT_OF_RANGE = {
    "--time-scale": "100001",
    "--port": "65536",
    "--seed": str(2**63),
    "--ready-timeout": "1e8",
    "--shift-seconds": "1e8",
    "--drain-s": "1e8",
    "--gap-ms": "600001",
    "--completed-ttl": "3601",
    "--upstream-timeout": "3601",
    "--replicas": str(MAX_REPLICAS + 1),
    "--baseline-error-rate": "1.01",
    "--candidate-error-rate": "1.5",
    "--candidate-startup-s": "1e8",
    "--stream-tokens": "100001",
    "--baseline-abort-share": "1.01",
    "--candidate-abort-share": "1.5",
}


def cases() -> list[tuple[str, str]]:
    out = []
    for flag in NUMERIC:
        values = LATENCY_BAD if flag in LATENCY_FLAGS else BAD
        out += [(flag, v) for v in values]
        if flag in ZERO_INVALID:
            out.append((flag, "0"))
        if flag in OUT_OF_RANGE:
            out.append((flag, OUT_OF_RANGE[flag]))
    return out


@pytest.mark.timeout(30)  # a value wrongly accepted would start a platform and block
@pytest.mark.parametrize(("flag", "value"), cases())
def test_bad_numeric_value_exits_2_naming_the_flag(
    flag: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "t")
    code = main(["sim", "--token-env", TOKEN_ENV, f"{flag}={value}"])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert flag in lines[0] and "Traceback" not in err
    assert "probes sim:" not in out  # no platform was started


def test_the_table_covers_every_numeric_flag() -> None:
    from probes.cli.sim import command

    numeric = {
        "--" + p.name.replace("_", "-")
        for p in command.params
        if isinstance(p, click.Option)
        and (isinstance(p.type, click.types.FloatParamType | click.types.IntParamType))
    }
    numeric |= {"--" + k.replace("_", "-") for k in LATENCY_KNOBS}
    assert numeric == set(NUMERIC)
    # and every range the library states has a flag or is the one knob without one
    assert {"--" + k.replace("_", "-") for k in RANGES} - set(NUMERIC) == {"--dwell"}


@pytest.mark.parametrize(
    "knobs",
    [
        {"time_scale": 100_000.0, "replicas": MAX_REPLICAS, "gap_ms": 0.0, "port": 65535},
        {"time_scale": 0.001, "ready_timeout": 1e7, "upstream_timeout": 0.01, "seed": 0},
        {"baseline_latency_ms": "lognorm:10:0.5", "candidate_latency_ms": "0-3600000"},
        {"baseline_error_rate": 1, "candidate_error_rate": 0, "completed_ttl": 0, "dwell": 60},
    ],
)
def test_values_at_the_bounds_are_accepted(knobs: dict[str, object]) -> None:
    SimConfig(token="t", **knobs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value"),
    [("dwell", math.nan), ("dwell", -0.1), ("replicas", True), ("gap_ms", "x"), ("seed", -1)],
)
def test_library_callers_get_the_same_check(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match="--" + name.replace("_", "-")):
        SimConfig(token="t", **{name: value})  # type: ignore[arg-type]
