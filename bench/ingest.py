"""Ingest throughput and peak memory beside the floor: a bare DuckDB copy of the same files.

    .venv/bin/python bench/ingest.py            # 100k items (~1M reviews), then 200k
    .venv/bin/python bench/ingest.py --items 20000 --runs 3
    .venv/bin/python bench/ingest.py --before /tmp/before   # also an earlier commit's worktree

For each size, each run measures, side by side and each in its own process:
  bare:   COPY (SELECT * FROM read_json(f, ignore_errors=true)) TO 'f.parquet', per file
          (ignore_errors because the corpus carries 1% planted mess, which a bare read_json
          cannot otherwise read: it drops such lines silently, which ingest must not)
  ingest: curation.ingest.ingest(...) into a fresh catalog
  before: with --before TREE, ingest again with the code of that checkout (a worktree of an
          earlier commit), in the same loop
and prints the medians, the ratio ingest / bare (and before / bare), and each one's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from _measure import ROOT, run_measured

BARE = """
import duckdb, glob, sys
con = duckdb.connect()
for i, f in enumerate(sorted(glob.glob(sys.argv[1] + '/*/*.jsonl'))):
    con.execute(f"COPY (SELECT * FROM read_json('{f}', ignore_errors=true)) "
                f"TO '{sys.argv[2]}/{i}.parquet' (FORMAT parquet)")
"""
INGEST = """
import sys

from curation.ingest import ingest
ingest(sys.argv[1], sys.argv[2], force=True)
"""


def corpus(workdir: Path, items: int) -> Path:
    from curation.synth import SynthConfig, synthesize

    out = workdir / f"corpus-{items}"
    manifest = out / "ground_truth" / "manifest.json"
    if not manifest.exists():
        print(f"generating {items:,} items ...", flush=True)
        synthesize(
            out, SynthConfig(n_items=items, seed=0, mess_rate=0.01, images=False, review_share=0.75)
        )
    info = json.loads(manifest.read_text())
    print(
        f"corpus: {info['items']:,} items, {info['review_lines']:,} review lines, "
        f"{info['meta_lines']:,} metadata lines, "
        f"{sum(p.stat().st_size for p in (out / 'raw').rglob('*.jsonl')) / 1e6:,.0f} MB"
    )
    return out / "raw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--before", type=Path, metavar="TREE",
                        help="also time the ingest of this checkout (an earlier commit's worktree)")
    args = parser.parse_args()
    if args.before and not (args.before / "curation" / "ingest.py").is_file():
        raise SystemExit(f"--before {args.before}: not a checkout of this project")
    rows = []
    for items in (args.items, 2 * args.items):
        raw = corpus(args.workdir, items)
        bare, ours, before = [], [], []
        for run in range(args.runs):
            scratch = args.workdir / "scratch"
            shutil.rmtree(scratch, ignore_errors=True)
            (scratch / "bare").mkdir(parents=True)
            bare.append(run_measured(BARE, str(raw), str(scratch / "bare")))
            ours.append(run_measured(INGEST, str(raw), str(scratch / "catalog")))
            line = (f"  run {run + 1}: bare {bare[-1][0]:.2f}s {bare[-1][1]:.0f} MB | "
                    f"ingest {ours[-1][0]:.2f}s {ours[-1][1]:.0f} MB")
            if args.before:
                before.append(run_measured(INGEST, str(raw), str(scratch / "before"),
                                           tree=args.before))
                line += f" | before {before[-1][0]:.2f}s {before[-1][1]:.0f} MB"
            print(line, flush=True)
        b = statistics.median(t for t, _ in bare)
        o = statistics.median(t for t, _ in ours)
        row = (items, b, max(m for _, m in bare), o, max(m for _, m in ours), o / b)
        if args.before:
            p = statistics.median(t for t, _ in before)
            row += (p, max(m for _, m in before), p / b)
        rows.append(row)
    head = ("\n| items | bare copy (s) | bare peak RSS (MB) | ingest (s) | ingest peak RSS (MB) "
            "| ingest / bare |")
    if args.before:
        head += " before (s) | before peak RSS (MB) | before / bare |"
    print(head)
    print("|---:" * (9 if args.before else 6) + "|")
    for items, b, bm, o, om, ratio, *earlier in rows:
        line = f"| {items:,} | {b:.2f} | {bm:.0f} | {o:.2f} | {om:.0f} | {ratio:.2f}x |"
        if earlier:
            p, pm, pratio = earlier
            line += f" {p:.2f} | {pm:.0f} | {pratio:.2f}x |"
        print(line)


if __name__ == "__main__":
    main()
