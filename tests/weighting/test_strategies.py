from __future__ import annotations

import math
import re

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import weighting
from curation.errors import UserError

LN2 = math.log(2)


def frame(**columns) -> pl.DataFrame:
    data = {"split": ["train"] * len(next(iter(columns.values())))}
    data.update(columns)
    return pl.DataFrame(data, strict=False)


def weights(df: pl.DataFrame, spec: str, **kw) -> list[float]:
    return weighting.compute(df, spec, **kw).to_list()


def close(got, expected, tol=1e-9):
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert math.isclose(g, e, rel_tol=tol, abs_tol=tol), (got, expected)


def test_uniform():
    close(weights(frame(rating_number=[0, 5, None]), "uniform"), [1.0, 1.0, 1.0])


def test_effiminivlm_hand_computed():
    df = pl.DataFrame(
        {"rating_number": [0, 3, 1200, None], "split": ["train", "train", "val", "test"]}
    )
    # mu = mean(log 1, log 4) = ln 2 over train; w = min(log(1+n) / ln 2, 5); missing n -> 0.
    close(weights(df, "effiminivlm"), [0.0, 2.0, 5.0, 0.0])


def test_effiminivlm_without_ratings_in_train_is_uniform():
    close(weights(frame(rating_number=[0, 0, None]), "effiminivlm"), [1.0, 1.0, 1.0])


def test_log_sqrt_and_capped_counts():
    close(weights(frame(rating_number=[0, 3, 15]), "log_count"), [0.0, 1.0, 2.0])
    close(weights(frame(rating_number=[0, 3, 15]), "log_count:cap=1.5"), [0.0, 1.0, 1.5])
    close(weights(frame(rating_number=[0, 4, 16]), "sqrt_count"), [0.0, 1.0, 2.0])
    close(weights(frame(rating_number=[0, 4, 16]), "sqrt_count:cap=1.5"), [0.0, 1.0, 1.5])
    close(weights(frame(rating_number=[0, 5, 20, None]), "capped_count:c=10"), [0, 0.5, 1, 0])


def test_bayes_confidence():
    close(weights(frame(rating_number=[1, 3, 5]), "bayes_confidence"), [0.25, 0.5, 0.625])
    close(weights(frame(rating_number=[1, 3, 5]), "bayes_confidence:m=1"), [0.5, 0.75, 5 / 6])


def test_inverse_variance_hand_computed():
    df = frame(
        rating_number=[4, 100, 9, 0],
        average_rating=[3.0, 4.0, 3.5, 4.0],
        review_rating_std=[1.0, 0.5, 2.0, None],
        review_count=[10, 10, 1, 0],
    )
    # sigma^2: items 1-2 their own (1, 0.25); item 3 has one review -> pooled (1 + 0.25) / 2.
    pooled = (1.0 + 0.25) / 2
    noise = (1.0 / 4 + 0.25 / 100 + pooled / 9) / 3  # over rated train items
    tau2 = float(np.var([3.0, 4.0, 3.5])) - noise
    close(
        weights(df, "inverse_variance"),
        [1 / (tau2 + 1.0 / 4), 1 / (tau2 + 0.25 / 100), 1 / (tau2 + pooled / 9), 0.0],
    )


def test_inverse_variance_floors_tau2_for_all_equal_targets():
    df = frame(
        rating_number=[4, 4],
        average_rating=[4.0, 4.0],
        review_rating_std=[1.0, 1.0],
        review_count=[5, 5],
    )
    close(weights(df, "inverse_variance"), [1 / (1e-3 + 0.25)] * 2)


def test_effective_number():
    close(weights(frame(rating_number=[0, 1, 2]), "effective_number:beta=0.5"), [0.0, 1.0, 1.5])


def test_wilson():
    z = 1.96
    one_review = (1 + z * z / 2 - z * math.sqrt(z * z / 4)) / (1 + z * z)
    df = frame(review_positive_share=[1.0, None, 0.5], review_count=[1, 0, 4])
    half = (0.5 + z * z / 8 - z * math.sqrt(0.25 / 4 + z * z / 64)) / (1 + z * z / 4)
    close(weights(df, "wilson"), [one_review, 0.0, max(half, 0.0)])
    assert 0.20 < one_review < 0.21


def test_helpful_verified():
    df = frame(review_count=[2, 0], verified_share=[1.0, None], helpful_votes=[0, 0])
    close(weights(df, "helpful_verified"), [0.75, 0.5])
    df = frame(review_count=[2], verified_share=[0.5], helpful_votes=[math.e - 1])
    close(weights(df, "helpful_verified"), [0.5 * 2])


def test_lds_on_all_equal_targets():
    df = frame(average_rating=[4.0] * 4)
    close(weights(df, "lds"), [0.5] * 4)  # 1 / sqrt(4): the kernel's centre is 1
    close(weights(df, "lds:reweight=inverse"), [0.25] * 4)


def test_lds_favours_rare_targets():
    df = frame(average_rating=[4.5] * 50 + [1.5] * 2)
    w = weights(df, "lds")
    assert w[-1] > 3 * w[0]


def test_inverse_effective_number():
    df = frame(average_rating=[4.0, 4.0, 3.0])
    close(weights(df, "inverse_effective_number:beta=0.5"), [0.5 / 0.75, 0.5 / 0.75, 1.0])


def test_statistics_come_from_train_only():
    train = {"rating_number": [0, 3], "split": ["train", "train"]}
    base = weights(pl.DataFrame(train), "effiminivlm")
    leaky = pl.DataFrame(
        {"rating_number": [0, 3, 10**6, 10**6], "split": ["train", "train", "val", "test"]}
    )
    assert weights(leaky, "effiminivlm")[:2] == base


def test_product_and_transforms():
    df = pl.DataFrame({"rating_number": [0, 3, 15, 3], "split": ["train"] * 3 + ["val"]})
    product = weights(df, "log_count*capped_count:c=15")
    close(product, [0.0, 1.0 * 3 / 15, 2.0 * 1.0, 1.0 * 3 / 15])
    normalised = weighting.compute(df, "log_count", normalise=True)
    assert math.isclose(normalised[:3].mean(), 1.0)
    close(weights(df, "log_count", clip=(0.5, 1.5)), [0.5, 1.0, 1.5, 1.0])
    close(weights(df, "log_count", power=0), [1.0, 1.0, 1.0, 1.0])


def test_errors_name_the_valid_choices():
    df = frame(rating_number=[1])
    with pytest.raises(
        ValueError,
        match="unknown weighting strategy 'nope'; valid strategies: alignment, bayes_confidence, "
        "capped_count",
    ):
        weighting.compute(df, "nope")
    with pytest.raises(
        ValueError,
        match=r"'capped_count' has no parameter k; its parameters: "
        r"c=100.0",
    ):
        weighting.compute(df, "capped_count:k=3")
    with pytest.raises(ValueError, match=r"needs the column\(s\) average_rating"):
        weighting.compute(df, "lds")
    with pytest.raises(ValueError, match="should look like key=value"):
        weighting.compute(df, "capped_count:c")
    with pytest.raises(ValueError, match="cannot normalise"):
        weighting.compute(frame(rating_number=[0, 0]), "capped_count", normalise=True)


def test_every_strategy_is_listed_with_a_line_on_what_it_favours():
    expected = {
        "uniform",
        "effiminivlm",
        "log_count",
        "sqrt_count",
        "capped_count",
        "bayes_confidence",
        "inverse_variance",
        "effective_number",
        "wilson",
        "helpful_verified",
        "lds",
        "inverse_effective_number",
    }
    assert expected <= set(weighting.STRATEGIES)
    assert all(s.favours for s in weighting.STRATEGIES.values())


# -- properties --------------------------------------------------------------------------------

ratings = st.integers(10, 50).map(lambda i: i / 10)
rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(0, 10**6)),  # rating_number
        ratings,  # average_rating
        st.one_of(st.none(), st.floats(0, 2)),  # review_rating_std
        st.integers(0, 500),  # review_count
        st.floats(0, 1),  # share of 4-5 stars, of verified purchases
        st.integers(0, 10**4),  # helpful votes
        st.sampled_from(["train", "train", "train", "val", "test"]),
    ),
    min_size=1,
    max_size=60,
)


def _frame(data) -> pl.DataFrame:
    n, y, std, reviews, share, helpful, split = (list(c) for c in zip(*data, strict=True))
    return pl.DataFrame(
        {
            "parent_asin": [f"B{i}" for i in range(len(n))],
            "rating_number": n,
            "average_rating": y,
            "review_rating_std": std,
            "review_count": reviews,
            "review_positive_share": share,
            "verified_share": share,
            "helpful_votes": helpful,
            "split": split,
            # the audits' columns (joined in by weighting.catalog_io from audit tables)
            "label_quality": share,
            "is_label_issue": [v < 0.1 for v in share],
            "dm_region": [("easy", "ambiguous", "hard", None)[h % 4] for h in helpful],
            "is_misaligned": [v > 0.9 for v in share],
        },
        schema_overrides={"rating_number": pl.Int64, "review_rating_std": pl.Float64},
    )


@settings(max_examples=60, deadline=None)
@given(data=rows, permutation_seed=st.integers(0, 2**16))
def test_every_strategy_gives_finite_non_negative_order_free_weights(data, permutation_seed):
    df = _frame(data)
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=permutation_seed)
    for name in weighting.STRATEGIES:
        w = weighting.compute(df, name)
        assert w.len() == df.height
        assert w.is_finite().all() and (w >= 0).all(), name
        again = shuffled.with_columns(weighting.compute(shuffled, name))
        by_item = dict(zip(df["parent_asin"], w, strict=True))
        for asin, value in again.select("parent_asin", "weight").iter_rows():
            assert math.isclose(value, by_item[asin], rel_tol=1e-9, abs_tol=1e-12), name
        train = df["split"] == "train"
        if train.any() and w.filter(train).sum() > 0:
            normalised = weighting.compute(df, name, normalise=True)
            assert math.isclose(normalised.filter(train).mean(), 1.0, rel_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(data=rows)
def test_effiminivlm_equals_the_paper_formula(data):
    df = _frame(data)
    n = [0 if v is None else v for v in df["rating_number"].to_list()]
    train = [math.log1p(v) for v, s in zip(n, df["split"], strict=True) if s == "train"]
    mu = sum(train) / len(train) if train else 0.0
    expected = [min(math.log1p(v) / mu, 5.0) if mu > 0 else 1.0 for v in n]
    got = weighting.compute(df, "effiminivlm").to_list()
    for g, e in zip(got, expected, strict=True):
        assert abs(g - e) <= 1e-12


# -- promises of the README's table and of compute's transforms ---------------------------------


def test_transforms_apply_power_then_clip_then_normalise():
    df = pl.DataFrame({"rating_number": [0, 3, 15, 3], "split": ["train"] * 3 + ["val"]})
    # log_count: 0, 1, 2 (and 1 for val); power 2: 0, 1, 4, 1; clip to [0.5, 3]: 0.5, 1, 3, 1;
    # normalised by the train mean 1.5: 1/3, 2/3, 2, 2/3. (Clip before power would give
    # 0.25, 1, 4, 1; normalising first another answer again.)
    w, stats = weighting.compute_with_stats(df, "log_count", power=2, clip=(0.5, 3.0),
                                            normalise=True)
    close(w.to_list(), [1 / 3, 2 / 3, 2.0, 2 / 3])
    assert stats["transforms"] == {"power": 2, "clip": [0.5, 3.0], "normalise": True}
    assert stats["train_mean_before_normalising"] == pytest.approx(1.5)
    close(weights(df, "log_count", power=0.5), [0.0, 1.0, math.sqrt(2), 1.0])  # a temperature


def test_compute_refuses_weights_a_transform_made_infinite():
    df = frame(rating_number=[0, 5])
    with pytest.raises(ValueError, match="gave 1 weights that are negative, NaN or infinite"):
        weighting.compute(df, "capped_count:c=10", power=-1)  # 0 ** -1


def test_the_statistics_come_back_with_the_weights():
    df = pl.DataFrame({"rating_number": [0, 3, 10**6], "split": ["train", "train", "test"]})
    w, stats = weighting.compute_with_stats(df, "effiminivlm*capped_count:c=2")
    assert stats["spec"] == "effiminivlm*capped_count:c=2" and stats["train_rows"] == 2
    first, second = stats["terms"]
    assert first == {"strategy": "effiminivlm", "params": {}, "stats": {"mean_log1p_n": LN2}}
    assert second == {"strategy": "capped_count", "params": {"c": 2}, "stats": {}}
    close(w.to_list(), [0.0, 2.0 * 1.0, 5.0 * 1.0])


def test_a_frame_without_splits_is_all_train_and_a_lazy_frame_is_collected():
    df = pl.DataFrame({"rating_number": [0, 3]})
    close(weights(df, "effiminivlm"), [0.0, 2.0])  # mu = ln 4 / 2 = ln 2 over both rows
    close(weighting.compute(df.lazy(), "sqrt_count:cap=none", normalise=True).to_list(),
          [0.0, 2.0])


def test_default_caps_and_none():
    many = frame(rating_number=[1] * 20 + [10**6])
    mean_sqrt = (20 + 1000) / 21
    # sqrt_count caps at 10 unless told otherwise (1000 / 48.6 would be 20.6) ...
    close(weights(many, "sqrt_count")[-2:], [1 / mean_sqrt, 10.0])
    close(weights(many, "sqrt_count:cap=none")[-2:], [1 / mean_sqrt, 1000 / mean_sqrt])
    # ... log_count has no cap unless told
    mu = (20 * LN2 + math.log1p(10**6)) / 21
    close(weights(many, "log_count")[-2:], [LN2 / mu, math.log1p(10**6) / mu])
    assert math.log1p(10**6) / mu > 10


def test_bayes_confidence_prior_is_the_train_median_but_at_least_one():
    close(weights(frame(rating_number=[0, 0, 3]), "bayes_confidence"), [0.0, 0.0, 0.75])
    df = pl.DataFrame({"rating_number": [2, 4, 6, 1000], "split": ["train"] * 3 + ["val"]})
    close(weights(df, "bayes_confidence"), [2 / 6, 4 / 8, 6 / 10, 1000 / 1004])  # m = 4


def test_inverse_variance_min_reviews_decides_whose_own_spread_counts():
    df = frame(
        rating_number=[4, 100, 9],
        average_rating=[3.0, 4.0, 3.5],
        review_rating_std=[1.0, 0.5, 2.0],
        review_count=[10, 10, 1],
    )
    # min_reviews=1: every item uses its own sigma (no pooling)
    noise = (1.0 / 4 + 0.25 / 100 + 4.0 / 9) / 3
    tau2 = float(np.var([3.0, 4.0, 3.5])) - noise
    assert tau2 < 1e-3  # floored
    close(weights(df, "inverse_variance:min_reviews=1"),
          [1 / (1e-3 + 1.0 / 4), 1 / (1e-3 + 0.25 / 100), 1 / (1e-3 + 4.0 / 9)])


def test_wilson_and_helpful_verified_parameters():
    df = frame(review_positive_share=[0.75], review_count=[4])
    close(weights(df, "wilson:z=0"), [0.75])  # no uncertainty: the share itself
    df = frame(review_count=[2], verified_share=[1.0], helpful_votes=[0])
    close(weights(df, "helpful_verified:prior=0"), [1.0])  # no smoothing
    close(weights(df, "helpful_verified:prior=2"), [(2 + 2) / (2 + 4)])


def test_targets_outside_one_to_five_count_in_the_edge_bins():
    # the effiminivlm profile keeps any average_rating; one below 1 counts in bin 1.0, one above
    # 5 in bin 5.0 (not the fallback 0, and no error)
    df = frame(average_rating=[0.5, 1.0, 5.0, 5.5, 3.0])
    two, one = 0.5 / (1 - 0.5**2), 1.0  # (1 - beta) / (1 - beta^n) for 2 and 1 items in a bin
    close(weights(df, "inverse_effective_number:beta=0.5"), [two, two, two, two, one])


def test_a_target_between_bins_counts_in_the_bin_it_rounds_to():
    # 3.149 is in bin 3.1 (not 3.15, which the histogram's index would put in 3.2), 3.04 in 3.0
    df = frame(average_rating=[3.149, 3.1, 3.2, 3.04, 3.0, 3.0])
    two, three = 0.5 / (1 - 0.5**2), 0.5 / (1 - 0.5**3)
    close(weights(df, "inverse_effective_number:beta=0.5"),
          [two, two, 1.0, three, three, three])


def test_inverse_variance_counts_items_with_one_rating():
    df = frame(
        rating_number=[1, 100, 9],
        average_rating=[2.0, 4.0, 3.5],
        review_rating_std=[None, 0.5, 2.0],
        review_count=[1, 10, 1],
    )
    pooled = 0.25  # only the second item has 5 reviews or more
    noise = (pooled / 1 + 0.25 / 100 + pooled / 9) / 3  # the item rated once counts
    tau2 = float(np.var([2.0, 4.0, 3.5])) - noise
    close(weights(df, "inverse_variance"),
          [1 / (tau2 + pooled / 1), 1 / (tau2 + 0.25 / 100), 1 / (tau2 + pooled / 9)])


def test_lds_smooths_with_its_kernel():
    df = pl.DataFrame({"average_rating": [4.0] * 4 + [4.1, 2.0],
                       "split": ["train"] * 5 + ["val"]})
    near = math.exp(-1 / 8)  # kernel at one bin from the centre, sigma 2
    # sqrt counts: 4.0 -> 2, 4.1 -> 1; smoothed: 4.0 -> 2 + near, 4.1 -> 2 near + 1; 2.0 -> 0
    close(weights(df, "lds"), [1 / (2 + near)] * 4 + [1 / (2 * near + 1), 0.0])
    close(weights(df, "lds:kernel_size=1,reweight=inverse"), [1 / 4] * 4 + [1.0, 0.0])
    near = math.exp(-1 / 2)  # sigma 1: exp(-1 / (2 sigma^2)) one bin away
    close(weights(df, "lds:sigma=1"), [1 / (2 + near)] * 4 + [1 / (2 * near + 1), 0.0])


def test_label_quality_strategy():
    df = frame(label_quality=[0.5, 1e-13, None, 0.9], is_label_issue=[False, True, None, True])
    close(weights(df, "label_quality"), [0.5, 0.0, 1.0, 0.9])  # unaudited items weigh 1
    close(weights(df, "label_quality:exponent=2"), [0.25, 0.0, 1.0, 0.81])
    close(weights(df, "label_quality:drop_flagged=1"), [0.5, 0.0, 1.0, 0.0])
    close(weights(df, "label_quality:exponent=0"), [1.0, 0.0, 1.0, 1.0])


def test_data_map_strategy():
    df = pl.DataFrame({"dm_region": ["easy", "ambiguous", "hard", None],
                       "split": ["train", "train", "train", "test"]})
    close(weights(df, "data_map"), [1.0, 1.0, 0.0, 1.0])  # val and test have no region: 1
    close(weights(df, "data_map:easy=0.5,ambiguous=2,hard=0.25"), [0.5, 2.0, 0.25, 1.0])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("capped_count:c=0", "c must be > 0"),
        ("effective_number:beta=1", r"beta must be in \(0, 1\)"),
        ("inverse_effective_number:beta=0", r"beta must be in \(0, 1\)"),
        ("lds:reweight=log", "reweight must be 'inverse' or 'sqrt_inv'"),
        ("label_quality:exponent=-1", "exponent must be >= 0"),
        ("data_map:hard=-1", "hard must be >= 0"),
    ],
)
def test_a_parameter_out_of_range_is_an_error(spec, message):
    df = frame(rating_number=[1, 2], average_rating=[4.0, 3.0], label_quality=[0.5, 0.5],
               is_label_issue=[False, False], dm_region=["easy", "hard"])
    with pytest.raises(ValueError, match=message):
        weighting.compute(df, spec)


def test_a_strategy_name_is_registered_once():
    from weighting.registry import register

    with pytest.raises(ValueError, match="'uniform' is already registered"):
        register("uniform", favours="x", requires=())(lambda stats: pl.lit(1.0))
    assert weighting.STRATEGIES["lds"].defaults == {"sigma": 2.0, "kernel_size": 5,
                                                    "reweight": "sqrt_inv"}


@pytest.mark.parametrize("spec,message", [
    ("log_count:cap=abc", "log_count: cap must be a number, got 'abc'"),
    ("sqrt_count:cap=nan", "sqrt_count: cap must be a finite number, got nan"),
    ("sqrt_count:cap=inf", "sqrt_count: cap must be a finite number, got inf"),
    ("sqrt_count:cap=0", "sqrt_count: cap must be > 0, got 0"),
    ("lds:sigma=-1", "lds: sigma must be > 0, got -1"),
    ("lds:kernel_size=4", "lds: kernel_size must be a positive odd integer, got 4"),
    ("lds:kernel_size=2.5", "lds: kernel_size must be an integer, got 2.5"),
    ("lds:reweight=3", "lds: reweight must be text, got 3"),
    ("capped_count:c=none", "capped_count: c cannot be none"),
    ("capped_count:c=true", "capped_count: c must be a number, got True"),
    ("effective_number:beta=1", "effective_number: beta must be in (0, 1), got 1"),
    ("bayes_confidence:m=0", "bayes_confidence: m must be > 0, got 0"),
    ("label_quality:drop_flagged=2", "label_quality: drop_flagged must be 0 or 1, got 2"),
    ("data_map:hard=-0.5", "data_map: hard must be >= 0, got -0.5"),
])
def test_a_bad_parameter_is_refused_with_its_name_and_range(spec, message):
    df = frame(rating_number=[1, 5], average_rating=[4.0, 2.0], review_count=[3, 9],
               review_rating_std=[0.5, 1.0], label_quality=[0.9, 0.1],
               is_label_issue=[False, True], dm_region=["easy", "hard"])
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        weighting.compute(df, spec)


@pytest.mark.parametrize("transforms,message", [
    ({"clip": (10.0, 0.1)}, "--clip 10.0,0.1: the lower bound is above the upper one"),
    ({"clip": (float("nan"), None)}, "--clip: the lower bound must be a finite number >= 0"),
    ({"clip": (None, -1.0)}, "--clip: the upper bound must be a finite number >= 0"),
    ({"clip": (None, 0.0)}, "--clip: an upper bound of 0 makes every weight 0, so nothing would "
                            "train; give one above 0"),
    ({"clip": (0, 0)}, "--clip: an upper bound of 0 makes every weight 0"),
    ({"power": float("inf")}, "--power must be a finite number, got inf"),
    ({"power": float("nan")}, "--power must be a finite number, got nan"),
])
def test_transforms_that_would_silently_flatten_or_break_weights_are_refused(transforms, message):
    with pytest.raises(UserError, match=re.escape(message)):
        weighting.compute(frame(rating_number=[1, 5]), "sqrt_count", **transforms)


def test_none_is_accepted_where_a_parameter_may_be_none():
    close(weights(frame(rating_number=[0, 3]), "log_count:cap=none"),
          weights(frame(rating_number=[0, 3]), "log_count"))
