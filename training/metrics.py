"""Scores of predictions: the challenge's (PLCC, PLCC+, CES) and the usual errors, overall,
per category and per rating-count decile."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from training.model import ces


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def pearson(prediction: np.ndarray, target: np.ndarray) -> float:
    """Pearson's r; NaN where it is undefined (fewer than 2 items, or a constant side)."""
    if len(prediction) < 2:
        return math.nan
    p = prediction - prediction.mean()
    t = target - target.mean()
    denominator = math.sqrt(float(p @ p) * float(t @ t))
    return float(p @ t) / denominator if denominator > 0 else math.nan


def spearman(prediction: np.ndarray, target: np.ndarray) -> float:
    from scipy.stats import rankdata

    return pearson(rankdata(prediction), rankdata(target))


def scores(prediction: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    error = prediction - target
    r = pearson(prediction, target)
    return {
        "n": len(target),
        "plcc": _finite(r),
        "plcc_plus": max(0.0, r) if math.isfinite(r) else 0.0,
        "spearman": _finite(spearman(prediction, target)) if len(target) > 1 else None,
        "mae": _finite(float(np.abs(error).mean())) if len(target) else None,
        "rmse": _finite(float(np.sqrt((error**2).mean()))) if len(target) else None,
    }


def count_deciles(rating_number: pl.Series) -> pl.Series:
    """Decile 0..9 of each item's rating_number within the frame (by rank, ties by order)."""
    n = len(rating_number)
    ranks = rating_number.fill_null(0).rank("ordinal") - 1
    return (ranks * 10 // max(n, 1)).cast(pl.Int32).alias("count_decile")


def evaluate(frame: pl.DataFrame, params: int, flops: int) -> dict[str, Any]:
    """Scores of one split: columns prediction, average_rating, category, rating_number."""
    overall = scores(frame["prediction"].to_numpy(), frame["average_rating"].to_numpy())
    overall["ces"] = ces(overall["plcc"] or 0.0, params, flops)
    by_category = [
        {"category": key, **scores(g["prediction"].to_numpy(), g["average_rating"].to_numpy())}
        for (key,), g in sorted(frame.group_by("category"), key=lambda kg: str(kg[0][0]))
    ]
    with_deciles = frame.with_columns(count_deciles(frame["rating_number"]))
    by_decile = []
    for (decile,), g in sorted(with_deciles.group_by("count_decile"), key=lambda kg: kg[0][0]):
        by_decile.append({
            "count_decile": int(decile),
            "rating_number_min": int(g["rating_number"].fill_null(0).min()),
            "rating_number_max": int(g["rating_number"].fill_null(0).max()),
            **scores(g["prediction"].to_numpy(), g["average_rating"].to_numpy()),
        })
    return {**overall, "by_category": by_category, "by_count_decile": by_decile}
