"""The reference in ``docs/`` against the code: config keys, routes, metrics, the CLI and
summary fields both ways, and every relative link in README, docs and deploy resolving inside
a clone (which has no ``../shared``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from probes.serve import config as cfg
from probes.serve import notify
from probes.serve.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SERVE_MD = DOCS / "serve.md"

#: Documented from the contract, built on other branches (issues 23, 24). The integrator
#: empties this set once those are merged: then every entry must exist in the code.
PENDING: set[tuple[str, str]] = set()

SECTIONS = {
    "serve": "### `[serve]`",
    "targets": "### `[[targets]]`",
    "schedules": "### `[[schedules]]`",
    "notify": "### `[[notify]]`",
}


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def _first_column(text: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_0-9]+)` \|", text, re.M))


def documented_config() -> set[str]:
    text = SERVE_MD.read_text("utf-8")
    return {
        f"{section}.{key}"
        for section, heading in SECTIONS.items()
        for key in _first_column(_section(text, heading))
    }


def code_config() -> set[str]:
    keys = {
        "serve": cfg.SERVE_KEYS,
        "targets": cfg.TARGET_KEYS,
        "schedules": cfg.SCHEDULE_KEYS,
        "notify": notify.KEYS,
    }
    return {f"{section}.{key}" for section, names in keys.items() for key in names}


def documented_routes() -> set[str]:
    text = SERVE_MD.read_text("utf-8")
    return set(re.findall(r"^\| `((?:GET|POST) /[^`]*)` \|", text, re.M))


class _View:
    auth_token = "t" * 32
    index: Any = None
    runs_dir = Path(".")

    def __init__(self) -> None:
        self.metrics = Metrics("0")

    def target_names(self) -> list[str]:
        return []


def code_routes() -> set[str]:
    from probes.serve.http import make_app

    app = make_app(_View())  # type: ignore[arg-type]
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        resource = route.resource
        assert resource is not None
        if isinstance(resource, web.StaticResource):
            out.add(f"{route.method} {resource.canonical}/{{file}}")
        else:
            out.add(f"{route.method} {resource.canonical}")
    return out


def documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `(proton_probe_[a-z_]+)` \|", SERVE_MD.read_text("utf-8"), re.M))


def code_metrics() -> set[str]:
    names = set()
    for family in Metrics("0").registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def _pending(kind: str) -> set[str]:
    return {name for k, name in PENDING if k == kind}


@pytest.mark.parametrize(
    ("kind", "documented", "code"),
    [
        ("config", documented_config, code_config),
        ("route", documented_routes, code_routes),
        ("metric", documented_metrics, code_metrics),
    ],
)
def test_docs_and_code_name_the_same_things(kind: str, documented: Any, code: Any) -> None:
    docs, built = documented(), code()
    assert built, f"no {kind} found in the code: the extraction is broken"
    assert sorted(built - docs) == [], f"{kind}s in the code but not in docs/serve.md"
    pending = _pending(kind)
    assert sorted(docs - built - pending) == [], f"{kind}s in docs/serve.md but not in the code"
    # a pending name that the code has now must leave PENDING (the integrator's reminder)
    assert sorted(pending & built) == [], f"PENDING {kind}s now built: remove them from PENDING"


def test_the_extraction_sees_a_missing_key() -> None:
    """The check can fail: a key taken out of the docs' table is reported."""
    docs = documented_config()
    assert "targets.canary_rate" in docs
    assert code_config() - (docs - {"targets.canary_rate"}) == {"targets.canary_rate"}


def test_cli_reference_is_made_from_the_code() -> None:
    from probes.cli.reference import markdown

    assert (DOCS / "cli.md").read_text("utf-8") == markdown(), (
        "docs/cli.md is stale: run `make docs`"
    )


def test_every_summary_field_of_the_golden_runs_is_documented() -> None:
    text = (DOCS / "summary.md").read_text("utf-8")
    missing = set()
    for path in sorted((ROOT / "tests" / "data").glob("golden-*.json")):
        for key in json.loads(path.read_text("utf-8")):
            if f"`{key}`" not in text:
                missing.add(key)
    assert sorted(missing) == []


# -- links -------------------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")
STALE = re.compile(r"CONTRACT\.md|\.\./shared|platform/[a-z-]+\.md|DESIGN\.md")


def _link_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    files += sorted((ROOT / "deploy").rglob("*.md"))
    return files


def _slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines = path.read_text("utf-8").splitlines()
    return {_slug(line.lstrip("#")) for line in lines if line.startswith("#")}


def broken_links(path: Path) -> list[str]:
    """Relative links of ``path`` whose file (or heading anchor) does not exist."""
    broken = []
    for target in LINK.findall(path.read_text("utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check offline
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        outside = ROOT not in dest.parents and dest != ROOT
        missing = not dest.exists() or outside
        if missing or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
            broken.append(target)
    return broken


def test_every_relative_link_resolves_inside_the_repository() -> None:
    broken = {str(p.relative_to(ROOT)): b for p in _link_files() if (b := broken_links(p))}
    assert broken == {}


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    page = DOCS / "_probe_link_check.md"
    page.write_text("[a](nowhere.md) [b](serve.md#no-such-heading) [c](serve.md#the-door)\n")
    try:
        assert broken_links(page) == ["nowhere.md", "serve.md#no-such-heading"]
    finally:
        page.unlink()


def test_nothing_users_read_points_outside_a_clone() -> None:
    """README, docs, deploy (docs and yaml comments) and every --help text."""
    from click.testing import CliRunner

    from probes.cli import _register, cli

    files = _link_files() + sorted((ROOT / "deploy").rglob("*.yaml"))
    stale = {str(p.relative_to(ROOT)) for p in files if STALE.search(p.read_text("utf-8"))}
    _register()
    for name in cli.commands:
        out = CliRunner().invoke(cli, [name, "--help"], terminal_width=100).output
        if STALE.search(out):
            stale.add(f"probes {name} --help")
    assert sorted(stale) == []
