"""k-core filtering of 10M synthetic interactions: curate's DuckDB k-core beside the usual
pandas loop, each in its own process, medians of 3 runs.

    .venv/bin/python bench/recsys.py               # 10,000,000 interactions, k = 5

Target (issue 9): the 5-core of 10M interactions in under a minute on this machine. The
interactions have heavy-tailed users and items (as reviews do), string ids like the
corpus's, and are read from Parquet by both sides.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import ROOT, run_measured

OUT = ROOT / "bench" / "out" / "recsys"

CURATE = """
import sys, time, duckdb
from curation.recsys import kcore
started = time.perf_counter()
con = duckdb.connect(config={"memory_limit": "4GB", "enable_progress_bar": False})
con.execute(f"CREATE TEMP TABLE interactions AS SELECT * FROM '{sys.argv[1]}'")
result = kcore(con, int(sys.argv[2]))
print(f"curate: {result.interactions_out:,} interactions, {result.users:,} users, "
      f"{result.items:,} items in {result.rounds} rounds, {time.perf_counter() - started:.1f} s")
"""

PANDAS = """
import sys, time
import pandas as pd
started = time.perf_counter()
frame = pd.read_parquet(sys.argv[1], columns=["user_id", "parent_asin", "rating", "timestamp"])
k, rounds = int(sys.argv[2]), 0
while True:
    rounds += 1
    users = frame["user_id"].value_counts()
    items = frame["parent_asin"].value_counts()
    keep = frame["user_id"].isin(users[users >= k].index) & \\
        frame["parent_asin"].isin(items[items >= k].index)
    if keep.all():
        break
    frame = frame[keep]
print(f"pandas: {len(frame):,} interactions in {rounds} rounds, "
      f"{time.perf_counter() - started:.1f} s")
"""


GENERATE = """
import sys
import numpy as np, polars as pl
n, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
users, items = max(1000, n // 5), max(500, n // 40)
# heavy-tailed activity and popularity (lognormal), as reviews have
p_user = rng.lognormal(0, 1.0, users); p_user /= p_user.sum()
p_item = rng.lognormal(0, 1.6, items); p_item /= p_item.sum()
draws = int(n * 1.15)
frame = pl.DataFrame({
    "u": rng.choice(users, draws, p=p_user), "i": rng.choice(items, draws, p=p_item),
    "rating": rng.integers(1, 6, draws).astype(np.float64),
    "timestamp": rng.integers(1_400_000_000_000, 1_690_000_000_000, draws),
}).unique(subset=["u", "i"], keep="first", maintain_order=True).head(n).with_row_index("ord")
frame.select(
    pl.format("A{}", pl.col("u")).alias("user_id"),
    pl.format("B0{}", pl.col("i")).alias("parent_asin"),
    "rating", "timestamp", pl.col("ord").cast(pl.Int64),
).write_parquet(path)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--core", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"interactions-{args.interactions}.parquet"
    if not data.exists():  # in a child process, so that this one stays small
        run_measured(GENERATE, str(args.interactions), str(data))
    rows = pl.scan_parquet(data).select(pl.len()).collect().item()
    times: dict[str, list[float]] = {"curate": [], "pandas": []}
    peaks: dict[str, list[float]] = {"curate": [], "pandas": []}
    for _ in range(args.runs):
        for name, code in (("curate", CURATE), ("pandas", PANDAS)):
            seconds, peak = run_measured(code, str(data), str(args.core))
            times[name].append(seconds)
            peaks[name].append(peak)
    print(f"\n| {rows:,} interactions, {args.core}-core | seconds (median of {args.runs}) | "
          "peak RSS (MB) |")
    print("|---|---:|---:|")
    for name in times:
        print(f"| {name} | {statistics.median(times[name]):.1f} | "
              f"{statistics.median(peaks[name]):,.0f} |")
    ratio = statistics.median(times["pandas"]) / statistics.median(times["curate"])
    curate = statistics.median(times["curate"])
    print(f"| pandas / curate | {ratio:.1f}x | |")
    print(f"\ntarget: under 60 s -> {'met' if curate < 60 else 'missed'} ({curate:.1f} s, "
          "process start and Parquet read included)")


if __name__ == "__main__":
    main()
