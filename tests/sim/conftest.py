"""Fixtures: simulators on 127.0.0.1 with a test token, and httpx clients for them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from probes.sim import SimConfig, Simulator

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_sim(**kw: Any) -> Simulator:
    kw.setdefault("time_scale", 600.0)
    kw.setdefault("seed", 1)
    return Simulator(SimConfig(token=TOKEN, **kw))


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with make_sim(scenario="healthy") as s:
        yield s


@pytest.fixture()
def api(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.api_url, headers=AUTH, timeout=10) as client:
        yield client


def wait_for(fn: Callable[[], Any], timeout: float = 20.0, interval: float = 0.01) -> Any:
    """Poll ``fn`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def replacement_status(client: httpx.Client, wid: str) -> str | int:
    r = client.get(f"/workloads/{wid}/replacement")
    return r.json()["status"] if r.status_code == 200 else r.status_code


def wait_gone(client: httpx.Client, wid: str, timeout: float = 20.0) -> list[str | int]:
    """Poll the replacement until it 404s; every distinct status seen, in order."""
    seen: list[str | int] = []

    def step() -> bool:
        st = replacement_status(client, wid)
        if not seen or seen[-1] != st:
            seen.append(st)
        return st == 404

    wait_for(step, timeout)
    return seen


__all__ = [
    "AUTH",
    "TOKEN",
    "alive",
    "make_sim",
    "os",
    "replacement_status",
    "wait_for",
    "wait_gone",
]
