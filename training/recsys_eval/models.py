"""The recommenders: a name, whether it is ID-only or content-aware, and a ``fit`` that
returns something that scores every item for a batch of users.

ID-only:

- ``pop``: items by their train interactions (the same list for everyone);
- ``itemknn``: item-item cosine on the train interactions (each item's ``neighbours`` most
  similar kept), a user's score for j the sum of j's similarities to the user's items;
- ``bpr``: matrix factorisation with a per-item bias, trained with the BPR loss (one
  uniformly drawn negative per positive), in torch.

Content-aware, on item features from the embedding cache (``text``, ``image`` or ``both``;
each modality centred and scaled to unit length, so ``both`` weighs them alike):

- ``frozen-<m>``: no training; a user is the mean of the features of their train items and an
  item scores its cosine-like dot product with it;
- ``twotower-<m>``: a user ID embedding against a trained linear projection of the item's
  features (no item ID at all, so an item never seen in train is scored like any other);
- ``vbpr-<m>``: VBPR (He & McAuley 2016): the ``bpr`` score plus a user's visual/textual
  taste against the projected features and a feature bias, trained with BPR.

Sample weights (``weights``, one per item) weigh each positive pair in the BPR loss of the
trained models; ``pop``, ``itemknn`` and ``frozen-*`` do not use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from training.recsys_eval.config import MODALITIES, MODEL_NAMES, FitConfig


class Scorer:
    """Scores of every item for a batch of users: (len(users), n_items) float32 tensor, on
    the device the model lives on."""

    def scores(self, users: np.ndarray) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "id" or "content"
    modality: str | None  # which item features (content models)
    seeded: bool  # its result depends on the seed (trained from a random start)
    weighted: bool  # uses sample weights
    fit: Callable[..., Scorer]
    describe: str


# --- ID-only --------------------------------------------------------------------------------


class _Popular(Scorer):
    def __init__(self, counts: np.ndarray):
        self.counts = torch.from_numpy(counts.astype(np.float32))

    def scores(self, users: np.ndarray) -> torch.Tensor:
        return self.counts.expand(len(users), -1).clone()


def fit_pop(train: sp.csr_matrix, **_: Any) -> Scorer:
    return _Popular(np.asarray(train.sum(axis=0)).ravel())


class _ItemKNN(Scorer):
    def __init__(self, train: sp.csr_matrix, similarity: sp.csr_matrix):
        self.train, self.similarity = train, similarity

    def scores(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((self.train[users] @ self.similarity).toarray()
                                .astype(np.float32))


def item_cosine_topk(train: sp.csr_matrix, neighbours: int, block: int = 1024) -> sp.csr_matrix:
    """Item x item cosine similarities of the interaction columns, each row keeping its
    ``neighbours`` largest (itself left out), computed a block of rows at a time so that the
    dense item x item matrix never exists."""
    n_items = train.shape[1]
    norms = np.sqrt(np.asarray(train.multiply(train).sum(axis=0)).ravel())
    scaled = (train @ sp.diags(1.0 / np.maximum(norms, 1e-12))).tocsc().astype(np.float32)
    k = min(neighbours, max(n_items - 1, 1))
    rows, cols, vals = [], [], []
    scaled_t = scaled.T.tocsr()
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        dense = torch.from_numpy((scaled_t[start:stop] @ scaled).toarray())
        dense[torch.arange(stop - start), torch.arange(start, stop)] = 0.0
        top = torch.topk(dense, k, dim=1)
        keep = top.values > 0
        r = torch.arange(start, stop).unsqueeze(1).expand(-1, k)
        rows.append(r[keep].numpy())
        cols.append(top.indices[keep].numpy())
        vals.append(top.values[keep].numpy())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_items, n_items))


def fit_itemknn(train: sp.csr_matrix, config: FitConfig, **_: Any) -> Scorer:
    return _ItemKNN(train, item_cosine_topk(train, config.neighbours))


# --- trained with BPR -----------------------------------------------------------------------


class _BPRModule(nn.Module):
    """score(u, i) for training; ``ranking_factors`` for a full ranking: (users x d, items x d,
    items) with score(u, i) = users[u] . items[i] + bias[i], computed once after training."""

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ranking_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _embedding(rows: int, dim: int) -> nn.Embedding:
    # sparse gradients: a step updates the rows its batch touched, not 100k users' worth
    table = nn.Embedding(rows, dim, sparse=True)
    nn.init.normal_(table.weight, std=0.01)
    return table


class _MF(_BPRModule):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user, self.item = _embedding(n_users, dim), _embedding(n_items, dim)
        self.bias = nn.Parameter(torch.zeros(n_items))

    def pair_scores(self, users, items):
        return (self.user(users) * self.item(items)).sum(-1) + self.bias[items]

    def penalty(self, users, items):
        return self.user(users).pow(2).sum() + self.item(items).pow(2).sum()

    def ranking_factors(self):
        return self.user.weight, self.item.weight, self.bias


class _TwoTower(_BPRModule):
    def __init__(self, n_users: int, features: torch.Tensor, dim: int):
        super().__init__()
        self.register_buffer("features", features)
        self.user = _embedding(n_users, dim)
        self.project = nn.Linear(features.shape[1], dim)
        self.feature_bias = nn.Linear(features.shape[1], 1, bias=False)

    def _items(self, items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features if items is None else self.features[items]
        return self.project(f), self.feature_bias(f).squeeze(-1)

    def pair_scores(self, users, items):
        vectors, bias = self._items(items)
        return (self.user(users) * vectors).sum(-1) + bias

    def penalty(self, users, items):
        return self.user(users).pow(2).sum() + self.project.weight.pow(2).sum()

    def ranking_factors(self):
        vectors, bias = self._items()
        return self.user.weight, vectors, bias


class _VBPR(_MF):
    def __init__(self, n_users: int, n_items: int, features: torch.Tensor, dim: int):
        super().__init__(n_users, n_items, dim)
        self.register_buffer("features", features)
        self.taste = _embedding(n_users, dim)
        self.project = nn.Linear(features.shape[1], dim, bias=False)
        self.feature_bias = nn.Linear(features.shape[1], 1, bias=False)

    def pair_scores(self, users, items):
        f = self.features[items]
        return super().pair_scores(users, items) + \
            (self.taste(users) * self.project(f)).sum(-1) + self.feature_bias(f).squeeze(-1)

    def penalty(self, users, items):
        return super().penalty(users, items) + self.taste(users).pow(2).sum() + \
            self.project.weight.pow(2).sum()

    def ranking_factors(self):
        users, items, bias = super().ranking_factors()
        return (torch.cat([users, self.taste.weight], dim=1),
                torch.cat([items, self.project(self.features)], dim=1),
                bias + self.feature_bias(self.features).squeeze(-1))


class _Trained(Scorer):
    def __init__(self, module: _BPRModule, device: str):
        self.device = device
        with torch.no_grad():
            self.users, self.items, self.bias = (t.detach().float() for t in
                                                 module.eval().ranking_factors())

    def scores(self, users: np.ndarray) -> torch.Tensor:
        u = torch.from_numpy(np.asarray(users, dtype=np.int64)).to(self.device)
        return self.users[u] @ self.items.T + self.bias


def train_bpr(module: _BPRModule, train: sp.csr_matrix, config: FitConfig, seed: int,
              weights: np.ndarray | None = None) -> _Trained:
    """BPR: minimise ``-w_i log sigmoid(s(u,i) - s(u,j))`` over the train pairs (u, i), one
    uniform negative j per pair, in shuffled batches; Adam (lazy Adam for the embedding
    tables, whose untouched rows keep their moments); ``reg`` x the squared norms the batch
    touches. The seed fixes the start, the order and the negatives."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = config.device
    module.to(device)
    coo = train.tocoo()
    users_all = torch.from_numpy(coo.row.astype(np.int64))
    items_all = torch.from_numpy(coo.col.astype(np.int64))
    item_weight = None if weights is None else torch.from_numpy(
        np.asarray(weights, dtype=np.float32)).to(device)
    tables = [m.weight for m in module.modules() if isinstance(m, nn.Embedding)]
    dense = [p for p in module.parameters() if all(p is not t for t in tables)]
    optimisers = [torch.optim.SparseAdam(tables, lr=config.lr)]
    if dense:
        optimisers.append(torch.optim.Adam(dense, lr=config.lr))
    n, n_items = len(users_all), train.shape[1]
    module.train()
    for _ in range(config.epochs):
        order = torch.from_numpy(rng.permutation(n))
        negatives = torch.from_numpy(rng.integers(0, n_items, n))
        for start in range(0, n, config.batch_size):
            batch = order[start:start + config.batch_size]
            u, i = users_all[batch].to(device), items_all[batch].to(device)
            j = negatives[batch].to(device)
            margin = module.pair_scores(u, i) - module.pair_scores(u, j)
            losses = -nn.functional.logsigmoid(margin)
            if item_weight is not None:
                w = item_weight[i]
                loss = (w * losses).sum() / w.sum().clamp_min(1e-12)
            else:
                loss = losses.mean()
            loss = loss + config.reg * (module.penalty(u, i) + module.penalty(u, j)) / len(batch)
            for optimiser in optimisers:
                optimiser.zero_grad(set_to_none=True)
            loss.backward()
            for optimiser in optimisers:
                optimiser.step()
    return _Trained(module, device)


def fit_bpr(train: sp.csr_matrix, config: FitConfig, seed: int,
            weights: np.ndarray | None = None, **_: Any) -> Scorer:
    torch.manual_seed(seed)  # the start, whatever ran before in this process
    return train_bpr(_MF(*train.shape, config.dim), train, config, seed, weights)


# --- content-aware --------------------------------------------------------------------------


class _Frozen(Scorer):
    def __init__(self, train: sp.csr_matrix, features: np.ndarray):
        counts = np.maximum(np.asarray(train.sum(axis=1)).ravel(), 1.0)
        self.profiles = torch.from_numpy(
            (sp.diags(1.0 / counts) @ train @ features).astype(np.float32))
        self.features = torch.from_numpy(features.astype(np.float32))

    def scores(self, users: np.ndarray) -> torch.Tensor:
        return self.profiles[torch.from_numpy(np.asarray(users, dtype=np.int64))] @ \
            self.features.T


def fit_frozen(train: sp.csr_matrix, features: np.ndarray, **_: Any) -> Scorer:
    return _Frozen(train, features)


def fit_twotower(train: sp.csr_matrix, features: np.ndarray, config: FitConfig, seed: int,
                 weights: np.ndarray | None = None, **_: Any) -> Scorer:
    torch.manual_seed(seed)
    module = _TwoTower(train.shape[0], torch.from_numpy(features.astype(np.float32)),
                       config.dim)
    return train_bpr(module, train, config, seed, weights)


def fit_vbpr(train: sp.csr_matrix, features: np.ndarray, config: FitConfig, seed: int,
             weights: np.ndarray | None = None, **_: Any) -> Scorer:
    torch.manual_seed(seed)
    module = _VBPR(*train.shape, torch.from_numpy(features.astype(np.float32)), config.dim)
    return train_bpr(module, train, config, seed, weights)


def _specs() -> dict[str, ModelSpec]:
    specs = [
        ModelSpec("pop", "id", None, False, False, fit_pop,
                  "most popular in train"),
        ModelSpec("itemknn", "id", None, False, False, fit_itemknn,
                  "item-item cosine on the train interactions"),
        ModelSpec("bpr", "id", None, True, True, fit_bpr,
                  "matrix factorisation + item bias, BPR loss"),
    ]
    for m in MODALITIES:
        specs += [
            ModelSpec(f"frozen-{m}", "content", m, False, False, fit_frozen,
                      f"frozen {m} features: user = mean of their items' features"),
            ModelSpec(f"twotower-{m}", "content", m, True, True, fit_twotower,
                      f"user ID embedding x trained projection of the {m} features"),
            ModelSpec(f"vbpr-{m}", "content", m, True, True, fit_vbpr,
                      f"VBPR: bpr + user taste x trained projection of the {m} features"),
        ]
    return {s.name: s for s in specs}


MODELS: dict[str, ModelSpec] = _specs()
assert tuple(MODELS) == MODEL_NAMES  # the names the command line checks, without torch


def normalised_features(blocks: list[np.ndarray]) -> np.ndarray:
    """Each block (a modality) centred over the items and each row scaled to unit length
    (a row of zeros, an item without that modality, stays zero), then side by side."""
    out = []
    for block in blocks:
        present = np.abs(block).sum(axis=1) > 0
        centred = block - (block[present].mean(axis=0) if present.any() else 0.0)
        centred[~present] = 0.0
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        out.append(np.where(norms > 0, centred / np.maximum(norms, 1e-12), 0.0))
    return np.concatenate(out, axis=1).astype(np.float32)
