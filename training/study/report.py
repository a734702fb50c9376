"""``curate study report``: what a study's runs say about data scaling and weighting.

Writes ``STUDY/report/``:

- ``results.parquet`` / ``results.csv``: one row per finished run, its test (and val) scores;
- ``summary.parquet`` / ``summary.csv``: per (fraction, strategy), the mean and 95% Student-t
  interval over seeds of every score, and the paired difference from the baseline strategy
  (same seed = same slice and the same head initialisation, so the pairing removes both);
- ``fits.json``: per strategy and error (1 - PLCC, RMSE), the power-law fit
  L(x) = e_inf + b (x / x_ref)^(-c) with bootstrap intervals, the extrapolation check (fit
  on fractions up to ``extrapolate_from``, predict the larger ones) and the training-set
  size needed to reach the target error;
- ``scaling_<error>.png``: the measured means with intervals and the fitted curves;
- ``report.md`` and ``report.html`` (the same text, the plots inlined).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.errors import UserError
from training.study import pages
from training.study.config import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_EXTRAPOLATE_FROM,
    ERRORS,
    StudyConfig,
)
from training.study.grid import PlannedRun, load_study, run_folder
from training.study.scaling import (
    bootstrap_fit,
    data_to_reach,
    fit_power_law,
    mean_interval,
)

REPORT_DIR = "report"
SCORES = ("test_plcc", "test_spearman", "test_mae", "test_rmse", "test_ces", "error_plcc",
          "val_plcc")


@dataclass
class StudyReport:
    folder: Path
    results: pl.DataFrame
    summary: pl.DataFrame
    fits: dict[str, Any]
    missing: list[str]
    files: list[Path]
    findings: list[str]

    def headlines(self) -> list[str]:
        """The findings and each fit in a line, for a terminal."""
        lines = [f[2:] if f.startswith("- ") else f for f in self.findings]
        for curve in self.fits["curves"]:
            fit = curve["fit"]
            state = (f"e_inf {fit['e_inf']:.3f}, exponent c {fit['c']:.3f}"
                     if fit["status"] == "ok" else f"fit failed: {fit['reason']}")
            lines.append(f"fit {curve['strategy']} {curve['error']}: {state}")
        return lines


def collect_results(folder: Path, runs: list[PlannedRun]) -> tuple[pl.DataFrame, list[str]]:
    """One row per finished run; the names of the unfinished ones."""
    rows, missing = [], []
    for run in runs:
        run_dir = run_folder(folder, run)
        if not run_dir.is_complete():
            missing.append(run.name)
            continue
        metrics, manifest = run_dir.read_metrics(), run_dir.read_manifest()
        test, val = metrics["test"], metrics["val"]
        rows.append({
            "run": run.name,
            "fraction": run.fraction,
            "strategy": run.strategy,
            "seed": run.seed,
            "train_items": manifest["counts"]["train_items"],
            "test_items": test["n"],
            "test_plcc": test["plcc"],
            "test_plcc_plus": test["plcc_plus"],
            "test_spearman": test["spearman"],
            "test_mae": test["mae"],
            "test_rmse": test["rmse"],
            "test_ces": test["ces"],
            "error_plcc": None if test["plcc"] is None else 1.0 - test["plcc"],
            "val_plcc": val["plcc"],
            "best_epoch": metrics["best_epoch"],
            "epochs_run": metrics["epochs_run"],
        })
    schema = {"run": pl.String, "fraction": pl.Float64, "strategy": pl.String, "seed": pl.Int64,
              "train_items": pl.Int64, "test_items": pl.Int64, "test_plcc": pl.Float64,
              "test_plcc_plus": pl.Float64, "test_spearman": pl.Float64, "test_mae": pl.Float64,
              "test_rmse": pl.Float64, "test_ces": pl.Float64, "error_plcc": pl.Float64,
              "val_plcc": pl.Float64, "best_epoch": pl.Int64, "epochs_run": pl.Int64}
    return pl.DataFrame(rows, schema=schema), missing


def summarise(results: pl.DataFrame, baseline: str) -> pl.DataFrame:
    """Mean and 95% interval per (fraction, strategy), and the paired difference in test PLCC
    and RMSE from the baseline."""
    base = results.filter(pl.col("strategy") == baseline).select(
        "fraction", "seed", pl.col("test_plcc").alias("_base_plcc"),
        pl.col("test_rmse").alias("_base_rmse"))
    paired = results.join(base, on=["fraction", "seed"], how="left").with_columns(
        (pl.col("test_plcc") - pl.col("_base_plcc")).alias("plcc_vs_baseline"),
        (pl.col("test_rmse") - pl.col("_base_rmse")).alias("rmse_vs_baseline"),
    )
    rows = []
    for (fraction, strategy), group in sorted(
        paired.group_by("fraction", "strategy"), key=lambda kg: (kg[0][0], str(kg[0][1]))
    ):
        row: dict[str, Any] = {"fraction": fraction, "strategy": strategy,
                               "runs": group.height,
                               "train_items": float(group["train_items"].mean())}
        for column in (*SCORES, "plcc_vs_baseline", "rmse_vs_baseline"):
            values = group[column].drop_nulls().to_numpy()
            mean, low, high = mean_interval(values) if len(values) else (None, None, None)
            row[f"{column}_mean"], row[f"{column}_low"], row[f"{column}_high"] = mean, low, high
        rows.append(row)
    return pl.DataFrame(rows)


def fit_strategy_curves(
    results: pl.DataFrame,
    config: StudyConfig,
    strategy: str,
    error: str,
    target: float | None,
) -> dict[str, Any]:
    """The point fit on per-fraction means, bootstrap intervals, the extrapolation check and
    the data needed to reach ``target``."""
    settings = config.report
    rows = results.filter((pl.col("strategy") == strategy) & pl.col(error).is_not_null())
    draws = int(settings.get("bootstrap", DEFAULT_BOOTSTRAP))
    cut = float(settings.get("extrapolate_from", DEFAULT_EXTRAPOLATE_FROM))
    means = rows.group_by("fraction").agg(pl.col("train_items").mean(), pl.col(error).mean(),
                                          pl.col(error).len().alias("runs")).sort("fraction")
    x, y = means["train_items"].to_numpy(), means[error].to_numpy()
    point = fit_power_law(x, y)
    out: dict[str, Any] = {"strategy": strategy, "error": ERRORS[error],
                           "points": {"train_items": x.tolist(), "mean": y.tolist()},
                           "fit": point.as_dict()}
    grid = np.geomspace(max(1.0, x.min() * 0.8), x.max() * 1.25, 60) if len(x) else np.array([])
    if point.ok:
        boot = bootstrap_fit(rows["train_items"].to_numpy(), rows[error].to_numpy(), point,
                             draws=draws, target=target, curve_x=grid)
        out["bootstrap"] = {"draws": boot.draws, "failed": boot.failed,
                            "intervals": boot.intervals}
        out["curve"] = {"train_items": grid.tolist(), "fit": point.predict(grid).tolist(),
                        "low": boot.curve_low, "high": boot.curve_high}
    if target is not None:
        reach = data_to_reach(point, target)
        out["target"] = {"error": target, "train_items": reach}
    early = means.filter(pl.col("fraction") <= cut + 1e-12)
    later = means.filter(pl.col("fraction") > cut + 1e-12)
    early_fit = fit_power_law(early["train_items"].to_numpy(), early[error].to_numpy())
    check: dict[str, Any] = {"fit_on_fractions_up_to": cut, "fit": early_fit.as_dict(),
                             "predictions": []}
    if early_fit.ok:
        for fraction, items, measured in later.select("fraction", "train_items", error).rows():
            predicted = float(early_fit.predict(items))
            check["predictions"].append({
                "fraction": fraction, "train_items": items, "measured": measured,
                "predicted": predicted, "miss": predicted - measured,
                "relative_miss": (predicted - measured) / measured,
            })
    out["extrapolation"] = check
    return out


def _targets(summary: pl.DataFrame, config: StudyConfig) -> dict[str, float | None]:
    """Target errors: given in the config, else the baseline's mean at the largest fraction
    (so: how much data does each strategy need to match the baseline at full size)."""
    base = summary.filter(pl.col("strategy") == config.baseline).sort("fraction")
    targets: dict[str, float | None] = {}
    given_plcc = config.report.get("target_plcc")
    given_rmse = config.report.get("target_rmse")
    last = base.tail(1)
    targets["error_plcc"] = (1 - float(given_plcc)) if given_plcc is not None else (
        float(last["error_plcc_mean"][0]) if last.height and last["error_plcc_mean"][0]
        is not None else None)
    targets["test_rmse"] = float(given_rmse) if given_rmse is not None else (
        float(last["test_rmse_mean"][0]) if last.height and last["test_rmse_mean"][0]
        is not None else None)
    return targets


def build_report(folder: Path | str) -> StudyReport:
    folder = Path(folder)
    config, runs = load_study(folder)
    results, missing = collect_results(folder, runs)
    if results.height == 0:
        raise UserError(f"{folder}: no finished runs yet (curate study run first)")
    out = folder / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(results, config.baseline)
    targets = _targets(summary, config)
    fits: dict[str, Any] = {"targets": targets, "baseline": config.baseline, "curves": []}
    for strategy in config.strategies:
        for error in ERRORS:
            fits["curves"].append(
                fit_strategy_curves(results, config, strategy, error, targets[error]))
    files = []
    for name, frame in (("results", results), ("summary", summary)):
        files += pages.write_table(frame, out / name)
    files.append(pages.write_json(out / "fits.json", fits))
    plots = [pages.plot_curves(results, fits, error, out / f"scaling_{error}.png", config)
             for error in ERRORS]
    files += plots
    findings = pages.findings(config, summary)
    markdown = pages.markdown(config, results, summary, fits, missing, plots, findings)
    files.append(pages.write_text(out / "report.md", markdown))
    files.append(pages.write_text(out / "report.html", pages.html_page(markdown, plots)))
    return StudyReport(folder, results, summary, fits, missing, files, findings)
