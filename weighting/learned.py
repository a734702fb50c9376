"""Strategies whose statistics need more than the frame: the learned weight and pruning.

- ``learned``: w = f(log(1 + n)), a piecewise-linear curve through fitted knots, monotone in
  the rating count when asked. Its statistics (the knots and the values there) are fitted by
  ``training.learned_weighting`` on the training items' cached embeddings, to the validation
  score of the weighted ridge head; this layer cannot see embeddings, so here it only
  *evaluates* a fitted curve (``curve_expression``). ``weighting.compute(frame, "learned")``
  has nothing to fit from and refuses in one line: the study fits it.
- ``prune``: keep the top share of a training part by a score, a study's arm (the selection is
  ``training.study.crossfit``'s); as weights it refuses the same way.

Both are in the registry (``get_strategy`` finds them, their parameters are checked like any
strategy's) but not in ``STRATEGIES``, whose every entry computes from a frame alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from curation.errors import UserError
from weighting.registry import POSITIVE, ZERO_OR_ONE, Limit, register

LEARNED = "learned"
PRUNE = "prune"
KNOTS_KEY = "knots_log1p_n"  # where the curve's knots are, in log(1 + rating_number)
VALUES_KEY = "values"  # the weight at each knot (mean 1 over the items it was fitted on)
OBJECTIVES = ("plcc", "mse")
AT_LEAST_TWO = Limit(">= 2", lambda v: v >= 2)
AN_OBJECTIVE = Limit(" or ".join(OBJECTIVES), lambda v: v in OBJECTIVES)
LOG1P_N = pl.col("rating_number").cast(pl.Float64).fill_null(0.0).clip(lower_bound=0.0).log1p()


def _fitted_in_a_study(train: pl.DataFrame, *, knots: int = 8, monotone: int = 1,
                       objective: str = "plcc", inner_folds: int = 3,
                       components: int = 64) -> dict[str, Any]:
    """The learned curve's parameters; its fit needs the items' embeddings, which a frame
    does not have."""
    raise UserError("strategy 'learned' is fitted on the training items' cached embeddings "
                    "(the ridge head's validation score): run it in a study "
                    "(curate study run, [trainer] head = \"ridge\" or design = \"kfold\"); "
                    "weights compute cannot fit it from a slice's columns")


@register(
    LEARNED,
    fit=_fitted_in_a_study,
    requires=("rating_number",),
    family="learned",
    limits={"knots": AT_LEAST_TWO, "monotone": ZERO_OR_ONE, "inner_folds": AT_LEAST_TWO,
            "components": POSITIVE, "objective": AN_OBJECTIVE},
    elsewhere=True,
    favours="what the ridge head's validation score asks for: f(log(1+n)), a piecewise-linear "
    "curve (monotone=1: non-decreasing) fitted by hypergradient in a study",
)
def learned(stats: dict[str, Any]) -> pl.Expr:
    return curve_expression(stats)


def _a_study_arm(train: pl.DataFrame, *, score: str = "rating_count",
                 weight: str = "uniform") -> dict[str, Any]:
    """The pruning arm's parameters: keep the top share by ``score``, weighted by ``weight``."""
    raise UserError("'prune' keeps the top share of a study's training items by a score: it "
                    "is an arm of a study (strategies = [\"uniform\", "
                    "\"prune:score=rating_count\"]), not weights of a slice")


@register(
    PRUNE,
    fit=_a_study_arm,
    requires=("rating_number",),
    family="pruning",
    elsewhere=True,
    favours="a study arm: the top share of the training part by score (rating_count, learned "
    "or a strategy's weight), set beside the random slice of the same size",
)
def prune(stats: dict[str, Any]) -> pl.Expr:
    raise UserError("'prune' is a study arm, not a weighting")


def curve_values(stats: dict[str, Any], log1p_n: np.ndarray) -> np.ndarray:
    """The fitted curve at ``log1p_n``: linear between knots, flat beyond the end ones."""
    knots, values = _curve(stats)
    return np.interp(np.asarray(log1p_n, dtype=np.float64), knots, values)


def curve_expression(stats: dict[str, Any]) -> pl.Expr:
    """The fitted curve as a Polars expression of rating_number (see ``curve_values``)."""
    knots, values = _curve(stats)
    if len(knots) == 1:
        return pl.lit(float(values[0]))
    u = LOG1P_N.clip(float(knots[0]), float(knots[-1]))
    # one linear piece per interval between knots, picked by where u lies
    expression: Any = pl.when(u <= float(knots[1])).then(
        _piece(u, knots[0], knots[1], values[0], values[1]))
    for i in range(1, len(knots) - 1):
        expression = expression.when(u <= float(knots[i + 1])).then(
            _piece(u, knots[i], knots[i + 1], values[i], values[i + 1]))
    return expression.otherwise(float(values[-1]))


def _piece(u: pl.Expr, left: float, right: float, low: float, high: float) -> pl.Expr:
    slope = (high - low) / (right - left)
    return pl.lit(float(low)) + (u - float(left)) * float(slope)


def _curve(stats: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    if KNOTS_KEY not in stats or VALUES_KEY not in stats:
        raise UserError("a learned curve needs its fitted knots and values (fitted in a study)")
    knots = np.asarray(stats[KNOTS_KEY], dtype=np.float64)
    values = np.asarray(stats[VALUES_KEY], dtype=np.float64)
    if knots.ndim != 1 or len(knots) != len(values) or not len(knots) or np.any(
            np.diff(knots) <= 0) or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise UserError("a learned curve's knots must increase and its values be finite and "
                        ">= 0, one per knot")
    return knots, values


def learned_weights(frame: pl.DataFrame, stats: dict[str, Any]) -> np.ndarray:
    """The weights a fitted curve gives the rows of ``frame``."""
    return frame.select(curve_expression(stats).cast(pl.Float64).alias("w"))["w"].to_numpy()


def paper_curve(rating_number: np.ndarray, mean_log1p_n: float) -> np.ndarray:
    """The paper's weight (``effiminivlm``) at these counts, its train mean of log(1 + n)
    given, to plot beside a learned curve."""
    from weighting.strategies import effiminivlm

    frame = pl.DataFrame({"rating_number": np.asarray(rating_number, dtype=np.float64)})
    return frame.select(effiminivlm({"mean_log1p_n": mean_log1p_n}).cast(pl.Float64)
                        .alias("w"))["w"].to_numpy()
