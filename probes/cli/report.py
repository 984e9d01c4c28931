"""``probes report RUN_DIR``: re-make summary.json, figures, report.html and report.md."""

from __future__ import annotations

from pathlib import Path

import click

from probes.cli.options import option
from probes.cli.output import show_outcome
from probes.recording import Outcome
from probes.recording.finish import outcome_of_report
from probes.settings import Place

#: ``make_report``'s settings as this verb's flags.
REPORT_FLAGS = Place(aliases=(("bucket_s", "--bucket"),))


@click.command(short_help="(Re)make the report of a run directory.")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@option(
    "--slo",
    "slos",
    multiple=True,
    metavar="EXPR",
    help="Verdict check, repeatable: error_rate<0.01, p99_ms<500, "
    "candidate.p99_ms<1.2*baseline.p99_ms, streamed answers ttft_p99_ms<800. "
    "Replaces the run's own checks.",
)
@option(
    "--bucket",
    "bucket_s",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Time bucket of the traffic split (default: the run's, else 1 s).",
)
@option("--no-figures", is_flag=True, help="Skip the PNG figures (faster).")
def command(
    run_dir: Path, slos: tuple[str, ...], bucket_s: float | None, no_figures: bool
) -> Outcome:
    """Re-make summary.json, figures/, report.html and report.md from RUN_DIR alone.

    Prints the path of report.html and the verdict line. Exit 0 pass (or inconclusive),
    1 verdict fail, 2 RUN_DIR missing or not a run, 3 no request reached the target.
    """
    from reports.arrays import lean_allocation

    lean_allocation()  # this process reads one run and exits
    outcome = outcome_of_report(
        run_dir, slos=slos or None, bucket_s=bucket_s, figures=not no_figures, place=REPORT_FLAGS
    )
    show_outcome(outcome)
    return outcome
