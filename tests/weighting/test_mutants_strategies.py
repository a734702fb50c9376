"""Weighting strategies on the edges of their fits, against hand computations (kills the
mutants of weighting/strategies.py that test_strategies leaves)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

import weighting


def _compute(columns: dict, spec: str) -> tuple[list[float], dict]:
    w, stats = weighting.compute_with_stats(pl.DataFrame(columns, strict=False), spec)
    return w.to_list(), stats["terms"][0]["stats"]


def test_without_train_rows_the_count_strategies_are_uniform_and_record_zero():
    held_out = {"rating_number": [4, 9], "split": ["val", "test"]}
    for spec, key in (("sqrt_count", "mean_sqrt_n"), ("log_count", "mean_log1p_n"),
                      ("effiminivlm", "mean_log1p_n")):
        w, stats = _compute(held_out, spec)
        assert w == [1.0, 1.0], spec
        assert stats == {key: 0.0}, spec  # a number the manifest can hold, not NaN


def test_bayes_confidence_prior_is_the_train_median_but_at_least_one():
    w, stats = _compute({"rating_number": [0, 1, 1], "split": ["train"] * 3}, "bayes_confidence")
    assert stats == {"prior_count": 1.0}
    assert w == pytest.approx([0.0, 0.5, 0.5])
    w, stats = _compute({"rating_number": [2, 3, 9], "split": ["train"] * 3}, "bayes_confidence")
    assert stats == {"prior_count": 3.0}
    assert w == pytest.approx([0.4, 0.5, 0.75])


def _inverse_variance(n, y, std, reviews, spec="inverse_variance"):
    return _compute({"rating_number": n, "average_rating": y, "review_rating_std": std,
                     "review_count": reviews, "split": ["train"] * len(n)}, spec)


def test_inverse_variance_uses_an_items_own_spread_from_five_reviews():
    # item 1 has exactly 5 reviews: its own std; item 2 has 4: the pooled variance
    w, stats = _inverse_variance([1, 8, 0], [1.0, 5.0, 3.0], [1.0, 2.0, 0.5], [5, 4, 7])
    pooled = (1.0 + 0.25) / 2  # items 1 and 3 have enough reviews
    assert stats["pooled_sigma2"] == pytest.approx(pooled)
    noise = (1.0 / 1 + pooled / 8) / 2  # over the rated items 1 and 2 (n = 1 counts)
    tau2 = float(np.var([1.0, 5.0])) - noise
    assert tau2 > 1  # not floored
    assert stats["tau2"] == pytest.approx(tau2)
    assert w == pytest.approx([1 / (tau2 + 1.0 / 1), 1 / (tau2 + pooled / 8), 0.0])


def test_inverse_variance_pools_one_when_no_item_has_enough_reviews():
    w, stats = _inverse_variance([2, 4], [2.0, 4.5], [0.5, 0.5], [2, 3])
    assert stats["pooled_sigma2"] == 1.0
    tau2 = float(np.var([2.0, 4.5])) - (1 / 2 + 1 / 4) / 2
    assert stats["tau2"] == pytest.approx(tau2)
    assert w == pytest.approx([1 / (tau2 + 1 / 2), 1 / (tau2 + 1 / 4)])


def test_inverse_variance_with_one_rated_item_floors_tau2():
    w, stats = _inverse_variance([100, 0], [4.0, 2.0], [0.5, None], [10, 0])
    assert stats["tau2"] == 1e-3  # one rated item: no spread of targets to share out
    assert w == pytest.approx([1 / (1e-3 + 0.25 / 100), 0.0])


def test_inverse_variance_takes_a_missing_review_count_as_zero_reviews():
    w, stats = _inverse_variance([4, 4], [2.0, 4.0], [2.0, 0.5], [None, 3],
                                 spec="inverse_variance:min_reviews=1")
    assert stats["pooled_sigma2"] == 0.25  # only item 2 has reviews
    tau2 = max(1.0 - (0.25 / 4 + 0.25 / 4) / 2, 1e-3)
    assert w == pytest.approx([1 / (tau2 + 0.25 / 4)] * 2)


def test_lds_default_kernel_by_hand():
    # train targets 3.0 x4, 3.1, 3.3: sqrt counts 2, 1, 1; a Gaussian of sigma 2 bins over
    # offsets -2..2 (kernel size 5) reaches 3.1 from 3.0 and 3.3, but not 3.3 from 3.0
    ratings = [3.0] * 4 + [3.1, 3.3]
    w, stats = _compute({"average_rating": ratings, "split": ["train"] * 6}, "lds")
    k = [math.exp(-(o * o) / 8) for o in range(3)]
    density = {3.0: 2 * k[0] + 1 * k[1], 3.1: 1 * k[0] + 2 * k[1] + 1 * k[2],
               3.3: 1 * k[0] + 1 * k[2]}
    for rating, value in density.items():
        assert stats["smoothed_density"][rating] == pytest.approx(value)
    assert stats["smoothed_density"][3.5] == pytest.approx(1 * k[2])
    assert stats["smoothed_density"][3.6] == 0.0
    assert w == pytest.approx([1 / density[r] for r in ratings])


def test_lds_with_a_wider_kernel_by_hand():
    ratings = [3.0] * 4 + [3.1, 3.3]
    w, _ = _compute({"average_rating": ratings, "split": ["train"] * 6},
                    "lds:sigma=3,reweight=inverse")
    k = [math.exp(-(o * o) / 18) for o in range(3)]
    density = {3.0: 4 * k[0] + 1 * k[1], 3.1: 1 * k[0] + 4 * k[1] + 1 * k[2],
               3.3: 1 * k[0] + 1 * k[2]}
    assert w == pytest.approx([1 / density[r] for r in ratings])


def test_targets_outside_one_to_five_and_between_bins_take_the_nearest_bin():
    # train targets 0.5 and 1.0 share the 1.0 bin, 5.0 and 5.5 the 5.0 bin, 4.349 is 4.3
    ratings = [0.5, 1.0, 5.0, 5.5, 4.349, 4.3, 4.3]
    w, stats = _compute({"average_rating": ratings, "split": ["train"] * 7},
                        "inverse_effective_number:beta=0.5")
    counts = stats["bin_counts"]
    assert (counts[1.0], counts[5.0], counts[4.3], counts[4.4]) == (2.0, 2.0, 3.0, 0.0)
    assert sum(counts.values()) == 7.0
    table = {2: 0.5 / 0.75, 3: 0.5 / 0.875}  # (1 - beta) / (1 - beta^n) per bin count
    assert w == pytest.approx([table[2]] * 4 + [table[3]] * 3)
    w_lds, _ = _compute({"average_rating": ratings, "split": ["train"] * 7}, "lds")
    assert w_lds[0] == w_lds[1] and w_lds[2] == w_lds[3] and w_lds[4] == w_lds[5] > 0
