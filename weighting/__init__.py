"""Sample weights for curated slices: the paper's rating-count weights and alternatives.

    >>> import polars as pl, weighting
    >>> frame = pl.DataFrame({"rating_number": [0, 3, 1200], "average_rating": [4.0, 3.3, 4.6],
    ...                       "split": ["train", "train", "val"]})
    >>> weighting.compute(frame, "effiminivlm").round(3).to_list()
    [0.0, 2.0, 5.0]

``compute(frame, spec)`` gives one finite, non-negative weight per row. The spec names a
strategy with optional parameters, ``"capped_count:c=50"``, or a product of several,
``"effiminivlm*lds:sigma=3"``. Statistics come from the rows whose ``split`` is ``"train"``
(all rows when there is no split column). ``curate weights list`` shows every strategy.
"""

from weighting import alignment as _alignment  # noqa: F401 - registers `alignment`
from weighting import strategies as _strategies  # noqa: F401 - registers the built-ins
from weighting.compute import compute, compute_with_stats, parse_spec
from weighting.registry import STRATEGIES, Strategy, get_strategy, reads_reviews, register

__all__ = [
    "STRATEGIES",
    "Strategy",
    "compute",
    "compute_with_stats",
    "get_strategy",
    "parse_spec",
    "reads_reviews",
    "register",
]
