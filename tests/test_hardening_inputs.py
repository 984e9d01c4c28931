"""Issue 14 hardening: bad input is a clean usage error (SLOs, URLs, headers, numbers), and
no secret-looking header reaches a file of a run."""

from __future__ import annotations

import pytest

from probes.cli import main
from probes.errors import ConfigError
from probes.settings import (
    MAX_DURATION_S,
    MAX_TIMEOUT_S,
    RequestSpec,
    build_request,
    mask_headers,
    parse_header,
    parse_url,
    positive,
)
from reports.verdict import parse_slo
from tests.helpers import closed_port

# --------------------------------------------------------------------------- SLOs (item 4)


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("candiate.p99_ms<1", "unknown scope 'candiate'"),
        ("Candidate.p99_ms<1", "unknown scope 'Candidate'"),
        ("basline.error_rate<0.01", "did you mean 'baseline'"),
        ("cand1date.p99_ms<1", "did you mean 'candidate'"),
        ("candidate.p99_ms<1.2*basline.p99_ms", "unknown scope 'basline'"),
        ("canary.p99_ms<1", "unknown scope 'canary'"),
        ("candidate.p99ms<1", "unknown metric 'p99ms'"),
        ("p99_ms<nan", "threshold nan"),
        ("p99_ms<inf", "threshold inf"),
        ("p99_ms<-inf", "threshold -inf"),
        ("error_rate<1e999", "threshold inf"),
        ("candidate.p99_ms<1e999*baseline.p99_ms", "factor inf"),
    ],
)
def test_slo_typos_and_non_finite_thresholds_are_errors(expr, why):
    with pytest.raises(ValueError) as info:
        parse_slo(expr)
    message = str(info.value)
    assert why in message and repr(expr) in message and "p99_ms<500" in message


@pytest.mark.parametrize(
    ("expr", "scope"),
    [
        ("candidate.p99_ms<1.2*baseline.p99_ms", "candidate"),
        ("v1.error_rate==0", "v1"),
        ("app:1.2.p999_ms<100", "app:1.2"),
        ("json-v2.p50_ms<5", "json-v2"),
        ("[green].p99_ms<500", "green"),  # a version spelt as a plain word: in brackets
        ("[app.v1.2].error_rate<0.1", "app.v1.2"),
        ("error_rate<0.01", None),
    ],
)
def test_valid_scopes_stay_valid(expr, scope):
    assert parse_slo(expr).left.scope == scope


def test_slo_typo_exits_2_before_any_traffic(tmp_path, capsys):
    url = f"http://127.0.0.1:{closed_port()}/"
    argv = ["observe", url, "--runs-dir", str(tmp_path), "--duration", "0.2", "--quiet"]
    code = main([*argv, "--slo", "candiate.p99_ms<1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("probes: --slo: ") and "candiate" in err
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- masking (item 5)


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "X-Auth-Token",
        "x-my-authority",
        "X-Api-Key",
        "Api-Key",
        "X-Secret",
        "Set-Cookie",
        "Cookie",
        "X-Session-Id",
        "X-DB-Password",
        "Proxy-Authorization",
        "X-Access-TOKEN",
    ],
)
def test_secret_looking_headers_are_masked_by_pattern(name):
    assert mask_headers([(name, "s3cr3t"), ("X-Trace", "t1")]) == [
        (name, "***"),
        ("X-Trace", "t1"),
    ]


def test_explicit_secret_headers_are_masked_too():
    spec = RequestSpec(
        url="http://127.0.0.1:9/",
        headers=(("X-Tenant", "acme-private"), ("X-Trace", "t1")),
        secret_headers=("x-tenant",),
    )
    assert spec.describe()["headers"] == {"X-Tenant": "***", "X-Trace": "t1"}
    assert mask_headers([("X-Tenant", "a")], ["X-TENANT"]) == [("X-Tenant", "***")]
    assert spec.request_headers()["X-Tenant"] == "acme-private"  # still sent, only masked
    built = build_request(
        "http://127.0.0.1:9/", headers=["X-Tenant: t"], secret_headers=["X-Tenant"]
    )
    assert built.describe()["headers"] == {"X-Tenant": "***"}
    with pytest.raises(ConfigError, match=r"^--secret-header: "):
        build_request("http://127.0.0.1:9/", secret_headers=["not a name"])


@pytest.mark.slow
def test_auth_token_header_never_reaches_a_file(tmp_path, version_server):
    secret = "s3cr3t-" + tmp_path.name[-8:]  # unique per run, never a real token
    srv = version_server()
    code = main(
        [
            "observe",
            srv.url,
            "--header",
            f"X-Auth-Token: {secret}",
            "--header",
            f"X-Session: {secret}",
            "--runs-dir",
            str(tmp_path),
            "--run-id",
            "r",
            "--rate",
            "20",
            "--duration",
            "0.5",
            "--quiet",
        ]
    )
    assert code == 0
    run_dir = tmp_path / "r"
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"manifest.json", "summary.json", "report.html", "report.md"} <= names
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    assert "X-Auth-Token" in (run_dir / "manifest.json").read_text()  # the name stays visible


# --------------------------------------------------------------------------- URLs, headers (item 6)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:99999/", "port"),
        ("http://127.0.0.1:0x50/", "port"),
        ("http://[::1/", "not an http(s) URL"),
        ("http://127.0.0.1:8080/a\r\nX-Evil: 1", "control character"),
        ("http://127.0.0.1:8080/a b", "control character"),
        ("http://\uff11\uff12\uff17.0.0.1:8080/", "ASCII"),
        ("http://ex\uff41mple.com/", "ASCII"),
        ("http://exa\uff1ample.com/", "not an http(s) URL"),
        ("http://ba!d.example/", "bad host"),
        ("http://256.1.1.1/", "Invalid IPv4"),
    ],
)
def test_bad_urls_are_config_errors(url, why):
    with pytest.raises(ConfigError) as info:
        parse_url(url)
    message = str(info.value)
    assert message.startswith("URL: ") and why in message and "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/",
        "https://example.com/api/v2/endpoints/workloads/w1/?x=1",
        "http://[::1]:8080/p",
        "http://[fe80::1%25eth0]:8080/",
        "http://localhost/",
        "http://xn--bcher-kva.example/",
    ],
)
def test_good_urls_stay_good(url):
    assert parse_url(url) == url


@pytest.mark.parametrize("value", ["X-A: b\r\nX-Evil: c", "X-A: b\nc", "X-A: b\x00", "X-A: \x7f"])
def test_header_with_control_characters_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"^--header: .*control character"):
        parse_header(value, "--header")


def test_header_with_tab_and_latin1_stays_good():
    assert parse_header("X-A: a\tb é") == ("X-A", "a\tb é")


@pytest.mark.parametrize(
    ("value", "flag", "ok"),
    [
        (float("inf"), "--timeout", False),
        (float("nan"), "--timeout", False),
        (1e308, "--timeout", False),
        (MAX_TIMEOUT_S + 1, "--timeout", False),
        (MAX_TIMEOUT_S, "--timeout", True),
        (1e308, "--duration", False),
        (float("inf"), "--duration", False),
        (MAX_DURATION_S + 1, "--duration", False),
        (MAX_DURATION_S, "--duration", True),
        (0.5, "--tail", True),
        (0, "--tail", False),
        (-1, "--tail", False),
        (1e-300, "--timeout", False),
        (1e-300, "--duration", False),
        (0.001, "--duration", True),
        ("10", "--timeout", False),
        (True, "--timeout", False),
    ],
)
def test_numbers_are_finite_and_within_a_stated_range(value, flag, ok):
    if ok:
        assert positive(value, flag) == value
        return
    with pytest.raises(ConfigError) as info:
        positive(value, flag)
    assert str(info.value).startswith(f"{flag}: ")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["http://127.0.0.1:99999/"], "URL"),
        (["http://[::1/"], "URL"),
        (["http://127.0.0.1:9/a\r\nX-Evil: 1"], "URL"),
        (["http://\uff11\uff12\uff17.0.0.1:9/"], "URL"),
        (["http://exa\uff1ample.com/"], "URL"),
        (["http://127.0.0.1:{port}/", "--header", "X-A: b\r\nX-Evil: c"], "--header"),
        (["http://127.0.0.1:{port}/", "--timeout", "inf"], "--timeout"),
        (["http://127.0.0.1:{port}/", "--timeout", "1e308"], "--timeout"),
        (["http://127.0.0.1:{port}/", "--duration", "1e308"], "--duration"),
        (["http://127.0.0.1:{port}/", "--timeout", "1e-300"], "--timeout"),
        (["http://127.0.0.1:{port}/", "--duration", "1e-300"], "--duration"),
    ],
)
def test_crash_inputs_exit_2_with_one_line(tmp_path, capsys, args, flag):
    port = closed_port()
    argv = [a.replace("{port}", str(port)) for a in args]
    # The flags under test come last: the last of a repeated flag wins.
    code = main(["observe", "--runs-dir", str(tmp_path), "--duration", "0.2", "--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith(f"probes: {flag}")
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_build_request_rejects_infinite_timeout():
    with pytest.raises(ConfigError, match=r"^--timeout: "):
        build_request("http://127.0.0.1:9/", timeout=float("inf"))
