"""One service per ``runs_dir``: an exclusive lock held while the process lives.

Two services writing one runs_dir would each take the other's live segments for crashed
runs (``_recover``) and collide on run ids. ``RunsDirLock.acquire`` takes ``flock(LOCK_EX |
LOCK_NB)`` on ``<runs_dir>/.probes-serve.lock``; a second service (another process, or a
second ``Service`` in this one: ``flock`` belongs to the open file, not the process) gets a
``ConfigError`` naming ``serve.runs_dir`` and the holder's pid, so ``probes serve`` exits 2.
The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a
stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from probes.errors import ConfigError

LOCK_FILE = ".probes-serve.lock"


class RunsDirLock:
    """The lock on one runs_dir; ``release`` (or process exit) frees it."""

    def __init__(self, runs_dir: Path) -> None:
        self.path = Path(runs_dir) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now, or raise ConfigError (``serve.runs_dir``) when another
        service holds it or the file cannot be made."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"serve.runs_dir: cannot make the lock file {self.path}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise ConfigError(
                f"serve.runs_dir: {self.path.parent} is in use by another probes serve{who};"
                " one service per runs_dir: stop it or give this one another runs_dir"
            ) from None
        with contextlib.suppress(OSError):  # the pid is for people; the lock is the flock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Free the lock (idempotent). The file stays: removing it would race a new holder."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
