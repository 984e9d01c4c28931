"""``docs/cli.md`` made from the click commands themselves, so the reference cannot drift.

``python -m probes.cli.reference > docs/cli.md`` (``make docs``) rewrites it;
``tests/test_docs.py`` fails when the file differs from what this module makes now, i.e. when
a flag, a default or a help text changed without the reference.
"""

from __future__ import annotations

import inspect
import sys

import click

HEADER = """\
# `probes`: the command-line reference

Made from the commands' own definitions (`make docs`; a test fails when this file and the
code disagree). Every flag also reads `PROBES_<FLAG>` from the environment (`PROBES_RATE=50`;
a repeatable flag takes one value per line) and a key of `probes.toml` (or `[tool.probes]` in
`pyproject.toml`; a `[VERB]`/`[tool.probes.VERB]` table holds one verb's keys). A token is
never a flag value: `--token-env NAME` names the variable holding it.

Exit codes (every verb): `0` pass, `1` verdict fail (or `compare`: worse), `2` bad flag, key
or value (the message names it), `3` the target, the platform or the load generator could
not be used.

The files a run writes are in [records.md](records.md); `summary.json` is in
[summary.md](summary.md); `probes serve` and its config in [serve.md](serve.md).
"""


def _help(command: click.Command) -> str:
    text = inspect.cleandoc(command.help or "").replace("\b\n", "")
    return click.unstyle(text).strip()


def _flag(ctx: click.Context, param: click.Parameter) -> list[str] | None:
    record = param.get_help_record(ctx)
    if record is None:
        return None
    names, text = record
    if isinstance(param, click.Argument):
        text = "argument" + (" (required)" if param.required else "")
    return [f"`{names}`", " ".join(text.split()).replace("|", "\\|")]


def _command(name: str, command: click.Command, parent: click.Context) -> list[str]:
    # the command's own context_settings, as make_context applies them: click caches each
    # command's help option the first time it is built, so every context must agree on it
    ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
    usage = " ".join(command.collect_usage_pieces(ctx))
    out = [f"## `probes {name}`", "", "```", f"probes {name} {usage}".rstrip(), "```", ""]
    out += [_help(command), ""]
    rows = [row for p in command.get_params(ctx) if (row := _flag(ctx, p)) is not None]
    if rows:
        out += ["| flag | meaning |", "|---|---|"]
        out += [f"| {a} | {b} |" for a, b in rows]
        out.append("")
    return out


def markdown() -> str:
    """The whole ``docs/cli.md``: the group's help, then every verb in alphabetical order."""
    from probes.cli import _register, cli

    _register()
    root = click.Context(cli, info_name="probes", **cli.context_settings)
    lines = [HEADER, "## `probes`", "", _help(cli), ""]
    rows = [row for p in cli.get_params(root) if (row := _flag(root, p)) is not None]
    lines += ["| flag | meaning |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows], ""]
    lines += ["| verb | what it does |", "|---|---|"]
    for name in sorted(cli.commands):
        short = cli.commands[name].get_short_help_str(limit=200)
        lines.append(f"| [`{name}`](#probes-{name}) | {short} |")
    lines.append("")
    for name in sorted(cli.commands):
        lines += _command(name, cli.commands[name], root)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
