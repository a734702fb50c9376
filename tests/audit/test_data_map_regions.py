"""The data map's region rule on a table small enough to compute by hand."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.data_map import data_map_table
from curation.errors import UserError

# Seven train items over two epochs. An item predicted target + d - v, then target + d + v
# (or below the target, for a negative d) has mean |error| |d| (when |d| >= v) and
# variability v (the standard deviation over epochs, ddof 0).
TARGET = 4.0
ITEMS = {  # parent_asin: (d, v)
    "A": (-2.0, 0.0),
    "B": (0.1, 0.1),
    "C": (1.5, 0.2),
    "D": (-0.3, 0.3),
    "E": (0.4, 0.4),
    "F": (2.5, 0.5),
    "G": (-3.0, 0.6),
}
# By hand. Of 7 items the top third are those at or above the 5th smallest value (the
# "nearest" quantile at 2/3 sits at rank 2/3 x 6 = 4, counting from 0).
# - variability 0, .1, .2, .3, .4, .5, .6: ambiguous from .4 on -> E, F, G;
# - mean error .1 (B), .3 (D), .4 (E), 1.5 (C), 2 (A), 2.5 (F), 3 (G): the top third of ALL
#   items starts at 2 -> A, F, G; F and G are ambiguous already, so hard -> A alone. (The top
#   third of the four items left, A B C D, would start at 1.5 and take C too.)
# - easy: the rest -> B, C, D.
EXPECTED = {"A": "hard", "B": "easy", "C": "easy", "D": "easy", "E": "ambiguous",
            "F": "ambiguous", "G": "ambiguous"}


def dynamics(items: dict[str, tuple[float, float]], epochs: int = 2) -> pl.DataFrame:
    rows = []
    for asin, (d, v) in items.items():
        for epoch in range(1, epochs + 1):
            spread = -v if epoch % 2 else v
            rows.append({"parent_asin": asin, "epoch": epoch, "prediction": TARGET + d + spread,
                         "target": TARGET, "loss": 0.0, "weight": 1.0})
    return pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=1)  # order is no matter


def test_regions_by_hand():
    table = data_map_table(dynamics(ITEMS))
    assert table["parent_asin"].to_list() == sorted(ITEMS)
    assert dict(zip(table["parent_asin"], table["region"], strict=True)) == EXPECTED
    for row in table.iter_rows(named=True):
        d, v = ITEMS[row["parent_asin"]]
        assert row["mean_error"] == pytest.approx(abs(d))
        assert row["variability"] == pytest.approx(v, abs=1e-12)
        assert row["epochs"] == 2 and row["label"] == TARGET and row["weight"] == 1.0


def test_a_variable_item_is_ambiguous_even_when_its_error_is_the_largest():
    # G has both the largest error and the largest variability: ambiguous wins
    table = data_map_table(dynamics(ITEMS))
    regions = dict(zip(table["parent_asin"], table["region"], strict=True))
    assert regions["G"] == "ambiguous"
    # Steady, G is hard. Variability is then 0, 0, .1, .2, .3, .4, .5: ambiguous from .3 on
    # (D, E, F); the error threshold is unchanged (2), so A and G are hard.
    steady = data_map_table(dynamics({**ITEMS, "G": (-3.0, 0.0)}))
    regions = dict(zip(steady["parent_asin"], steady["region"], strict=True))
    assert regions == {"A": "hard", "B": "easy", "C": "easy", "D": "ambiguous",
                       "E": "ambiguous", "F": "ambiguous", "G": "hard"}


def test_one_epoch_is_not_a_data_map():
    with pytest.raises(UserError, match="1 epoch; a data map needs at least 2"):
        data_map_table(dynamics(ITEMS, epochs=1))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.floats(0, 1)), min_size=3, max_size=40),
       st.integers(2, 5))
def test_the_regions_follow_the_rule_on_any_table(pairs, epochs):
    items = {f"I{i:02d}": (d, v) for i, (d, v) in enumerate(pairs)}
    table = data_map_table(dynamics(items, epochs=epochs))
    variability = sorted(table["variability"])
    error = sorted(table["mean_error"])
    rank = round((len(items) - 1) * 2 / 3)  # the "nearest" quantile at 2/3
    for row in table.iter_rows(named=True):
        if row["variability"] >= variability[rank]:
            expected = "ambiguous"
        elif row["mean_error"] >= error[rank]:
            expected = "hard"
        else:
            expected = "easy"
        assert row["region"] == expected
