"""The service's config: ``serve.toml`` read once into frozen settings (CONTRACT.md).

Every key is checked here, at start: an unknown key, a wrong type, a bad cron expression or
time zone, a duplicate name or a schedule naming an unknown target raises ``ConfigError``
whose message starts with the key (``targets[1].canary_rate: …``), so ``probes serve``
exits 2 with one line. Numbers: an integer is accepted wherever a float is; a boolean is
never a number; durations and rates have stated ranges (``segment_s`` 1 s to 7 days,
``settle_s``/``capture_tail_s`` up to 6 h, rates 0.001 to 1000/s, ``every`` up to 8784h …),
and the message says the range. CR, LF or NUL in any string of a target (path, headers,
body_file, …) is refused: it would split the request. An ``index`` that is a directory is
refused here, one that cannot be opened when the service starts (both ``serve.index``).
Relative paths (``runs_dir``, ``index``, ``body_file``) are relative to the config file's
directory, so a config means the same thing from any working directory.

Secrets are named, never written: ``token_env`` and ``auth_token_env`` hold environment
variable *names*; a secret-looking header (``Authorization``, ``Cookie``, …) in the file is
refused. A non-loopback ``listen`` address requires ``auth_token_env``, and a named
variable that is unset or empty is an error rather than silently turning auth off.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from probes.errors import ConfigError
from probes.serve import schedule as sched
from probes.serve.notify import NotifySettings, parse_notify, webhook_urls
from probes.settings import (
    DEFAULT_TOKEN_ENV,
    SECRET_HEADER_PATTERN,
    Place,
    RequestSpec,
    build_request,
    join_path,
    mask_url,
    parse_url,
)

DEFAULT_LISTEN = "127.0.0.1:8686"
#: Where the Locust master of a schedule with ``expect_workers`` listens for its workers.
DEFAULT_LOCUST_MASTER = "127.0.0.1:5557"
DEFAULT_CANARY_RATE = 1.0
DEFAULT_CAPTURE_RATE = 20.0
DEFAULT_CAPTURE_TAIL_S = 60.0
DEFAULT_SETTLE_S = 10.0
DEFAULT_SEGMENT_S = 3600.0
DEFAULT_RETENTION_DAYS = 30.0
DEFAULT_DURATION_S = 60.0
#: Highest probe rate a target may ask for: one event loop probes every target.
MAX_RATE = 1000.0
#: Lowest non-zero probe rate (one request in ~17 minutes): a slower canary sees nothing.
MIN_RATE = 0.001
#: The ranges of durations (issue 21): beyond them a value is a typo, and would overflow the
#: clock arithmetic (``every = "99999999999999999999h"`` made a page answer 500 forever).
HOUR_S, DAY_S = 3600.0, 86_400.0
SEGMENT_S_RANGE = (1.0, 7 * DAY_S)
#: ``settle_s``/``capture_tail_s``: a capture closes at the latest after 6 h anyway.
SETTLE_S_MAX = 6 * HOUR_S
TAIL_S_MAX = 6 * HOUR_S
RETENTION_DAYS_MAX = 36_500.0
EVERY_S_MAX = 366 * DAY_S
DURATION_S_MAX = 7 * DAY_S
DEADLINE_S_MAX = 366 * DAY_S
#: CR, LF and NUL end a header line: never in a value that goes into a request.
LINE_BREAK = re.compile(r"[\r\n\x00]")
#: Stands in for an api target's invoke URL until the workload's endpoint is known.
PLACEHOLDER_URL = "http://invoke.placeholder/"

TARGET_NAME = re.compile(r"[a-z0-9-]+")
#: Schedule names start run ids (``<name>-<epoch>``): the run-id alphabet.
SCHEDULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FLAGGER_REF = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
KINDS = ("observe", "load", "capacity")
CONCURRENCY = ("forbid", "replace", "allow")

SERVE_KEYS = (
    "listen", "auth_token_env", "runs_dir", "index", "retention_days", "segment_s",
    "locust_master",
)  # fmt: skip
TARGET_KEYS = (
    "name", "url", "api", "workload", "token_env", "path", "method", "body_file", "headers",
    "tag_header", "tag_json", "tag_regex", "canary_rate", "capture_rate", "capture_tail_s",
    "settle_s", "slo", "flagger",
)  # fmt: skip
SCHEDULE_KEYS = (
    "name", "target", "kind", "cron", "every", "timezone", "concurrency", "starting_deadline_s",
    "duration_s", "args", "workers", "expect_workers",
)  # fmt: skip

#: Flag names in the messages of ``probes.settings``/``probes.tagging`` -> config keys.


@dataclass(frozen=True)
class ServeSettings:
    """The ``[serve]`` table."""

    host: str
    port: int
    auth_token_env: str | None
    runs_dir: Path
    index: Path
    retention_days: float
    segment_s: float
    #: ``HOST:PORT`` where a scheduled run with ``expect_workers`` starts its Locust master
    #: (one such run at a time: ``probes.serve.runner``).
    locust_master: str = DEFAULT_LOCUST_MASTER

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TargetConfig:
    """One ``[[targets]]`` entry: a bare invoke URL, or a Workload (``api`` + ``workload``)."""

    name: str
    url: str | None
    api: str | None
    workload: str | None
    token_env: str
    path: str | None
    #: The request; for an api target its URL is a placeholder until ``request_for``.
    request: RequestSpec
    canary_rate: float
    capture_rate: float
    capture_tail_s: float
    settle_s: float
    slos: tuple[str, ...]
    flagger: tuple[str, ...]

    @property
    def is_api(self) -> bool:
        return self.api is not None

    def request_for(self, invoke_url: str) -> RequestSpec:
        """The request against a resolved invoke URL (api targets), ``path`` appended."""
        return replace(self.request, url=join_path(parse_url(invoke_url), self.path))

    def describe_url(self) -> str:
        """The target's address for people and JSON, secrets masked."""
        if self.url is not None:
            return mask_url(self.request.url)
        return f"{mask_url(self.api or '')} workload {self.workload}"


@dataclass(frozen=True)
class ScheduleConfig:
    """One ``[[schedules]]`` entry."""

    name: str
    target: str
    kind: str
    timing: sched.Timing
    concurrency: str
    starting_deadline_s: float | None
    duration_s: float
    args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    workers: int = 0
    expect_workers: int = 0


@dataclass(frozen=True)
class ServeConfig:
    """The whole config, validated."""

    serve: ServeSettings
    targets: tuple[TargetConfig, ...]
    schedules: tuple[ScheduleConfig, ...]
    #: The token for the HTTP API (None: auth off). Never shown in repr or logs.
    auth_token: str | None = field(default=None, repr=False)
    #: ``[[notify]]`` webhooks, and their URLs (secrets: never shown in repr or logs).
    notify: tuple[NotifySettings, ...] = ()
    notify_urls: Mapping[str, str] = field(default_factory=dict, repr=False)

    def target(self, name: str) -> TargetConfig:
        """The target called ``name``; KeyError when there is none."""
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)


# --------------------------------------------------------------------------- reading


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> ServeConfig:
    """Read and validate ``path``; ConfigError (naming ``--config`` or the key) when bad."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {str(file)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config: {str(file)!r} is not UTF-8 text") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {str(file)!r} is not valid TOML: {exc}") from exc
    return parse_config(data, file.resolve().parent, os.environ if env is None else env)


def parse_config(
    data: Mapping[str, Any], base_dir: Path, env: Mapping[str, str] | None = None
) -> ServeConfig:
    """Validate parsed TOML; relative paths are taken from ``base_dir``."""
    env = os.environ if env is None else env
    top = _Table(data, "", ("serve", "targets", "schedules", "notify"))
    serve = _serve(top.table("serve"), base_dir)
    targets = tuple(_target(t, base_dir) for t in top.tables("targets", lambda i: f"targets[{i}]"))
    _unique([t.name for t in targets], "targets", "name")
    owners: dict[str, int] = {}
    for i, target in enumerate(targets):
        for ref in target.flagger:
            if owners.setdefault(ref, i) != i:
                raise ConfigError(
                    f"targets[{i}].flagger: {ref!r} is already mapped to targets[{owners[ref]}]"
                )
    names = {t.name: t for t in targets}
    schedules = tuple(
        _schedule(s, names) for s in top.tables("schedules", lambda i: f"schedules[{i}]")
    )
    _unique([s.name for s in schedules], "schedules", "name")
    token = None
    if serve.auth_token_env is not None:
        token = env.get(serve.auth_token_env, "").strip()
        if not token:
            raise ConfigError(
                f"serve.auth_token_env: the variable {serve.auth_token_env} is unset or empty;"
                " set it to the API token (or remove the key to turn auth off on loopback)"
            )
    notify = parse_notify(data.get("notify"), "notify")
    return ServeConfig(
        serve=serve,
        targets=targets,
        schedules=schedules,
        auth_token=token,
        notify=notify,
        notify_urls=webhook_urls(notify, env, "notify"),
    )


def _unique(values: Sequence[str], section: str, key: str) -> None:
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            raise ConfigError(
                f"{section}[{i}].{key}: duplicate {key} {value!r}"
                f" (already used by {section}[{seen[value]}])"
            )
        seen[value] = i


# --------------------------------------------------------------------------- sections


def _serve(table: _Table, base_dir: Path) -> ServeSettings:
    host, port = _listen(table.text("listen", DEFAULT_LISTEN), table.place("listen"))
    auth_env = table.env_name("auth_token_env", None)
    if auth_env is None and not _loopback(host):
        raise ConfigError(
            f"serve.listen: {host!r} is not a loopback address; set serve.auth_token_env"
            " (the variable holding the API token) to listen beyond this machine"
        )
    runs_dir = _path(table.text("runs_dir", "runs"), base_dir)
    index_text = table.text("index", None)
    index = _path(index_text, base_dir) if index_text else runs_dir / "index.sqlite"
    if index.is_dir():
        raise ConfigError(
            f"{table.place('index')}: {str(index)!r} is a directory; give the index file's"
            " path (e.g. runs/index.sqlite)"
        )
    from probes.recording.locustproc import MasterBind

    master = table.text("locust_master", DEFAULT_LOCUST_MASTER)
    place = Place.keys("serve.", {"master_bind": "locust_master"})
    locust_master = MasterBind.build(master, place=place).address
    return ServeSettings(
        host=host,
        port=port,
        auth_token_env=auth_env,
        runs_dir=runs_dir,
        index=index,
        retention_days=table.number(
            "retention_days", DEFAULT_RETENTION_DAYS, maximum=RETENTION_DAYS_MAX
        ),
        segment_s=table.number(
            "segment_s", DEFAULT_SEGMENT_S, minimum=SEGMENT_S_RANGE[0], maximum=SEGMENT_S_RANGE[1]
        ),
        locust_master=locust_master,
    )


def _target(table: _Table, base_dir: Path) -> TargetConfig:
    name = table.text("name", pattern=TARGET_NAME, form="lower-case letters, digits and '-'")
    _no_line_breaks(table)
    url = table.text("url", None)
    api = table.text("api", None)
    workload = table.text("workload", None)
    if url is not None and (api is not None or workload is not None):
        raise ConfigError(f"{table.place('url')}: give either url, or api + workload, not both")
    if url is None and (api is None or workload is None):
        missing = "workload" if api is not None else "api" if workload is not None else "url"
        raise ConfigError(f"{table.place(missing)}: missing; a target needs url, or api + workload")
    if api is not None:
        parse_url(api, table.place("api"))
        if not workload or not workload.strip():
            raise ConfigError(f"{table.place('workload')}: must be a workload id")
    headers = table.str_list("headers")
    for i, header in enumerate(headers):
        if SECRET_HEADER_PATTERN.search(header.partition(":")[0].strip()):
            raise ConfigError(
                f"{table.place('headers')}[{i}]: a secret header in the config file;"
                " put the token in the variable named by token_env (sent as"
                " Authorization: Bearer)"
            )
    body_file = table.text("body_file", None)
    path = table.text("path", None)
    token_env = table.env_name("token_env", DEFAULT_TOKEN_ENV) or DEFAULT_TOKEN_ENV
    request = build_request(
        url if url is not None else PLACEHOLDER_URL,
        method=table.text("method", "GET"),
        path=path,
        headers=headers,
        body_file=str(_path(body_file, base_dir)) if body_file else None,
        token_env=token_env,
        tag_headers=table.str_list("tag_header"),
        tag_json=table.str_list("tag_json"),
        tag_regex=table.text("tag_regex", None),
        place=Place.keys(f"{table.prefix}.", {"tag_headers": "tag_header"}),
    )
    canary = table.rate("canary_rate", DEFAULT_CANARY_RATE, allow_zero=True)
    capture = table.rate("capture_rate", DEFAULT_CAPTURE_RATE)
    return TargetConfig(
        name=name,
        url=url,
        api=api,
        workload=workload.strip() if workload else None,
        token_env=token_env,
        path=path,
        request=request,
        canary_rate=canary,
        capture_rate=capture,
        capture_tail_s=table.number(
            "capture_tail_s", DEFAULT_CAPTURE_TAIL_S, allow_zero=True, maximum=TAIL_S_MAX
        ),
        settle_s=table.number("settle_s", DEFAULT_SETTLE_S, maximum=SETTLE_S_MAX),
        slos=_slos(table),
        flagger=tuple(_flagger(table)),
    )


def _no_line_breaks(table: _Table) -> None:
    """CR/LF/NUL in any string of a target (path, headers, body_file, …): refused, naming the
    key. In a header or a path they would split the request (``"/x\\r\\nX-Evil: 1"``)."""
    for key, value in table.data.items():
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, str) and LINE_BREAK.search(item):
                where = f"{table.place(key)}[{i}]" if isinstance(value, list) else table.place(key)
                raise ConfigError(f"{where}: must not contain a line break (CR, LF) or NUL")


def _slos(table: _Table) -> tuple[str, ...]:
    from reports import parse_slo

    slos = table.str_list("slo")
    for i, expr in enumerate(slos):
        try:
            parse_slo(expr)
        except ValueError as exc:
            raise ConfigError(f"{table.place('slo')}[{i}]: {exc}") from None
    return tuple(slos)


def _flagger(table: _Table) -> list[str]:
    refs = table.str_list("flagger")
    for i, ref in enumerate(refs):
        if not FLAGGER_REF.fullmatch(ref):
            raise ConfigError(
                f"{table.place('flagger')}[{i}]: {ref!r} is not a Flagger canary"
                " reference (namespace/name, e.g. prod/chat)"
            )
    return refs


def _schedule(table: _Table, targets: Mapping[str, TargetConfig]) -> ScheduleConfig:
    from probes.recording import settings_from_args  # heavy: loaded only for a schedule

    name = table.text(
        "name", pattern=SCHEDULE_NAME, form="letters, digits, '.', '_' or '-' (at most 64)"
    )
    target_name = table.text("target")
    if target_name not in targets:
        known = ", ".join(sorted(targets)) or "none configured"
        raise ConfigError(f"{table.place('target')}: no target named {target_name!r} ({known})")
    kind = table.choice("kind", KINDS)
    timing = _timing(table)
    deadline = table.number("starting_deadline_s", None, allow_zero=True, maximum=DEADLINE_S_MAX)
    duration = table.number("duration_s", DEFAULT_DURATION_S, maximum=DURATION_S_MAX)
    workers = table.whole("workers", 0)
    expect = table.whole("expect_workers", 0)
    if kind == "observe":
        for key, value in (("workers", workers), ("expect_workers", expect)):
            if value:
                raise ConfigError(f"{table.place(key)}: only for kind load or capacity")
    if workers and expect:
        raise ConfigError(
            f"{table.place('expect_workers')}: give workers (local processes) or"
            " expect_workers (workers started elsewhere), not both"
        )
    args = table.table("args")
    # the run's own parser, so a bad key is refused at start, naming {place}.{key}
    settings_from_args(
        kind,
        args.data,
        duration_s=duration,
        slos=targets[target_name].slos,
        place=args.prefix,
        workers=workers,
        expect_workers=expect,
    )
    return ScheduleConfig(
        name=name,
        target=target_name,
        kind=kind,
        timing=timing,
        concurrency=table.choice("concurrency", CONCURRENCY, "forbid"),
        starting_deadline_s=deadline,
        duration_s=duration,
        args=MappingProxyType(dict(args.data)),
        workers=workers,
        expect_workers=expect,
    )


def _timing(table: _Table) -> sched.Timing:
    cron = table.text("cron", None)
    every = table.text("every", None)
    tz = table.text("timezone", "UTC")
    if (cron is None) == (every is None):
        raise ConfigError(
            f'{table.place("cron")}: give exactly one of cron (e.g. "0 2 * * *")'
            ' or every (e.g. "30m")'
        )
    try:
        zone = sched.zone(tz)
    except ValueError as exc:
        raise ConfigError(f"{table.place('timezone')}: {exc}") from None
    try:
        if cron is not None:
            return sched.Timing(cron=sched.parse_cron(cron, zone), timezone=tz)
        assert every is not None
        if "timezone" in table.data and tz != "UTC":
            raise ConfigError(
                f"{table.place('timezone')}: only with cron (every counts from the Unix epoch)"
            )
        every_s = sched.parse_every(every)
        if every_s > EVERY_S_MAX:
            raise ValueError(
                f"{every!r} is beyond the longest interval, {EVERY_S_MAX / HOUR_S:g}h"
                f" (366 days; every must be 1s to {EVERY_S_MAX / HOUR_S:g}h)"
            )
        return sched.Timing(every_s=every_s, timezone=tz)
    except ValueError as exc:
        key = "cron" if cron is not None else "every"
        raise ConfigError(f"{table.place(key)}: {exc}") from None


# --------------------------------------------------------------------------- values


def _listen(value: str, place: str) -> tuple[str, int]:
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", value.strip())
    if not match:
        raise ConfigError(f"{place}: {value!r} is not HOST:PORT (e.g. 127.0.0.1:8686)")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ConfigError(f"{place}: port {port} is out of range (0-65535)")
    return host, port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _path(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


_MISSING: Any = object()


class _Table:
    """One TOML table being read: every access names its key's place for errors."""

    def __init__(self, data: Any, prefix: str, allowed: Sequence[str]) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{prefix}: expected a table")
        self.data: Mapping[str, Any] = data
        self.prefix = prefix
        for key in data:
            if key not in allowed:
                raise ConfigError(
                    f"{self.place(key)}: unknown key (expected one of: {', '.join(allowed)})"
                )

    def place(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _get(self, key: str, default: Any, example: str) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise ConfigError(f"{self.place(key)}: missing (e.g. {key} = {example})")
        return default

    def text(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        pattern: re.Pattern[str] | None = None,
        form: str = "",
    ) -> Any:
        value = self._get(key, default, '"…"')
        if value is None and default is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{self.place(key)}: expected a string, got {_shown(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise ConfigError(f"{self.place(key)}: {value!r} must be {form}")
        return value

    def env_name(self, key: str, default: str | None) -> str | None:
        value = self.text(key, default)
        if value is not None and not ENV_NAME.fullmatch(value):
            raise ConfigError(
                f"{self.place(key)}: {value!r} is not an environment variable name"
                " (e.g. PROBES_SERVE_TOKEN); give the variable's name, never the secret"
            )
        return value

    def choice(self, key: str, choices: Sequence[str], default: Any = _MISSING) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise ConfigError(f"{self.place(key)}: {value!r} is not one of {', '.join(choices)}")
        return str(value)

    def number(
        self,
        key: str,
        default: Any,
        *,
        allow_zero: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> Any:
        value = self._get(key, default, "1.0")
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{self.place(key)}: expected a number, got {_shown(value)}")
        value = float(value)
        low = minimum if minimum is not None else 0.0
        bound = f">= {low:g}" if (allow_zero or minimum) else "> 0"
        if maximum is not None:
            bound += f" and <= {maximum:g}"
        too_low = value < low or (value == 0 and not allow_zero)
        if not math.isfinite(value) or too_low or (maximum is not None and value > maximum):
            raise ConfigError(f"{self.place(key)}: {value:g} is out of range (a number {bound})")
        return value

    def rate(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        """A probe rate in requests/s: ``MIN_RATE`` to ``MAX_RATE`` (or 0 with ``allow_zero``)."""
        value = float(self.number(key, default, allow_zero=allow_zero, maximum=MAX_RATE))
        if 0 < value < MIN_RATE:
            zero = "0 (off) or " if allow_zero else ""
            raise ConfigError(
                f"{self.place(key)}: {value:g} is out of range"
                f" ({zero}{MIN_RATE:g} to {MAX_RATE:g} requests/s)"
            )
        return value

    def whole(self, key: str, default: int) -> int:
        value = self._get(key, default, "1")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"{self.place(key)}: expected a whole number >= 0, got {_shown(value)}"
            )
        return value

    def str_list(self, key: str) -> list[str]:
        value = self.data.get(key, [])
        if isinstance(value, str):
            value = [value]  # one value where a list is expected: a single-item list
        if not isinstance(value, list):
            raise ConfigError(f"{self.place(key)}: expected a list of strings, got {_shown(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{self.place(key)}[{i}]: expected a string, got {_shown(item)}")
        return list(value)

    def table(self, key: str) -> _Table:
        """A sub-table (``[serve]``, ``args``), empty when absent; its keys are checked by
        the caller's allowed list (``[serve]``) or by whoever interprets it (``args``)."""
        value = self.data.get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.place(key)}: expected a table, got {_shown(value)}")
        allowed = SERVE_KEYS if key == "serve" else tuple(value)
        return _Table(value, self.place(key), allowed)

    def tables(self, key: str, place: Callable[[int], str]) -> list[_Table]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self.place(key)}: expected an array of tables ([[{key}]])")
        allowed = TARGET_KEYS if key == "targets" else SCHEDULE_KEYS
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise ConfigError(f"{place(i)}: expected a table ([[{key}]])")
            out.append(_Table(item, place(i), allowed))
        return out


def _shown(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    name = kind.get(type(value))
    if name is None:
        name = (
            "a list"
            if isinstance(value, list)
            else "a table"
            if isinstance(value, dict)
            else (type(value).__name__)
        )
    text = repr(value)
    return f"{name} {text}" if len(text) <= 40 else name
