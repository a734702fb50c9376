"""Scores of predictions against hand computations and independent oracles (numpy's corrcoef,
scipy's spearmanr): kills the mutants of training/metrics.py."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("scipy")
pytest.importorskip("torch")

from scipy.stats import spearmanr

from training.metrics import count_deciles, evaluate, pearson, scores
from training.model import ces


def test_pearson_of_two_items_is_plus_or_minus_one():
    assert pearson(np.array([1.0, 2.0]), np.array([3.0, 5.0])) == pytest.approx(1.0)
    assert pearson(np.array([1.0, 2.0]), np.array([5.0, 3.0])) == pytest.approx(-1.0)
    assert math.isnan(pearson(np.array([1.0]), np.array([3.0])))
    assert math.isnan(pearson(np.array([]), np.array([])))


def test_pearson_of_small_values_and_of_a_constant_side():
    # the spread of both sides is far below 1: still a correlation, not NaN
    p, t = np.array([0.0, 0.1, 0.2]), np.array([0.0, 0.1, 0.3])
    assert pearson(p, t) == pytest.approx(np.corrcoef(p, t)[0, 1])
    assert math.isnan(pearson(np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0])))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 5), st.floats(1, 5)), min_size=3, max_size=30))
def test_pearson_and_spearman_agree_with_numpy_and_scipy(pairs):
    p = np.array([a for a, _ in pairs])
    t = np.array([b for _, b in pairs])
    got = scores(p, t)
    if np.ptp(p) > 1e-6 and np.ptp(t) > 1e-6:
        assert got["plcc"] == pytest.approx(np.corrcoef(p, t)[0, 1], abs=1e-9)
        assert got["spearman"] == pytest.approx(spearmanr(p, t).statistic, abs=1e-9)
    assert got["mae"] == pytest.approx(np.mean(np.abs(p - t)))
    assert got["rmse"] == pytest.approx(math.sqrt(np.mean((p - t) ** 2)))


def test_scores_by_hand():
    prediction = [4.0, 2.0, 3.0, 5.0]
    target = [3.0, 1.0, 4.0, 5.0]
    # errors 1, 1, -1, 0; centred p = 0.5, -1.5, -0.5, 1.5 and t = -0.25, -2.25, 0.75, 1.75
    r = (-0.125 + 3.375 - 0.375 + 2.625) / math.sqrt(5.0 * 8.75)
    got = scores(prediction, target)
    assert got == {
        "n": 4,
        "plcc": pytest.approx(r),
        "plcc_plus": pytest.approx(r),
        "spearman": pytest.approx(0.8),  # ranks 3,1,2,4 vs 2,1,3,4: 1 - 6*2/(4*15)
        "mae": pytest.approx(0.75),
        "rmse": pytest.approx(math.sqrt(0.75)),
    }


def test_two_items_have_a_rank_correlation():
    assert scores([1.0, 2.0], [4.0, 3.0])["spearman"] == pytest.approx(-1.0)


def test_float32_predictions_are_scored_in_double_precision():
    # what the model hands over: float32; the scores must not lose digits to it
    rng = np.random.default_rng(0)
    target = rng.uniform(1, 5, 200).astype(np.float32) + np.float32(1000)
    prediction = (target + rng.normal(0, 0.01, 200)).astype(np.float32)
    exact = scores(prediction.astype(np.float64), target.astype(np.float64))
    assert scores(prediction, target) == exact
    assert scores(list(prediction), list(target)) == exact


def test_a_negative_correlation_scores_zero_plcc_plus():
    got = scores([1.0, 2.0, 3.0], [3.0, 2.0, 1.5])
    assert got["plcc"] < 0
    assert got["plcc_plus"] == 0.0


def test_undefined_scores_are_none_not_nan():
    one = scores([3.0], [4.0])
    assert one == {"n": 1, "plcc": None, "plcc_plus": 0.0, "spearman": None, "mae": 1.0,
                   "rmse": 1.0}
    empty = scores([], [])
    assert empty["n"] == 0
    assert empty["mae"] is None and empty["rmse"] is None and empty["spearman"] is None
    constant = scores([3.0, 3.0], [1.0, 2.0])
    assert constant["plcc"] is None and constant["plcc_plus"] == 0.0
    assert constant["spearman"] is None
    assert constant["mae"] == pytest.approx(1.5)


def test_count_deciles_by_rank():
    counts = pl.Series([50, 0, None, 7, 7, 1000, 3, 20, 20, 9])
    # ordinal ranks (nulls as 0, ties in order): 8, 0, 1, 3, 4, 9, 2, 6, 7, 5
    assert count_deciles(counts).to_list() == [8, 0, 1, 3, 4, 9, 2, 6, 7, 5]
    assert count_deciles(counts).name == "count_decile"
    twenty = pl.Series(list(range(20, 0, -1)))
    assert count_deciles(twenty).to_list() == [i // 2 for i in range(19, -1, -1)]
    assert count_deciles(pl.Series([5, 1, 3])).to_list() == [6, 0, 3]
    assert count_deciles(pl.Series([], dtype=pl.Int64)).to_list() == []
    # a missing count ranks as 0, in order among the zeros
    assert count_deciles(pl.Series([None, 0, 5])).to_list() == [0, 3, 6]


def test_evaluate_breaks_scores_down_by_category_and_count_decile():
    n = 20
    frame = pl.DataFrame({
        "prediction": [1.0 + 0.2 * i + (0.3 if i % 3 else -0.2) for i in range(n)],
        "average_rating": [1.0 + 0.2 * i for i in range(n)],
        # "b"'s first prediction is the lower one: the order is by category, nothing else
        "category": ["a" if i % 2 else "b" for i in range(n)],
        "rating_number": [None if i == 0 else i * 10 for i in range(n)],
    })
    got = evaluate(frame, params=5_000_000, flops=400_000_000)
    overall = scores(frame["prediction"].to_numpy(), frame["average_rating"].to_numpy())
    assert {k: got[k] for k in overall} == overall
    assert got["ces"] == pytest.approx(ces(overall["plcc"], 5_000_000, 400_000_000))
    assert [c["category"] for c in got["by_category"]] == ["a", "b"]
    for entry in got["by_category"]:
        part = frame.filter(pl.col("category") == entry["category"])
        assert entry == {"category": entry["category"],
                         **scores(part["prediction"].to_numpy(),
                                  part["average_rating"].to_numpy())}
    deciles = got["by_count_decile"]
    assert [d["count_decile"] for d in deciles] == list(range(10))
    for d in deciles:
        # two items per decile in rating_number order: 0 (missing) and 10, then 20 and 30...
        low = 20 * d["count_decile"]
        assert (d["rating_number_min"], d["rating_number_max"]) == (low, low + 10)
        assert d["n"] == 2
        assert isinstance(d["count_decile"], int)


def test_evaluate_reports_items_without_a_category_or_a_count():
    frame = pl.DataFrame({
        "prediction": [float(i % 5) + 1 for i in range(10)],
        "average_rating": [float(i % 4) + 1 for i in range(10)],
        "category": [None, "b", "a", "b", "a", "b", "a", "b", "a", "b"],
        "rating_number": [None, *range(10, 100, 10)],
    })
    got = evaluate(frame, params=5_000_000, flops=400_000_000)
    # sorted as text: "None" < "a"
    assert [c["category"] for c in got["by_category"]] == [None, "a", "b"]
    assert got["by_category"][0]["n"] == 1
    first = got["by_count_decile"][0]
    assert (first["count_decile"], first["n"]) == (0, 1)
    assert (first["rating_number_min"], first["rating_number_max"]) == (0, 0)


def test_evaluate_without_a_correlation_has_zero_ces():
    frame = pl.DataFrame({"prediction": [3.0, 3.0], "average_rating": [1.0, 5.0],
                          "category": ["a", "a"], "rating_number": [1, 2]})
    got = evaluate(frame, params=5_000_000, flops=400_000_000)
    assert got["plcc"] is None and got["ces"] == 0.0
