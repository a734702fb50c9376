"""``curate study``: template, run, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import command, workers_or_default
from training.study import config as study_config

study_app = typer.Typer(
    help="Data-scaling and weighting studies: a grid of (fraction x strategy x seed) runs, "
    "on a holdout split or k-fold cross-fitted, then intervals, all-pairs comparisons, "
    "curves, fits and a report.",
    no_args_is_help=True,
)



@command(study_app, "template")
def study_template(
    out: Annotated[Path | None, typer.Argument(help="File to write (default: print).")] = None,
) -> None:
    """Print (or write) a commented study config to start from."""
    if out is None:
        typer.echo(study_config.study_template(), nl=False)
        return
    if out.exists():
        typer.echo(f"error: {out} exists; not overwriting it", err=True)
        raise typer.Exit(2)
    out.write_text(study_config.study_template())
    typer.echo(f"wrote {out}")


@command(study_app, "run")
def study_run(
    config: Annotated[Path, typer.Argument(help="Study config (TOML; curate study template).")],
    out: Annotated[
        Path | None, typer.Option(help="Study folder (default: the config's out, or "
                                  "studies/<name> beside the config).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader worker processes (decode, tokenise).")
    ] = None,
    report: Annotated[
        bool, typer.Option(help="Write the report when the runs are done.")
    ] = True,
) -> None:
    """Run every (fraction, strategy, seed) of a study: builds the missing slices and weights,
    skips finished runs and resumes an interrupted one, so a stopped study picks up where it
    stopped. Writes STUDY/runs/<run>/ (see curate train) and, unless --no-report,
    STUDY/report/."""
    from training.study.grid import run_study

    result = run_study(config, out=out, workers=workers_or_default(workers),
                       log=lambda line: typer.echo(line, err=True))
    typer.echo(f"{result.trained} runs trained, {result.skipped} already complete, in "
               f"{result.seconds:.0f} s: {result.folder}")
    if report:
        _write_study_report(result.folder)


@command(study_app, "report")
def study_report(
    study_dir: Annotated[Path, typer.Argument(help="A study folder (curate study run).")],
    baseline: Annotated[
        str | None, typer.Option(help="Strategy the others are compared with in the tables "
                                 "and findings (default: the config's [report] baseline). "
                                 "Every pair is compared either way.")
    ] = None,
) -> None:
    """Results table, means and intervals (what they cover depends on the design, and the
    report says it), every pair of strategies compared with Holm-corrected decisions and
    tiers, power-law fits with bootstrap intervals, the extrapolation check, plots,
    report.md and report.html in STUDY/report/."""
    _write_study_report(study_dir, baseline)


def _write_study_report(folder: Path, baseline: str | None = None) -> None:
    from training.study.report import build_report

    report = build_report(folder, baseline=baseline)
    for line in report.headlines():
        typer.echo(line)
    if report.missing:
        typer.echo(f"note: {len(report.missing)} runs are not finished; the report leaves "
                   "them out")
    typer.echo(f"report: {folder / 'report' / 'report.md'} (and report.html, results.csv, "
               "fits.json, scaling_*.png)")

