"""The one owner of the service's background tasks (Datasette's ``BackgroundTaskSupervisor``).

An asyncio task nobody references may be garbage-collected mid-flight, and one that nobody
awaits hides its exception. ``Tasks`` keeps a strong reference to every task and future it is
given, in a named group, until it ends; logs a crash (unless told the work logs its own);
and lets ``stop`` wait for a group with a bound, or cancel it with a grace period.

The service's groups, in the order ``stop`` handles them:

========== ==========================================================================
group      what
========== ==========================================================================
service    the long-running loops (ticker, flusher, scheduler, retention, …): cancelled
opening    rollout runs whose directories are being made (``RolloutRun.open``)
closing    runs being closed (shards flushed, manifest ended): awaited in full, bounded
reports    reports being made: awaited a while, then cancelled (the next start makes them)
========== ==========================================================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
F = TypeVar("F", bound="asyncio.Future[Any]")


class Tasks:
    """Background tasks by group: ``spawn``, ``track``, ``wait``, ``cancel``."""

    def __init__(self) -> None:
        self._groups: dict[str, set[asyncio.Future[Any]]] = {}

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        name: str,
        group: str = "service",
        *,
        log_crash: bool = True,
    ) -> asyncio.Task[T]:
        """Run ``coro`` as a task named ``name`` in ``group``."""
        return self.track(asyncio.create_task(coro, name=name), group, log_crash=log_crash)

    def track(self, future: F, group: str, *, log_crash: bool = False) -> F:
        """Hold ``future`` in ``group`` until it ends."""
        members = self._groups.setdefault(group, set())
        members.add(future)
        future.add_done_callback(members.discard)
        if log_crash:
            future.add_done_callback(_log_crash)
        return future

    def pending(self, group: str) -> set[asyncio.Future[Any]]:
        """The group's tasks not yet ended (a copy)."""
        return set(self._groups.get(group, ()))

    async def wait(self, group: str, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the group's tasks to end."""
        members = self.pending(group)
        if members:
            await asyncio.wait(members, timeout=timeout)

    async def cancel(self, group: str, grace: float | None = None) -> None:
        """Cancel the group's tasks and wait for them (at most ``grace`` seconds, if given)."""
        members = self.pending(group)
        for future in members:
            future.cancel()
        if not members:
            return
        if grace is None:
            await asyncio.gather(*members, return_exceptions=True)
        else:
            await asyncio.wait(members, timeout=grace)


def _log_crash(future: asyncio.Future[Any]) -> None:
    """A task that ended with an error says so (an asyncio task's exception is otherwise seen
    only when someone awaits it)."""
    if not future.cancelled() and future.exception() is not None:
        name = future.get_name() if isinstance(future, asyncio.Task) else repr(future)
        log.error("service task %s failed", name, exc_info=future.exception())
