"""Specs, transforms and the statistics handed back by weighting.compute, checked against hand
computations (kills the mutants of weighting/compute.py that test_strategies leaves)."""

from __future__ import annotations

import math

import polars as pl
import pytest

import weighting
from curation.errors import UserError
from weighting.compute import parse_spec


def test_spec_values_are_typed():
    terms = parse_spec(
        "a:n1=None,n2=NULL,n3=null,t1=true,t2=TRUE,f1=False,f2=false,i=3,x=2.5,s= word"
    )
    assert terms == [("a", {"n1": None, "n2": None, "n3": None, "t1": True, "t2": True,
                            "f1": False, "f2": False, "i": 3, "x": 2.5, "s": "word"})]
    params = terms[0][1]
    assert params["t1"] is True and params["f1"] is False
    assert type(params["i"]) is int and type(params["x"]) is float


def test_a_spec_is_a_product_of_terms_with_comma_separated_parameters():
    assert parse_spec(" a:k=1, k2=2 * b ") == [("a", {"k": 1, "k2": 2}), ("b", {})]
    # the first "=" separates a key from its value
    assert parse_spec("a:label=x=y") == [("a", {"label": "x=y"})]


@pytest.mark.parametrize("spec", ["*lds", "lds**uniform", ":c=3"])
def test_an_empty_term_is_refused_by_name(spec):
    with pytest.raises(UserError, match=f"empty strategy in spec {spec!r}".replace("*", r"\*")):
        parse_spec(spec)


def test_a_parameter_without_a_value_is_refused():
    with pytest.raises(UserError, match=r"parameter 'c' in 'capped_count:c' should look like"):
        parse_spec("capped_count:c")


def _items() -> pl.DataFrame:
    return pl.DataFrame({
        "rating_number": [0, 3, 15, 7, 1],
        "split": ["train", "train", "train", "val", "test"],
    })


def test_the_statistics_name_the_spec_terms_and_transforms():
    items = _items()
    w, stats = weighting.compute_with_stats(
        items, "log_count*capped_count:c=10", power=2.0, clip=(0.5, None), normalise=True
    )
    mu = (math.log(1) + math.log(4) + math.log(16)) / 3  # train only
    raw = [(math.log1p(n) / mu * min(n, 10) / 10) ** 2 for n in items["rating_number"]]
    clipped = [max(v, 0.5) for v in raw]
    mean = sum(clipped[:3]) / 3
    assert w.to_list() == pytest.approx([v / mean for v in clipped])
    assert w.name == "weight"
    assert stats == {
        "spec": "log_count*capped_count:c=10",
        "train_rows": 3,
        "terms": [
            {"strategy": "log_count", "params": {"cap": None},
             "stats": {"mean_log1p_n": pytest.approx(mu)}},
            {"strategy": "capped_count", "params": {"c": 10}, "stats": {}},
        ],
        "transforms": {"power": 2.0, "clip": [0.5, None], "normalise": True},
        "train_mean_before_normalising": pytest.approx(mean),
    }


def test_no_transform_is_recorded_as_none():
    _, stats = weighting.compute_with_stats(_items(), "uniform")
    assert stats["transforms"] == {"power": None, "clip": None, "normalise": False}
    assert "train_mean_before_normalising" not in stats


def test_a_lazy_frame_gives_the_same_weights():
    items = _items()
    assert weighting.compute(items.lazy(), "log_count").to_list() == \
        weighting.compute(items, "log_count").to_list()


def test_a_pandas_frame_gives_the_same_weights_and_anything_else_is_named():
    items = _items()
    frame = items.to_pandas()
    frame.index = [10 * i + 7 for i in range(len(frame))]  # an index is dropped, not read
    assert weighting.compute(frame, "capped_count:c=10", normalise=True).to_list() == \
        weighting.compute(items, "capped_count:c=10", normalise=True).to_list()
    with pytest.raises(UserError, match=r"from a Polars or pandas DataFrame, not builtins\.dict"):
        weighting.compute(items.to_dict(as_series=False), "uniform")


def test_without_a_split_column_every_row_is_train():
    items = _items().drop("split")
    w, stats = weighting.compute_with_stats(items, "capped_count:c=10", normalise=True)
    assert stats["train_rows"] == 5
    raw = [min(n, 10) / 10 for n in items["rating_number"]]
    assert w.to_list() == pytest.approx([v / (sum(raw) / 5) for v in raw])
    assert sum(w.to_list()) / 5 == pytest.approx(1.0)


def test_normalising_makes_the_train_mean_one_not_the_overall_mean():
    w = weighting.compute(_items(), "capped_count:c=10", normalise=True).to_list()
    raw = [0.0, 0.3, 1.0, 0.7, 0.1]
    assert w == pytest.approx([v / (1.3 / 3) for v in raw])


def test_a_missing_column_is_named_with_what_the_frame_has():
    items = pl.DataFrame({"split": ["train"], "title": ["x"]})
    with pytest.raises(UserError) as caught:
        weighting.compute(items, "inverse_variance")
    assert str(caught.value) == (
        "strategy 'inverse_variance' needs the column(s) rating_number, average_rating, "
        "review_rating_std, review_count, which the frame lacks (it has: split, title)"
    )


def test_infinite_or_nan_weights_are_refused_with_their_count():
    items = _items()  # capped_count gives 0 to the item without ratings
    with pytest.raises(UserError) as caught:
        weighting.compute(items, "capped_count:c=10", power=-1.0)  # 0 ** -1 = inf
    assert str(caught.value) == \
        "'capped_count:c=10' gave 1 weights that are negative, NaN or infinite"
    # a NaN power is refused before it makes NaN weights
    with pytest.raises(UserError, match="--power must be a finite number, got nan"):
        weighting.compute(items, "capped_count:c=10", power=float("nan"))


def test_a_lower_clip_bound_of_zero_is_allowed():
    """Draw 1212 (2026-12-06): a lower bound of 0, which the message allows (">= 0"), was
    refused. (An upper bound of 0 is refused: every weight would be 0.)"""
    items = _items()
    raw = weighting.compute(items, "capped_count:c=10").to_list()  # 0, 0.3, 1, 0.7, 0.1
    assert weighting.compute(items, "capped_count:c=10", clip=(0, 0.5)).to_list() == \
        pytest.approx([min(v, 0.5) for v in raw])


def test_equal_clip_bounds_are_allowed_and_give_every_item_that_weight():
    """Draw 1216 (2026-12-07): bounds only "above" one another are refused; equal bounds are a
    valid (if blunt) way to give every item the same weight."""
    items = _items()
    assert weighting.compute(items, "capped_count:c=10", clip=(0.5, 0.5)).to_list() == \
        [0.5] * items.height
    with pytest.raises(UserError, match=r"--clip 0.6,0.5: the lower bound is above the upper"):
        weighting.compute(items, "capped_count:c=10", clip=(0.6, 0.5))
