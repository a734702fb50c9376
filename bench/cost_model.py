"""A cost model on paper: each stage on the whole Amazon Reviews 2023 corpus, for 1, 8 and 32
nodes, from the per-item costs the benchmarks measured on one node (this 2-core, 24 GiB
machine). Nothing is run; every input below names the benchmark and README table it comes
from, so a new measurement is a one-line change here.

    .venv/bin/python bench/cost_model.py             # the table the README shows
    .venv/bin/python bench/cost_model.py --nodes 1 4 64

How each stage spreads over nodes (what the code does, not an assumption about a cluster):
- ingest (`--engine ray`): one task per raw file, so a node takes whole files; the time is the
  makespan of the files' costs placed longest first, never below the largest file
  (Home_and_Kitchen's 67.4M review lines).
- build-slice (clean + split + slice): one DuckDB process out of core; it does not spread.
- images fetch (`--engine ray`): blocks of URLs; splits evenly.
- frozen encoding (`curate encode --engine ray`): batches on actors; splits evenly.
- head training on cached embeddings: one process per run (a study runs many runs at once,
  one per core; this is one run's epoch).
- finetune (`torchrun`): shards of every global batch; splits evenly, with the gradient
  all-reduce not counted (not measured).
"""

from __future__ import annotations

import argparse
import heapq

# The corpus (McAuley Lab, arXiv 2403.03952; ../shared/reference/amazon-reviews-2023.md):
# per category, (items, review lines).
CATEGORIES: dict[str, tuple[float, float]] = {
    "All_Beauty": (112.6e3, 701.5e3), "Amazon_Fashion": (825.9e3, 2.5e6),
    "Appliances": (94.3e3, 2.1e6), "Arts_Crafts_and_Sewing": (801.3e3, 9.0e6),
    "Automotive": (2.0e6, 20.0e6), "Baby_Products": (217.7e3, 6.0e6),
    "Beauty_and_Personal_Care": (1.0e6, 23.9e6), "Books": (4.4e6, 29.5e6),
    "CDs_and_Vinyl": (701.7e3, 4.8e6), "Cell_Phones_and_Accessories": (1.3e6, 20.8e6),
    "Clothing_Shoes_and_Jewelry": (7.2e6, 66.0e6), "Digital_Music": (70.5e3, 130.4e3),
    "Electronics": (1.6e6, 43.9e6), "Gift_Cards": (1.1e3, 152.4e3),
    "Grocery_and_Gourmet_Food": (603.2e3, 14.3e6), "Handmade_Products": (164.7e3, 664.2e3),
    "Health_and_Household": (797.4e3, 25.6e6), "Health_and_Personal_Care": (60.3e3, 494.1e3),
    "Home_and_Kitchen": (3.7e6, 67.4e6), "Industrial_and_Scientific": (427.5e3, 5.2e6),
    "Kindle_Store": (1.6e6, 25.6e6), "Magazine_Subscriptions": (3.4e3, 71.5e3),
    "Movies_and_TV": (747.8e3, 17.3e6), "Musical_Instruments": (213.6e3, 3.0e6),
    "Office_Products": (710.4e3, 12.8e6), "Patio_Lawn_and_Garden": (851.7e3, 16.5e6),
    "Pet_Supplies": (492.7e3, 16.8e6), "Software": (89.2e3, 4.9e6),
    "Sports_and_Outdoors": (1.6e6, 19.6e6), "Subscription_Boxes": (641, 16.2e3),
    "Tools_and_Home_Improvement": (1.5e6, 27.0e6), "Toys_and_Games": (890.7e3, 16.3e6),
    "Video_Games": (137.2e3, 4.6e6), "Unknown": (13.2e6, 63.8e6),
}
TRAIN_SHARE = 0.8  # the split's 80/10/10

# Measured on one node (this machine), medians of 3; where each comes from:
INGEST_SECONDS_PER_LINE = 3.52 / (199_105 + 2_135_799)  # bench/ingest.py, 200k items, 2026-12-08
INGEST_PEAK_GB = 0.52  # ibid., flat from 100k to 200k items
SLICE_SECONDS_PER_ITEM = 43.5 / 4_000_000  # bench/growth.py, 4M items (1.4 reviews each), 12-08
SLICE_PEAK_GB = 1.64  # ibid.: DuckDB's 1 GB limit plus the runs being sorted
FETCH_IMAGES_PER_SECOND = 105.0  # bench/images.py, 4-16 at once (CPU-bound at 19 ms/image)
ENCODE_ITEMS_PER_SECOND = 32.1  # bench/encode.py, the cache now (float32, real texts), 2026-12-06
HEAD_ITEMS_PER_SECOND = 5755.0  # bench/train.py, head training on cached embeddings
FINETUNE_SECONDS_PER_ITEM = 5.43 / 32  # bench/train.py, finetune step, full model, batch 32


def makespan(costs: list[float], nodes: int) -> float:
    """Longest-first placement of whole tasks on the least loaded node: when the last ends."""
    loads = [0.0] * nodes
    for cost in sorted(costs, reverse=True):
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)


def stages(nodes: int) -> list[tuple[str, float, str]]:
    """(stage, seconds on ``nodes`` nodes, peak memory per node) for the whole corpus."""
    items = sum(i for i, _ in CATEGORIES.values())
    files = [n * INGEST_SECONDS_PER_LINE for pair in CATEGORIES.values() for n in pair]
    train_items = TRAIN_SHARE * items
    return [
        ("ingest (--engine ray, by file)", makespan(files, nodes), f"{INGEST_PEAK_GB:.2f} GB"),
        ("build-slice from scratch (one node)", items * SLICE_SECONDS_PER_ITEM,
         f"{SLICE_PEAK_GB:.2f} GB"),
        ("images fetch, main images (--engine ray)", items / FETCH_IMAGES_PER_SECOND / nodes,
         "not measured"),
        ("frozen encoding, full model, CPU (--engine ray)",
         items / ENCODE_ITEMS_PER_SECOND / nodes, "not measured"),
        ("head training, one run, one epoch of the train split", train_items
         / HEAD_ITEMS_PER_SECOND, "not measured"),
        ("finetune, full model, CPU, one epoch (torchrun)",
         train_items * FINETUNE_SECONDS_PER_ITEM / nodes, "not measured"),
    ]


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 8, 32],
                        help="cluster sizes to cost (default: 1 8 32)")
    args = parser.parse_args()
    if any(n < 1 for n in args.nodes):
        parser.error("--nodes: each must be at least 1")
    items = sum(i for i, _ in CATEGORIES.values())
    reviews = sum(r for _, r in CATEGORIES.values())
    print(f"corpus: {items / 1e6:.2f}M items, {reviews / 1e6:.2f}M review lines, "
          f"{2 * len(CATEGORIES)} raw files; a node is this 2-core, 24 GiB machine")
    rows = {n: stages(n) for n in args.nodes}
    header = "| stage | " + " | ".join(f"{n} node{'s' if n > 1 else ''}" for n in args.nodes)
    print(header + " | peak memory per node |")
    print("|---|" + "---:|" * len(args.nodes) + "---:|")
    for i, (name, _, memory) in enumerate(rows[args.nodes[0]]):
        cells = " | ".join(human(rows[n][i][1]) for n in args.nodes)
        print(f"| {name} | {cells} | {memory} |")


if __name__ == "__main__":
    main()
