"""The study report's pages: tables and JSON on disk, the scaling plots, Markdown and HTML.

``training.study.report`` decides what the runs say; this module only renders it.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from curation.manifest import atomic_file
from training.study.config import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_EXTRAPOLATE_FROM,
    ERRORS,
    StudyConfig,
)
from training.study.scaling import GRID_STARTS, mean_interval


def write_text(path: Path, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return path


def write_json(path: Path, payload: Any) -> Path:
    def clean(value: Any) -> Any:  # JSON has no inf or NaN
        if isinstance(value, float) and not math.isfinite(value):
            return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return write_text(path, json.dumps(clean(payload), indent=2) + "\n")


def write_table(frame: pl.DataFrame, stem: Path) -> list[Path]:
    paths = []
    for suffix in (".parquet", ".csv"):
        path = stem.with_suffix(suffix)
        with atomic_file(path) as tmp:
            if suffix == ".parquet":
                frame.write_parquet(tmp)
            else:
                frame.write_csv(tmp)
        paths.append(path)
    return paths


def plot_curves(results: pl.DataFrame, fits: dict[str, Any], error: str, path: Path,
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
    with atomic_file(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
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


def markdown(config: StudyConfig, results: pl.DataFrame, summary: pl.DataFrame,
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


def findings(config: StudyConfig, summary: pl.DataFrame) -> list[str]:
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


def html_page(markdown: str, plots: list[Path]) -> str:
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
