"""The verbs' flags: one decorator per flag group, each flag also read from ``PROBES_<FLAG>``.

The values are parsed by ``probes.settings`` (through the ``probes.recording`` settings'
``build``), never here: a click option only names a flag, its help, and its default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from probes.canary import DEFAULT_MAX_BODY_BYTES

F = TypeVar("F", bound=Callable[..., Any])


def _env(flag: str) -> str:
    return "PROBES_" + flag.lstrip("-").upper().replace("-", "_")


class _LinesOption(click.Option):
    """A repeatable option whose environment variable holds one value per line.

    Click splits such variables on white space, which would cut ``PROBES_HEADER='X-A: b'``
    or ``PROBES_SLO='p99_ms < 500'`` apart; values of these flags contain spaces.
    """

    def value_from_envvar(self, ctx: click.Context) -> Any:
        raw = self.resolve_envvar_value(ctx)
        if raw is None:
            return None
        return [line.strip() for line in raw.splitlines() if line.strip()]


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """A click option that also reads ``PROBES_<FLAG>`` from the environment
    (one value per line for a repeatable flag)."""
    long = next(d for d in decls if d.startswith("--"))
    attrs.setdefault("envvar", _env(long.split("/")[0]))
    attrs.setdefault("show_envvar", False)
    if attrs.get("multiple"):
        attrs.setdefault("cls", _LinesOption)
    return click.option(*decls, **attrs)


def _options(*opts: Callable[[F], F]) -> Callable[[F], F]:
    def wrap(func: F) -> F:
        for opt in reversed(opts):
            func = opt(func)
        return func

    return wrap


recording_options = _options(
    option(
        "--runs-dir",
        default="runs",
        show_default=True,
        type=click.Path(file_okay=False),
        help="Where run directories are created.",
    ),
    option("--run-id", default=None, help="Run directory name (default: a UTC timestamp)."),
    option(
        "--duration",
        type=float,
        default=60.0,
        show_default=True,
        help="How long to record, in seconds.",
    ),
    option(
        "--slo",
        "slos",
        multiple=True,
        metavar="EXPR",
        help="Verdict check, repeatable: error_rate<0.01, p99_ms<500, "
        "candidate.p99_ms<1.2*baseline.p99_ms, streamed answers ttft_p99_ms<800. "
        "Replaces the default checks.",
    ),
    option("--quiet", "-q", is_flag=True, help="No live status line."),
)

request_options = _options(
    option("--method", default="GET", show_default=True, help="HTTP method."),
    option("--path", default=None, help="App path appended to the invoke URL, e.g. /health."),
    option(
        "--header",
        "headers",
        multiple=True,
        metavar="'NAME: VALUE'",
        help="Extra request header, repeatable. Never put a token here: use --token-env.",
    ),
    option("--body", default=None, help="Request body (JSON bodies get a JSON content type)."),
    option(
        "--body-file",
        default=None,
        type=click.Path(dir_okay=False),
        help="Read the request body from a file.",
    ),
    option(
        "--timeout",
        type=float,
        default=10.0,
        show_default=True,
        help="Per-request timeout, in seconds.",
    ),
    option(
        "--token-env",
        default="DATAROBOT_API_TOKEN",
        show_default=True,
        metavar="NAME",
        help="Environment variable holding the bearer token.",
    ),
    option(
        "--secret-header",
        "secret_headers",
        multiple=True,
        metavar="NAME",
        help="Also mask this request header in every file, repeatable (names containing auth,"
        " token, key, secret, cookie, session, password, credential or signature always are).",
    ),
    option(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        show_default=True,
        metavar="N",
        help="Bytes of a response body kept for tagging; the rest is read and counted, and a "
        "body past 64 MiB is cut (connection closed, recorded as body_too_large).",
    ),
    option(
        "--tag-header",
        "tag_headers",
        multiple=True,
        metavar="NAME",
        help="Response header revealing the version, repeatable "
        "(default: X-Proton-Version, X-Version).",
    ),
    option(
        "--tag-json",
        "tag_json",
        multiple=True,
        metavar="DOTTED.PATH",
        help="JSON body field revealing the version, repeatable (default: version, model_version).",
    ),
    option(
        "--tag-regex",
        default=None,
        metavar="REGEX",
        help="Regex over the body's kept head (RE2: linear time, no backreferences or "
        "lookaround); group 1 or (?P<version>...) is the version.",
    ),
)


def request_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Pick the request flags out of a verb's parameters for ``settings.build_request``."""
    keys = (
        "method",
        "path",
        "headers",
        "body",
        "body_file",
        "timeout",
        "token_env",
        "tag_headers",
        "tag_json",
        "tag_regex",
        "secret_headers",
    )
    return {k: params[k] for k in keys if k in params}


def api_options(func: F) -> F:
    """``--api BASE --workload ID``: a Workload's invoke URL instead of a URL, its control
    plane recorded beside the run."""
    opts = [
        option("--api", default=None, metavar="BASE",
               help="Workload API base (e.g. https://app.datarobot.com/api/v2); "
                    "use a Workload's invoke endpoint instead of a URL and record its control "
                    "plane."),
        option("--workload", default=None, metavar="ID", help="Workload id (with --api)."),
    ]  # fmt: skip
    for opt in reversed(opts):
        func = opt(func)
    return func


def replacement_options(func: F) -> F:
    """``--replace-with ARTIFACT`` and the replacement's settings (with ``--api``)."""
    opts = [
        option("--replace-with", default=None, metavar="ARTIFACT_ID",
               help="Start a replacement onto this artifact during the run "
                    "(with --api/--workload)."),
        option("--warmup-minutes", type=int, default=0, show_default=True, metavar="N",
               help="Replacement warmup (warmupDurationMinutes)."),
        option("--keep-old-minutes", type=int, default=0, show_default=True, metavar="N",
               help="Rollback window (keepOldVersionMinutes)."),
    ]  # fmt: skip
    for opt in reversed(opts):
        func = opt(func)
    return func


def master_options(func: F) -> F:
    """``--expect-workers N --master-bind HOST:PORT --worker-timeout S``: a Locust master
    waiting for workers started elsewhere (``probes load``, ``probes capacity``)."""
    from probes.recording.locustproc import DEFAULT_MASTER_BIND, DEFAULT_WORKER_TIMEOUT_S

    opts = [
        option("--expect-workers", type=int, default=0, show_default=True, metavar="N",
               help="Start a Locust master and wait for N workers started elsewhere "
                    "(locust -f locustfiles/invoke.py --worker --master-host H "
                    "--master-port P); they receive every setting from the master."),
        option("--master-bind", default=DEFAULT_MASTER_BIND, show_default=True,
               metavar="HOST:PORT",
               help="With --expect-workers: where the master listens (0.0.0.0:5557 for "
                    "workers on other machines; the bind is recorded in the manifest)."),
        option("--worker-timeout", type=float, default=DEFAULT_WORKER_TIMEOUT_S,
               show_default=True, metavar="SECONDS",
               help="With --expect-workers: how long to wait for them (too few: exit 3)."),
    ]  # fmt: skip
    for opt in reversed(opts):
        func = opt(func)
    return func


def announce_master(settings: Any, quiet: bool) -> None:
    """Say where a master waiting for workers from elsewhere listens (stderr), and warn when
    that is not loopback: whoever reaches it can join as a worker and is sent the request's
    settings (headers, body; never the token, which each worker reads from its own
    environment)."""
    if not getattr(settings, "expect_workers", 0):
        return
    master = settings.master
    if not quiet:
        click.echo(
            f"probes: Locust master on {master.address} waiting up to "
            f"{master.worker_timeout_s:g} s for {settings.expect_workers} workers",
            err=True,
        )
    if not master.loopback:
        click.echo(
            f"probes: --master-bind {master.address} is not loopback: any host that reaches it "
            "can join as a worker and receives the request's settings",
            err=True,
        )
