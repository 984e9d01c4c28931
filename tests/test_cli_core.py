"""The CLI core: one-line errors naming the flag, env vars, config files, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest

from probes.cli import main
from probes.errors import ConfigError
from probes.settings import build_request, join_path, mask_url, parse_header


def test_import_probes_does_not_import_locust_or_gevent():
    code = (
        "import sys, probes, probes.cli, probes.settings, probes.run, probes.records;"
        "import probes.cli as c; c._register();"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent'));"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"imported: {result.stdout} {result.stderr[-500:]}"


def test_help_lists_verbs(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "observe" in out and "report" in out


def test_unknown_flag_is_one_line_exit_2(capsys):
    assert main(["report", "--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-such-flag" in err[0]


def test_bad_config_key_names_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "probes.toml").write_text("ratee = 5\n")
    assert main(["report", str(tmp_path)]) == 2
    assert "'ratee'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"url": "ftp://x"}, "URL"),
        ({"url": "http://127.0.0.1:1/", "method": "GE T"}, "--method"),
        ({"url": "http://127.0.0.1:1/", "path": "health"}, "--path"),
        ({"url": "http://127.0.0.1:1/", "headers": ["nocolon"]}, "--header"),
        ({"url": "http://127.0.0.1:1/", "timeout": 0}, "--timeout"),
        ({"url": "http://127.0.0.1:1/", "token_env": "not a name"}, "--token-env"),
        ({"url": "http://127.0.0.1:1/", "body": "x", "body_file": "y"}, "--body"),
        ({"url": "http://127.0.0.1:1/", "body_file": "/nonexistent/f"}, "--body-file"),
    ],
)
def test_request_flags_are_validated(kwargs, flag):
    url = kwargs.pop("url")
    with pytest.raises(ConfigError, match=flag):
        build_request(url, **kwargs)


def test_request_spec_masks_secrets(monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "s3cr3t-value")
    with pytest.raises(ConfigError, match=r"URL: 'http://\*\*\*@127\.0\.0\.1:9/' carries"):
        build_request("http://user:pw@127.0.0.1:9/")
    spec = build_request(
        "http://127.0.0.1:9/x/?api_key=abc&v=1",
        headers=["X-Api-Key: k1", "X-Trace: t"],
        token_env="MY_TOKEN",
        body='{"a": 1}',
    )
    assert spec.request_headers()["Authorization"] == "Bearer s3cr3t-value"
    assert ("Content-Type", "application/json") in spec.headers
    text = repr(spec.describe())
    for secret in ("s3cr3t-value", "abc", "k1"):
        assert secret not in text
    assert spec.describe()["token_set"] is True


def test_join_path_and_headers():
    base = "http://h/api/v2/endpoints/workloads/w1/"
    assert (
        join_path(base, "/chat/completions")
        == "http://h/api/v2/endpoints/workloads/w1/chat/completions"
    )
    assert join_path("http://h/a?x=1", "/b") == "http://h/a/b?x=1"
    assert parse_header("X-A:  b c ") == ("X-A", "b c")
    assert mask_url("http://h:8/p?token=abc") == "http://h:8/p?token=***"


def test_repeatable_flags_read_one_value_per_line_from_the_environment(monkeypatch):
    import click

    from probes.cli.options import option

    seen = {}

    @click.command()
    @option("--header", "headers", multiple=True)
    @option("--slo", "slos", multiple=True)
    def cmd(headers, slos):
        seen.update(headers=headers, slos=slos)

    monkeypatch.setenv("PROBES_HEADER", "X-A: hello world\nX-B: two")
    monkeypatch.setenv("PROBES_SLO", "p99_ms < 500")
    cmd.main([], standalone_mode=False)
    assert seen == {"headers": ("X-A: hello world", "X-B: two"), "slos": ("p99_ms < 500",)}


def test_verdict_line_reads_as_value_and_requirement():
    from probes.cli.output import verdict_line

    summary = {
        "verdict": {
            "result": "fail",
            "checks": [
                {"name": "error_rate", "value": 0.01534, "op": "<", "threshold": 0.01,
                 "passed": False},
                {"name": "comparison.judgement", "value": "worse", "op": "!=",
                 "threshold": "worse", "passed": False},
                {"name": "p99_ms", "value": None, "op": "<", "threshold": 500, "passed": None},
            ],
        }
    }  # fmt: skip
    assert verdict_line(summary) == (
        "verdict: fail — error_rate=0.01534 (needs < 0.01) FAIL; "
        "comparison.judgement=worse (needs != worse) FAIL; p99_ms=None (needs < 500) n/a"
    )
