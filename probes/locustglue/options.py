"""The ``--probes-*`` options of Locust, and the request they describe.

Each option is also read from ``PROBES_<NAME>`` and from the config file (``probes.config``:
``PROBES_CONFIG``, else ``probes.toml``, else ``[tool.probes]`` of ``pyproject.toml``; its
top-level keys and its ``[load]`` table). A config file that is not valid TOML stops Locust
with one line naming it (exit 2), as it stops ``probes``.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from typing import Any

from probes.config import find_config
from probes.errors import ConfigError
from probes.live import DEFAULT_WINDOW_S
from probes.locustglue import BODY_ENV, HEADERS_ENV
from probes.settings import RequestSpec, build_request


def config_defaults() -> dict[str, Any]:
    """Top-level and ``[load]`` keys of the config file in force, as option defaults."""
    found = find_config(os.environ.get("PROBES_CONFIG") or None, place="PROBES_CONFIG")
    if found is None:
        return {}
    _, data = found
    merged = {k: v for k, v in data.items() if not isinstance(v, dict)}
    load = data.get("load")
    if isinstance(load, dict):
        merged.update(load)
    return {k.replace("-", "_"): v for k, v in merged.items()}


#: (flag suffix, config key, kwargs) of every --probes-* option.
_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("run-dir", "run_dir", {"help": "Record into this existing run directory."}),
    ("runs-dir", "runs_dir", {"default": "runs", "help": "Where a new run directory goes."}),
    ("method", "method", {"default": "GET", "help": "HTTP method of each request."}),
    ("path", "path", {"help": "App path appended to the host, e.g. /chat/completions."}),
    ("header", "headers", {"action": "append", "help": "'Name: value', repeatable."}),
    ("body", "body", {"help": "Request body (JSON gets a JSON content type)."}),
    ("body-file", "body_file", {"help": "Read the request body from a file."}),
    ("timeout", "timeout", {"type": float, "default": 10.0, "help": "Seconds per request."}),
    (
        "max-body-bytes",
        "max_body_bytes",
        {"type": int, "default": 1 << 20, "help": "Bytes of a body kept (for tagging)."},
    ),
    (
        "token-env",
        "token_env",
        {
            "default": "DATAROBOT_API_TOKEN",
            "help": "Environment variable holding the bearer token.",
        },
    ),
    ("tag-header", "tag_headers", {"action": "append", "help": "Version header, repeatable."}),
    ("tag-json", "tag_json", {"action": "append", "help": "Version JSON path, repeatable."}),
    ("tag-regex", "tag_regex", {"help": "Regex over the body revealing the version."}),
    ("shape", "shape", {"help": "Load shape NAME[:key=value,...]: steady, ramp, step, spike."}),
    (
        "window",
        "window",
        {
            "type": float,
            "default": DEFAULT_WINDOW_S,
            "help": "Seconds of traffic in the Versions tab.",
        },
    ),
    (
        "rate-plan",
        "rate_plan",
        {"help": "Open-model rate steps (JSON of a RatePlan; set by probes capacity --mode rate)."},
    ),
    ("rate-workers", "rate_workers", {"type": int, "help": "Workers sharing the rate plan."}),
    ("rate-t0", "rate_t0", {"type": float, "help": "When the rate plan starts (the master's)."}),
    ("api", "api", {"help": "Workload API base: record the control plane beside the load."}),
    ("workload", "workload", {"help": "Workload id (with --probes-api)."}),
)


def add_arguments(parser: Any) -> None:
    """Add the ``--probes-*`` options (each also read from ``PROBES_<NAME>`` and probes.toml)."""
    try:
        defaults = config_defaults()
    except ConfigError as exc:  # Locust would print a traceback: one line, as probes does
        sys.stderr.write(f"probes: {exc}\n")
        raise SystemExit(2) from None
    for suffix, key, kwargs in _OPTIONS:
        kwargs = dict(kwargs)
        if key in defaults:
            value = defaults[key]
            kwargs["default"] = list(value) if kwargs.get("action") == "append" else value
        parser.add_argument(
            f"--probes-{suffix}",
            dest=f"probes_{suffix.replace('-', '_')}",
            env_var=f"PROBES_{suffix.replace('-', '_').upper()}",
            include_in_web_ui=False,
            **kwargs,
        )


def _opt(options: Any, name: str, default: Any = None) -> Any:
    value = getattr(options, f"probes_{name}", None) if options is not None else None
    return default if value is None else value


#: Attributes of Locust's parsed options that carry ``HEADERS_ENV`` and ``BODY_ENV`` from a
#: master to its workers (``wiring.share_request_env``): custom options travel with ``spawn``.
ENV_OPTIONS = ("probes_locust_headers", "probes_locust_body")


def _env_value(options: Any, env: str, attr: str) -> str | None:
    """The master's value (shared in the options) first, else this process's environment."""
    shared = getattr(options, attr, None) if options is not None else None
    return shared if isinstance(shared, str) else os.environ.get(env)


def _env_headers(options: Any = None) -> tuple[str, ...]:
    raw = _env_value(options, HEADERS_ENV, ENV_OPTIONS[0])
    if not raw:
        return ()
    try:
        values = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{HEADERS_ENV}: not a JSON list of 'Name: value' strings") from exc
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{HEADERS_ENV}: not a JSON list of 'Name: value' strings")
    return tuple(values)


def _env_body(options: Any = None) -> bytes | None:
    raw = _env_value(options, BODY_ENV, ENV_OPTIONS[1])
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise ConfigError(f"{BODY_ENV}: not base64") from exc


def request_spec(options: Any, host: str | None) -> RequestSpec:
    """The RequestSpec of InvokeUser from Locust's parsed options and host."""
    if not host:
        raise ConfigError("--host: the invoke URL is required (e.g. --host http://127.0.0.1:8080/)")
    return build_request(
        host,
        method=_opt(options, "method", "GET"),
        path=_opt(options, "path"),
        headers=tuple(_opt(options, "header", ())) + _env_headers(options),
        body=body if (body := _env_body(options)) is not None else _opt(options, "body"),
        body_file=_opt(options, "body_file"),
        timeout=float(_opt(options, "timeout", 10.0)),
        token_env=_opt(options, "token_env", "DATAROBOT_API_TOKEN"),
        tag_headers=tuple(_opt(options, "tag_header", ())),
        tag_json=tuple(_opt(options, "tag_json", ())),
        tag_regex=_opt(options, "tag_regex"),
    )
