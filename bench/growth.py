"""How ingest and build-slice grow with the corpus: 1M, 2M and 4M items, the exponent of the fit.

    .venv/bin/python bench/growth.py                        # 1M, 2M, 4M items, 3 runs each
    .venv/bin/python bench/growth.py --items 100000 200000 400000 --runs 1
    .venv/bin/python bench/growth.py --generate-only         # make the corpora (minutes each)

Each size is a synthetic corpus (seed 0, 1% planted mess, no images, 10% of an item's ratings
left a review: about 1.4 review lines per item). Each run, each in its own process:
  ingest:      curation.ingest.ingest(raw, a fresh catalog)
  build-slice: a 40% nested slice of that catalog with the `effiminivlm` profile and
               --min-per-category 10000, from scratch (clean + split + slice, no validation)
Prints the medians of wall time and peak RSS per size, the time per item, and for each stage
the exponent b of the least-squares fit time = a x items^b on log-log axes (1 is linear) and
the peak RSS of the largest size over that of the smallest (1 is flat).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
from pathlib import Path

from _measure import ROOT, run_measured

FRAC = 0.4
REVIEW_SHARE = 0.1

INGEST = """
import sys

from curation.ingest import ingest
ingest(sys.argv[1], sys.argv[2], force=True)
"""

BUILD_SLICE = """
import sys

from curation.slices import build_slice

build_slice(sys.argv[1], float(sys.argv[2]), profile="effiminivlm", min_per_category=10000,
            name="bench")
"""


def corpus(workdir: Path, items: int) -> Path:
    """The raw folder of the size's corpus, generated once."""
    from curation.synth import SynthConfig, synthesize

    out = workdir / f"growth-corpus-{items}"
    manifest = out / "ground_truth" / "manifest.json"
    if not manifest.exists():
        print(f"generating {items:,} items ...", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        synthesize(out, SynthConfig(n_items=items, seed=0, mess_rate=0.01, images=False,
                                    review_share=REVIEW_SHARE))
    info = json.loads(manifest.read_text())
    size = sum(p.stat().st_size for p in (out / "raw").rglob("*.jsonl")) / 1e6
    print(f"corpus: {info['items']:,} items, {info['meta_lines']:,} metadata lines, "
          f"{info['review_lines']:,} review lines, {size:,.0f} MB", flush=True)
    return out / "raw"


def exponent(sizes: list[int], seconds: list[float]) -> float:
    """b of the least-squares line log(seconds) = log(a) + b log(items)."""
    xs = [math.log(n) for n in sizes]
    ys = [math.log(t) for t in seconds]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
            / sum((x - mx) ** 2 for x in xs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1_000_000, 2_000_000, 4_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--generate-only", action="store_true",
                        help="make the corpora and stop (nothing timed)")
    args = parser.parse_args()
    if len(set(args.items)) < 2 and not args.generate_only:
        parser.error("--items needs at least two different sizes to fit a growth exponent")
    sizes = sorted(set(args.items))
    raws = {n: corpus(args.workdir, n) for n in sizes}
    if args.generate_only:
        return
    rows = []
    for n in sizes:
        ingests, slices = [], []
        catalog = args.workdir / "growth-catalog"
        for run in range(args.runs):
            shutil.rmtree(catalog, ignore_errors=True)
            ingests.append(run_measured(INGEST, str(raws[n]), str(catalog)))
            slices.append(run_measured(BUILD_SLICE, str(catalog), str(FRAC)))
            print(f"  {n:,} items, run {run + 1}: ingest {ingests[-1][0]:.1f}s "
                  f"{ingests[-1][1]:.0f} MB | build-slice {slices[-1][0]:.1f}s "
                  f"{slices[-1][1]:.0f} MB", flush=True)
        shutil.rmtree(catalog, ignore_errors=True)
        rows.append((n, *(statistics.median(v[i] for v in part)
                          for part in (ingests, slices) for i in (0, 1))))
    print("\n| items | ingest (s) | ingest µs/item | ingest peak RSS (MB) | build-slice (s) "
          "| build-slice µs/item | build-slice peak RSS (MB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, t_in, m_in, t_sl, m_sl in rows:
        print(f"| {n:,} | {t_in:.1f} | {1e6 * t_in / n:.1f} | {m_in:,.0f} | {t_sl:.1f} "
              f"| {1e6 * t_sl / n:.1f} | {m_sl:,.0f} |")
    for stage, t, m in (("ingest", 1, 2), ("build-slice", 3, 4)):
        b = exponent([r[0] for r in rows], [r[t] for r in rows])
        print(f"{stage}: time grows as items^{b:.2f} (1 is linear); peak RSS at "
              f"{rows[-1][0]:,} items / at {rows[0][0]:,}: {rows[-1][m] / rows[0][m]:.2f}x "
              "(1 is flat)")


if __name__ == "__main__":
    main()
