"""The study report's pages: tables and JSON on disk, the scaling plots, Markdown and HTML.

``training.study.report`` decides what the runs say; this module only renders it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from curation.html_pages import data_uri, render_page
from curation.manifest import atomic_file
from training.study.compare import Comparison
from training.study.config import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_EXTRAPOLATE_FROM,
    ERRORS,
    StudyConfig,
)
from training.study.scaling import GRID_STARTS

if TYPE_CHECKING:  # markdown-it-py is imported when a page is rendered
    from markdown_it.token import Token


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


def plot_curves(summary: pl.DataFrame, fits: dict[str, Any], error: str, path: Path,
                config: StudyConfig) -> Path:
    """Per strategy, the test error's mean and interval (the report's, see
    training.study.compare) against training items, and the fitted curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, strategy in enumerate(config.strategies):
        colour = colours[i % len(colours)]
        rows = summary.filter((pl.col("strategy") == strategy)
                              & pl.col(f"{error}_mean").is_not_null()).sort("fraction")
        xs = rows["train_items"].to_list()
        means = rows[f"{error}_mean"].to_list()
        lows = [m - (lo if lo is not None else m) for m, lo in
                zip(means, rows[f"{error}_low"].to_list(), strict=True)]
        highs = [(hi if hi is not None else m) - m for m, hi in
                 zip(means, rows[f"{error}_high"].to_list(), strict=True)]
        dodge = 1 + 0.04 * (i - (len(config.strategies) - 1) / 2)  # bars side by side
        ax.errorbar([x * dodge for x in xs], means, yerr=[lows, highs], fmt="o", color=colour,
                    capsize=3, label=f"{strategy} (mean, {config.level:.0%} interval)")
        matches = [c for c in fits["curves"]
                   if c["strategy"] == strategy and c["error"] == ERRORS[error]]
        if not matches:
            continue
        curve = matches[0]
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
    return _save_plot(fig, ax, path)


def _save_plot(fig: Any, ax: Any, path: Path) -> Path:
    """Grid, legend and layout as every plot of the report has them; written whole."""
    import matplotlib.pyplot as plt

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
    return row.get("vs_baseline") or ""


def _what_ran(config: StudyConfig, ran: dict[str, Any], results: pl.DataFrame,
              summary: pl.DataFrame, comparison: Comparison) -> list[str]:
    """The header: what actually ran, not only what was asked for."""
    lines = []
    encoders = ran.get("encoders") or {}
    if encoders:
        towers = [f"{tower}: {encoders[tower].get('label', encoders[tower].get('loaded'))}"
                  for tower in ("image", "text") if tower in encoders]
        lines.append(f"- encoders that ran: {'; '.join(towers)}")
        random = [t for t in ("image", "text") if t in encoders
                  and encoders[t].get("ran", True) and not encoders[t].get("pretrained", True)]
        if random:
            lines.append(f"- **not pretrained**: the {' and '.join(random)} encoder(s) ran with "
                         "random weights; their features carry no learned knowledge")
    if "items" in ran:
        lines.append(f"- items: {ran['items']:,}, of which {ran.get('items_with_image', 0):,} "
                     "had an image file that was read")
    for note in ran.get("notes", []):
        lines.append(f"- note: {note}")
    if config.design == "kfold":
        sizes = sorted({int(v) for v in results["test_items"].to_list()})
        lines.append(f"- design: k-fold cross-fitting, {config.folds} folds x {config.repeats} "
                     f"repeat(s), every item a test item once per repeat (test folds of "
                     f"{sizes[0]:,} to {sizes[-1]:,} items); seeds {_seeds(config)} draw the "
                     f"slices within each fold's training part")
    else:
        size = int(results["test_items"].max())
        lines.append(f"- design: holdout, one fixed test split of {size:,} items; seeds "
                     f"{_seeds(config)} draw the slices and initialise the head")
    lines.append(f"- head: {config.head}" + (
        " (closed-form weighted ridge, penalty by weighted generalised cross-validation)"
        if config.head == "ridge" else " (the paper's MLP head, early stopping on val PLCC)"))
    lines.append(f"- intervals ({config.level:.0%}): {comparison.method}. "
                 + (_KFOLD_COVERS if config.design == "kfold" else _HOLDOUT_COVERS))
    lines.append(f"- decisions: every pair of strategies at every fraction, on test PLCC, "
                 f"Holm-corrected over the pairs of a fraction at {1 - config.level:.2f}; "
                 "strategies that cannot be told apart share a tier")
    return lines


_HOLDOUT_COVERS = ("They include the sampling of the test items and the training draws the "
                   "seeds make; at fraction 1 every seed trains on the same items, so there "
                   "they do not include drawing another training set.")
_KFOLD_COVERS = ("They include the test items' sampling and the training sets' variation "
                 "across folds, corrected for the folds' overlap.")


def _seeds(config: StudyConfig) -> str:
    return ", ".join(map(str, config.seeds))


def markdown(config: StudyConfig, results: pl.DataFrame, summary: pl.DataFrame,
             fits: dict[str, Any], missing: list[str], plots: list[Path],
             findings: list[str], comparison: Comparison,
             ran: dict[str, Any] | None = None) -> str:
    ran = ran or {}
    lines = [f"# Study `{config.name}`: data scaling and sample weighting", ""]
    trainer = ", ".join(f"{k}={v}" for k, v in sorted(config.trainer.items()))
    lines += [
        f"- catalog: `{config.catalog}`, profile `{config.profile}`",
        f"- fractions: {', '.join(f'{f:g}' for f in sorted(config.fractions))}; strategies: "
        f"{', '.join(f'`{s}`' for s in config.strategies)} (baseline `{config.baseline}`)",
        f"- trainer as configured: {trainer}",
        *_what_ran(config, ran, results, summary, comparison),
        f"- runs: {results.height} finished"
        + (f", {len(missing)} not finished ({', '.join(missing[:5])}"
           f"{', ...' if len(missing) > 5 else ''})" if missing else ""),
        "",
        "## Test scores per fraction and strategy",
        "",
        "| fraction | strategy | train items | test PLCC | test RMSE | "
        f"PLCC - `{config.baseline}` | |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for row in summary.sort("fraction", "strategy").iter_rows(named=True):
        is_base = row["strategy"] == config.baseline
        lines.append(
            f"| {row['fraction']:g} | `{row['strategy']}` | {row['train_items']:,.0f} | "
            f"{_interval(row, 'test_plcc')} | {_interval(row, 'test_rmse')} | "
            f"{'' if is_base else _interval(row, 'plcc_vs_baseline')} | "
            f"{'' if is_base else _verdict(row)} |"
        )
    lines += ["", "## Findings", ""]
    lines += findings
    lines += ["", "## Every pair of strategies", "",
              "Paired difference a - b in test PLCC, its interval, p-value and Holm-adjusted "
              "p-value over the pairs of the fraction.", "",
              "| fraction | a | b | PLCC a - b | p | p (Holm) | decision |",
              "|---:|---|---|---:|---:|---:|---|"]
    for row in comparison.pairs.sort("fraction", "a", "b").iter_rows(named=True):
        decision = {"a better": f"`{row['a']}` better", "b better": f"`{row['b']}` better",
                    }.get(row["decision"], "cannot tell")
        lines.append(f"| {row['fraction']:g} | `{row['a']}` | `{row['b']}` | "
                     f"{_interval(row, 'plcc_diff')} | {_p(row['p'])} | {_p(row['p_holm'])} | "
                     f"{decision} |")
    lines += ["", "Tiers (within a tier, no strategy is decided worse than the tier's best):",
              ""]
    for fraction, groups in comparison.tiers.items():
        shown = " > ".join("{" + ", ".join(f"`{s}`" for s in g) + "}" for g in groups)
        lines.append(f"- {fraction:g}: {shown}")
    if not config.fits:
        lines += ["", "Scaling fits: not asked for (fits = false in [report]).", ""]
    else:
        lines += _fit_lines(config, fits)
    lines += ["## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "Tables: `results.csv` (one row per run), `summary.csv`, `pairs.csv`, "
              "`tiers.json`, `fits.json`.", ""]
    return "\n".join(lines)


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _fit_lines(config: StudyConfig, fits: dict[str, Any]) -> list[str]:
    lines = ["", "## Scaling fits: L(x) = e_inf + b (x / x_ref)^(-c)", "",
             "Fitted in log space on the per-fraction means from "
             f"{GRID_STARTS} starts; intervals from "
             f"{config.report.get('bootstrap', DEFAULT_BOOTSTRAP)} bootstrap draws of the runs "
             "(k-fold: the folds) within each fraction. A fit that did not converge is "
             "reported as failed.", "",
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
    lines.append("")
    return lines


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


def findings(config: StudyConfig, summary: pl.DataFrame, comparison: Comparison) -> list[str]:
    """Plain sentences over every fraction: does error fall with data, how does each strategy
    fare against the baseline, and which strategies can be told apart."""
    lines = []
    fractions = sorted(summary["fraction"].unique().to_list())
    if len(fractions) >= 2:
        for strategy in config.strategies:
            rows = summary.filter(pl.col("strategy") == strategy).sort("fraction")
            if not rows.height:
                continue
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
    for strategy in config.strategies:
        if strategy == config.baseline:
            continue
        rows = summary.filter(pl.col("strategy") == strategy).sort("fraction")
        verdicts = [f"{r['fraction']:g}: {r['plcc_vs_baseline_mean']:+.3f} "
                    f"[{r['plcc_vs_baseline_low']:+.3f}, {r['plcc_vs_baseline_high']:+.3f}] "
                    f"({_verdict(r)})"
                    for r in rows.iter_rows(named=True)
                    if r["plcc_vs_baseline_mean"] is not None
                    and r["plcc_vs_baseline_low"] is not None]
        if verdicts:
            better = sum(r["vs_baseline"] == "better" for r in rows.iter_rows(named=True))
            worse = sum(r["vs_baseline"] == "worse" for r in rows.iter_rows(named=True))
            lines.append(f"- `{strategy}` against `{config.baseline}`, paired difference in "
                         f"test PLCC at every fraction: {'; '.join(verdicts)}. Better at "
                         f"{better}, worse at {worse} of {len(verdicts)} fractions (Holm).")
    for fraction, groups in comparison.tiers.items():
        if len(groups) > 1:
            shown = " > ".join("{" + ", ".join(f"`{s}`" for s in g) + "}" for g in groups)
            lines.append(f"- at {fraction:g}: {shown}.")
        elif len(groups[0]) > 1:
            lines.append(f"- at {fraction:g}: no strategy can be told apart from the others.")
    return lines or ["- not enough finished runs for findings yet."]


# The section whose table the scaling plots illustrate: the HTML page puts them beside it.
PLOTS_BESIDE = "Test scores per fraction and strategy"


def html_page(markdown: str, plots: list[Path]) -> str:
    """The Markdown as one page that works offline.

    markdown-it-py renders it (CommonMark and tables; raw HTML in the text is escaped), and the
    jinja2 template ``templates/report.html.j2`` lays it out, one section per heading: the
    plots beside the test-scores table (the section :data:`PLOTS_BESIDE`; where the Markdown has
    none, where they stand), every table sortable and its cells unwrapped, the CSS, the script
    and the plots inline (``curation.html_pages``). An image the Markdown names that is not one
    of ``plots`` stays a link to the file beside the page.
    """
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    parser.add_render_rule("table_open", lambda *_: '<div class="table-wrap"><table>\n')
    parser.add_render_rule("table_close", lambda *_: "</table>\n</div>\n")
    tokens = parser.parse(markdown)
    sections: list[_Section] = []
    i = 0
    while i < len(tokens):
        if tokens[i].type == "heading_open" and tokens[i].tag in ("h1", "h2"):
            sections.append(_Section(tokens[i : i + 3]))  # opening, text, closing
            i += 3
            continue
        if not sections:
            sections.append(_Section([]))
        sections[-1].body.append(tokens[i])
        i += 1
    images = {p.name: p for p in plots}
    for section in sections:
        section.figures = _take_figures(section.body, images)
    beside = next((s for s in sections if s.text == PLOTS_BESIDE), None)
    if beside is not None:
        for section in sections:
            if section is not beside and section.figures:
                section.moved = [f["name"] for f in section.figures]
                beside.figures += section.figures
                section.figures = []
    render = parser.renderer.render
    shown = [{"id": _slug(s.text) or f"section-{i}",
              "heading": render(s.heading, parser.options, {}),
              "body": render(s.body, parser.options, {}),
              "figures": s.figures, "moved": s.moved}
             for i, s in enumerate(sections)]
    title = next((s.text for s in sections if s.heading and s.heading[0].tag == "h1"),
                 "Curate study report")
    return render_page("report.html.j2", packages=("training.study",), title=title,
                       sections=shown, placed_under=PLOTS_BESIDE)


@dataclass
class _Section:
    """A heading's tokens (none before the first heading), the tokens up to the next one, and
    the figures shown beside them or moved from them."""

    heading: list[Token]
    body: list[Token] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The heading's text, without its Markdown."""
        inline = [t for t in self.heading if t.type == "inline"]
        return "".join(c.content for c in inline[0].children or []) if inline else ""


def _take_figures(tokens: list[Token], images: dict[str, Path]) -> list[dict[str, Any]]:
    """The plots of ``tokens``' paragraphs that hold nothing else, taken out of ``tokens``."""
    figures: list[dict[str, Any]] = []
    kept: list[Token] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if (token.type == "paragraph_open" and i + 2 < len(tokens)
                and _only_plots(tokens[i + 1], images)):
            for child in tokens[i + 1].children or []:
                if child.type == "image":
                    path = images[str(child.attrGet("src"))]
                    figures.append({"name": path.name, "alt": child.content or path.stem,
                                    "src": data_uri(path), "size": _png_size(path)})
            i += 3  # the paragraph's opening, its images and its closing
            continue
        kept.append(token)
        i += 1
    tokens[:] = kept
    return figures


def _only_plots(inline: Token, images: dict[str, Path]) -> bool:
    children = inline.children or []
    return inline.type == "inline" and any(c.type == "image" for c in children) and all(
        (c.type == "image" and c.attrGet("src") in images)
        or c.type in ("softbreak", "hardbreak") or (c.type == "text" and not c.content.strip())
        for c in children)


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def _png_size(path: Path) -> tuple[int, int] | None:
    """A PNG's width and height from its header (so the page keeps its layout while loading)."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# -- learned weights and pruning ------------------------------------------------------------


def plot_learned(curves: list[dict[str, Any]], path: Path, config: StudyConfig) -> Path:
    """Every learned curve fitted (weight, mean 1 over the items it was fitted on, against
    the rating count), per arm, beside the paper's curve for the same items."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from weighting.learned import curve_values, paper_curve

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = max(max(c["stats"]["knots_log1p_n"]) for c in curves)
    counts = np.unique(np.round(np.expm1(np.linspace(0.0, max(top, np.log1p(10)), 200))))
    arms = sorted({(c["strategy"], c["fitted_on"]) for c in curves})
    for i, (arm, fitted_on) in enumerate(arms):
        mine = [c for c in curves if c["strategy"] == arm and c["fitted_on"] == fitted_on]
        largest = max(c["fraction"] for c in mine)
        for j, curve in enumerate(mine):
            ax.plot(counts + 1, curve_values(curve["stats"], np.log1p(counts)),
                    color=colours[i % len(colours)], alpha=0.9 if
                    curve["fraction"] == largest else 0.15, linewidth=1.2,
                    label=f"{arm} fitted on the {fitted_on} (bold: fraction {largest:g}; "
                          f"{len(mine)} fits)" if j == 0 else None)
    mean = float(np.median([c["stats"]["mean_log1p_n"] for c in curves]))
    ax.plot(counts + 1, paper_curve(counts, mean), color="black", linestyle="--",
            label=f"paper: min(log(1+n) / {mean:.2f}, 5)")
    ax.set_xscale("log")
    ax.set_xlabel("rating count n + 1")
    ax.set_ylabel("weight (mean 1 over the items fitted on)")
    ax.set_title(f"{config.name}: learned weight against rating count")
    return _save_plot(fig, ax, path)


def learned_lines(curves: list[dict[str, Any]], plot: Path) -> list[str]:
    """The learned curves in a few lines: how many, and what their fits saw."""
    lines = ["", "## Learned weights", "",
             "Each curve f(log(1 + n)) was fitted on its run's training items only (or, for a "
             "pruning score, the fold's whole training part), to the inner cross-validated "
             "validation score of the ridge stand-in (`training/learned_weighting.py`); "
             "`learned_curves.json` holds every knot and value.", "",
             "| arm | fitted on | fits | inner score, uniform (median) | inner score, learned "
             "(median) | weight at n = 1, 10, 100, 1000 (median) |",
             "|---|---|---:|---:|---:|---|"]
    import numpy as np

    from weighting.learned import curve_values

    for arm, fitted_on in sorted({(c["strategy"], c["fitted_on"]) for c in curves}):
        mine = [c["stats"] for c in curves if c["strategy"] == arm
                and c["fitted_on"] == fitted_on]
        fitted = [s for s in mine if "inner_score_learned" in s]
        at = np.median([curve_values(s, np.log1p([1, 10, 100, 1000])) for s in mine], axis=0)
        uniform = _fmt(float(np.median([s["inner_score_uniform"] for s in fitted]))) \
            if fitted else "n/a"
        learned = _fmt(float(np.median([s["inner_score_learned"] for s in fitted]))) \
            if fitted else "n/a"
        flat = len(mine) - len(fitted)
        lines.append(f"| `{arm}` | {fitted_on} | {len(mine)}"
                     + (f" ({flat} flat: too few items)" if flat else "")
                     + f" | {uniform} | {learned} | {', '.join(f'{v:.2f}' for v in at)} |")
    lines += ["", f"![{plot.stem}]({plot.name})", ""]
    return lines


def pruning_lines(verdicts: list[dict[str, Any]], plots: list[Path]) -> list[str]:
    """Each pruning arm against the random slice of the same size: bend or shift."""
    lines = ["", "## Pruning against random slices", "",
             "A pruning arm trains, at each fraction, on the top items of the training part by "
             "its score, as many as the random slice of that fraction holds; it is set beside "
             "that random slice (at fraction 1 both train on the same items, so the curves "
             "meet there). **Bends** the curve: the two fitted exponents' bootstrap "
             "intervals (1 - PLCC) do not overlap (the two bootstraps are drawn apart, not "
             "paired). **Shifts** it: the exponents cannot be told apart, and the paired "
             "difference in test PLCC is decided (Holm) at one fraction or more.", "",
             "| pruning arm | random arm | exponent c, pruned | exponent c, random | "
             "PLCC pruned - random, per fraction | verdict |",
             "|---|---|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| `{v['arm']}` | `{v['random']}` | {v['c_arm']} | {v['c_random']} | "
                     f"{v['differences']} | {v['verdict']} |")
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return lines
