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

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from training.scaling import (
    GRID_STARTS,
    bootstrap_fit,
    data_to_reach,
    fit_power_law,
    mean_interval,
)
from training.study import PlannedRun, StudyConfig, is_complete, load_study, run_folder

REPORT_DIR = "report"
# The errors that are fitted: column of the results table -> how the report names it.
ERRORS = {"error_plcc": "1 - PLCC", "test_rmse": "RMSE"}
SCORES = ("test_plcc", "test_spearman", "test_mae", "test_rmse", "test_ces", "error_plcc",
          "val_plcc")
DEFAULT_BOOTSTRAP = 1000
DEFAULT_EXTRAPOLATE_FROM = 0.4


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
        path = run_folder(folder, run)
        if not is_complete(path):
            missing.append(run.name)
            continue
        metrics = json.loads((path / "metrics.json").read_text())
        manifest = json.loads((path / "manifest.json").read_text())
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
        raise ValueError(f"{folder}: no finished runs yet (curate study run first)")
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
        files += _write_table(frame, out / name)
    files.append(_write_json(out / "fits.json", fits))
    plots = [_plot(results, fits, error, out / f"scaling_{error}.png", config) for error in ERRORS]
    files += plots
    findings = _findings(config, summary)
    markdown = _markdown(config, results, summary, fits, missing, plots, findings)
    files.append(_write_text(out / "report.md", markdown))
    files.append(_write_text(out / "report.html", _html(markdown, plots)))
    return StudyReport(folder, results, summary, fits, missing, files, findings)


# --- writers --------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def _write_json(path: Path, payload: Any) -> Path:
    def clean(value: Any) -> Any:  # JSON has no inf or NaN
        if isinstance(value, float) and not math.isfinite(value):
            return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return _write_text(path, json.dumps(clean(payload), indent=2) + "\n")


def _write_table(frame: pl.DataFrame, stem: Path) -> list[Path]:
    paths = []
    for suffix in (".parquet", ".csv"):
        path = stem.with_suffix(suffix)
        tmp = path.with_name(path.name + ".tmp")
        if suffix == ".parquet":
            frame.write_parquet(tmp)
        else:
            frame.write_csv(tmp)
        tmp.replace(path)
        paths.append(path)
    return paths


def _plot(results: pl.DataFrame, fits: dict[str, Any], error: str, path: Path,
          config: StudyConfig) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, strategy in enumerate(config.strategies):
        colour = colours[i % len(colours)]
        rows = results.filter((pl.col("strategy") == strategy) & pl.col(error).is_not_null())
        per = rows.group_by("fraction").agg(pl.col("train_items").mean(),
                                            pl.col(error)).sort("fraction")
        xs, means, lows, highs = [], [], [], []
        for items, values in per.select("train_items", error).rows():
            mean, low, high = mean_interval(values)
            xs.append(items)
            means.append(mean)
            lows.append(mean - low)
            highs.append(high - mean)
        dodge = 1 + 0.04 * (i - (len(config.strategies) - 1) / 2)  # bars side by side
        ax.errorbar([x * dodge for x in xs], means, yerr=[lows, highs], fmt="o", color=colour,
                    capsize=3,
                    label=f"{strategy} (mean, 95% CI over seeds)")
        curve = next(c for c in fits["curves"]
                     if c["strategy"] == strategy and c["error"] == ERRORS[error])
        if "curve" in curve:
            fit = curve["fit"]
            ax.plot(curve["curve"]["train_items"], curve["curve"]["fit"], color=colour,
                    label=f"{strategy} fit: {fit['e_inf']:.3f} + b x^-{fit['c']:.2f}")
            if curve["curve"]["low"]:
                ax.fill_between(curve["curve"]["train_items"], curve["curve"]["low"],
                                curve["curve"]["high"], color=colour, alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter

    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
    ax.set_xlabel("training items")
    ax.set_ylabel(f"test {ERRORS[error]}")
    ax.set_title(f"{config.name}: test {ERRORS[error]} against training-set size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "never (floor above target)"
    return f"{value:.{digits}f}"


def _interval(row: dict[str, Any], column: str, digits: int = 3) -> str:
    mean, low, high = row[f"{column}_mean"], row[f"{column}_low"], row[f"{column}_high"]
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _verdict(row: dict[str, Any]) -> str:
    low, high = row["plcc_vs_baseline_low"], row["plcc_vs_baseline_high"]
    if low is None:
        return ""
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no clear difference"


def _markdown(config: StudyConfig, results: pl.DataFrame, summary: pl.DataFrame,
              fits: dict[str, Any], missing: list[str], plots: list[Path],
              findings: list[str]) -> str:
    lines = [f"# Study `{config.name}`: data scaling and sample weighting", ""]
    trainer = ", ".join(f"{k}={v}" for k, v in sorted(config.trainer.items()))
    lines += [
        f"- catalog: `{config.catalog}`, profile `{config.profile}`",
        f"- fractions: {', '.join(f'{f:g}' for f in sorted(config.fractions))}; strategies: "
        f"{', '.join(f'`{s}`' for s in config.strategies)} (baseline `{config.baseline}`); "
        f"seeds: {', '.join(map(str, config.seeds))}",
        f"- trainer: {trainer}",
        f"- runs: {results.height} finished"
        + (f", {len(missing)} not finished ({', '.join(missing[:5])}"
           f"{', ...' if len(missing) > 5 else ''})" if missing else ""),
        "- intervals: 95% Student-t over seeds; differences are paired by seed (same slice, "
        "same head initialisation).",
        "",
        "## Test scores per fraction and strategy",
        "",
        "| fraction | strategy | train items | test PLCC | test RMSE | test CES | "
        f"PLCC - `{config.baseline}` | |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in summary.sort("fraction", "strategy").iter_rows(named=True):
        is_base = row["strategy"] == config.baseline
        lines.append(
            f"| {row['fraction']:g} | `{row['strategy']}` | {row['train_items']:,.0f} | "
            f"{_interval(row, 'test_plcc')} | {_interval(row, 'test_rmse')} | "
            f"{_interval(row, 'test_ces')} | "
            f"{'' if is_base else _interval(row, 'plcc_vs_baseline')} | "
            f"{'' if is_base else _verdict(row)} |"
        )
    lines += ["", "## Findings", ""]
    lines += findings
    lines += ["", "## Scaling fits: L(x) = e_inf + b (x / x_ref)^(-c)", "",
              "Fitted in log space on the per-fraction means from "
              f"{GRID_STARTS} starts; intervals from "
              f"{config.report.get('bootstrap', DEFAULT_BOOTSTRAP)} bootstrap draws of the seeds "
              "within each fraction. A fit that did not converge is reported as failed.", "",
              "| strategy | error | status | e_inf | c | b (at x_ref) | log RMSE | "
              "data to reach target |",
              "|---|---|---|---|---|---|---:|---|"]
    for curve in fits["curves"]:
        fit = curve["fit"]
        ci = curve.get("bootstrap", {}).get("intervals", {})
        if fit["status"] != "ok":
            lines.append(f"| `{curve['strategy']}` | {curve['error']} | failed: "
                         f"{fit['reason']} | | | | | |")
            continue
        reach = curve.get("target", {}).get("train_items")
        reach_ci = ci.get("data_to_reach")
        lines.append(
            f"| `{curve['strategy']}` | {curve['error']} | ok | {_fmt(fit['e_inf'])} "
            f"{_ci(ci.get('e_inf'))} | {_fmt(fit['c'])} {_ci(ci.get('c'))} | "
            f"{_fmt(fit['b'])} {_ci(ci.get('b'))} | {_fmt(fit['log_rmse'], 4)} | "
            f"{_items(reach)} {_ci(reach_ci, items=True)} |"
        )
    targets = fits["targets"]
    lines += ["", "Targets: 1 - PLCC = " + _fmt(targets.get("error_plcc")) + ", RMSE = "
              + _fmt(targets.get("test_rmse")) + (
                  f" (the baseline `{config.baseline}` at its largest fraction, unless set in "
                  "[report])"), ""]
    lines += ["## Extrapolation check", "",
              "Each curve fitted on the fractions up to "
              f"{config.report.get('extrapolate_from', DEFAULT_EXTRAPOLATE_FROM):g} only, then "
              "asked for the larger ones:", "",
              "| strategy | error | fraction | measured | predicted | miss |",
              "|---|---|---:|---:|---:|---:|"]
    for curve in fits["curves"]:
        check = curve["extrapolation"]
        if check["fit"]["status"] != "ok":
            lines.append(f"| `{curve['strategy']}` | {curve['error']} | | | | fit failed: "
                         f"{check['fit']['reason']} |")
            continue
        for p in check["predictions"]:
            lines.append(
                f"| `{curve['strategy']}` | {curve['error']} | {p['fraction']:g} | "
                f"{p['measured']:.3f} | {p['predicted']:.3f} | {p['miss']:+.3f} "
                f"({p['relative_miss']:+.1%}) |")
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "Tables: `results.csv` (one row per run), `summary.csv`, `fits.json`.", ""]
    return "\n".join(lines)


def _ci(pair: Any, items: bool = False) -> str:
    if not pair:
        return ""
    low, high = pair
    if items:
        return f"[{_items(low)}, {_items(high)}]"
    return f"[{low:.3f}, {high:.3f}]"


def _items(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    return f"{value:,.0f}"


def _findings(config: StudyConfig, summary: pl.DataFrame) -> list[str]:
    """Plain sentences: does error fall with data, and does each strategy beat the baseline
    at the small fractions?"""
    lines = []
    fractions = sorted(summary["fraction"].unique().to_list())
    if len(fractions) >= 2:
        for strategy in config.strategies:
            rows = summary.filter(pl.col("strategy") == strategy).sort("fraction")
            first, last = rows.head(1).row(0, named=True), rows.tail(1).row(0, named=True)
            if first["error_plcc_mean"] is None or last["error_plcc_mean"] is None:
                continue
            falls = last["error_plcc_mean"] < first["error_plcc_mean"]
            lines.append(
                f"- `{strategy}`: test 1 - PLCC {'falls' if falls else 'does not fall'} from "
                f"{first['error_plcc_mean']:.3f} at {first['fraction']:g} "
                f"({first['train_items']:,.0f} items) to {last['error_plcc_mean']:.3f} at "
                f"{last['fraction']:g} ({last['train_items']:,.0f} items); RMSE from "
                f"{first['test_rmse_mean']:.3f} to {last['test_rmse_mean']:.3f}.")
    small = [f for f in fractions if f <= 0.1] or fractions[:1]
    for strategy in config.strategies:
        if strategy == config.baseline:
            continue
        rows = summary.filter((pl.col("strategy") == strategy) & pl.col("fraction").is_in(small))
        verdicts = [f"{r['fraction']:g}: {r['plcc_vs_baseline_mean']:+.3f} "
                    f"[{r['plcc_vs_baseline_low']:+.3f}, {r['plcc_vs_baseline_high']:+.3f}] "
                    f"({_verdict(r)})"
                    for r in rows.sort("fraction").iter_rows(named=True)
                    if r["plcc_vs_baseline_mean"] is not None]
        if verdicts:
            lines.append(f"- `{strategy}` against `{config.baseline}` at the small fractions, "
                         f"paired difference in test PLCC: {'; '.join(verdicts)}.")
    return lines or ["- not enough finished runs for findings yet."]


def _html(markdown: str, plots: list[Path]) -> str:
    """The Markdown as a standalone page: tables and headings converted, plots inlined."""
    body: list[str] = []
    table: list[list[str]] = []

    def flush_table() -> None:
        if not table:
            return
        head, *rest = table
        body.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head)
                    + "</tr></thead><tbody>")
        for row in rest:
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
        body.append("</tbody></table>")
        table.clear()

    images = {p.name: base64.b64encode(p.read_bytes()).decode() for p in plots}
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [_inline(c.strip()) for c in line.strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                table.append(cells)
            continue
        flush_table()
        if line.startswith("# "):
            body.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("- "):
            body.append(f"<p>&bull; {_inline(line[2:])}</p>")
        elif line.startswith("![") and "](" in line:
            name = line[line.index("](") + 2 : -1]
            if name in images:
                body.append(f'<p><img alt="{html.escape(name)}" '
                            f'src="data:image/png;base64,{images[name]}"></p>')
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    flush_table()
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
             "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;"
             "font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th{background:#f3f3f3}code{background:#f3f3f3;padding:0 3px}img{max-width:100%}")
    return ("<!doctype html>\n<html><head><meta charset='utf-8'><title>Curate study report"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def _inline(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
