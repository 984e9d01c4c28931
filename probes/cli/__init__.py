"""The ``probes`` command: one entry point, one verb per module.

Exit codes are decided here and nowhere else (``exit_code``), from a verb's
``probes.recording.Outcome`` and from the error tree (``probes.errors``): 0 pass, 1 verdict
fail, 2 usage or configuration error, 3 the target, the platform or the load generator could
not be used. Ctrl-C and SIGTERM let a recording verb drain, save and report before it exits.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from probes.config import find_config, verb_defaults
from probes.errors import ProbesError
from probes.recording.types import Outcome

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="PROBES_CONFIG",
    help="Config file (default: ./probes.toml, else [tool.probes] in ./pyproject.toml).",
)
@click.version_option(package_name="proton-probe", prog_name="probes")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """proton-probe: what callers of a stable invoke URL really saw during a rollout.

    Every flag also reads PROBES_<FLAG> from the environment (e.g. PROBES_RATE) and a key of
    the config file ([tool.probes] for every verb, [tool.probes.<verb>] for one verb).
    Exit codes: 0 pass, 1 verdict fail, 2 usage or config error, 3 target unusable.
    """
    ctx.default_map = load_config_defaults(config_file, ctx.command)


VERB_MODULES = ("observe", "load", "capacity", "report", "sim", "demo", "compare", "serve")

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_UNUSABLE = 0, 1, 2, 3


def load_config_defaults(explicit: str | None, group: click.Command) -> dict[str, Any]:
    """The config file's entries as click's ``default_map`` (``probes.config`` reads it)."""
    found = find_config(explicit, place="--config")
    if not found:
        return {}
    assert isinstance(group, click.Group)
    verbs = {name: {p.name for p in verb.params if p.name} for name, verb in group.commands.items()}
    multiple = {
        p.name
        for verb in group.commands.values()
        for p in verb.params
        if p.name and (getattr(p, "multiple", False) or p.nargs != 1)
    }
    return verb_defaults(found[0], found[1], verbs, multiple)


def exit_code(outcome: Any) -> int:
    """The exit code of a verb's result: a recording's ``Outcome``, a comparison (``probes
    compare``: 1 when the run is worse than its baseline), or a plain code (``sim``)."""
    if isinstance(outcome, int) and not isinstance(outcome, bool):
        return outcome
    if isinstance(outcome, dict) and "judgement" in outcome:  # probes compare
        return EXIT_FAIL if outcome["judgement"] == "worse" else EXIT_PASS
    if not isinstance(outcome, Outcome):
        return EXIT_PASS
    if outcome.failure or outcome.unusable:
        return EXIT_UNUSABLE
    return EXIT_FAIL if outcome.verdict == "fail" else EXIT_PASS


def _register() -> None:
    """Attach every verb module's ``command``; imported lazily to keep ``import probes`` light."""
    import importlib

    for name in VERB_MODULES:
        if name in cli.commands:
            continue
        try:
            module = importlib.import_module(f"probes.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"probes.cli.{name}":
                continue  # verb not built yet
            raise
        cli.add_command(module.command, name)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns (and exits with) the process exit code."""
    _register()
    try:
        rv = cli.main(args=argv, prog_name="probes", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        click.echo(f"probes: {exc.format_message()}", err=True)
        code = exc.exit_code
    except click.Abort:
        click.echo("probes: interrupted", err=True)
        code = 130
    except ProbesError as exc:
        click.echo(f"probes: {exc}", err=True)
        code = exc.exit_code
    else:
        code = exit_code(rv)
    sys.stdout.flush()
    if argv is None:
        sys.exit(code)
    return code
