"""The one TOML reader, with one error policy, for every config file proton-probe reads.

``probes.toml`` (or ``[tool.probes]`` of ``pyproject.toml``, or ``--config FILE``) holds
defaults for the CLI's flags and for the Locust glue's ``--probes-*`` options; the service
reads ``serve.toml``. Whoever reads, the policy is the same: a file that is named but missing,
unreadable or not valid TOML is a ``ConfigError`` naming the file (never silently ignored),
and a key that names no setting is a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from probes.errors import ConfigError

__all__ = ["LOCAL_FILE", "find_config", "read_toml", "verb_defaults"]

LOCAL_FILE = "probes.toml"


def read_toml(path: str | Path, place: str = "config") -> dict[str, Any]:
    """The TOML document at ``path``; ConfigError naming ``place`` and the file otherwise."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{place}: {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{place}: cannot read {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{place}: {path} is not valid TOML: {exc}") from exc


def _section(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A pyproject.toml's ``[tool.probes]`` table; any other file as it is."""
    if path.name != "pyproject.toml":
        return data
    section = data.get("tool", {}).get("probes", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.probes] must be a table")
    return section


def find_config(
    explicit: str | Path | None, cwd: str | Path = ".", place: str = "config"
) -> tuple[Path, dict[str, Any]] | None:
    """The config in force: ``explicit`` (must exist; errors name ``place``), else
    ``./probes.toml``, else ``[tool.probes]`` of ``./pyproject.toml``; None when there is
    none."""
    if explicit:
        path = Path(explicit)
        return path, _section(path, read_toml(path, place))
    local = Path(cwd) / LOCAL_FILE
    if local.is_file():
        return local, read_toml(local, str(local))
    pyproject = Path(cwd) / "pyproject.toml"
    if pyproject.is_file():
        section = read_toml(pyproject, str(pyproject)).get("tool", {}).get("probes")
        if isinstance(section, dict):
            return pyproject, section
    return None


def verb_defaults(
    path: Path,
    data: Mapping[str, Any],
    verbs: Mapping[str, Collection[str]],
    multiple: Collection[str] = (),
) -> dict[str, dict[str, Any]]:
    """Per verb, the defaults a config file gives its settings.

    ``verbs`` maps each verb to the names of its settings. Top-level keys apply to every verb
    that has the setting; a ``[verb]`` table applies to that verb alone. Keys may use ``-`` or
    ``_``. A key no verb knows (or a ``[verb]`` key that verb does not know) is a ConfigError,
    and so is a list or table given to a setting outside ``multiple`` (the repeatable ones):
    ``duration = [1]`` names the key rather than failing later in the flag parser.
    """
    shared = {k: v for k, v in data.items() if not (isinstance(v, dict) and k in verbs)}
    known = {name for names in verbs.values() for name in names}
    for key in shared:
        if isinstance(shared[key], dict):
            raise ConfigError(f"{path}: [{key}] is not a probes verb (one of {', '.join(verbs)})")
        if key.replace("-", "_") not in known:
            raise ConfigError(f"{path}: key {key!r} is not a flag of any probes verb")
    result: dict[str, dict[str, Any]] = {}
    for verb, names in verbs.items():
        values = {k.replace("-", "_"): v for k, v in shared.items() if k.replace("-", "_") in names}
        table = data.get(verb, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {verb} must be a table of flags ([{verb}])")
        for key, value in table.items():
            norm = key.replace("-", "_")
            if norm not in names:
                raise ConfigError(f"{path}: [{verb}] key {key!r} is not a flag of 'probes {verb}'")
            values[norm] = value
        for key, value in values.items():
            if isinstance(value, list | dict) and key not in multiple:
                shown = "a list" if isinstance(value, list) else "a table"
                raise ConfigError(
                    f"{path}: key {key!r} takes one value (e.g. {key} = 60), got {shown}"
                )
        result[verb] = values
    return result
