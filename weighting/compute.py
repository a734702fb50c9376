"""Weights for a frame from a strategy spec, with the transforms that combine strategies."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from curation.errors import UserError
from weighting.registry import fit_strategy, get_strategy, strategy_expression

SPLIT = "split"
TRAIN = "train"


def _value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_spec(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """``"a:k=v,k2=v2*b"`` -> [("a", {"k": v, "k2": v2}), ("b", {})]."""
    terms = []
    for term in spec.split("*"):
        name, _, rest = term.strip().partition(":")
        if not name:
            raise UserError(f"empty strategy in spec {spec!r}")
        params: dict[str, Any] = {}
        for pair in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = pair.partition("=")
            if not sep:
                raise UserError(f"parameter {pair!r} in {spec!r} should look like key=value")
            params[key.strip()] = _value(value)
        terms.append((name, params))
    return terms


def as_polars(frame: Any) -> pl.DataFrame:
    """A Polars DataFrame from a Polars DataFrame or LazyFrame, or a pandas DataFrame (whose
    index is dropped); anything else is a UserError naming what came."""
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    if type(frame).__module__.split(".")[0] == "pandas" and hasattr(frame, "columns"):
        return pl.from_pandas(frame)
    raise UserError(f"weights are computed from a Polars or pandas DataFrame, not "
                    f"{type(frame).__module__}.{type(frame).__name__}")


def compute_with_stats(
    frame: pl.DataFrame,
    spec: str,
    *,
    clip: tuple[float | None, float | None] | None = None,
    power: float | None = None,
    normalise: bool = False,
) -> tuple[pl.Series, dict[str, Any]]:
    """Weights for every row of ``frame`` and the train statistics they were made from.

    Transforms, applied in this order to the product of the strategies: ``power`` (a
    temperature: 0 flattens every weight to 1, 1 keeps them), ``clip`` (lower, upper), and
    ``normalise`` (divide by the mean over the train rows, so that it is 1 there).
    """
    _check_transforms(clip, power)
    frame = as_polars(frame)
    train = frame.filter(pl.col(SPLIT) == TRAIN) if SPLIT in frame.columns else frame
    product: pl.Expr = pl.lit(1.0)
    stats: dict[str, Any] = {"spec": spec, "train_rows": train.height, "terms": []}
    for name, given in parse_spec(spec):
        strategy = get_strategy(name)
        missing = [c for c in strategy.requires if c not in frame.columns]
        if missing:
            raise UserError(
                f"strategy {name!r} needs the column(s) {', '.join(missing)}, which the frame "
                f"lacks (it has: {', '.join(frame.columns)})"
            )
        params = strategy.resolve(given)
        fitted = fit_strategy(strategy, train, params)
        product = product * strategy_expression(strategy, fitted, params)
        stats["terms"].append({"strategy": name, "params": params, "stats": fitted})
    # with_columns broadcasts a constant (uniform) to every row; select would give one row.
    weights = frame.with_columns(product.cast(pl.Float64).alias("_weight"))["_weight"]
    if power is not None:
        weights = weights.pow(power)
    if clip is not None:
        weights = weights.clip(lower_bound=clip[0], upper_bound=clip[1])
    stats["transforms"] = {
        "power": power,
        "clip": list(clip) if clip else None,
        "normalise": normalise,
    }
    if normalise:
        is_train = (
            (frame[SPLIT] == TRAIN)
            if SPLIT in frame.columns
            else pl.repeat(True, frame.height, eager=True)
        )
        mean = float(weights.filter(is_train).mean() or 0.0)
        if mean <= 0 or not math.isfinite(mean):
            raise UserError(f"cannot normalise {spec!r}: its mean weight on train is {mean}")
        weights = weights / mean
        stats["train_mean_before_normalising"] = mean
    bad = weights.is_null() | weights.is_nan() | weights.is_infinite() | (weights < 0)
    if bad.any():  # a strategy broke its promise: never hand such weights to a trainer
        raise UserError(
            f"{spec!r} gave {int(bad.sum())} weights that are negative, NaN or infinite"
        )
    return weights.rename("weight"), stats


def _check_transforms(clip: tuple[float | None, float | None] | None,
                      power: float | None) -> None:
    """Transforms that would give negative, non-finite or silently constant weights."""
    if power is not None and not math.isfinite(power):
        raise UserError(f"--power must be a finite number, got {power}")
    if clip is None:
        return
    low, high = clip
    for name, bound in (("lower", low), ("upper", high)):
        if bound is not None and not (math.isfinite(bound) and bound >= 0):
            raise UserError(f"--clip: the {name} bound must be a finite number >= 0, got {bound}")
    if high == 0:  # every weight 0: the weighted loss is 0 and nothing trains
        raise UserError("--clip: an upper bound of 0 makes every weight 0, so nothing would "
                        "train; give one above 0")
    if low is not None and high is not None and low > high:
        raise UserError(f"--clip {low},{high}: the lower bound is above the upper one "
                        "(every weight would be the lower bound)")


def compute(frame: pl.DataFrame, spec: str, **transforms: Any) -> pl.Series:
    """One finite, non-negative weight per row of ``frame``, a Polars or pandas DataFrame
    (see ``compute_with_stats``)."""
    return compute_with_stats(frame, spec, **transforms)[0]
