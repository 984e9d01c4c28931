"""One config reader, one error policy; every value named by the place it came from."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from probes.config import find_config, read_toml, verb_defaults
from probes.errors import ConfigError
from probes.locustglue.options import config_defaults
from probes.recording import CapacitySettings, LoadSettings, ObserveSettings, settings_from_args
from probes.settings import FLAGS, Place, build_request


def test_read_toml_names_the_place_and_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("rate = [", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^--config: .*bad.toml is not valid TOML"):
        read_toml(bad, "--config")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"rate = '\xff'")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        read_toml(latin)
    with pytest.raises(ConfigError, match=r"^--config: .*missing.toml does not exist"):
        find_config(tmp_path / "missing.toml", place="--config")


def test_find_config_order(tmp_path: Path) -> None:
    assert find_config(None, cwd=tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("[tool.probes]\nrate = 3\n", encoding="utf-8")
    assert find_config(None, cwd=tmp_path) == (tmp_path / "pyproject.toml", {"rate": 3})
    (tmp_path / "probes.toml").write_text("rate = 5\n", encoding="utf-8")
    assert find_config(None, cwd=tmp_path) == (tmp_path / "probes.toml", {"rate": 5})


def test_verb_defaults_shared_and_per_verb_keys() -> None:
    verbs = {"observe": {"rate", "duration"}, "load": {"users", "duration"}}
    got = verb_defaults(Path("p.toml"), {"duration": 9, "load": {"users": 4}}, verbs)
    assert got == {"observe": {"duration": 9}, "load": {"duration": 9, "users": 4}}
    with pytest.raises(ConfigError, match="key 'ratee' is not a flag of any probes verb"):
        verb_defaults(Path("p.toml"), {"ratee": 1}, verbs)
    with pytest.raises(ConfigError, match=r"\[load\] key 'rate' is not a flag of 'probes load'"):
        verb_defaults(Path("p.toml"), {"load": {"rate": 1}}, verbs)
    with pytest.raises(ConfigError, match=r"\[lode\] is not a probes verb"):
        verb_defaults(Path("p.toml"), {"lode": {"users": 1}}, verbs)


def test_the_locust_glue_refuses_bad_toml(tmp_path: Path, monkeypatch) -> None:
    """The glue reads the same file with the same policy (it used to ignore bad TOML)."""
    bad = tmp_path / "probes.toml"
    bad.write_text("timeout = ", encoding="utf-8")
    monkeypatch.setenv("PROBES_CONFIG", str(bad))
    with pytest.raises(ConfigError, match=r"PROBES_CONFIG: .*not valid TOML"):
        config_defaults()
    bad.write_text("timeout = 3\n[load]\nmethod = 'POST'\n[observe]\nrate = 2\n", "utf-8")
    assert config_defaults() == {"timeout": 3, "method": "POST"}


def test_place_names_flags_and_keys() -> None:
    assert FLAGS("max_in_flight") == "--max-in-flight"
    assert FLAGS("headers") == "--header" and FLAGS("url") == "URL"
    service = Place.keys("targets[2].", {"tag_headers": "tag_header"})
    assert service("canary_rate") == "targets[2].canary_rate"
    assert service("tag_headers") == "targets[2].tag_header"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"timeout": math.nan}, "targets[1].timeout"),
        ({"timeout": 1e308}, "targets[1].timeout"),
        ({"method": "G E T"}, "targets[1].method"),
        ({"path": "chat"}, "targets[1].path"),
        ({"headers": ["nope"]}, "targets[1].headers"),
        ({"tag_headers": ["a b"]}, "targets[1].tag_header"),
        ({"tag_regex": "("}, "targets[1].tag_regex"),
        ({"token_env": "not a name"}, "targets[1].token_env"),
    ],
)
def test_request_errors_name_the_service_key(kwargs: dict, name: str) -> None:
    place = Place.keys("targets[1].", {"tag_headers": "tag_header"})
    with pytest.raises(ConfigError) as err:
        build_request("http://127.0.0.1:9/", place=place, **kwargs)
    assert str(err.value).startswith(f"{name}: "), err.value


def test_settings_from_args_builds_what_the_cli_builds() -> None:
    args = {"start_users": 2, "step_users": 2, "step_seconds": 5.0, "max_users": 6}
    got = settings_from_args(
        "capacity", args, duration_s=600, slos=["p99_ms<500"], place="schedules[0].args"
    )
    assert got == CapacitySettings.build(**args, duration=600, slos=["p99_ms<500"])
    load = settings_from_args("load", {"users": 3}, duration_s=30, slos=[], place="s.args")
    assert isinstance(load, LoadSettings) and load.shape.users == 3
    obs = settings_from_args("observe", {"rate": 4}, duration_s=30, slos=[], place="s.args")
    assert isinstance(obs, ObserveSettings) and obs.probe.rate == 4.0


@pytest.mark.parametrize(
    ("kind", "args", "extra", "name"),
    [
        ("load", {"users": 0}, {}, "schedules[3].args.users"),
        ("load", {"usres": 3}, {}, "schedules[3].args.usres"),
        ("load", {"users": 3}, {"workers": -1}, "schedules[3].workers"),
        ("load", {"users": 3}, {"duration_s": math.inf}, "schedules[3].duration_s"),
        ("observe", {"rate": "fast"}, {}, "schedules[3].args.rate"),
        ("observe", {"rate": True}, {}, "schedules[3].args.rate"),
        ("capacity", {"max_users": 1, "start_users": 5}, {}, "schedules[3].args.max_users"),
        ("capacity", {"step_seconds": 0.5}, {}, "schedules[3].args.step_seconds"),
        ("soak", {}, {}, "schedules[3].args"),
    ],
)
def test_settings_from_args_errors_name_the_key(kind, args, extra, name) -> None:
    duration = extra.pop("duration_s", 60.0)
    with pytest.raises(ConfigError) as err:
        settings_from_args(
            kind, args, duration_s=duration, slos=[], place="schedules[3].args", **extra
        )
    assert str(err.value).startswith(f"{name}: ") or str(err.value).startswith(f"{name} "), (
        err.value
    )
