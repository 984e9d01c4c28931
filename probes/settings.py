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
    "secret_headers": "--secret-header",
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
#: Settings by their own names (``rate``, ``max_in_flight``): the library's default.
KEYS = Place.keys()

MAX_RATE = 100_000.0
#: Longest run or step: 31 days. A longer value is a typo, and 1e308 s never ends.
MAX_DURATION_S = 31 * 86400.0
#: Longest per-request timeout: one hour.
MAX_TIMEOUT_S = 3600.0

DEFAULT_TOKEN_ENV = "DATAROBOT_API_TOKEN"
#: A header whose name contains one of these (any case, anywhere) is masked in every file.
SECRET_HEADER_PATTERN = re.compile(
    r"auth|token|key|secret|cookie|session|passw|credential|signature", re.IGNORECASE
)
MASK = "***"
#: (``MAX_TIMEOUT_S``, ``MAX_DURATION_S`` above bound ``positive`` too: a finite value beyond
#: them is a typo, not a plan, and would overflow a deadline or a request count.)
#: The least non-zero span in seconds: below, no request could be sent or answered.
MIN_SECONDS = 0.001
#: Control characters (and spaces) that never belong in a URL or a header value; a tab is
#: allowed in a header value (RFC 9110 §5.5), nowhere in a URL.
_URL_BAD_CHARS = re.compile(r"[\x00-\x20\x7f]")
_HEADER_BAD_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HOST_CHARS = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+(?:%25[0-9A-Za-z._~-]+)?\]")


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
    #: Header names masked in every file besides those matching ``SECRET_HEADER_PATTERN``.
    secret_headers: tuple[str, ...] = ()

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
            "headers": dict(mask_headers(self.headers, self.secret_headers)),
            "body_bytes": len(self.body) if self.body is not None else 0,
            "timeout_s": self.timeout,
            "token_env": self.token_env,
            "token_set": self.token() is not None,
            "tagging": self.tag_rules.describe(),
        }


def is_secret_header(name: str, secret_names: Iterable[str] = ()) -> bool:
    """Whether a header's value is a secret: its name looks like one, or is named as one."""
    lowered = name.lower()
    return bool(SECRET_HEADER_PATTERN.search(name)) or any(
        lowered == n.strip().lower() for n in secret_names
    )


def mask_headers(
    headers: Iterable[tuple[str, str]], secret_names: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """``headers`` with the value of every secret one (``is_secret_header``) masked."""
    names = tuple(secret_names)
    return [(k, MASK if is_secret_header(k, names) else v) for k, v in headers]


def mask_url(url: str) -> str:
    """The URL without userinfo and with secret-looking query values masked."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a malformed URL is still shown (masked) in the error naming it
        return re.sub(r"//[^/?#]*@", f"//{MASK}@", url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port:
        netloc = f"{netloc}:{port}"
    if parts.username or parts.password:
        netloc = f"{MASK}@{netloc}"
    query = re.sub(
        r"(?i)((?:token|key|secret|password|signature|sig)[^=&]*=)[^&]*", rf"\1{MASK}", parts.query
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_url(value: str, flag: str = "URL") -> str:
    """An absolute http(s) URL that the probe and Locust can both send to, or ConfigError
    naming ``flag``: ASCII host (IDNs in their ``xn--`` form), a port from 1 to 65535, no
    credentials, no whitespace or control characters (``urlsplit`` drops CR/LF silently)."""
    text = value.strip()
    shown = repr(mask_url(text))
    if _URL_BAD_CHARS.search(text):
        raise ConfigError(
            f"{flag}: {shown} has a space or control character; percent-encode it (%20)"
        )
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:
        parts, hostname = None, None
    if parts is None or parts.scheme not in ("http", "https") or not hostname:
        raise ConfigError(f"{flag}: {shown} is not an http(s) URL (e.g. http://127.0.0.1:8080/)")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{flag}: {shown} has a bad port (1 to 65535)")
    if not parts.netloc.isascii():
        raise ConfigError(
            f"{flag}: {shown} has a non-ASCII host; write it in ASCII"
            " (an international name in its xn-- form)"
        )
    host = parts.netloc.rpartition("@")[2]
    host = host.rsplit(":", 1)[0] if port is not None else host.rstrip(":")
    if not _HOST_CHARS.fullmatch(host):
        raise ConfigError(f"{flag}: {shown} has a bad host {host!r} (letters, digits, . - _)")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{flag}: {shown} carries credentials; put the token in the variable"
            " named by --token-env (sent as Authorization: Bearer)"
        )
    import httpx  # the probe's own parser has the last word (e.g. 256.1.1.1)

    try:
        httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{flag}: {shown} is not a URL the probe can send to: {exc}") from None
    return text


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
    """``'Name: value'`` → ``(name, value)``; no CR, LF or other control character in it
    (a CR/LF would start a header of its own on the wire)."""
    name, sep, rest = value.partition(":")
    name = name.strip()
    if not sep or not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise ConfigError(f"{place}: {value!r} is not of the form 'Name: value'")
    if _HEADER_BAD_CHARS.search(rest):
        raise ConfigError(
            f"{place}: the value of {name} has a control character (CR, LF, NUL...);"
            " one header per value"
        )
    return name, rest.strip()


def parse_method(value: str, name: str = "method") -> str:
    method = value.strip().upper()
    if not re.fullmatch(r"[A-Z]+", method):
        raise ConfigError(f"{name}: {value!r} is not an HTTP method (e.g. GET, POST)")
    return method


def positive(value: float, flag: str, *, allow_zero: bool = False) -> float:
    """A finite number of seconds: from ``MIN_SECONDS`` (or 0 with ``allow_zero``) to
    ``MAX_TIMEOUT_S`` for a timeout flag, ``MAX_DURATION_S`` for any other; ConfigError
    naming ``flag`` otherwise."""
    limit = MAX_TIMEOUT_S if "timeout" in flag.lower() else MAX_DURATION_S
    bound = ">= 0" if allow_zero else "> 0"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{flag}: {value!r} must be a finite number of seconds {bound}")
    if value > limit:
        raise ConfigError(f"{flag}: {value:g} is above the limit of {limit:g} s")
    if 0 < value < MIN_SECONDS:  # 1e-300 s: no request could be sent or answered
        raise ConfigError(f"{flag}: {value:g} is below the least of {MIN_SECONDS:g} s")
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
    """Seconds of a run: finite, from ``MIN_SECONDS`` to ``MAX_DURATION_S``."""
    return parse_number(
        value, name, minimum=MIN_SECONDS, allow_min=True, maximum=MAX_DURATION_S, unit="seconds"
    )


def parse_timeout(value: Any, name: str) -> float:
    """Seconds a request may take: finite, from ``MIN_SECONDS`` to ``MAX_TIMEOUT_S``."""
    return parse_number(
        value, name, minimum=MIN_SECONDS, allow_min=True, maximum=MAX_TIMEOUT_S, unit="seconds"
    )


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
    secret_headers: Iterable[str] = (),
    place: Place = FLAGS,
) -> RequestSpec:
    """A RequestSpec from raw values, validating each; errors name ``place(setting)``."""
    parsed_headers = tuple(parse_header(h, place("headers")) for h in headers)
    secrets = tuple(n.strip() for n in secret_headers)
    for name in secrets:
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ConfigError(
                f"{place('secret_headers')}: {name!r} is not a header name (e.g. X-Tenant)"
            )
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
        secret_headers=secrets,
    )
