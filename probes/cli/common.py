"""What the verbs share: option groups, config loading, the end of a recording."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from probes.errors import ConfigError

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
        "candidate.p99_ms<1.2*baseline.p99_ms. Replaces the default checks.",
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
        help="Regex over the body; group 1 or (?P<version>...) is the version.",
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
    )
    return {k: params[k] for k in keys if k in params}


def _find_config(explicit: str | None) -> tuple[Path, dict[str, Any]] | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"--config: {explicit} does not exist")
        data = _read_toml(path)
        return path, data.get("tool", {}).get(
            "probes", data
        ) if path.name == "pyproject.toml" else data
    local = Path("probes.toml")
    if local.is_file():
        return local, _read_toml(local)
    pyproject = Path("pyproject.toml")
    if pyproject.is_file():
        section = _read_toml(pyproject).get("tool", {}).get("probes")
        if isinstance(section, dict):
            return pyproject, section
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from exc


def load_config_defaults(explicit: str | None, group: click.Command) -> dict[str, Any]:
    """Config file entries as click ``default_map``: shared keys, then per-verb tables.

    Unknown keys are an error naming the key, so a typo never silently does nothing.
    """
    found = _find_config(explicit)
    if not found:
        return {}
    path, data = found
    assert isinstance(group, click.Group)
    verbs = group.commands
    shared = {k: v for k, v in data.items() if not isinstance(v, dict) or k not in verbs}
    result: dict[str, Any] = {}
    for verb_name, verb in verbs.items():
        names = {p.name for p in verb.params if p.name}
        values = {}
        for key, value in shared.items():
            norm = key.replace("-", "_")
            if norm in names:
                values[norm] = value
        per_verb = data.get(verb_name, {})
        if isinstance(per_verb, dict):
            for key, value in per_verb.items():
                norm = key.replace("-", "_")
                if norm not in names:
                    raise ConfigError(
                        f"{path}: [{verb_name}] key {key!r} is not a flag of 'probes {verb_name}'"
                    )
                values[norm] = value
        result[verb_name] = values
    known = {p.name for v in verbs.values() for p in v.params if p.name}
    for key in shared:
        if key.replace("-", "_") not in known:
            raise ConfigError(f"{path}: key {key!r} is not a flag of any probes verb")
    return result


def verdict_line(summary: dict[str, Any]) -> str:
    """``verdict: fail — error_rate=0.0153 (needs < 0.01) FAIL; …`` for terminals and CI."""
    verdict = summary.get("verdict") or {}
    parts = []
    for check in verdict.get("checks", []):
        mark = {True: "ok", False: "FAIL"}.get(check.get("passed"), "n/a")
        value = check.get("value")
        shown = f"{value:.4g}" if isinstance(value, int | float) else str(value)
        threshold = check.get("threshold")
        need = f"{threshold:.4g}" if isinstance(threshold, int | float) else str(threshold)
        parts.append(f"{check.get('name')}={shown} (needs {check.get('op')} {need}) {mark}")
    result = verdict.get("result", "inconclusive")
    return f"verdict: {result}" + (" — " + "; ".join(parts) if parts else "")


#: statuses that mean the target itself could not be used (no response, or refused us).
UNUSABLE_STATUSES = frozenset({"0", "401", "403", "407"})


def target_unusable(summary: dict[str, Any]) -> str | None:
    """Why the target could not be used at all, or None: every request failed in transport
    or was refused for credentials (no request reached the application)."""
    counts: dict[str, int] = summary.get("status_counts") or {}
    if not summary.get("requests"):
        return "no request was sent"
    if set(counts) <= UNUSABLE_STATUSES:
        classes = summary.get("error_classes") or {}
        worst = max(classes, key=lambda k: classes[k]) if classes else "error"
        if worst.startswith("http_4xx"):
            return "every request was refused (401/403): check the token in --token-env"
        return f"no request got a response ({worst}): is the target reachable?"
    return None


def finish_recording(
    run_dir: Path, *, echo: Callable[[str], None] = click.echo, **report: Any
) -> int:
    """Make the report of a finished run, print where it is and the verdict; the exit code.

    ``report`` goes to ``reports.make_report`` (``slos``, ``bucket_s``, ``figures``).
    """
    from reports import make_report

    summary = make_report(run_dir, **report)
    echo(str(Path(run_dir) / "report.html"))
    echo(verdict_line(summary))
    reason = target_unusable(summary)
    if reason:
        click.echo(f"probes: target unusable: {reason}", err=True)
        return 3
    return 1 if (summary.get("verdict") or {}).get("result") == "fail" else 0
