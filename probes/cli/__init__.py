"""The ``probes`` command: one entry point, one verb per module.

Exit codes are decided here and nowhere else: 0 pass, 1 verdict fail, 2 usage or
configuration error, 3 target or platform unusable. Ctrl-C and SIGTERM let a recording verb
drain, save and report before it exits.
"""

from __future__ import annotations

import sys

import click

from probes.cli.common import load_config_defaults
from probes.errors import ProbesError

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


VERB_MODULES = ("observe", "load", "capacity", "report", "sim", "demo", "serve")


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
        code = rv if isinstance(rv, int) else 0
    sys.stdout.flush()
    if argv is None:
        sys.exit(code)
    return code
