"""The serving version of each target when the service last ran, kept across restarts.

A url target's capture opens when a version other than the last settled one answers
(``probes.serve.capture``). Without memory a restart would learn whatever answers first, so
a change made while the service was down (a rollback, a new deploy) would never be captured
and the old rollout's verdict would stay up. The service saves each target's settled version
in ``<runs_dir>/.serve-versions.json`` whenever one changes (atomically: temp file, fsync,
rename) and hands it to the policy at start (``capture.restore``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

#: In runs_dir; the leading dot keeps it out of the run ids (``index.RUN_ID_RE``).
VERSIONS_FILE = ".serve-versions.json"


class ServedVersions:
    """The file of settled versions, and what was last written to it."""

    def __init__(self, runs_dir: Path) -> None:
        self.path = Path(runs_dir) / VERSIONS_FILE
        self.saved: dict[str, str] = {}

    def load(self) -> dict[str, str]:
        """Blocking: ``{target: version}`` as last saved; empty when missing or unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s unreadable (%s): serving versions learnt afresh", self.path, exc)
            return {}
        versions = data.get("versions") if isinstance(data, dict) else None
        if not isinstance(versions, dict):
            return {}
        self.saved = {str(k): v for k, v in versions.items() if isinstance(v, str) and v}
        return dict(self.saved)

    def changed(self, current: Mapping[str, str | None]) -> dict[str, str] | None:
        """What to save when ``current`` (None: not known) differs from the file, else None.
        Targets no longer known keep their last value (a restart with a target removed)."""
        merged = {**self.saved, **{k: v for k, v in current.items() if v}}
        return merged if merged != self.saved else None

    def save(self, versions: Mapping[str, str]) -> None:
        """Blocking: write ``versions`` atomically; a failure is logged, tried at the next
        change (the capture policy does not depend on it while running)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump({"versions": dict(versions)}, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot save the serving versions to %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self.saved = dict(versions)
