"""Analysis and presentation of a run directory: summary.json, figures, report.html/.md.

Public surface:

- ``make_report(run_dir, *, slos=None, bucket_s=None, figures=True) -> dict`` — (re)make
  everything from the run directory alone and return the summary;
- ``build_summary(frame, events, manifest, *, slos, bucket_s) -> dict`` — the summary of
  in-memory records, pure;
- ``parse_slo(expr)`` — a parsed SLO check (ValueError showing the expected form).

This package never opens a socket.
"""

from __future__ import annotations

from reports.analysis import build_summary
from reports.report import make_report
from reports.verdict import parse_slo

__all__ = ["build_summary", "make_report", "parse_slo"]
