"""Every verb's numeric flags, given what a hostile or careless user types: exit 2, one line
naming the flag, no traceback, nothing recorded. Two runs started with one id: one run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from probes.cli import main

URL = "http://127.0.0.1:9/"  # nothing listens: a value that slipped through fails loudly

#: (verb, flag, values that must be refused); the run is kept short so a value that slips
#: through ends fast (and fails the exit-code assertion).
BAD = {
    "observe": {
        "--rate": ["-1", "0", "nan", "inf", "1e308", "fast"],
        "--duration": ["-1", "0", "nan", "inf", "1e308", "long"],
        "--timeout": ["-1", "0", "nan", "inf", "1e308", "x"],
        "--max-in-flight": ["-1", "0", "100000000", "nan", "x"],
        "--tail": ["-1", "nan", "inf", "1e308", "x"],
    },
    "load": {
        "--users": ["-1", "0", "10000000", "nan", "x"],
        "--spawn-rate": ["-1", "0", "nan", "inf", "1e308", "x"],
        "--workers": ["-1", "100000", "nan", "x"],
        "--probe-rate": ["-1", "nan", "inf", "1e308", "x"],
        "--duration": ["-1", "0", "nan", "inf", "1e308", "x"],
        "--timeout": ["-1", "0", "nan", "inf", "1e308", "x"],
    },
    "capacity": {
        "--start-users": ["-1", "0", "10000000", "x"],
        "--step-users": ["-1", "0", "10000000", "x"],
        "--step-seconds": ["-1", "0", "nan", "inf", "1e308", "x"],
        "--max-users": ["-1", "0", "10000000", "x"],
        "--spawn-rate": ["-1", "0", "nan", "inf", "1e308", "x"],
        "--workers": ["-1", "100000", "x"],
        "--duration": ["-1", "0", "nan", "inf", "1e308", "x"],
        "--timeout": ["-1", "0", "nan", "inf", "1e308", "x"],
    },
}
#: Values that are fine for a flag (0 probe rate: no probe) are not in the table; short runs:
BASE = {"observe": ["--duration", "1"], "load": ["--duration", "1"], "capacity": []}

CASES = [
    (verb, flag, value) for verb, flags in BAD.items() for flag, values in flags.items()
    for value in values
]  # fmt: skip


@pytest.mark.parametrize(("verb", "flag", "value"), CASES)
def test_numeric_flag_refused(tmp_path: Path, capsys, verb: str, flag: str, value: str) -> None:
    base = [a for a in BASE[verb] if flag != "--duration"]
    argv = [verb, URL, "--runs-dir", str(tmp_path), "-q", *base, flag, value]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert flag in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())  # nothing recorded


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "x"])
def test_report_bucket_refused(tmp_path: Path, capsys, value: str) -> None:
    code = main(["report", str(tmp_path), "--bucket", value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--duration", "inf"),
        ("--duration", "-3"),
        ("--replace-at", "inf"),
        ("--replace-at", "-1"),
        ("--users", "0"),
        ("--probe-rate", "nan"),
    ],
)
def test_demo_flags_refused(tmp_path: Path, capsys, monkeypatch, flag: str, value: str) -> None:
    def no_simulator(*args: object, **kwargs: object) -> None:
        raise AssertionError("the simulator started before the flags were checked")

    monkeypatch.setattr("probes.cli.demo.Simulator", no_simulator)
    code = main(["demo", "--runs-dir", str(tmp_path), "-q", flag, value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and flag in err and "Traceback" not in err, err


CLAIM = """
import sys
from probes.errors import ConfigError
from probes.run import Run
try:
    Run.create(sys.argv[1], "same", "observe", target={}, settings={})
except ConfigError as exc:
    print(exc); sys.exit(2)
"""


def test_concurrent_starts_with_one_run_id_give_one_run(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(10)
    ]
    results = [(p.wait(60), p.stdout.read() if p.stdout else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0] + [2] * 9, results
    refusals = [out for code, out in results if code == 2]
    assert all("same" in out and "choose another id" in out for out in refusals), refusals
    assert [p.name for p in tmp_path.iterdir()] == ["same"]


def test_a_run_id_naming_a_directory_that_is_not_a_run_is_refused(tmp_path: Path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me", encoding="utf-8")
    code = main(["observe", URL, "--runs-dir", str(tmp_path), "--run-id", "mine", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "--run-id" in err and "exists" in err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
