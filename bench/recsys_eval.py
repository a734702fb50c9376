"""Training and full-ranking evaluation time of `curate recsys eval`'s models on a synthetic
benchmark of 100,000 users x 20,000 items (about 1.5M interactions).

    .venv/bin/python bench/recsys_eval.py                       # the issue's size, 1 epoch
    .venv/bin/python bench/recsys_eval.py --models all          # every text model
    .venv/bin/python bench/recsys_eval.py --users 20000 --items 5000 --epochs 3
    .venv/bin/python bench/recsys_eval.py --device cuda --json bench/results/recsys_eval_gpu.json

Interactions: each user has a favourite of 32 topics; a user's items (Poisson, mean
``--per-user``, at least 3) come half from that topic and half from everyone's, by a
lognormal popularity; the last two of each user are valid and test (a ``last_out`` split).
Item features for the content models are 384 numbers (MiniLM's width): the topic's centre
plus noise, so nothing is encoded here. The default models are pop, bpr and vbpr-text
(``--models all``: the command's six). Per model: seconds to fit, and seconds to rank every
user of valid and of test against all 20,000 items (train items left out) and compute
Recall/NDCG@10/20 (``training.recsys_eval.evaluate.score_model``, the command's code).
Seeded models train ``--epochs`` epochs of BPR.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from training.recsys_eval.config import DEFAULT_MODELS, FitConfig, model_names
from training.recsys_eval.data import Benchmark
from training.recsys_eval.evaluate import score_model
from training.recsys_eval.models import MODELS, normalised_features

TOPICS = 32
FEATURE_DIM = 384


def synthetic_benchmark(users: int, items: int, per_user: float, seed: int = 0
                        ) -> tuple[Benchmark, np.ndarray]:
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, TOPICS, items)
    popularity = rng.lognormal(0.0, 1.0, items)
    favourite = rng.integers(0, TOPICS, users)
    counts = np.maximum(rng.poisson(per_user, users), 3)
    user_of = np.repeat(np.arange(users), counts)
    n = len(user_of)
    overall = np.cumsum(popularity) / popularity.sum()
    chosen = np.searchsorted(overall, rng.random(n)).clip(0, items - 1)
    by_topic = [np.flatnonzero(topic == t) for t in range(TOPICS)]
    cumulative = [np.cumsum(popularity[ix]) / popularity[ix].sum() for ix in by_topic]
    from_topic = rng.random(n) < 0.5
    for t in range(TOPICS):
        rows = np.flatnonzero(from_topic & (favourite[user_of] == t))
        pick = np.searchsorted(cumulative[t], rng.random(len(rows))).clip(0, len(by_topic[t]) - 1)
        chosen[rows] = by_topic[t][pick]
    matrix = sp.csr_matrix((np.ones(n, np.float32), (user_of, chosen)), shape=(users, items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    # the last two of each user (in a random order of their items): valid, test
    coo = matrix.tocoo()
    order = np.lexsort((rng.random(coo.nnz), coo.row))
    row, col = coo.row[order], coo.col[order]
    ends = np.cumsum(np.bincount(row, minlength=users))
    test_at, valid_at = ends - 1, ends - 2
    split = np.zeros(len(row), dtype=np.int8)
    split[valid_at] = 1
    split[test_at] = 2
    matrices = {name: sp.csr_matrix((np.ones(int((split == s).sum()), np.float32),
                                     (row[split == s], col[split == s])), shape=(users, items))
                for s, name in enumerate(("train", "valid", "test"))}
    centres = rng.normal(size=(TOPICS, FEATURE_DIM))
    features = centres[topic] + 1.5 * rng.normal(size=(items, FEATURE_DIM))
    bench = Benchmark(Path("synthetic"), "synthetic", "last_out",
                      [f"u{u}" for u in range(users)], [f"i{i}" for i in range(items)],
                      matrices, [None] * items, [None] * items)
    return bench, normalised_features([features.astype(np.float32)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--per-user", type=float, default=15.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--eval-batch", type=int, default=2048)
    parser.add_argument("--models", default="pop,bpr,vbpr-text",
                        help="Comma-separated, or 'all' for the command's default set (the "
                        "default keeps a 2-core run to minutes).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()

    started = time.perf_counter()
    bench, features = synthetic_benchmark(args.users, args.items, args.per_user)
    made = time.perf_counter() - started
    fit = FitConfig(epochs=args.epochs, batch_size=args.batch_size, device=args.device)
    print(f"{bench.n_users:,} users x {bench.n_items:,} items; interactions train "
          f"{bench.train.nnz:,}, valid {bench.matrices['valid'].nnz:,}, test "
          f"{bench.matrices['test'].nnz:,} (made in {made:.1f} s); torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print(f"{'model':<16}{'fit s':>9}{'rank s':>9}{'users/s':>10}{'test R@20':>11}"
          f"{'test N@10':>11}")
    rows = []
    for name in model_names(DEFAULT_MODELS if args.models == "all" else args.models):
        spec = MODELS[name]
        t0 = time.perf_counter()
        scorer = spec.fit(train=bench.train, features=features, config=fit, seed=0,
                          weights=None)
        if args.device == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        results = score_model(bench, scorer, args.eval_batch)
        t2 = time.perf_counter()
        ranked = sum(len(r["user"]) for r in results if r["segment"] == "all")
        test = next(r for r in results if r["split"] == "test" and r["segment"] == "all")
        row = {"model": name, "fit_s": round(t1 - t0, 2), "rank_s": round(t2 - t1, 2),
               "users_ranked": ranked, "test_recall@20": float(test["recall@20"].mean()),
               "test_ndcg@10": float(test["ndcg@10"].mean())}
        rows.append(row)
        print(f"{name:<16}{row['fit_s']:>9.1f}{row['rank_s']:>9.1f}"
              f"{ranked / max(row['rank_s'], 1e-9):>10,.0f}{row['test_recall@20']:>11.4f}"
              f"{row['test_ndcg@10']:>11.4f}", flush=True)
    total = time.perf_counter() - started
    print(f"total {total:.0f} s (ranking: valid and test, every item a candidate)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "users": bench.n_users, "items": bench.n_items, "train": bench.train.nnz,
            "epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
            "threads": torch.get_num_threads(), "machine": platform.processor() or
            platform.machine(), "gpu": torch.cuda.get_device_name() if args.device == "cuda"
            else None, "rows": rows, "total_s": round(total, 1)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
