"""``probes.recording`` driven directly, without the CLI: the seam the service stands on."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from probes import recording
from probes.records import read_manifest, read_samples
from probes.settings import build_request
from tests.helpers import VersionServer

#: Packages with a deliberate public surface: ``__all__`` must be honest in each.
PACKAGES = [
    "probes",
    "probes.recording",
    "probes.recording.types",
    "probes.config",
    "probes.lifecycle",
    "probes.live",
    "probes.run",
    "reports",
]
if importlib.util.find_spec("probes.serve") is not None:
    PACKAGES.append("probes.serve")


BLOCK_AND_IMPORT = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    # click is blocked outright: httpx imports it whenever it is installed (for its own CLI,
    # and survives without it), so "not in sys.modules" could not tell who asked for it.
    def find_spec(self, name, path=None, target=None):
        if name == "click" or name.startswith("click."):
            raise ImportError(f"{name} is blocked: the library must not need it")
        return None
sys.meta_path.insert(0, Block())
import {module}
bad = sorted(m for m in sys.modules
             if m.split(".")[0] in ("click", "locust", "gevent") or m.startswith("probes.cli"))
print(",".join(bad))
sys.exit(1 if bad else 0)
"""


@pytest.mark.parametrize(
    "module",
    [
        "probes.recording",
        # the service's modules themselves (the package's __init__ imports none of them)
        "probes.serve.service",
        "probes.serve.runner",
        "probes.serve.config",
        "probes.serve.http",
    ],
)
def test_library_imports_no_cli_no_locust(module: str) -> None:
    code = BLOCK_AND_IMPORT.replace("{module}", module)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"imported: {result.stdout} {result.stderr[-800:]}"


def _public(name: str, module: object) -> set[str]:
    """What a module offers, read from its source: the public functions, classes and
    assignments at its top level, and, in a package's ``__init__``, what it imports from its
    own modules."""
    tree = ast.parse(Path(str(module.__file__)).read_text("utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names.add(leaf.id)
        elif (
            isinstance(node, ast.ImportFrom)
            and hasattr(module, "__path__")
            and (node.module or "").startswith(f"{name}.")
        ):
            names.update(alias.asname or alias.name for alias in node.names)
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_honest(name: str) -> None:
    """Every name in ``__all__`` exists; nothing public is missing from it."""
    module = importlib.import_module(name)
    exported = set(module.__all__)
    missing = sorted(n for n in exported if not hasattr(module, n))
    assert not missing, f"{name}.__all__ names what does not exist: {missing}"
    unlisted = sorted(_public(name, module) - exported)
    assert not unlisted, f"{name} has public names missing from __all__: {unlisted}"


def _observe(url: str, tmp: Path, run_id: str, stop: threading.Event, duration: float = 30.0):
    return recording.observe(
        build_request(url),
        recording.RunLocation(tmp, run_id),
        recording.ObserveSettings.build(rate=40, duration=duration),
        stop=stop,
    )


def test_observation_stopped_through_its_event_keeps_every_sample(tmp_path: Path) -> None:
    stop = recording.Stop()
    with VersionServer() as srv:
        timer = threading.Timer(1.5, stop.request, args=("operator",))
        started = time.monotonic()
        timer.start()
        try:
            outcome = _observe(srv.url, tmp_path, "stopped", stop)
        finally:
            timer.cancel()
        served = srv.stats()
    assert time.monotonic() - started < 20  # far short of the 30 s asked for
    assert outcome.interrupted == "operator" and outcome.summary is not None
    manifest = read_manifest(outcome.run_dir)
    assert manifest["interrupted"] == "operator" and manifest["ended_ts"] is not None
    rows = read_samples(outcome.run_dir)
    # every request the probe counted is a row on disk, and the report counts them all
    assert len(rows) == manifest["probe"]["recorded"] == outcome.recorded > 20
    assert outcome.summary["requests"] == len(rows)
    assert manifest["probe"]["abandoned"] == 0
    assert served["requests"] >= len(rows[rows["status"] == 200])
    assert outcome.verdict == "pass" and outcome.unusable is None


def test_two_observations_of_two_targets_at_once(tmp_path: Path) -> None:
    outcomes: dict[str, recording.Outcome] = {}
    with (
        VersionServer(v1="a1", v2="a2") as first,
        VersionServer(v1="b1", v2="b2") as second,
    ):

        def run(name: str, url: str) -> None:
            outcomes[name] = _observe(url, tmp_path, name, threading.Event(), duration=2.0)

        threads = [
            threading.Thread(target=run, args=("first", first.url)),
            threading.Thread(target=run, args=("second", second.url)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert set(outcomes) == {"first", "second"}
    for name, label in (("first", "a1"), ("second", "b1")):
        outcome = outcomes[name]
        assert outcome.interrupted is None and outcome.summary is not None
        assert set(outcome.summary["versions"]) == {label}
        assert outcome.summary["requests"] == 80  # 40/s for 2 s, each in its own run
        spans = read_samples(outcome.run_dir)["ts"]
        assert spans.max() - spans.min() < 2.1


def _locust_processes(run_dir: Path) -> list[psutil.Process]:
    """Live processes recording into ``run_dir`` (a zombie is dead: it sends nothing, and
    who reaps it depends on the container's init)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        alive = proc.info.get("status") != psutil.STATUS_ZOMBIE
        if alive and any(str(run_dir) in part for part in cmdline):
            found.append(proc)
    return found


@pytest.mark.slow
def test_load_stopped_through_its_event_leaves_no_locust(tmp_path: Path) -> None:
    stop = recording.Stop()
    settings = recording.LoadSettings.build(duration=60, users=3, spawn_rate=10, workers=2)
    with VersionServer() as srv:
        timer = threading.Timer(6.0, stop.request, args=("operator",))
        timer.start()
        try:
            outcome = recording.load(
                build_request(srv.url), recording.RunLocation(tmp_path, "load"), settings,
                stop=stop,
            )  # fmt: skip
        finally:
            timer.cancel()
    assert outcome.interrupted == "operator" and outcome.failure is None
    assert outcome.summary is not None and outcome.summary["requests"] == outcome.recorded > 0
    assert read_manifest(outcome.run_dir)["locust"]["samples"] == outcome.recorded
    assert _locust_processes(outcome.run_dir) == []


@pytest.mark.slow
def test_sigkill_of_probes_load_leaves_no_locust(tmp_path: Path) -> None:
    """Whatever kills the recording, its Locust (master and workers) dies with it."""
    run_dir = tmp_path / "killed"
    with VersionServer() as srv:
        probes = subprocess.Popen(
            [sys.executable, "-c", "import sys; from probes.cli import main; sys.exit(main())",
             "load", srv.url, "--workers", "2", "--users", "4", "--duration", "120",
             "--runs-dir", str(tmp_path), "--run-id", "killed", "-q"],
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(_locust_processes(run_dir)) < 3:
                time.sleep(0.2)  # master + 2 workers started
            assert len(_locust_processes(run_dir)) >= 3, "Locust never started"
            probes.kill()
            probes.wait(10)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _locust_processes(run_dir):
                time.sleep(0.2)
            left = [
                (p.pid, p.ppid(), p.status(), p.cmdline()[-6:]) for p in _locust_processes(run_dir)
            ]
        finally:
            for proc in _locust_processes(run_dir):
                proc.kill()
            if probes.poll() is None:
                probes.kill()
    assert left == [], f"orphaned Locust: {left}"


def _own_modules() -> list[str]:
    root = Path(__file__).resolve().parent.parent
    names = []
    for package in ("probes", "reports"):
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__main__" or ("locustglue" in parts and parts[-1] != "__init__"):
                continue  # imports Locust (gevent patches sockets): tests/locust imports it
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports() -> None:
    """mypy ignores missing imports (third-party stubs), so a module of ours that imports a
    moved or renamed one would only fail at run time: import each of them."""
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run(
        [sys.executable, "-c", code, *_own_modules()], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
