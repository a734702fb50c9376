"""``curate study report``: what a study's runs say about data scaling and weighting.

Writes ``STUDY/report/``:

- ``results.parquet`` / ``results.csv``: one row per finished run, its test (and val) scores;
- ``summary.parquet`` / ``summary.csv``: per (fraction, strategy), test PLCC and RMSE with
  their intervals, and the paired difference from the baseline strategy, with its decision;
- ``pairs.parquet`` / ``pairs.csv``: every pair of strategies at every fraction: the paired
  difference in test PLCC (and RMSE), its interval, p-value, Holm-adjusted p-value and the
  decision; ``tiers.json``: the strategies that cannot be told apart, grouped, per fraction.
  What an interval covers is set by the design (``training.study.compare``) and said in the
  report's header, with what actually ran (encoders, pretrained or not, images read);
- ``fits.json``: per strategy and error (1 - PLCC, RMSE), the power-law fit
  L(x) = e_inf + b (x / x_ref)^(-c) with bootstrap intervals, the extrapolation check (fit
  on fractions up to ``extrapolate_from``, predict the larger ones) and the training-set
  size needed to reach the target error;
- ``scaling_<error>.png``: the measured means with intervals and the fitted curves;
- ``report.md`` and ``report.html`` (the same text, the plots inlined).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.errors import UserError
from training.loss_registry import DEFAULT_LOSS
from training.study import pages
from training.study.compare import Comparison, compare
from training.study.config import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_EXTRAPOLATE_FROM,
    ERRORS,
    StudyConfig,
    arm_label,
    prune_arm,
)
from training.study.crossfit import read_curves, read_units
from training.study.grid import PlannedRun, load_study, run_folder
from training.study.scaling import (
    bootstrap_fit,
    data_to_reach,
    fit_power_law,
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
    comparison: Comparison | None = None

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
            "strategy": run.arm or run.strategy,
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


def collect_predictions(folder: Path, runs: list[PlannedRun]) -> pl.DataFrame:
    """Every finished run's predictions on its test items, keyed like cross-fitted ones."""
    frames = []
    for run in runs:
        run_dir = run_folder(folder, run)
        if not run_dir.is_complete():
            continue
        test = pl.read_parquet(run_dir.predictions).filter(pl.col("split") == "test")
        frames.append(test.select(
            pl.lit(0, pl.Int32).alias("repeat"), pl.lit(0, pl.Int32).alias("fold"),
            pl.lit(run.seed, pl.Int64).alias("seed"),
            pl.lit(run.fraction, pl.Float64).alias("fraction"),
            pl.lit(run.arm or run.strategy, pl.String).alias("strategy"), "parent_asin",
            pl.col("target").cast(pl.Float64), pl.col("prediction").cast(pl.Float64)))
    return pl.concat(frames)


def crossfit_results(predictions: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """One row per cross-fitted run (unit x seed x fraction x strategy), scored on its test
    items, in the columns of ``collect_results``."""
    from training.metrics import scores

    keys = ["repeat", "fold", "seed", "fraction", "strategy"]
    rows = []
    for key, group in predictions.group_by(keys, maintain_order=True):
        score = scores(group["prediction"].to_numpy(), group["target"].to_numpy())
        rows.append({**dict(zip(keys, key, strict=True)),
                     "test_plcc": score["plcc"], "test_spearman": score["spearman"],
                     "test_mae": score["mae"], "test_rmse": score["rmse"],
                     "error_plcc": None if score["plcc"] is None else 1.0 - score["plcc"]})
    scored = pl.DataFrame(rows).with_columns(pl.col("repeat").cast(pl.Int32),
                                             pl.col("fold").cast(pl.Int32))
    return runs.join(scored, on=keys).sort(keys)


def _fit_rows(results: pl.DataFrame, design: str) -> pl.DataFrame:
    """The rows a scaling fit bootstraps within each fraction: runs (holdout), or folds with
    their seeds averaged (kfold: seeds within a fold share its test items)."""
    if design != "kfold":
        return results
    # sorted: group_by's order varies from call to call, and the bootstrap draws rows by place
    return results.group_by("fraction", "strategy", "repeat", "fold").agg(
        pl.col("train_items").mean(), pl.col("error_plcc").mean(), pl.col("test_rmse").mean()
    ).sort("fraction", "strategy", "repeat", "fold")


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


def build_report(folder: Path | str, *, baseline: str | None = None) -> StudyReport:
    """The report of a study folder; ``baseline`` overrides the config's for this report."""
    folder = Path(folder)
    config, runs, ran = load_study(folder)
    if baseline is not None:
        if baseline not in config.strategies and baseline not in config.arms:
            raise UserError(f"--baseline {baseline!r} is not one of the study's strategies: "
                            f"{', '.join(config.arms)}")
        config = replace(config, report={**config.report, "baseline": baseline})
    partners = pruning_partners(config)
    # From here on the report compares arms: each strategy, or (strategy, loss) pairs when
    # the study has several losses; the pages see them as its strategies.
    config = replace(config, strategies=config.arms, losses=(DEFAULT_LOSS,),
                     report={**config.report, "baseline": config.baseline})
    if config.in_memory:
        predictions, run_table, missing = read_units(folder, config.design, config.folds,
                                                     config.repeats)
        if not run_table.height:
            raise UserError(f"{folder}: no finished runs yet (curate study run first)")
        results = crossfit_results(predictions, run_table)
    else:
        results, missing = collect_results(folder, runs)
        if results.height == 0:
            raise UserError(f"{folder}: no finished runs yet (curate study run first)")
        predictions = collect_predictions(folder, runs)
        run_table = results.select(pl.lit(0, pl.Int32).alias("repeat"),
                                   pl.lit(0, pl.Int32).alias("fold"), "seed", "fraction",
                                   "strategy", "train_items", "test_items")
    if missing and config.design == "holdout":
        # a paired comparison needs every strategy of a fraction on the same seeds (and so the
        # same test items): a partial study reports the fractions where that holds
        seeds = results.group_by("fraction", "strategy").agg(
            pl.col("seed").sort().cast(pl.String).str.join(",").alias("seeds"))
        keep = seeds.group_by("fraction").agg(pl.len(), pl.col("seeds").n_unique()).filter(
            (pl.col("len") == len(config.strategies)) & (pl.col("seeds") == 1))["fraction"]
        predictions = predictions.filter(pl.col("fraction").is_in(keep.implode()))
        run_table = run_table.filter(pl.col("fraction").is_in(keep.implode()))
    out = folder / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    comparison = compare(predictions, run_table, config.strategies, config.baseline,
                         config.design, config.level, folds=config.folds,
                         repeats=config.repeats)
    summary = comparison.summary
    targets = _targets(summary, config)
    fits: dict[str, Any] = {"targets": targets, "baseline": config.baseline, "curves": []}
    fit_rows = _fit_rows(results, config.design)
    if config.fits:
        for strategy in config.strategies:
            for error in ERRORS:
                fits["curves"].append(
                    fit_strategy_curves(fit_rows, config, strategy, error, targets[error]))
    files = []
    for name, frame in (("results", results), ("summary", summary),
                        ("pairs", comparison.pairs)):
        files += pages.write_table(frame, out / name)
    files.append(pages.write_json(out / "fits.json", fits))
    files.append(pages.write_json(out / "tiers.json", {
        "method": comparison.method, "level": config.level,
        "tiers": [{"fraction": f, "tiers": t} for f, t in comparison.tiers.items()]}))
    plots = [pages.plot_curves(summary, fits, error, out / f"scaling_{error}.png", config)
             for error in ERRORS]
    extra: list[str] = []
    curves = read_curves(folder, config.design, config.folds, config.repeats) \
        if config.in_memory else []
    if curves:
        files.append(pages.write_json(out / "learned_curves.json", curves))
        plot = pages.plot_learned(curves, out / "learned_weight.png", config)
        plots.append(plot)
        extra += pages.learned_lines(curves, plot)
    if partners:
        verdicts = pruning_verdicts(partners, fits, comparison)
        files.append(pages.write_json(out / "pruning.json", verdicts))
        shown = sorted({a for pair in partners.items() for a in pair}, key=config.arms.index)
        pruned = [pages.plot_curves(summary, fits, error, out / f"pruning_{error}.png",
                                    replace(config, strategies=tuple(shown),
                                            name=f"{config.name}, pruning against random"))
                  for error in ERRORS]
        plots += pruned
        extra += pages.pruning_lines(verdicts, pruned)
    files += plots
    findings = pages.findings(config, summary, comparison)
    markdown = pages.markdown(config, results, summary, fits, missing, plots, findings,
                              comparison, ran) + "\n".join(extra)
    files.append(pages.write_text(out / "report.md", markdown))
    files.append(pages.write_text(out / "report.html", pages.html_page(markdown, plots)))
    return StudyReport(folder, results, summary, fits, missing, files, findings, comparison)


def pruning_partners(config: StudyConfig) -> dict[str, str]:
    """Each pruning arm -> the random arm of the same weighting and loss it is set beside."""
    partners = {}
    for label, (spec, loss) in config.arm_parts().items():
        arm = prune_arm(spec)
        if arm is not None:
            partners[label] = arm_label(arm.weight, loss, config.losses)
    return partners


def pruning_verdicts(partners: dict[str, str], fits: dict[str, Any],
                     comparison: Comparison) -> list[dict[str, Any]]:
    """Per pruning arm: the fitted exponents of 1 - PLCC (pruned, random) with their
    intervals, the paired PLCC differences per fraction, and whether pruning bends the curve
    (exponent intervals apart), shifts it (a difference decided, exponents not apart) or
    neither is clear."""
    def exponent(arm: str) -> tuple[str, tuple[float, float] | None]:
        """The exponent as shown, and its interval when it can decide a bend: an interval
        that leaves out its own point fit (the bootstrap's draws fitted another floor) is
        shown but decides nothing."""
        found = [c for c in fits["curves"] if c["strategy"] == arm
                 and c["error"] == ERRORS["error_plcc"]]
        if not found:
            return "no fit (fits = false)", None
        fit, ci = found[0]["fit"], found[0].get("bootstrap", {}).get("intervals", {}).get("c")
        if fit["status"] != "ok":
            return f"fit failed: {fit['reason']}", None
        if not ci:
            return f"{fit['c']:.3f}", None
        shown = f"{fit['c']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        if not ci[0] <= fit["c"] <= ci[1]:
            return shown + " (interval leaves out the point fit)", None
        return shown, ci

    verdicts = []
    for arm, random in partners.items():
        (c_arm, ci_arm), (c_random, ci_random) = exponent(arm), exponent(random)
        pairs = comparison.pairs.filter(
            ((pl.col("a") == arm) & (pl.col("b") == random))
            | ((pl.col("a") == random) & (pl.col("b") == arm))).sort("fraction")
        differences, better, worse = [], 0, 0
        for row in pairs.iter_rows(named=True):
            sign = 1.0 if row["a"] == arm else -1.0
            low, high = sorted((sign * row["plcc_diff_low"], sign * row["plcc_diff_high"]))
            decided = {"a better": sign, "b better": -sign}.get(row["decision"], 0.0)
            better, worse = better + (decided > 0), worse + (decided < 0)
            differences.append(f"{row['fraction']:g}: {sign * row['plcc_diff_mean']:+.3f} "
                               f"[{low:+.3f}, {high:+.3f}]")
        bends = bool(ci_arm and ci_random and (ci_arm[0] > ci_random[1]
                                               or ci_random[0] > ci_arm[1]))
        undecided = ci_arm is None or ci_random is None
        if bends:
            verdict = "bends the curve (exponents apart)"
        elif undecided and (better or worse):
            verdict = (f"better at {better}, worse at {worse} of {pairs.height} fractions "
                       "(Holm); whether it bends cannot be told (an exponent has no usable "
                       "interval)")
        elif undecided:
            verdict = "no difference is clear; whether it bends cannot be told (an exponent " \
                      "has no usable interval)"
        elif better or worse:
            verdict = (f"shifts the curve: better at {better}, worse at {worse} of "
                       f"{pairs.height} fractions (Holm); exponents not told apart")
        else:
            verdict = "neither a bend nor a shift is clear"
        verdicts.append({"arm": arm, "random": random, "c_arm": c_arm, "c_random": c_random,
                         "differences": "; ".join(differences), "better_at": better,
                         "worse_at": worse, "bends": bends, "verdict": verdict})
    return verdicts
