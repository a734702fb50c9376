"""Intervals, paired comparisons and rankings of a study's strategies, from test predictions.

What an interval covers depends on the design, and the report says which:

- **holdout** (one fixed test split): a two-way bootstrap, drawing the seeds (each a slice
  draw and a head initialisation) and the test items with replacement, the same items for
  every strategy and seed of a draw, so a difference is paired on both. It includes the
  sampling of the test items and of the training draws the seeds make; it does not include
  drawing another training set where every seed trains on the same items (fraction 1).
- **kfold** (every item tested once per repeat): the metric is computed per fold (averaged
  over seeds within a fold), and the interval is the corrected resampled t of Nadeau and
  Bengio (2003): variance (1/J + n_test/n_train) s^2 over the J = folds x repeats fold
  values, t with J - 1 degrees of freedom; n_train is the size of a fold's training part,
  from which every fraction draws its training set. The correction accounts for the folds' training
  sets overlapping, which makes the J values correlated; without it the interval is far too
  narrow. ``tests/training/test_calibration.py`` checks its coverage on data with a known
  truth. The holdout's two-way bootstrap carried over (items x (repeat, seed) replicates) was
  tried there and not adopted: with small training sets it leaves out too much of what varies
  (76.7% coverage at a quarter of the data; README, ``bench/kfold_intervals.py``).

Every pair of strategies is compared at every fraction; decisions are Holm-corrected over
the pairs of a fraction, and strategies that cannot be told apart share a tier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import polars as pl

BOOTSTRAP_DRAWS = 2000
HOLDOUT_METHOD = ("two-way bootstrap over seeds and test items ({draws} draws, percentile "
                  "intervals, paired: one draw of items for every strategy and seed)")
KFOLD_METHOD = ("Nadeau-Bengio corrected resampled t over {folds} folds x {repeats} repeats "
                "(per-fold scores averaged over seeds; variance (1/J + n_test/n_train) s^2, "
                "n_train the size of a fold's training part, which every fraction draws from)")


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    p: float  # two-sided, against 0 (for a difference)


def _rows_pearson(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis (NaN where a side is constant)."""
    p = prediction - prediction.mean(axis=-1, keepdims=True)
    t = target - target.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((p * p).sum(axis=-1) * (t * t).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (p * t).sum(axis=-1) / denominator, np.nan)


def _rows_rmse(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.sqrt(((prediction - target) ** 2).mean(axis=-1))


METRICS = {"test_plcc": _rows_pearson, "test_rmse": _rows_rmse}


# --- the k-fold design --------------------------------------------------------------------


def corrected_t(values: Sequence[float], n_train: float, n_test: float,
                level: float) -> Estimate:
    """Mean and the Nadeau-Bengio corrected resampled-t interval of J fold values."""
    from scipy.stats import t as student

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        mean = float(x.mean()) if len(x) else math.nan
        return Estimate(mean, math.nan, math.nan, math.nan)
    mean, spread2 = float(x.mean()), float(x.var(ddof=1))
    variance = (1.0 / len(x) + n_test / n_train) * spread2
    quantile = float(student.ppf(0.5 + level / 2, len(x) - 1))
    half = quantile * math.sqrt(variance)
    if variance > 0:
        p = float(2 * student.sf(abs(mean) / math.sqrt(variance), len(x) - 1))
    else:
        p = 1.0 if mean == 0 else 0.0
    return Estimate(mean, mean - half, mean + half, p)


# --- the holdout design -------------------------------------------------------------------


def bootstrap_draws(n_seeds: int, n_items: int, draws: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(seed indices (draws, seeds), item indices (draws, items)), with replacement."""
    return (rng.integers(0, n_seeds, size=(draws, n_seeds)),
            rng.integers(0, n_items, size=(draws, n_items)))


def holdout_scores(prediction: np.ndarray, target: np.ndarray, seeds: np.ndarray,
                   items: np.ndarray, metric: str) -> np.ndarray:
    """The metric averaged over the drawn seeds, for each draw: ``prediction`` is
    (seeds, items) on one test set, ``target`` (items,)."""
    score = METRICS[metric]
    out = np.empty(len(items))
    for d in range(len(items)):  # a draw at a time: (seeds, items) stays small
        picked = prediction[seeds[d]][:, items[d]]
        out[d] = np.nanmean(score(picked, target[items[d]][None, :]))
    return out


def percentile(point: float, draws: np.ndarray, level: float) -> Estimate:
    draws = draws[np.isfinite(draws)]
    if not len(draws) or not math.isfinite(point):
        return Estimate(point, math.nan, math.nan, math.nan)
    low, high = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    # two-sided bootstrap p of "no difference": twice the smaller tail beyond 0
    below = (np.sum(draws <= 0) + 1) / (len(draws) + 1)
    above = (np.sum(draws >= 0) + 1) / (len(draws) + 1)
    return Estimate(point, float(low), float(high), float(min(1.0, 2 * min(below, above))))


# --- decisions ----------------------------------------------------------------------------


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(p))
    adjusted = np.full(len(p), np.nan)
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def tiers(means: dict[str, float], better: set[tuple[str, str]]) -> list[list[str]]:
    """Strategies grouped by what can be told apart: the best remaining strategy and every
    remaining one not decided worse than it form a tier, then the next. ``better`` holds
    (a, b) for each decision "a is better than b"."""
    left = sorted(means, key=lambda s: (-means[s] if math.isfinite(means[s]) else math.inf, s))
    groups = []
    while left:
        top = left[0]
        tier = [s for s in left if (top, s) not in better]
        groups.append(tier)
        left = [s for s in left if s not in tier]
    return groups


# --- one table per study ------------------------------------------------------------------


@dataclass
class Comparison:
    summary: pl.DataFrame  # per (fraction, strategy): means and intervals, vs the baseline
    pairs: pl.DataFrame  # per (fraction, a, b): the difference a - b, p, Holm, decision
    tiers: dict[float, list[list[str]]]
    method: str


def compare(predictions: pl.DataFrame, runs: pl.DataFrame, strategies: Sequence[str],
            baseline: str, design: str, level: float, *, folds: int = 1, repeats: int = 1,
            draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> Comparison:
    """``predictions``: (repeat, fold, seed, fraction, strategy, parent_asin, target,
    prediction) on test items; ``runs``: (repeat, fold, seed, fraction, strategy,
    train_items, test_items)."""
    if not predictions.height:
        per_strategy, per_pair = [], []
    elif design == "kfold":
        per_strategy, per_pair = _kfold(predictions, runs, strategies, level)
        method = KFOLD_METHOD.format(folds=folds, repeats=repeats)
    else:
        per_strategy, per_pair = _holdout(predictions, runs, strategies, level, draws, seed)
        method = HOLDOUT_METHOD.format(draws=draws)
    pairs = _decide(per_pair, level)
    summary = _with_baseline(per_strategy, pairs, baseline)
    ranked: dict[float, list[list[str]]] = {}
    for fraction in sorted(summary["fraction"].unique().to_list()):
        rows = summary.filter(pl.col("fraction") == fraction)
        means = dict(zip(rows["strategy"].to_list(),
                         [math.nan if v is None else v for v in rows["test_plcc_mean"]],
                         strict=True))
        decided = pairs.filter(pl.col("fraction") == fraction)
        better = {(r["a"], r["b"]) if r["decision"] == "a better" else (r["b"], r["a"])
                  for r in decided.iter_rows(named=True) if r["decision"] != "cannot tell"}
        ranked[fraction] = tiers(means, better)
    return Comparison(summary, pairs, ranked, method)


def _kfold(predictions: pl.DataFrame, runs: pl.DataFrame, strategies: Sequence[str],
           level: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    scored = _per_run_scores(predictions)
    # a fold's score: the mean over its seeds (seeds are not independent test sets)
    fold = scored.join(runs, on=["repeat", "fold", "seed", "fraction", "strategy"]).group_by(
        "fraction", "strategy", "repeat", "fold").agg(
        pl.col("test_plcc").mean(), pl.col("test_rmse").mean(),
        pl.col("train_items").mean(), pl.col("test_items").mean(), pl.len().alias("seeds"))
    per_strategy, per_pair = [], []
    n_train = _training_part(fold)
    for fraction in sorted(fold["fraction"].unique().to_list()):
        at = fold.filter(pl.col("fraction") == fraction)
        n_test = float(at["test_items"].mean())
        table = {s: at.filter(pl.col("strategy") == s).sort("repeat", "fold")
                 for s in strategies}
        for s, rows in table.items():
            if not rows.height:
                continue
            row: dict[str, Any] = {"fraction": fraction, "strategy": s, "runs": int(
                rows["seeds"].sum()), "train_items": float(rows["train_items"].mean()),
                "test_items": n_test}
            for metric in METRICS:
                e = corrected_t(rows[metric].to_numpy(), n_train, n_test, level)
                row.update(_columns(metric, e))
                if metric == "test_plcc":
                    row.update(_columns("error_plcc", Estimate(1 - e.mean, 1 - e.high,
                                                               1 - e.low, e.p)))
            per_strategy.append(row)
        for a, b in combinations([s for s in strategies if table[s].height], 2):
            joined = table[a].join(table[b], on=["repeat", "fold"], suffix="_b")
            pair: dict[str, Any] = {"fraction": fraction, "a": a, "b": b}
            for metric in METRICS:
                diff = joined[metric] - joined[f"{metric}_b"]
                pair[metric] = corrected_t(diff.to_numpy(), n_train, n_test, level)
            per_pair.append(pair)
    return per_strategy, per_pair


def _training_part(fold: pl.DataFrame) -> float:
    """The correction's n_train: the size of a fold's training part, which every fraction
    draws its training set from (the largest fraction's training items over that fraction;
    exact when it is 1, and larger fractions only make it more exact). Two folds' training
    sets overlap as their training parts do, or less when a fraction draws a small share of
    each, so n_test / n_train of the parts is the overlap's bound. The training set's own size
    would overstate it at small fractions, past 1 (a correlation cannot be)."""
    largest = float(fold["fraction"].max())
    return float(fold.filter(pl.col("fraction") == largest)["train_items"].mean()) / largest


def _holdout(predictions: pl.DataFrame, runs: pl.DataFrame, strategies: Sequence[str],
             level: float, draws: int,
             seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    per_strategy, per_pair = [], []
    for fraction in sorted(predictions["fraction"].unique().to_list()):
        at = predictions.filter(pl.col("fraction") == fraction)
        items = sorted(at["parent_asin"].unique().to_list())
        seeds = sorted(at["seed"].unique().to_list())
        matrices: dict[str, np.ndarray] = {}
        target = np.empty(0)
        for s in strategies:
            rows = at.filter(pl.col("strategy") == s)
            if not rows.height:
                continue
            wide = rows.pivot(on="seed", index="parent_asin", values="prediction").sort(
                "parent_asin")
            if wide.height != len(items) or wide.width - 1 != len(seeds):
                raise ValueError(f"fraction {fraction:g}, {s}: runs do not share one test set "
                                 "and seed set (a run unfinished?)")
            matrices[s] = wide.select([str(x) for x in seeds]).to_numpy().T
            target = rows.filter(pl.col("seed") == seeds[0]).sort("parent_asin")[
                "target"].to_numpy()
        rng = np.random.default_rng([seed, round(fraction * 1e6)])
        seed_draws, item_draws = bootstrap_draws(len(seeds), len(items), draws, rng)
        everything = (np.arange(len(seeds))[None, :], np.arange(len(items))[None, :])
        boot: dict[tuple[str, str], np.ndarray] = {}
        point: dict[tuple[str, str], float] = {}
        for s, matrix in matrices.items():
            for metric in METRICS:
                point[s, metric] = float(holdout_scores(matrix, target, *everything, metric)[0])
                boot[s, metric] = holdout_scores(matrix, target, seed_draws, item_draws, metric)
        run_rows = runs.filter(pl.col("fraction") == fraction)
        for s in matrices:
            mine = run_rows.filter(pl.col("strategy") == s)
            row: dict[str, Any] = {"fraction": fraction, "strategy": s, "runs": len(seeds),
                                   "train_items": float(mine["train_items"].mean()),
                                   "test_items": float(len(items))}
            for metric in METRICS:
                e = percentile(point[s, metric], boot[s, metric], level)
                row.update(_columns(metric, Estimate(e.mean, e.low, e.high, math.nan)))
                if metric == "test_plcc":
                    row.update(_columns("error_plcc", Estimate(1 - e.mean, 1 - e.high,
                                                               1 - e.low, math.nan)))
            per_strategy.append(row)
        for a, b in combinations(list(matrices), 2):
            pair = {"fraction": fraction, "a": a, "b": b}
            for metric in METRICS:
                pair[metric] = percentile(point[a, metric] - point[b, metric],
                                          boot[a, metric] - boot[b, metric], level)
            per_pair.append(pair)
    return per_strategy, per_pair


def _per_run_scores(predictions: pl.DataFrame) -> pl.DataFrame:
    keys = ["repeat", "fold", "seed", "fraction", "strategy"]
    rows = []
    for key, group in predictions.group_by(keys, maintain_order=True):
        p, t = group["prediction"].to_numpy(), group["target"].to_numpy()
        rows.append({**dict(zip(keys, key, strict=True)),
                     **{m: float(f(p[None, :], t[None, :])[0]) for m, f in METRICS.items()}})
    return pl.DataFrame(rows)


def _columns(name: str, e: Estimate) -> dict[str, float | None]:
    def clean(v: float) -> float | None:
        return v if math.isfinite(v) else None

    return {f"{name}_mean": clean(e.mean), f"{name}_low": clean(e.low),
            f"{name}_high": clean(e.high)}


def _decide(per_pair: list[dict[str, Any]], level: float) -> pl.DataFrame:
    """Holm over the pairs of each fraction; a pair is decided on test PLCC."""
    alpha = 1 - level
    rows = []
    for fraction in sorted({p["fraction"] for p in per_pair}):
        group = [p for p in per_pair if p["fraction"] == fraction]
        adjusted = holm([p["test_plcc"].p for p in group])
        for pair, p_holm in zip(group, adjusted, strict=True):
            e, r = pair["test_plcc"], pair["test_rmse"]
            decision = "cannot tell"
            if math.isfinite(p_holm) and p_holm < alpha:
                decision = "a better" if e.mean > 0 else "b better"
            rows.append({"fraction": fraction, "a": pair["a"], "b": pair["b"],
                         **_columns("plcc_diff", e), "p": e.p if math.isfinite(e.p) else None,
                         "p_holm": p_holm if math.isfinite(p_holm) else None,
                         "decision": decision, **_columns("rmse_diff", r)})
    schema = {"fraction": pl.Float64, "a": pl.String, "b": pl.String,
              "plcc_diff_mean": pl.Float64, "plcc_diff_low": pl.Float64,
              "plcc_diff_high": pl.Float64, "p": pl.Float64, "p_holm": pl.Float64,
              "decision": pl.String, "rmse_diff_mean": pl.Float64, "rmse_diff_low": pl.Float64,
              "rmse_diff_high": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


SUMMARY_SCHEMA = {
    "fraction": pl.Float64, "strategy": pl.String, "runs": pl.Int64, "train_items": pl.Float64,
    "test_items": pl.Float64,
    **{f"{m}_{part}": pl.Float64 for m in ("test_plcc", "error_plcc", "test_rmse",
                                           "plcc_vs_baseline", "rmse_vs_baseline")
       for part in ("mean", "low", "high")},
    "vs_baseline": pl.String,
}


def _with_baseline(per_strategy: list[dict[str, Any]], pairs: pl.DataFrame,
                   baseline: str) -> pl.DataFrame:
    """Each strategy's row with its difference from the baseline (and the Holm decision)."""
    out = []
    for row in per_strategy:
        row = dict(row)
        match = pairs.filter((pl.col("fraction") == row["fraction"]) & (
            ((pl.col("a") == row["strategy"]) & (pl.col("b") == baseline))
            | ((pl.col("b") == row["strategy"]) & (pl.col("a") == baseline))))
        values: dict[str, Any] = dict.fromkeys(
            ("plcc_vs_baseline_mean", "plcc_vs_baseline_low", "plcc_vs_baseline_high",
             "rmse_vs_baseline_mean", "rmse_vs_baseline_low", "rmse_vs_baseline_high",
             "vs_baseline"))
        if match.height:
            m = match.row(0, named=True)
            sign = 1.0 if m["a"] == row["strategy"] else -1.0
            for metric, name in (("plcc_diff", "plcc_vs_baseline"),
                                 ("rmse_diff", "rmse_vs_baseline")):
                bounds = [m[f"{metric}_low"], m[f"{metric}_high"]]
                if sign < 0:
                    bounds = [None if v is None else -v for v in bounds[::-1]]
                values[f"{name}_mean"] = (None if m[f"{metric}_mean"] is None
                                          else sign * m[f"{metric}_mean"])
                values[f"{name}_low"], values[f"{name}_high"] = bounds
            decided = m["decision"]
            values["vs_baseline"] = ("no clear difference" if decided == "cannot tell" else
                                     "better" if (decided == "a better") == (sign > 0)
                                     else "worse")
        row.update(values)
        out.append(row)
    frame = pl.DataFrame(out, schema=SUMMARY_SCHEMA) if not out else pl.DataFrame(out)
    return frame.select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA).sort("fraction", "strategy")
