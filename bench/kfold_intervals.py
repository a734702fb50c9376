"""Candidate k-fold intervals against the one the study uses, on data with a known truth.

    .venv/bin/python bench/kfold_intervals.py                 # 120 data sets, seed 0 (~3 min)
    .venv/bin/python bench/kfold_intervals.py --seeds 0 1 2   # seeds re-draw the slices

The data sets, the planted difference and its truth are those of
``tests/training/test_calibration.py`` (400 items, ``effiminivlm`` against ``uniform``, the
ridge head, 5 folds x 2 repeats). Each data set goes through the study's own code once, at
fractions 0.25 and 1, and the paired difference's 95% interval is computed five ways from
the same out-of-fold predictions:

- ``nadeau_bengio``: what ``training.study.compare`` reports (corrected resampled t over
  the folds x repeats scores);
- ``two_way``: the k-fold analogue of the holdout's two-way bootstrap. A draw takes the
  items with replacement (the same items for every strategy, repeat and seed, so it is
  paired) and the (repeat, seed) replicates with replacement; on each replicate the metric
  is computed per fold on the drawn items of that fold and averaged over the folds, as the
  study's point estimate is; then averaged over the drawn replicates. Percentile interval;
- ``items_only``: the same with every replicate kept (the fitted models held fixed);
- ``items_plus_between``: the items-only bootstrap variance plus the between-replicate
  variance of the mean, s^2 / replicates; normal interval;
- ``pooled_two_way``: ``two_way`` with the metric on each repeat's pooled out-of-fold
  predictions instead of per fold (another point estimate).

It prints each one's coverage of the truth, mean width and bias, per fraction.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' population

from tests.training.test_calibration import STRATEGIES, study_data, true_difference
from training.study.compare import bootstrap_draws, compare, percentile
from training.study.crossfit import run_unit, units

FRACTIONS = (0.25, 1.0)
FOLDS, REPEATS, ITEMS, DRAWS, LEVEL = 5, 2, 400, 2000, 0.95
METHODS = ("nadeau_bengio", "two_way", "items_only", "items_plus_between", "pooled_two_way")


def fold_scores(prediction: np.ndarray, target: np.ndarray, folds: np.ndarray,
                counts: np.ndarray) -> np.ndarray:
    """(draws, replicates) PLCC: per replicate (a row of ``prediction`` and ``folds``, one
    prediction per item), Pearson's r per fold on the drawn items (``counts``: (draws,
    items) multiplicities), averaged over the folds. Sums of products, so every draw is one
    matrix product; r is shift-invariant, so centring first only helps the rounding."""
    t = target - target.mean()
    out = np.empty((counts.shape[0], prediction.shape[0]))
    for r in range(prediction.shape[0]):
        p = prediction[r] - prediction[r].mean()
        onehot = (folds[r][:, None] == np.arange(folds.max() + 1)[None, :]).astype(float)
        n, sp, st, spp, stt, spt = (counts @ (onehot * v[:, None]) for v in (
            np.ones_like(p), p, t, p * p, t * t, p * t))
        with np.errstate(invalid="ignore", divide="ignore"):
            vp, vt = spp - sp * sp / n, stt - st * st / n
            r_fold = np.where((vp > 0) & (vt > 0), (spt - sp * st / n) / np.sqrt(vp * vt),
                              np.nan)
        out[:, r] = np.nanmean(r_fold, axis=1)
    return out


def item_counts(item_draws: np.ndarray, n_items: int) -> np.ndarray:
    counts = np.zeros((len(item_draws), n_items))
    np.add.at(counts, (np.repeat(np.arange(len(item_draws)), item_draws.shape[1]),
                       item_draws.ravel()), 1.0)
    return counts


def intervals(index: int, seeds: list[int]) -> list[dict[str, object]]:
    data = study_data(ITEMS, np.random.default_rng(1000 + index))
    predictions, runs = [], []
    for unit in units("kfold", FOLDS, REPEATS):
        p, r = run_unit(data, unit, design="kfold", folds=FOLDS, fractions=FRACTIONS,
                        strategies=STRATEGIES, seeds=seeds, head="ridge", trainer={})
        predictions.append(p)
        runs.append(r)
    every, run_table = pl.concat(predictions), pl.concat(runs)
    nb = compare(every, run_table, STRATEGIES, "uniform", "kfold", LEVEL, folds=FOLDS,
                 repeats=REPEATS).pairs
    out = []
    for fraction in FRACTIONS:
        row = nb.filter(pl.col("fraction") == fraction).row(0, named=True)
        found: dict[str, object] = {
            "fraction": fraction, "train_items": float(run_table.filter(
                pl.col("fraction") == fraction)["train_items"].mean()),
            "nadeau_bengio": (row["plcc_diff_low"], row["plcc_diff_high"],
                              row["plcc_diff_mean"])}
        at = every.filter(pl.col("fraction") == fraction).sort(
            "strategy", "repeat", "seed", "parent_asin")
        replicates = at.select("repeat", "seed").unique().height
        shape = (len(STRATEGIES), replicates, -1)
        by = {s: at.filter(pl.col("strategy") == s) for s in STRATEGIES}
        prediction = np.stack([by[s]["prediction"].to_numpy() for s in STRATEGIES]
                              ).reshape(shape)
        folds = by[STRATEGIES[0]]["fold"].to_numpy().reshape(shape[1:])
        target = by[STRATEGIES[0]]["target"].to_numpy().reshape(shape[1:])[0]
        rng = np.random.default_rng([0, round(fraction * 1e6)])
        replicate_draws, item_draws = bootstrap_draws(replicates, len(target), DRAWS, rng)
        counts = item_counts(item_draws, len(target))
        for name, fold_of in (("", folds), ("pooled_", np.zeros_like(folds))):
            drawn = [fold_scores(prediction[i], target, fold_of, counts) for i in range(2)]
            whole = [fold_scores(prediction[i], target, fold_of, np.ones((1, len(target))))[0]
                     for i in range(2)]
            per_replicate = whole[0] - whole[1]
            point, by_items = float(per_replicate.mean()), drawn[0] - drawn[1]
            both = np.take_along_axis(by_items, replicate_draws, axis=1).mean(axis=1)
            e = percentile(point, both, LEVEL)
            found[f"{name}two_way"] = (e.low, e.high, point)
            if name:
                continue
            e = percentile(point, by_items.mean(axis=1), LEVEL)
            found["items_only"] = (e.low, e.high, point)
            half = norm.ppf(0.5 + LEVEL / 2) * math.sqrt(
                by_items.mean(axis=1).var(ddof=1) + per_replicate.var(ddof=1) / replicates)
            found["items_plus_between"] = (point - half, point + half, point)
        out.append(found)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    found = [row for i in range(args.datasets) for row in intervals(i, args.seeds)]
    for fraction in FRACTIONS:
        rows = [r for r in found if r["fraction"] == fraction]
        train_items = round(float(np.mean([r["train_items"] for r in rows])))
        truth = true_difference(train_items)
        print(f"fraction {fraction:g} ({train_items} train items, seeds {args.seeds}), "
              f"{len(rows)} data sets, true difference {truth:.4f}")
        for method in METHODS:
            low, high, estimate = (np.array([r[method][j] for r in rows]) for j in range(3))
            print(f"  {method:20s} coverage {np.mean((low <= truth) & (truth <= high)):.3f}  "
                  f"mean width {np.mean(high - low):.4f}  bias {np.mean(estimate) - truth:+.4f}")


if __name__ == "__main__":
    main()
