"""Full-ranking metrics: every item is a candidate (no sampled negatives) except those the
user is known to have had before, and the held-out items of the user are the relevant ones.

For a user with relevant set T and a ranking whose top K holds the hits h_1 < h_2 < ... (ranks
from 1):

- ``Recall@K = |top K ∩ T| / |T|``;
- ``NDCG@K = sum over hits of 1 / log2(rank + 1)``, divided by the same sum for an ideal
  ranking, ``sum_{j=1}^{min(|T|, K)} 1 / log2(j + 1)``.

With one held-out item (``last_out``) Recall@K is a hit rate and NDCG@K is ``1/log2(rank+1)``
of that item when it is in the top K.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

KS = (10, 20)
METRICS = tuple(f"{name}@{k}" for name in ("recall", "ndcg") for k in KS)


def ranking_metrics(top: np.ndarray, relevant: np.ndarray,
                    ks: tuple[int, ...] = KS) -> dict[str, np.ndarray]:
    """Per-user Recall@K and NDCG@K.

    ``top``: (users, max K) item indices, best first; ``relevant``: (users, items) bool, the
    relevant items of each user (at least one per user).

    >>> top = np.array([[3, 1, 0]])            # ranks 1, 2, 3
    >>> relevant = np.array([[False, True, False, False]])
    >>> {k: round(float(v[0]), 4) for k, v in ranking_metrics(top, relevant, (1, 2)).items()}
    {'recall@1': 0.0, 'recall@2': 1.0, 'ndcg@1': 0.0, 'ndcg@2': 0.6309}
    """
    relevant = np.asarray(relevant, dtype=bool)
    hits = np.take_along_axis(relevant, top, axis=1)
    return metrics_from_hits(hits, relevant.sum(axis=1), ks)


def sparse_hits(top: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """``hits[u, j]``: is ``top[u, j]`` among the user's relevant items (a CSR row), without
    a dense users x items matrix."""
    n_items = relevant.shape[1]
    coo = relevant.tocoo()
    wanted = coo.row.astype(np.int64) * n_items + coo.col
    ranked = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + top
    return np.isin(ranked, wanted)


def metrics_from_hits(hits: np.ndarray, n_relevant: np.ndarray,
                      ks: tuple[int, ...] = KS) -> dict[str, np.ndarray]:
    """Recall@K and NDCG@K from (users, max K) hit flags and each user's count of relevant
    items."""
    n_relevant = np.asarray(n_relevant).astype(np.int64)
    if (n_relevant == 0).any():
        raise ValueError("every user ranked needs at least one relevant item")
    if hits.shape[1] < max(ks):
        raise ValueError(f"a top {hits.shape[1]} cannot give metrics at {max(ks)}")
    hits = hits.astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    ideal = np.cumsum(discounts)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = hits[:, :k].sum(axis=1) / n_relevant
    for k in ks:
        dcg = hits[:, :k] @ discounts[:k]
        out[f"ndcg@{k}"] = dcg / ideal[np.minimum(n_relevant, k) - 1]
    return out
