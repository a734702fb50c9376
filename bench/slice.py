"""build-slice beside the EffiMiniVLM authors' way of cutting a fraction, on the same items.

    .venv/bin/python bench/slice.py                   # 1,000,000 items, 3 runs
    .venv/bin/python bench/slice.py --items 100000
    .venv/bin/python bench/slice.py --before /tmp/before   # also an earlier commit's worktree
    .venv/bin/python bench/slice.py --stages               # where build-slice's time goes

Both start from the same ingested catalog (bronze items) and apply the same rules (the
`effiminivlm` profile). Each run, side by side, each in its own process:
  curate: clean + split + nested slice at 40% with --min-per-category 10000, from scratch
          (silver, split and slices are rebuilt), without the validation step
  pandas: the authors' approach: the whole table in memory, their filters, a per-category
          random sample of max(frac x n, 10,000) items, an 80/10/10 split stratified on the
          exact average_rating (values with 50 or fewer items pooled), written as CSV
  before: with --before TREE, curate's run again with the code of that checkout (a worktree
          of an earlier commit), on a fresh copy of its own, and its files compared byte for
          byte with this checkout's
Prints medians of the wall time and the peak RSS, and the ratios pandas / curate (and before /
curate).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
from pathlib import Path

from _measure import ROOT, run_measured

FRAC = 0.4

CURATE = """
import sys

from curation.slices import build_slice

build_slice(sys.argv[1], float(sys.argv[2]), profile="effiminivlm", min_per_category=10000,
            name="bench")
"""

# --stages: the stages one after another in one process, each timed, and the sorted writes
STAGES = """
import sys, time
import curation.clean, curation.slices, curation.sorting
from curation.clean import clean
from curation.slices import build_slice
from curation.split import build_split

sorted_writes = []
def timed(*args, _copy_sorted=curation.sorting.copy_sorted, **kwargs):
    started = time.perf_counter()
    try:
        return _copy_sorted(*args, **kwargs)
    finally:
        sorted_writes.append(time.perf_counter() - started)
curation.clean.copy_sorted = curation.slices.copy_sorted = timed

def stage(name, run):
    sorted_writes.clear()
    started = time.perf_counter()
    run()
    print(f"| {name} | {time.perf_counter() - started:.1f} | {sum(sorted_writes):.1f} |")

catalog, frac = sys.argv[1], float(sys.argv[2])
print("| stage | time (s) | of which sorted writes (s) |")
print("|---|---:|---:|")
stage("clean", lambda: clean(catalog, "effiminivlm"))
stage("split", lambda: build_split(catalog, profile="effiminivlm"))
stage(f"slice at {frac:.0%}", lambda: build_slice(
    catalog, frac, profile="effiminivlm", min_per_category=10000, name="bench"))
stage(f"a new fraction ({frac / 2:.0%}) on that catalog", lambda: build_slice(
    catalog, frac / 2, profile="effiminivlm", min_per_category=10000, name="bench-half"))
"""

PANDAS = """
import glob, sys
import pandas as pd
from sklearn.model_selection import train_test_split
from curation.clean import EFFIMINIVLM_EXCLUDED

catalog, frac, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
files = sorted(glob.glob(f"{catalog}/bronze/items/*/*/*.parquet"))
df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

def text(v):
    return isinstance(v, str) and v.strip() != ""

def listed(v):
    return v is not None and any(text(x) for x in v)

df = df.drop_duplicates("parent_asin")
df = df[~df["category"].isin(EFFIMINIVLM_EXCLUDED)]
df = df[df["main_category"].map(text) & df["title"].map(text)
        & df["features"].map(listed) & df["description"].map(listed)
        & df["average_rating"].notna() & df["rating_number"].notna()]
chars = (df["title"].str.len() + df["features"].map(lambda v: len(" ".join(v)))
         + df["description"].map(lambda v: len(" ".join(v))))
df = df[chars > 30]
df = df[df["images"].map(lambda ims: ims is not None and any(
    text(im["hi_res"]) or text(im["large"]) for im in ims))]
parts = []
for _, group in df.groupby("category"):
    k = min(len(group), max(int(frac * len(group)), 10000))
    parts.append(group.sample(n=k, random_state=42))
sample = pd.concat(parts)
counts = sample["average_rating"].map(sample["average_rating"].value_counts())
strata = sample["average_rating"].where(counts > 50, -1.0)
train, rest = train_test_split(sample, test_size=0.2, stratify=strata, random_state=42)
val, test = train_test_split(rest, test_size=0.5, stratify=strata.loc[rest.index],
                             random_state=42)
for name, part in (("train", train), ("val", val), ("test", test)):
    part.to_csv(f"{out}/{name}.csv", index=False)
"""


def catalog_for(workdir: Path, items: int) -> Path:
    from curation.ingest import ingest
    from curation.synth import SynthConfig, synthesize

    corpus = workdir / f"corpus-items-{items}"
    if not (corpus / "ground_truth" / "manifest.json").exists():
        print(f"generating {items:,} items (metadata only) ...", flush=True)
        synthesize(corpus, SynthConfig(n_items=items, seed=0, images=False, review_share=0.0))
    catalog = workdir / f"catalog-items-{items}"  # ingested only: the runs slice copies of it
    if not (catalog / "catalog.json").exists():
        print("ingesting ...", flush=True)
        ingest(str(corpus / "raw"), catalog)
    return catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--before", type=Path, metavar="TREE",
                        help="another checkout (a worktree of an earlier commit) to run beside")
    parser.add_argument("--stages", action="store_true",
                        help="only time clean, split, slice and a new fraction one by one")
    args = parser.parse_args()
    if args.before and not (args.before / "curation" / "slices.py").is_file():
        raise SystemExit(f"--before {args.before}: not a checkout of this project")
    catalog = catalog_for(args.workdir, args.items)
    if args.stages:
        fresh = args.workdir / f"catalog-items-{args.items}-stages"
        for tree in (ROOT, args.before) if args.before else (ROOT,):
            shutil.rmtree(fresh, ignore_errors=True)
            shutil.copytree(catalog, fresh)
            print(f"\n{tree}:", flush=True)
            run_measured(STAGES, str(fresh), str(FRAC), tree=tree)
        return
    ours, theirs, before = [], [], []
    fresh = args.workdir / f"catalog-items-{args.items}-run"
    fresh_before = args.workdir / f"catalog-items-{args.items}-run-before"
    for run in range(args.runs):
        # from scratch: each run slices a fresh copy of the ingested catalog (build-slice
        # cleans and splits only what is not on disk already)
        for copy in (fresh, fresh_before) if args.before else (fresh,):
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(catalog, copy)
        out = args.workdir / "pandas-out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        ours.append(run_measured(CURATE, str(fresh), str(FRAC)))
        theirs.append(run_measured(PANDAS, str(catalog), str(FRAC), str(out)))
        line = (f"  run {run + 1}: curate {ours[-1][0]:.1f}s {ours[-1][1]:.0f} MB | "
                f"pandas {theirs[-1][0]:.1f}s {theirs[-1][1]:.0f} MB")
        if args.before:
            before.append(run_measured(CURATE, str(fresh_before), str(FRAC), tree=args.before))
            line += f" | before {before[-1][0]:.1f}s {before[-1][1]:.0f} MB"
        print(line, flush=True)
    t_ours, t_theirs = (statistics.median(t for t, _ in r) for r in (ours, theirs))
    m_ours, m_theirs = (statistics.median(m for _, m in r) for r in (ours, theirs))
    print(f"\n| {args.items:,} items | time (s) | peak RSS (MB) |")
    print("|---|---:|---:|")
    print(f"| curate build-slice (clean + split + slice) | {t_ours:.1f} | {m_ours:.0f} |")
    print(f"| pandas, the authors' approach | {t_theirs:.1f} | {m_theirs:.0f} |")
    print(f"| pandas / curate | {t_theirs / t_ours:.1f}x | {m_theirs / m_ours:.1f}x |")
    if args.before:
        t_before = statistics.median(t for t, _ in before)
        m_before = statistics.median(m for _, m in before)
        print(f"| curate before ({args.before}) | {t_before:.1f} | {m_before:.0f} |")
        print(f"| before / curate | {t_before / t_ours:.2f}x | {m_before / m_ours:.2f}x |")
        for part in ("silver/effiminivlm/items.parquet", "slices/bench/items.parquet"):
            same = _sha256(fresh / part) == _sha256(fresh_before / part)
            print(f"{part}: {'the same bytes' if same else 'DIFFERENT bytes'} before and now")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    main()
