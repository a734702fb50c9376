"""The search index on 100k items: build time, latency per query, ANN recall against exact.

    .venv/bin/python bench/search.py                      # 100,000 items, 128-d, 1,000 queries
    .venv/bin/python bench/search.py --items 20000 --json out.json

The vectors are synthetic: unit vectors around 2,000 cluster centres (products come in
kinds), and each query a stored vector moved by noise of the same size as the spread in a
cluster (a text lands near, not on, its image). The exact search is the reference
(``training.retrieval.index.exact_search``, one matrix product per query); the HNSW graph is
the index ``curate align index`` builds (faiss ``IndexHNSWFlat``, M = 32, efConstruction =
200), timed on one thread (what the catalog's index uses, for reproducible bytes) and on all
threads; queries run one at a time (what ``curate search`` does) at several efSearch values.
Target (issue 20): recall@10 against exact >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

SPREAD = 1.0  # the noise's length against a unit centre: points ~45 degrees from their centre

def vectors(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = centres[rng.integers(0, clusters, n)] + SPREAD * rng.normal(size=(n, dim)) / dim**0.5
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    import faiss

    from training.retrieval.index import EF_CONSTRUCTION, EF_SEARCH, exact_search, hnsw_graph

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", default=f"32,64,{EF_SEARCH},256", help="efSearch values.")
    parser.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION)
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args()

    data = vectors(args.items, args.dim, args.clusters, seed=0)
    rng = np.random.default_rng(1)
    picked = data[rng.choice(args.items, args.queries, replace=False)]
    queries = picked + SPREAD * rng.normal(size=picked.shape).astype(np.float32) / args.dim**0.5
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)

    results: dict = {"items": args.items, "dim": args.dim, "queries": args.queries,
                     "k": args.k, "cpus": os.cpu_count(), "faiss": faiss.__version__}
    started = time.perf_counter()
    graph = hnsw_graph(data, threads=1, ef_construction=args.ef_construction)
    results["build_seconds_1_thread"] = time.perf_counter() - started
    results["ef_construction"] = args.ef_construction
    started = time.perf_counter()
    hnsw_graph(data, threads=None, ef_construction=args.ef_construction)
    results["build_seconds_all_threads"] = time.perf_counter() - started
    results["build_threads"] = faiss.omp_get_max_threads()

    faiss.omp_set_num_threads(1)  # one query at a time, as a command line search runs
    exact_rows = []
    times = []
    for q in queries:
        t = time.perf_counter()
        _, rows = exact_search(data, q[None, :], args.k)
        times.append(time.perf_counter() - t)
        exact_rows.append(rows[0])
    results["exact_ms_per_query"] = 1000 * statistics.median(times)
    results["ann"] = []
    for ef in [int(e) for e in args.ef.split(",")]:
        graph.hnsw.efSearch = ef
        times, recall = [], []
        for q, truth in zip(queries, exact_rows, strict=True):
            t = time.perf_counter()
            _, rows = graph.search(q[None, :], args.k)
            times.append(time.perf_counter() - t)
            recall.append(len(set(rows[0].tolist()) & set(truth.tolist())) / args.k)
        results["ann"].append({"ef_search": ef, "ms_per_query": 1000 * statistics.median(times),
                               f"recall@{args.k}": float(np.mean(recall))})
    print(f"{args.items:,} items x {args.dim}-d, {args.queries:,} queries, k = {args.k}, "
          f"efConstruction {args.ef_construction}")
    print(f"build: {results['build_seconds_1_thread']:.1f} s on 1 thread, "
          f"{results['build_seconds_all_threads']:.1f} s on {results['build_threads']}")
    print(f"exact: {results['exact_ms_per_query']:.2f} ms/query (median)")
    for row in results["ann"]:
        print(f"hnsw efSearch {row['ef_search']:>4}: {row['ms_per_query']:.3f} ms/query, "
              f"recall@{args.k} against exact {row[f'recall@{args.k}']:.3f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
