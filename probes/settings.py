"""Validated, frozen settings built once from flags, environment and config.

Everything a recording verb needs to send a request and record a run is parsed here, at
the boundary, so that the rest of the code works with typed values and never re-checks
user input. Every parser takes the *name of the place* the value came from — ``--rate`` for
a flag, ``rate`` in probes.toml, ``targets[2].canary_rate`` in a service config — and a bad
value raises ``ConfigError`` naming it and the expected form. No message here hard-codes a
flag: a ``Place`` turns a setting's name into the name its reader knows it by.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from probes.errors import ConfigError
from probes.tagging import TagRules

#: How the CLI spells settings whose flag is not ``--`` + the name with dashes.
FLAG_ALIASES: Mapping[str, str] = {
    "url": "URL",
    "headers": "--header",
    "tag_headers": "--tag-header",
    "slos": "--slo",
}


@dataclass(frozen=True)
class Place:
    """Where settings come from, for messages: CLI flags, or the keys of a config table.

    ``Place()(\"max_in_flight\")`` is ``--max-in-flight``; ``Place.keys("targets[2].")(\"rate\")``
    is ``targets[2].rate``. ``aliases`` rename settings whose key differs from the setting's
    name (the service's ``tag_header`` for ``tag_headers``).
    """

    prefix: str = ""
    flags: bool = True
    aliases: tuple[tuple[str, str], ...] = ()

    @classmethod
    def keys(cls, prefix: str = "", aliases: Mapping[str, str] | None = None) -> Place:
        return cls(prefix, False, tuple((aliases or {}).items()))

    def __call__(self, setting: str) -> str:
        own = dict(self.aliases).get(setting)
        if self.flags:
            return own or FLAG_ALIASES.get(setting) or "--" + setting.replace("_", "-")
        return f"{self.prefix}{own or setting}"


#: The CLI's flags.
FLAGS = Place()

MAX_RATE = 100_000.0
#: Longest run or step: 31 days. A longer value is a typo, and 1e308 s never ends.
MAX_DURATION_S = 31 * 86400.0
#: Longest per-request timeout: one hour.
MAX_TIMEOUT_S = 3600.0

DEFAULT_TOKEN_ENV = "DATAROBOT_API_TOKEN"
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
)
MASK = "***"


@dataclass(frozen=True)
class RequestSpec:
    """What one probe or Locust request looks like."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    timeout: float = 10.0
    token_env: str = DEFAULT_TOKEN_ENV
    tag_rules: TagRules = field(default_factory=TagRules)

    @property
    def name(self) -> str:
        """The request name recorded in samples: the URL path."""
        return urlsplit(self.url).path or "/"

    def token(self) -> str | None:
        """The bearer token from the environment variable named by ``--token-env``."""
        value = os.environ.get(self.token_env, "").strip()
        return value or None

    def request_headers(self) -> dict[str, str]:
        """Headers to send, with ``Authorization: Bearer …`` when the token variable is set."""
        headers = dict(self.headers)
        token = self.token()
        if token and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def describe(self) -> dict[str, Any]:
        """The request as plain data with every secret masked, for manifests and reports."""
        return {
            "url": mask_url(self.url),
            "method": self.method,
            "headers": dict(mask_headers(self.headers)),
            "body_bytes": len(self.body) if self.body is not None else 0,
            "timeout_s": self.timeout,
            "token_env": self.token_env,
            "token_set": self.token() is not None,
            "tagging": self.tag_rules.describe(),
        }


def mask_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, MASK if k.lower() in SECRET_HEADERS else v) for k, v in headers]


def mask_url(url: str) -> str:
    """The URL without userinfo and with secret-looking query values masked."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username or parts.password:
        netloc = f"{MASK}@{netloc}"
    query = re.sub(
        r"(?i)((?:token|key|secret|password|signature|sig)[^=&]*=)[^&]*", rf"\1{MASK}", parts.query
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_url(value: str, flag: str = "URL") -> str:
    """An absolute http(s) URL, or ConfigError naming ``flag``."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{flag}: {mask_url(value)!r} is not an http(s) URL (e.g. http://127.0.0.1:8080/)"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigError(f"{flag}: {mask_url(value)!r} has a bad port") from exc
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{flag}: {mask_url(value)!r} carries credentials; put the token in the variable"
            " named by --token-env (sent as Authorization: Bearer)"
        )
    return value.strip()


def join_path(url: str, path: str | None, name: str = "path") -> str:
    """Append an app path to an invoke URL, keeping exactly one slash between."""
    if not path:
        return url
    if not path.startswith("/"):
        raise ConfigError(f"{name}: {path!r} must start with '/' (e.g. /chat/completions)")
    base, _, query = url.partition("?")
    joined = base.rstrip("/") + path
    return f"{joined}?{query}" if query else joined


def parse_header(value: str, place: str = "header") -> tuple[str, str]:
    """``'Name: value'`` → ``(name, value)``."""
    name, sep, rest = value.partition(":")
    name = name.strip()
    if not sep or not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise ConfigError(f"{place}: {value!r} is not of the form 'Name: value'")
    return name, rest.strip()


def parse_method(value: str, name: str = "method") -> str:
    method = value.strip().upper()
    if not re.fullmatch(r"[A-Z]+", method):
        raise ConfigError(f"{name}: {value!r} is not an HTTP method (e.g. GET, POST)")
    return method


def positive(value: float, flag: str, *, allow_zero: bool = False) -> float:
    if value != value or value < 0 or (value == 0 and not allow_zero):  # NaN or out of range
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{flag}: {value!r} must be a number {bound}")
    return value


def read_body(
    body: str | bytes | None, body_file: str | None, place: Place = FLAGS
) -> bytes | None:
    if body is not None and body_file is not None:
        raise ConfigError(f"{place('body')} and {place('body_file')}: give one or the other")
    if body_file is not None:
        try:
            return Path(body_file).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{place('body_file')}: cannot read {body_file!r}: {exc.strerror}"
            ) from exc
    return body.encode("utf-8") if isinstance(body, str) else body


def parse_env_name(value: str, name: str = "token_env") -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ConfigError(
            f"{name}: {value!r} is not an environment variable name"
            " (e.g. DATAROBOT_API_TOKEN); pass the variable's name, never the token"
        )
    return value


def parse_run_id(value: str | None, name: str = "run_id") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", value):
        raise ConfigError(f"{name}: {value!r} must be letters, digits, '.', '_' or '-'")
    return value


def _number(value: Any, name: str, form: str) -> float:
    """``value`` as a finite float (an int is accepted where a float is), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}: {value!r} must be {form}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name}: {value!r} must be {form}")
    return number


def parse_number(
    value: Any,
    name: str,
    *,
    minimum: float = 0.0,
    maximum: float = math.inf,
    allow_min: bool = False,
    unit: str = "",
) -> float:
    """A finite number in ``(minimum, maximum]`` (``[minimum, maximum]`` with ``allow_min``)."""
    low = ">=" if allow_min else ">"
    top = f" and <= {maximum:g}" if math.isfinite(maximum) else ""
    form = f"a number {low} {minimum:g}{top}" + (f" ({unit})" if unit else "")
    number = _number(value, name, form)
    if number < minimum or (number == minimum and not allow_min) or number > maximum:
        raise ConfigError(f"{name}: {value!r} must be {form}")
    return number


def parse_count(value: Any, name: str, minimum: int, maximum: int, unit: str = "") -> int:
    """A whole number from ``minimum`` to ``maximum``."""
    what = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(
            f"{name}: {value!r} must be a whole number{what} from {minimum} to {maximum}"
        )
    return value


def parse_rate(value: Any, name: str, maximum: float = MAX_RATE) -> float:
    """Requests per second: finite, > 0, at most ``maximum``."""
    return parse_number(value, name, maximum=maximum, unit="requests per second")


def parse_duration(value: Any, name: str) -> float:
    """Seconds of a run: finite, > 0, at most ``MAX_DURATION_S``."""
    return parse_number(value, name, maximum=MAX_DURATION_S, unit="seconds")


def parse_timeout(value: Any, name: str) -> float:
    """Seconds a request may take: finite, > 0, at most ``MAX_TIMEOUT_S``."""
    return parse_number(value, name, maximum=MAX_TIMEOUT_S, unit="seconds")


def parse_slos(exprs: Sequence[str], name: str) -> tuple[str, ...]:
    """Every SLO expression parsed once now (``reports.parse_slo`` is the one grammar), so a
    typo fails before any traffic is sent."""
    from reports import parse_slo  # lazily: keep the import of settings light

    for expr in exprs:
        if not isinstance(expr, str):
            raise ConfigError(f"{name}: {expr!r} must be a string such as 'p99_ms<500'")
        try:
            parse_slo(expr)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return tuple(exprs)


def build_request(
    url: str,
    *,
    method: str = "GET",
    path: str | None = None,
    headers: Iterable[str] = (),
    body: str | bytes | None = None,
    body_file: str | None = None,
    timeout: float = 10.0,
    token_env: str = DEFAULT_TOKEN_ENV,
    tag_headers: Iterable[str] = (),
    tag_json: Iterable[str] = (),
    tag_regex: str | None = None,
    place: Place = FLAGS,
) -> RequestSpec:
    """A RequestSpec from raw values, validating each; errors name ``place(setting)``."""
    parsed_headers = tuple(parse_header(h, place("headers")) for h in headers)
    data = read_body(body, body_file, place)
    if data is not None and not any(k.lower() == "content-type" for k, _ in parsed_headers):
        stripped = data.lstrip()[:1]
        if stripped in (b"{", b"["):
            parsed_headers += (("Content-Type", "application/json"),)
    rules = TagRules.build(tuple(tag_headers), tuple(tag_json), tag_regex, place)
    return RequestSpec(
        url=join_path(parse_url(url, place("url")), path, place("path")),
        method=parse_method(method, place("method")),
        headers=parsed_headers,
        body=data,
        timeout=parse_timeout(timeout, place("timeout")),
        token_env=parse_env_name(token_env, place("token_env")),
        tag_rules=rules,
    )
