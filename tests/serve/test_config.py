"""serve.toml: every key validated once; each bad value is one line naming its key; exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from probes.errors import ConfigError
from probes.serve.config import load_config, parse_config

GOOD = """
[serve]
listen = "127.0.0.1:8686"
runs_dir = "runs"
retention_days = 30
segment_s = 3600

[[targets]]
name = "chat"
url = "http://127.0.0.1:9000/"
path = "/chat/completions"
method = "POST"
headers = ["X-Team: a"]
tag_header = ["X-Version"]
tag_json = ["model.version"]
canary_rate = 2
capture_rate = 20.0
capture_tail_s = 60
slo = ["error_rate<0.01", "p99_ms<800"]
flagger = ["prod/chat"]

[[targets]]
name = "wl"
api = "http://127.0.0.1:9001/api/v2"
workload = "WL1"
token_env = "SIM_TOKEN"

[[schedules]]
name = "nightly-capacity"
target = "chat"
kind = "capacity"
cron = "0 2 * * *"
timezone = "Europe/Berlin"
concurrency = "forbid"
starting_deadline_s = 300
duration_s = 600
args = { start_users = 5, step_users = 5, step_seconds = 60, max_users = 200 }

[[schedules]]
name = "half-hourly"
target = "wl"
kind = "observe"
every = "30m"
args = { rate = 5 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_config_parses_into_frozen_settings(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), env={})
    assert cfg.serve.listen == "127.0.0.1:8686" and cfg.auth_token is None
    assert cfg.serve.runs_dir == tmp_path / "runs"
    assert cfg.serve.index == tmp_path / "runs" / "index.sqlite"
    chat, wl = cfg.targets
    assert chat.request.url == "http://127.0.0.1:9000/chat/completions"
    assert chat.request.method == "POST" and chat.canary_rate == 2.0
    assert chat.slos == ("error_rate<0.01", "p99_ms<800") and chat.flagger == ("prod/chat",)
    assert wl.is_api and wl.request_for("http://h:1/inv/").url == "http://h:1/inv/"
    assert wl.token_env == "SIM_TOKEN"
    nightly, half = cfg.schedules
    assert nightly.timing.cron == "0 2 * * *" and nightly.timing.timezone == "Europe/Berlin"
    assert nightly.args["max_users"] == 200 and nightly.starting_deadline_s == 300.0
    assert half.timing.every_s == 1800.0 and half.concurrency == "forbid"
    assert half.starting_deadline_s is None
    with pytest.raises(AttributeError):
        cfg.serve.segment_s = 1  # type: ignore[misc]
    assert cfg.target("wl") is wl
    with pytest.raises(KeyError):
        cfg.target("nope")


def test_minimal_config_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[[targets]]\nname = "a"\nurl = "http://127.0.0.1:1/"\n'))
    (t,) = cfg.targets
    assert (t.canary_rate, t.capture_rate, t.capture_tail_s, t.settle_s) == (1.0, 20.0, 60.0, 10.0)
    assert cfg.serve.segment_s == 3600.0 and cfg.serve.retention_days == 30.0
    assert cfg.schedules == ()


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# (what is wrong, edit of GOOD as (old, new), the message must start with)
BAD = [
    ("unknown top key", ("[serve]", "colour = 1\n[serve]"), "colour: unknown key"),
    ("unknown serve key", ('listen = "127', 'listn = 1\nlisten = "127'), "serve.listn: unknown"),
    ("unknown target key", ("canary_rate = 2", "canary_rat = 2"), "targets[0].canary_rat:"),
    ("wrong type", ("canary_rate = 2", 'canary_rate = "fast"'), "targets[0].canary_rate:"),
    ("bool is no number", ("canary_rate = 2", "canary_rate = true"), "targets[0].canary_rate:"),
    ("negative", ("capture_rate = 20.0", "capture_rate = -1"), "targets[0].capture_rate:"),
    ("zero capture rate", ("capture_rate = 20.0", "capture_rate = 0"), "targets[0].capture_rate:"),
    ("nan", ("capture_tail_s = 60", "capture_tail_s = nan"), "targets[0].capture_tail_s:"),
    ("segment", ("segment_s = 3600", "segment_s = 0"), "serve.segment_s:"),
    ("retention", ("retention_days = 30", "retention_days = '30'"), "serve.retention_days:"),
    ("bad name", ('name = "chat"', 'name = "Chat_1"'), "targets[0].name:"),
    ("duplicate name", ('name = "wl"', 'name = "chat"'), "targets[1].name: duplicate"),
    ("missing name", ('name = "wl"\n', ""), "targets[1].name: missing"),
    ("url and api", ('workload = "WL1"', 'workload = "WL1"\nurl = "http://x/"'), "targets[1].url:"),
    ("api without workload", ('workload = "WL1"\n', ""), "targets[1].workload:"),
    ("no url", ('url = "http://127.0.0.1:9000/"\n', ""), "targets[0].url: missing"),
    ("bad url", ('url = "http://127.0.0.1:9000/"', 'url = "ftp://x/"'), "targets[0].url:"),
    (
        "credentials in url",
        ("http://127.0.0.1:9000/", "http://u:pw@127.0.0.1:9000/"),
        "targets[0].url:",
    ),
    ("bad api", ('api = "http://127.0.0.1:9001/api/v2"', 'api = "nope"'), "targets[1].api:"),
    ("bad path", ('path = "/chat/completions"', 'path = "chat"'), "targets[0].path:"),
    ("bad method", ('method = "POST"', 'method = "PO ST"'), "targets[0].method:"),
    ("bad header", ('headers = ["X-Team: a"]', 'headers = ["no colon"]'), "targets[0].headers:"),
    (
        "secret header",
        ('headers = ["X-Team: a"]', 'headers = ["Authorization: Bearer x"]'),
        "targets[0].headers[0]:",
    ),
    ("header type", ('headers = ["X-Team: a"]', "headers = [1]"), "targets[0].headers[0]:"),
    (
        "bad tag header",
        ('tag_header = ["X-Version"]', 'tag_header = ["X Version"]'),
        "targets[0].tag_header:",
    ),
    (
        "bad tag json",
        ('tag_json = ["model.version"]', 'tag_json = ["a..b"]'),
        "targets[0].tag_json:",
    ),
    ("bad tag regex", ('tag_json = ["model.version"]', 'tag_regex = "("'), "targets[0].tag_regex:"),
    ("bad token env", ('token_env = "SIM_TOKEN"', 'token_env = "tok en"'), "targets[1].token_env:"),
    (
        "body file",
        ('method = "POST"', 'method = "POST"\nbody_file = "missing.json"'),
        "targets[0].body_file:",
    ),
    ("bad slo", ('"p99_ms<800"', '"p99_ms<<800"'), "targets[0].slo[1]:"),
    ("bad flagger", ('flagger = ["prod/chat"]', 'flagger = ["chat"]'), "targets[0].flagger[0]:"),
    (
        "flagger twice",
        ('token_env = "SIM_TOKEN"', 'token_env = "SIM_TOKEN"\nflagger = ["prod/chat"]'),
        "targets[1].flagger:",
    ),
    (
        "unknown schedule target",
        ('target = "wl"', 'target = "nope"'),
        "schedules[1].target: no target",
    ),
    (
        "duplicate schedule",
        ('name = "half-hourly"', 'name = "nightly-capacity"'),
        "schedules[1].name: duplicate",
    ),
    ("bad cron", ('cron = "0 2 * * *"', 'cron = "0 26 * * *"'), "schedules[0].cron:"),
    (
        "cron and every",
        ('cron = "0 2 * * *"', 'cron = "0 2 * * *"\nevery = "1h"'),
        "schedules[0].cron:",
    ),
    ("neither cron nor every", ('every = "30m"\n', ""), "schedules[1].cron:"),
    ("bad every", ('every = "30m"', 'every = "30 minutes"'), "schedules[1].every:"),
    (
        "bad zone",
        ('timezone = "Europe/Berlin"', 'timezone = "Europe/Nowhere"'),
        "schedules[0].timezone:",
    ),
    ("bad kind", ('kind = "observe"', 'kind = "soak"'), "schedules[1].kind:"),
    (
        "bad concurrency",
        ('concurrency = "forbid"', 'concurrency = "never"'),
        "schedules[0].concurrency:",
    ),
    (
        "bad deadline",
        ("starting_deadline_s = 300", "starting_deadline_s = -1"),
        "schedules[0].starting_deadline_s:",
    ),
    ("bad duration", ("duration_s = 600", "duration_s = 0"), "schedules[0].duration_s:"),
    ("unknown schedule key", ("duration_s = 600", "duration = 600"), "schedules[0].duration:"),
    (
        "unknown arg",
        ("max_users = 200 }", "max_users = 200, users = 3 }"),
        "schedules[0].args.users:",
    ),
    ("bad arg", ("max_users = 200 }", "max_users = -2 }"), "schedules[0].args.max_users:"),
    (
        "bad observe arg",
        ("args = { rate = 5 }", 'args = { rate = "x" }'),
        "schedules[1].args.rate:",
    ),
    ("workers on observe", ("args = { rate = 5 }", "workers = 2"), "schedules[1].workers:"),
    (
        "bad workers",
        ("duration_s = 600", "duration_s = 600\nworkers = 1.5"),
        "schedules[0].workers:",
    ),
    (
        "both workers",
        ("duration_s = 600", "duration_s = 600\nworkers = 1\nexpect_workers = 2"),
        "schedules[0].expect_workers:",
    ),
    ("args not a table", ("args = { rate = 5 }", "args = 5"), "schedules[1].args:"),
    ("bad listen", ('listen = "127.0.0.1:8686"', 'listen = "127.0.0.1"'), "serve.listen:"),
    ("bad port", ('listen = "127.0.0.1:8686"', 'listen = "127.0.0.1:99999"'), "serve.listen:"),
    ("public listen", ('listen = "127.0.0.1:8686"', 'listen = "0.0.0.0:8686"'), "serve.listen:"),
    (
        "bad auth env",
        ('listen = "127', 'auth_token_env = "a b"\nlisten = "127'),
        "serve.auth_token_env:",
    ),
    (
        "empty auth env",
        ('listen = "127', 'auth_token_env = "UNSET_PROBES_VAR"\nlisten = "127'),
        "serve.auth_token_env:",
    ),
]


@pytest.mark.parametrize(("case", "edit", "prefix"), BAD, ids=[b[0] for b in BAD])
def test_every_config_error_names_its_key(
    tmp_path: Path, case: str, edit: tuple[str, str], prefix: str
) -> None:
    text = _replace(GOOD, *edit)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    message = str(info.value)
    assert message.startswith(prefix), message
    assert "\n" not in message and info.value.exit_code == 2


def test_auth_token_from_env_never_in_repr(tmp_path: Path) -> None:
    text = _replace(GOOD, 'listen = "127.0.0.1:8686"', 'listen = "0.0.0.0:8686"')
    text = _replace(text, "[serve]", '[serve]\nauth_token_env = "PROBES_SERVE_TOKEN"')
    cfg = load_config(write(tmp_path, text), env={"PROBES_SERVE_TOKEN": "s3cret-xyz"})
    assert cfg.auth_token == "s3cret-xyz" and cfg.serve.host == "0.0.0.0"
    assert "s3cret-xyz" not in repr(cfg)
    with pytest.raises(ConfigError, match=r"^serve\.auth_token_env: .*unset or empty"):
        load_config(write(tmp_path, text), env={"PROBES_SERVE_TOKEN": "  "})


@pytest.mark.parametrize("listen", ["localhost:1", "127.0.0.2:80", "[::1]:8686"])
def test_loopback_listen_needs_no_auth(listen: str) -> None:
    cfg = parse_config({"serve": {"listen": listen}}, Path("/tmp"), env={})
    assert cfg.auth_token is None and str(cfg.serve.port) in listen


@pytest.mark.parametrize(
    ("data", "prefix"),
    [
        ({"targets": 3}, "targets: expected an array of tables"),
        ({"targets": [1]}, "targets[0]: expected a table"),
        ({"schedules": {"a": 1}}, "schedules: expected an array"),
        ({"serve": []}, "serve: expected a table"),
    ],
)
def test_section_shapes(data: dict[str, object], prefix: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, Path("/tmp"), env={})
    assert str(info.value).startswith(prefix), str(info.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--config: cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"^--config: .* is not valid TOML"):
        load_config(write(tmp_path, "[serve\n"))


def test_body_file_is_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "body.json").write_text('{"q": 1}')
    text = _replace(GOOD, 'method = "POST"', 'method = "POST"\nbody_file = "body.json"')
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.targets[0].request.body == b'{"q": 1}'
    assert ("Content-Type", "application/json") in cfg.targets[0].request.headers


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[serve]\nlisten = "0.0.0.0:8686"\n', "serve.listen"),
        ('[[targets]]\nname = "a"\nurl = "http://127.0.0.1:9/"\ncanary_rate = -1\n',
         "targets[0].canary_rate"),
        ('[[targets]]\nname = "a"\nurl = "http://127.0.0.1:9/"\nnope = 1\n', "targets[0].nope"),
        ("[serve\n", "--config"),
    ],
)  # fmt: skip
def test_probes_serve_bad_config_exits_2_with_one_line(tmp_path, text, key) -> None:
    import subprocess
    import sys

    path = tmp_path / "serve.toml"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from probes.cli import main; sys.exit(main())",
         "serve", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    err = result.stderr.strip()
    assert result.returncode == 2 and key in err and len(err.splitlines()) == 1, err
