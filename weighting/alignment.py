"""The ``alignment`` weighting: items whose image does not match their own text (flagged by
``curate audit alignment``, joined in by ``weighting.catalog_io`` as a file in the catalog)
weigh ``flagged`` (default 0), every other item 1."""

from __future__ import annotations

from typing import Any

import polars as pl

from weighting.registry import NON_NEGATIVE, register


@register(
    "alignment",
    limits={"flagged": NON_NEGATIVE},
    requires=("is_misaligned",),
    family="learned",
    favours="items whose image matches their text: those the alignment audit flags weigh "
    "`flagged` (default 0), the rest 1 (curate audit alignment)",
)
def alignment(stats: dict[str, Any], *, flagged: float = 0.0) -> pl.Expr:
    # items the audit did not score (no image) are not flagged: weight 1
    return pl.when(pl.col("is_misaligned").fill_null(False)).then(pl.lit(float(flagged))) \
        .otherwise(pl.lit(1.0))
