"""Proton processes: each replica is a real ``python -m probes.sim.app`` on 127.0.0.1.

The app prints ``PORT <n>`` once it listens; its stdin is a pipe from us, so when the
simulator goes away (even killed) the pipe closes and the app exits by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

SPAWN_TIMEOUT_S = 30.0


@dataclass
class Replica:
    """One running process of a proton and what the readiness prober learnt about it."""

    name: str
    proc: asyncio.subprocess.Process | None = None
    port: int | None = None
    streak: int = 0
    ready: bool = False
    failed: str | None = None
    started_at: float | None = None  # epoch
    ready_since: float | None = None  # epoch
    probe_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def address(self) -> str | None:
        return f"127.0.0.1:{self.port}" if self.port else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


async def spawn(
    env: dict[str, str], host: str = "127.0.0.1"
) -> tuple[asyncio.subprocess.Process, int]:
    """Start one proton app process; its pid-owned process and bound port.

    Raises ``RuntimeError`` with the app's stderr when it exits before listening.
    """
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "probes.sim.app",
        "--host",
        host,
        "--port",
        "0",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), SPAWN_TIMEOUT_S)
    except TimeoutError:
        await stop(proc)
        raise RuntimeError("proton app did not report its port in time") from None
    text = line.decode().strip()
    if not text.startswith("PORT "):
        err = b""
        if proc.stderr is not None:
            with contextlib.suppress(TimeoutError):
                err = await asyncio.wait_for(proc.stderr.read(), 5)
        await stop(proc)
        raise RuntimeError(f"proton app failed to start: {err.decode(errors='replace')[-500:]}")
    # Keep reading stderr so a chatty app never blocks on a full pipe; keep the tail.
    task = asyncio.get_running_loop().create_task(_drain(proc))
    _DRAINERS.add(task)
    task.add_done_callback(_DRAINERS.discard)
    return proc, int(text.split()[1])


_DRAINERS: set[asyncio.Task[None]] = set()


async def _drain(proc: asyncio.subprocess.Process) -> None:
    if proc.stderr is None:
        return
    with contextlib.suppress(Exception):
        while await proc.stderr.read(65536):
            pass


async def stop(proc: asyncio.subprocess.Process | None, grace_s: float = 3.0) -> None:
    """Stop a proton process: close its stdin (it exits), then SIGTERM, then SIGKILL."""
    if proc is None:
        return
    if proc.returncode is None:
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), grace_s / 2)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace_s / 2)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
    else:
        await proc.wait()


@contextlib.contextmanager
def standalone(env: Mapping[str, str]) -> Iterator[str]:
    """One proton app process outside a simulator (a bench's or a test's endpoint, e.g. a
    streaming one: ``SIM_FIRST_TOKEN_MS``…): yields its base URL ``http://127.0.0.1:PORT``;
    on exit its stdin closes and it exits (killed after 10 s)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "probes.sim.app", "--port", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, **env}, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"proton app did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
