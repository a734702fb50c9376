"""Every built-in weighting strategy on 1M items: time per strategy and in total.

    .venv/bin/python bench/weights.py            # 1,000,000 items, median of 3 runs

Target (issue 4): every built-in strategy for 1M items in under 5 s in total.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import polars as pl

import weighting


def items(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ratings = np.floor(rng.random(n) ** (-1 / 0.75)).astype(np.int64)
    reviews = rng.binomial(np.minimum(ratings, 400), 0.5)
    return pl.DataFrame(
        {
            "parent_asin": [f"B{i:09d}" for i in range(n)],
            "rating_number": ratings,
            "average_rating": np.round(np.clip(rng.normal(4.1, 0.6, n), 1, 5), 1),
            "review_rating_std": np.where(reviews > 1, rng.uniform(0, 1.5, n), np.nan),
            "review_count": reviews,
            "review_positive_share": rng.random(n),
            "verified_share": rng.random(n),
            "helpful_votes": rng.geometric(0.3, n) - 1,
            "split": rng.choice(["train", "val", "test"], n, p=[0.8, 0.1, 0.1]),
            # the audits' columns, as weighting.catalog_io joins them in
            "label_quality": rng.random(n),
            "is_label_issue": rng.random(n) < 0.03,
            "dm_region": rng.choice(["easy", "ambiguous", "hard"], n),
            "is_misaligned": rng.random(n) < 0.03,
        }
    ).with_columns(pl.col("review_rating_std").fill_nan(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    frame = items(args.items)
    names = sorted(weighting.STRATEGIES)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.runs):
        for name in names:
            started = time.perf_counter()
            weighting.compute(frame, name)
            times[name].append(time.perf_counter() - started)
    print(f"| strategy ({args.items:,} items) | seconds (median of {args.runs}) |")
    print("|---|---:|")
    for name in names:
        print(f"| {name} | {statistics.median(times[name]):.3f} |")
    total = sum(statistics.median(t) for t in times.values())
    print(
        f"| **all {len(names)} strategies** | **{total:.2f}** (target < 5 s: "
        f"{'met' if total < 5 else 'missed'}) |"
    )


if __name__ == "__main__":
    main()
