"""Validated, frozen settings built once from flags, environment and config.

Everything a recording verb needs to send a request and record a run is parsed here, at
the boundary, so that the rest of the code works with typed values and never re-checks
user input. Bad values raise ``ConfigError`` naming the flag and the expected form.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from probes.errors import ConfigError
from probes.tagging import TagRules

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


def join_path(url: str, path: str | None) -> str:
    """Append an app path to an invoke URL (``--path``), keeping exactly one slash between."""
    if not path:
        return url
    if not path.startswith("/"):
        raise ConfigError(f"--path: {path!r} must start with '/' (e.g. /chat/completions)")
    base, _, query = url.partition("?")
    joined = base.rstrip("/") + path
    return f"{joined}?{query}" if query else joined


def parse_header(value: str) -> tuple[str, str]:
    """``'Name: value'`` → ``(name, value)``."""
    name, sep, rest = value.partition(":")
    name = name.strip()
    if not sep or not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise ConfigError(f"--header: {value!r} is not of the form 'Name: value'")
    return name, rest.strip()


def parse_method(value: str) -> str:
    method = value.strip().upper()
    if not re.fullmatch(r"[A-Z]+", method):
        raise ConfigError(f"--method: {value!r} is not an HTTP method (e.g. GET, POST)")
    return method


def positive(value: float, flag: str, *, allow_zero: bool = False) -> float:
    if value != value or value < 0 or (value == 0 and not allow_zero):  # NaN or out of range
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{flag}: {value!r} must be a number {bound}")
    return value


def read_body(body: str | None, body_file: str | None) -> bytes | None:
    if body is not None and body_file is not None:
        raise ConfigError("--body and --body-file: give one or the other, not both")
    if body_file is not None:
        try:
            return Path(body_file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"--body-file: cannot read {body_file!r}: {exc.strerror}") from exc
    return body.encode("utf-8") if body is not None else None


def parse_env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ConfigError(
            f"--token-env: {value!r} is not an environment variable name"
            " (e.g. DATAROBOT_API_TOKEN); pass the variable's name, never the token"
        )
    return value


def parse_run_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", value):
        raise ConfigError(f"--run-id: {value!r} must be letters, digits, '.', '_' or '-'")
    return value


def build_request(
    url: str,
    *,
    method: str = "GET",
    path: str | None = None,
    headers: Iterable[str] = (),
    body: str | None = None,
    body_file: str | None = None,
    timeout: float = 10.0,
    token_env: str = DEFAULT_TOKEN_ENV,
    tag_headers: Iterable[str] = (),
    tag_json: Iterable[str] = (),
    tag_regex: str | None = None,
) -> RequestSpec:
    """A RequestSpec from raw flag values, validating each."""
    parsed_headers = tuple(parse_header(h) for h in headers)
    data = read_body(body, body_file)
    if data is not None and not any(k.lower() == "content-type" for k, _ in parsed_headers):
        stripped = data.lstrip()[:1]
        if stripped in (b"{", b"["):
            parsed_headers += (("Content-Type", "application/json"),)
    return RequestSpec(
        url=join_path(parse_url(url), path),
        method=parse_method(method),
        headers=parsed_headers,
        body=data,
        timeout=positive(timeout, "--timeout"),
        token_env=parse_env_name(token_env),
        tag_rules=TagRules.build(tuple(tag_headers), tuple(tag_json), tag_regex),
    )
