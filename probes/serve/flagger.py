"""Flagger canaries tied to captures by their checksum (CONTRACT: the service's door).

Flagger names a canary's revision by ``checksum`` in every webhook body. An ``event`` with
phase ``Progressing`` ties that checksum to the target's capture (opening one if none is
open); ``gate`` and ``rollback`` judge the capture tied to the request's checksum, else the
open capture. So a capture that closed with ``fail`` while Flagger's analysis still runs
answers ``rollback`` 200 (before issue 21: 403 "no rollout is being captured"), and a later
rollout's capture is never judged for an earlier revision.
"""

from __future__ import annotations

from collections import OrderedDict

#: Checksums remembered per target (the newest): more than any canary analysis keeps open.
KEEP = 32


class CanaryTies:
    """``(target, checksum) -> run id`` of the capture that revision's rollout is in."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._ties: dict[str, OrderedDict[str, str]] = {}

    def tie(self, target: str, checksum: str, run_id: str) -> None:
        ties = self._ties.setdefault(target, OrderedDict())
        ties[checksum] = run_id
        ties.move_to_end(checksum)
        while len(ties) > self.keep:
            ties.popitem(last=False)

    def run_id(self, target: str, checksum: str | None) -> str | None:
        """The capture tied to ``checksum`` on ``target``; None when not tied (or no checksum)."""
        if not checksum:
            return None
        ties = self._ties.get(target)
        return ties.get(checksum) if ties is not None else None
