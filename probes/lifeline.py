"""Child processes that die with their parent, whatever kills the parent (Linux).

A recording starts Locust as a subprocess (and Locust forks its workers). If the recording
process is SIGKILLed, nothing of ours runs to stop them, and an orphaned Locust would keep
sending load until its own ``--run-time``. So the parent names itself in the child's
environment (``PARENT_ENV``), and the child, first thing, asks the kernel for a signal when
its parent goes (``prctl(PR_SET_PDEATHSIG)``); a parent already gone by then is caught by
comparing ``getppid()`` with the pid named.

``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits: start children
from a thread that outlives them (every recording waits for its Locust in the thread that
started it).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["PARENT_ENV", "die_with_parent", "parent_env"]

#: The child's environment names its parent's pid here.
PARENT_ENV = "PROBES_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def parent_env() -> dict[str, str]:
    """What to add to a child's environment so that ``die_with_parent`` can check on us."""
    return {PARENT_ENV: str(os.getpid())}


#: The process's own symbols (libc's ``prctl`` among them), found once, at import: never
#: with ``ctypes.util.find_library``, which runs a subprocess — from a fork hook that
#: would fork again in every child, without end.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _prctl_deathsig(sig: int) -> bool:
    if _LIBC is None:
        return False
    return bool(_LIBC.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)


def die_with_parent(sig: int = signal.SIGTERM, *, direct: bool = True) -> bool:
    """In a child started with ``parent_env``: get ``sig`` when its parent dies.

    ``direct``: this process is the one the parent started, so a parent pid other than the
    one named means the parent already died: exit at once. A process forked by that child
    (a Locust worker of ``--processes``; the signal setting is cleared by ``fork``) calls it
    with ``direct=False`` and is tied to the process that forked it. Elsewhere (no parent
    named, not Linux) does nothing. True if armed.
    """
    expected = os.environ.get(PARENT_ENV)
    if not expected or not sys.platform.startswith("linux") or not _prctl_deathsig(sig):
        return False
    parent = os.getppid()
    if parent == 1 or (direct and parent != int(expected)):
        os._exit(1)  # the parent died before the signal was armed: nobody wants our load
    return True
