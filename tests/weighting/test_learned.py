"""The learned weight: it recovers the weighting the synthetic corpus plants, beats uniform,
and as a weighting strategy only evaluates a fitted curve (or refuses in one line)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

import weighting
from curation.synth.corpus import RATING_NUMBER_ALPHA, star_probabilities
from training.heads import fit_weighted_ridge
from weighting.learned import KNOTS_KEY, VALUES_KEY, curve_values, learned_weights

pytest.importorskip("torch")

from training.learned_weighting import fit_learned_curve, hat_basis

STARS = np.arange(1, 6)
FEATURES = 32
LOADING = np.random.default_rng(99).normal(size=FEATURES) / np.sqrt(FEATURES)


def corpus_items(count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Items drawn by ``curate synth``'s own law (curation/synth/corpus.py): a hidden quality,
    a Pareto rating count, stars around the quality, the one-decimal mean of the stars as the
    target; features carry a noisy linear signal of the item's true mean rating."""
    quality = np.clip(rng.normal(3.9, 0.6, count), 1.0, 5.0)
    n = np.minimum(rng.random(count) ** (-1.0 / RATING_NUMBER_ALPHA), 2e6).astype(int)
    probs = np.array([star_probabilities(q) for q in quality])
    true_mean = probs @ STARS
    star_var = probs @ STARS**2 - true_mean**2
    target = np.array([round(float(STARS @ rng.multinomial(k, p)) / k, 1)
                       for k, p in zip(n, probs, strict=True)])
    features = 3.0 * np.outer(true_mean - 3.9, LOADING) + rng.normal(size=(count, FEATURES))
    return {"x": features, "y": target, "n": n, "true_mean": true_mean, "star_var": star_var}


def optimal_weight(items: dict[str, np.ndarray]) -> np.ndarray:
    """1 / Var(target | features) per item: what the best linear predictor of the true mean
    leaves (tau^2, measured on these items), plus the stars' variance over n, plus the
    rounding to one decimal (0.1^2 / 12)."""
    design = np.c_[np.ones(len(items["y"])), items["x"]]
    fitted = design @ np.linalg.lstsq(design, items["true_mean"], rcond=None)[0]
    tau2 = float(np.var(items["true_mean"] - fitted))
    return 1.0 / (tau2 + items["star_var"] / items["n"] + 0.01 / 12)


@pytest.mark.parametrize("monotone", [1, 0])
def test_the_learned_curve_recovers_the_planted_weighting(monotone):
    items = corpus_items(1500, np.random.default_rng(0))
    stats = fit_learned_curve(items["x"], items["y"], items["n"], monotone=monotone)
    learned = curve_values(stats, np.log1p(items["n"]))
    assert spearmanr(learned, optimal_weight(items))[0] > 0.9
    assert stats["inner_score_learned"] > stats["inner_score_uniform"]
    # the planted weight of an item with 30 ratings is 9 times that of one with 1 (truth:
    # 0.9 against 8.3, then 11.4 for n -> inf); the learned curve leans the same way, less far
    low, middle = curve_values(stats, np.log1p([1, 30]))
    assert middle > 3 * low


def test_learned_weights_beat_uniform_on_fresh_items():
    """Fitted on a training set's items alone, the curve's ridge predicts the true mean of
    new items better than the unweighted ridge, over repeated draws."""
    gains = []
    for rep in range(5):
        rng = np.random.default_rng(100 + rep)
        train, test = corpus_items(1500, rng), corpus_items(3000, rng)
        stats = fit_learned_curve(train["x"], train["y"], train["n"])
        score = {}
        for name, weight in (("learned", curve_values(stats, np.log1p(train["n"]))),
                             ("uniform", np.ones(len(train["y"])))):
            predicted = fit_weighted_ridge(train["x"], train["y"], weight).predict(test["x"])
            score[name] = np.corrcoef(predicted, test["true_mean"])[0, 1]
        gains.append(score["learned"] - score["uniform"])
    assert np.mean(gains) > 0.003 and sum(g > 0 for g in gains) >= 3


def test_the_fit_is_deterministic_and_flat_on_too_few_items():
    items = corpus_items(400, np.random.default_rng(1))
    first = fit_learned_curve(items["x"], items["y"], items["n"])
    assert first == fit_learned_curve(items["x"], items["y"], items["n"])
    few = fit_learned_curve(items["x"][:10], items["y"][:10], items["n"][:10])
    assert few[VALUES_KEY] == [1.0] and "10 items" in few["flat_because"]


@settings(max_examples=40, deadline=None)
@given(knots=st.lists(st.floats(0, 12), min_size=1, max_size=9, unique=True),
       values=st.lists(st.floats(0, 20), min_size=9, max_size=9),
       counts=st.lists(st.integers(0, 10**7) | st.none(), min_size=1, max_size=30))
def test_the_strategy_evaluates_the_curve_the_fit_describes(knots, values, counts):
    """The Polars expression, the numpy curve and the fit's hat basis agree, flat beyond the
    end knots, and never negative."""
    knots = sorted(knots)
    if np.any(np.diff(knots) < 1e-6):
        return
    stats = {KNOTS_KEY: knots, VALUES_KEY: values[: len(knots)]}
    frame = pl.DataFrame({"rating_number": counts}, schema={"rating_number": pl.Int64})
    u = np.log1p(np.array([c or 0 for c in counts], dtype=float))
    expected = curve_values(stats, u)
    assert np.allclose(learned_weights(frame, stats), expected, rtol=1e-9, atol=1e-9)
    assert np.allclose(hat_basis(u, np.array(knots)) @ np.array(stats[VALUES_KEY]), expected)
    assert np.all(expected >= 0)


def test_weights_compute_refuses_learned_and_prune_in_one_line():
    frame = pl.DataFrame({"rating_number": [1, 5], "average_rating": [4.0, 3.0]})
    for spec, says in (("learned", "run it in a study"), ("prune", "it is an arm of a study")):
        with pytest.raises(weighting.registry.UserError, match=says):
            weighting.compute(frame, spec)
    assert "learned" not in weighting.STRATEGIES  # every entry there computes from a frame
    assert weighting.get_strategy("learned").defaults["monotone"] == 1
    with pytest.raises(weighting.registry.UserError, match="objective must be plcc or mse"):
        weighting.get_strategy("learned").resolve({"objective": "mae"})
