"""The built-in weighting strategies. Formulas: ../shared/reference/effiminivlm.md and
weighting-and-scaling.md. n is an item's rating_number (missing -> 0), y its average_rating
(the training target), s the standard deviation of its review stars.

Each strategy's weights are finite and >= 0 by construction; a zero weight means "no
evidence" (n = 0, say). Weights are not normalised unless ``compute(..., normalise=True)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from curation.errors import UserError
from weighting import learned as _learned  # noqa: F401 - registers learned and prune
from weighting.registry import (
    NON_NEGATIVE,
    ODD_POSITIVE,
    OPEN_UNIT,
    POSITIVE,
    ZERO_OR_ONE,
    register,
)

N = pl.col("rating_number").cast(pl.Float64).fill_null(0.0).clip(lower_bound=0.0)
Y = "average_rating"
TARGET_BINS = np.round(np.arange(1.0, 5.0001, 0.1), 1)  # average_rating has one decimal


def _train_n(train: pl.DataFrame) -> pl.Series:
    return train.select(N.alias("n"))["n"]


def _by_target_bin(table: dict[float, float], fallback: float) -> pl.Expr:
    """Look a per-target-bin value up for every row (bins of 0.1 over [1, 5])."""
    keys = pl.col(Y).clip(1.0, 5.0).round(1)
    return keys.replace_strict(table, default=fallback, return_dtype=pl.Float64).fill_null(fallback)


# -- reliability: more evidence -> more weight ------------------------------------------------


@register("uniform", favours="every item equally (the unweighted baseline)", requires=())
def uniform(stats: dict[str, Any]) -> pl.Expr:
    return pl.lit(1.0)


def _fit_mean_log(train: pl.DataFrame) -> dict[str, Any]:
    return {
        "mean_log1p_n": float(np.log1p(_train_n(train).to_numpy()).mean()) if len(train) else 0.0
    }


@register(
    "effiminivlm",
    fit=_fit_mean_log,
    requires=("rating_number",),
    favours="items with many ratings, as the paper: min(log(1+n) / mean_train log(1+n), 5)",
)
def effiminivlm(stats: dict[str, Any]) -> pl.Expr:
    mu = stats["mean_log1p_n"]
    if mu <= 0:
        return pl.lit(1.0)
    return pl.min_horizontal(N.log1p() / mu, pl.lit(5.0))


@register(
    "log_count",
    limits={"cap": POSITIVE},
    fit=_fit_mean_log,
    requires=("rating_number",),
    favours="items with many ratings, logarithmically: log(1+n) / mean_train log(1+n)",
)
def log_count(stats: dict[str, Any], *, cap: float | None = None) -> pl.Expr:
    mu = stats["mean_log1p_n"]
    weight = N.log1p() / mu if mu > 0 else pl.lit(1.0)
    return weight if cap is None else weight.clip(upper_bound=cap)


def _fit_mean_sqrt(train: pl.DataFrame) -> dict[str, Any]:
    n = _train_n(train).to_numpy()
    return {"mean_sqrt_n": float(np.sqrt(n).mean()) if len(n) else 0.0}


@register(
    "sqrt_count",
    limits={"cap": POSITIVE},
    fit=_fit_mean_sqrt,
    requires=("rating_number",),
    favours="items with many ratings, by the square root: sqrt(n) / mean_train sqrt(n)",
)
def sqrt_count(stats: dict[str, Any], *, cap: float | None = 10.0) -> pl.Expr:
    mu = stats["mean_sqrt_n"]
    weight = N.sqrt() / mu if mu > 0 else pl.lit(1.0)
    return weight if cap is None else weight.clip(upper_bound=cap)


@register(
    "capped_count",
    limits={"c": POSITIVE},
    requires=("rating_number",),
    favours="items with up to c ratings, linearly; all items past c alike: min(n, c) / c",
)
def capped_count(stats: dict[str, Any], *, c: float = 100.0) -> pl.Expr:
    return N.clip(upper_bound=c) / c


def _fit_median_n(train: pl.DataFrame, *, m: float | None = None) -> dict[str, Any]:
    median = float(np.median(_train_n(train).to_numpy())) if len(train) else 0.0
    return {"prior_count": float(m) if m is not None else max(median, 1.0)}


@register(
    "bayes_confidence",
    limits={"m": POSITIVE},
    fit=_fit_median_n,
    requires=("rating_number",),
    favours="the confidence of a Bayesian average: n / (n + m), m the train median n",
)
def bayes_confidence(stats: dict[str, Any]) -> pl.Expr:
    return N / (N + stats["prior_count"])


def _fit_variances(train: pl.DataFrame, *, min_reviews: int = 5) -> dict[str, Any]:
    """sigma^2 pooled over items with enough reviews; tau^2 by the method of moments."""
    n = _train_n(train).to_numpy()
    y = train[Y].to_numpy().astype(float)
    std = train["review_rating_std"].fill_null(float("nan")).to_numpy().astype(float)
    reviews = train["review_count"].fill_null(0).to_numpy()
    enough = (reviews >= min_reviews) & np.isfinite(std)
    pooled = float(np.mean(std[enough] ** 2)) if enough.any() else 1.0
    sigma2 = np.where(enough, std**2, pooled)
    rated = n > 0
    noise = float(np.mean(sigma2[rated] / n[rated])) if rated.any() else 0.0
    total = float(np.var(y[rated])) if rated.sum() > 1 else 0.0
    return {"pooled_sigma2": pooled, "tau2": max(total - noise, 1e-3), "min_reviews": min_reviews}


@register(
    "inverse_variance",
    limits={"min_reviews": POSITIVE},
    fit=_fit_variances,
    requires=("rating_number", "average_rating", "review_rating_std", "review_count"),
    favours="items whose average is precise: 1 / (tau^2 + sigma^2 / n), random effects",
)
def inverse_variance(stats: dict[str, Any]) -> pl.Expr:
    enough = (pl.col("review_count").fill_null(0) >= stats["min_reviews"]) & pl.col(
        "review_rating_std"
    ).is_not_null()
    sigma2 = (
        pl.when(enough).then(pl.col("review_rating_std") ** 2).otherwise(stats["pooled_sigma2"])
    )
    return pl.when(N > 0).then(1.0 / (stats["tau2"] + sigma2 / N)).otherwise(0.0)


@register(
    "effective_number",
    limits={"beta": OPEN_UNIT},
    requires=("rating_number",),
    favours="items with many ratings, saturating: (1 - beta^n) / (1 - beta) (Cui et al.)",
)
def effective_number(stats: dict[str, Any], *, beta: float = 0.999) -> pl.Expr:
    return (1.0 - pl.lit(beta).pow(N)) / (1.0 - beta)


@register(
    "wilson",
    limits={"z": NON_NEGATIVE},
    requires=("review_positive_share", "review_count"),
    favours="items whose 4-5 star share is surely high: Wilson lower bound",
)
def wilson(stats: dict[str, Any], *, z: float = 1.96) -> pl.Expr:
    n = pl.col("review_count").cast(pl.Float64).fill_null(0.0)
    p = pl.col("review_positive_share").fill_null(0.0)
    centre = p + z * z / (2 * n)
    margin = z * ((p * (1 - p) / n + z * z / (4 * n * n)).sqrt())
    bound = (centre - margin) / (1 + z * z / n)
    return pl.when(n > 0).then(bound.clip(lower_bound=0.0)).otherwise(0.0)


@register(
    "helpful_verified",
    limits={"prior": NON_NEGATIVE},
    requires=("review_count", "verified_share", "helpful_votes"),
    favours="items whose reviews are verified and found helpful",
)
def helpful_verified(stats: dict[str, Any], *, prior: float = 1.0) -> pl.Expr:
    reviews = pl.col("review_count").cast(pl.Float64).fill_null(0.0)
    verified = pl.col("verified_share").fill_null(0.0) * reviews
    smoothed = (verified + prior) / (reviews + 2 * prior)  # Beta(prior, prior) smoothing
    return smoothed * (1.0 + pl.col("helpful_votes").cast(pl.Float64).fill_null(0.0).log1p())


# -- re-balancing: rare targets -> more weight --------------------------------------------------


def _target_histogram(train: pl.DataFrame) -> np.ndarray:
    y = train[Y].drop_nulls().clip(1.0, 5.0).round(1).to_numpy()
    index = np.rint((y - 1.0) * 10).astype(int)
    return np.bincount(index, minlength=len(TARGET_BINS)).astype(float)


def _fit_lds(
    train: pl.DataFrame, *, sigma: float = 2.0, kernel_size: int = 5, reweight: str = "sqrt_inv"
) -> dict[str, Any]:
    if reweight not in ("inverse", "sqrt_inv"):
        raise UserError(f"lds: reweight must be 'inverse' or 'sqrt_inv', got {reweight!r}")
    counts = _target_histogram(train)
    if reweight == "sqrt_inv":
        counts = np.sqrt(counts)
    half = kernel_size // 2
    offsets = np.arange(-half, half + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.max()
    smoothed = np.convolve(counts, kernel, mode="same")
    density = {float(b): float(d) for b, d in zip(TARGET_BINS, smoothed, strict=True)}
    return {"smoothed_density": density}


@register(
    "lds",
    limits={"sigma": POSITIVE, "kernel_size": ODD_POSITIVE},
    fit=_fit_lds,
    requires=("average_rating",),
    family="re-balancing",
    favours="rare target values: 1 / (target histogram smoothed with a Gaussian kernel)",
)
def lds(stats: dict[str, Any]) -> pl.Expr:
    inverse = {k: (1.0 / v if v > 0 else 0.0) for k, v in stats["smoothed_density"].items()}
    return _by_target_bin(inverse, fallback=0.0)


def _fit_bin_counts(train: pl.DataFrame) -> dict[str, Any]:
    counts = _target_histogram(train)
    return {"bin_counts": {float(b): float(c) for b, c in zip(TARGET_BINS, counts, strict=True)}}


@register(
    "inverse_effective_number",
    limits={"beta": OPEN_UNIT},
    fit=_fit_bin_counts,
    requires=("average_rating",),
    family="re-balancing",
    favours="rare target values: (1 - beta) / (1 - beta^n_bin) per 0.1-wide target bin",
)
def inverse_effective_number(stats: dict[str, Any], *, beta: float = 0.999) -> pl.Expr:
    table = {
        k: ((1 - beta) / (1 - beta**c) if c > 0 else 0.0) for k, c in stats["bin_counts"].items()
    }
    return _by_target_bin(table, fallback=0.0)


# -- learned from a model: audit tables joined in by weighting.catalog_io ---------------------


@register(
    "label_quality",
    limits={"exponent": NON_NEGATIVE, "drop_flagged": ZERO_OR_ONE},
    requires=("label_quality", "is_label_issue"),
    family="learned",
    favours="items whose label agrees with out-of-fold predictions (cleanlab's label-quality "
    "score ^ exponent); drop_flagged=1 gives flagged items 0 (curate audit label-quality)",
)
def label_quality(stats: dict[str, Any], *, exponent: float = 1.0,
                  drop_flagged: int = 0) -> pl.Expr:
    # items the audit did not see (none, when the audited slice holds this one) weigh 1
    quality = pl.col("label_quality").cast(pl.Float64).fill_nan(None).fill_null(1.0)
    # scores below 1e-12 are 0: subnormal weights overflow when weights are normalised
    score = pl.when(quality < 1e-12).then(0.0).otherwise(quality.clip(0.0, 1.0).pow(exponent))
    if drop_flagged:
        return pl.when(pl.col("is_label_issue").fill_null(False)).then(0.0).otherwise(score)
    return score


@register(
    "data_map",
    limits={"easy": NON_NEGATIVE, "ambiguous": NON_NEGATIVE, "hard": NON_NEGATIVE},
    requires=("dm_region",),
    family="learned",
    favours="a weight per data-map region of a run (curate audit data-map): easy, ambiguous, "
    "hard (default 1, 1, 0: hard items are often mislabelled)",
)
def data_map(stats: dict[str, Any], *, easy: float = 1.0, ambiguous: float = 1.0,
             hard: float = 0.0) -> pl.Expr:
    table = {"easy": easy, "ambiguous": ambiguous, "hard": hard}
    # val and test items have no region (the map covers train items): weight 1
    return pl.col("dm_region").cast(pl.String).replace_strict(
        table, default=1.0, return_dtype=pl.Float64).fill_null(1.0)
