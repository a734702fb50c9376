"""Heads fitted on cached embeddings in memory: a closed-form weighted ridge and the MLP head.

A study's cross-fitted runs (``training.study.crossfit``) fit thousands of heads on the same
cached features; these functions take arrays and return a predictor, with no run folder.

- ``fit_weighted_ridge``: minimises sum_i w_i (y_i - b - x_i . beta)^2 + lambda |beta|^2 on
  features standardised with the training rows' weighted mean and spread; the intercept is
  not penalised. The penalty is chosen by weighted generalised cross-validation (Golub, Heath
  and Wahba 1979) over a fixed grid, from one spectrum of the weighted, centred features
  (their Gram matrix's, or an SVD when rows are fewer than features), so a fit is
  deterministic and takes a fraction of a second for a few thousand items.
- ``fit_mlp_head``: the trainer's frozen-mode head (``RegressionHead``, AdamW, the cosine
  schedule, the weighted Huber loss or another of ``training.loss_registry``, early stopping
  on validation PLCC), on arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# Penalties tried, relative to the mean squared singular value of the weighted features
# (so the grid follows the data's scale): 1e-4 (almost least squares) to 1e3 (almost the mean).
RIDGE_GRID = tuple(float(v) for v in np.logspace(-4, 3, 36))

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RidgeFit:
    coef: np.ndarray  # on the standardised features
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    penalty: float  # lambda, in units of the weighted features' mean squared singular value
    gcv: float
    effective_dof: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        standard = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return standard @ self.coef + self.intercept


def fit_weighted_ridge(features: np.ndarray, target: np.ndarray, weight: np.ndarray,
                       grid: tuple[float, ...] = RIDGE_GRID) -> RidgeFit:
    """Weighted ridge with the penalty chosen by weighted GCV on these rows.

    Penalties are relative to the mean of the weighted, standardised features' nonzero
    squared singular values (``RIDGE_GRID``).

    Rows of weight 0 take no part. Weights are rescaled to mean 1 over the rows that take part
    (the fit does not change; the grid is then comparable across weightings)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if not (x.ndim == 2 and len(x) == len(y) == len(w)):
        raise ValueError(f"features {x.shape}, target {y.shape} and weight {w.shape} disagree")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    used = w > 0
    n = int(used.sum())
    if n < 3:
        raise ValueError(f"a ridge fit needs at least 3 rows of positive weight, got {n}")
    x, y, w = x[used], y[used], w[used] / w[used].mean()
    mean = (w @ x) / n
    spread = np.sqrt((w @ (x - mean) ** 2) / n)
    scale = np.where(spread > 1e-12, spread, 1.0)  # a constant feature is only centred
    root = np.sqrt(w)
    z = root[:, None] * ((x - mean) / scale)
    y_mean = float(w @ y) / n
    r = root * (y - y_mean)
    # The spectrum of z: from the d x d Gram matrix when there are more rows than features
    # (a few times cheaper than an SVD of z), else from the SVD. ``projected`` is r in the
    # basis of z's left singular vectors, scaled: (U' r)_i.
    if len(z) > z.shape[1]:
        s2, v = np.linalg.eigh(z.T @ z)
        s2 = np.clip(s2, 0.0, None)
        kept = s2 > s2.max() * 1e-12 if s2.max() > 0 else np.zeros(len(s2), bool)
        s2, v = s2[kept], v[:, kept]
        projected = (v.T @ (z.T @ r)) / np.sqrt(s2)
    else:
        u, s, vt = np.linalg.svd(z, full_matrices=False)
        kept = s**2 > (s**2).max() * 1e-12 if len(s) and s.max() > 0 else s < 0
        s2, v, projected = s[kept] ** 2, vt[kept].T, u[:, kept].T @ r
    unit = float(s2.sum() / len(s2)) if len(s2) and s2.sum() > 0 else 1.0
    outside = max(float(r @ r - projected @ projected), 0.0)  # the part no feature reaches
    best: tuple[float, float, float] | None = None
    for relative in grid:
        penalty = relative * unit
        shrink = s2 / (s2 + penalty)
        dof = float(shrink.sum()) + 1.0  # + the intercept
        if dof >= n:
            continue
        residual = outside + float(((1.0 - shrink) * projected) @ ((1.0 - shrink) * projected))
        gcv = (residual / n) / (1.0 - dof / n) ** 2
        if best is None or gcv < best[1] - 1e-15 * abs(best[1]):
            best = (relative, gcv, dof)
    if best is None:
        raise ValueError(f"no penalty of the grid leaves residual degrees of freedom ({n} rows)")
    relative, gcv, dof = best
    penalty = relative * unit
    coef = v @ ((np.sqrt(s2) / (s2 + penalty)) * projected)
    return RidgeFit(coef, y_mean, mean, scale, relative, gcv, dof)


@dataclass(frozen=True)
class MlpSettings:
    """The frozen-mode head's recipe (``TrainConfig``'s frozen defaults)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    patience: int = 3
    weight_decay: float = 0.01
    warmup: float = 0.1
    clip: float = 1.0
    huber_delta: float = 1.0
    renormalise: bool = False

    @classmethod
    def from_trainer(cls, trainer: dict[str, Any]) -> MlpSettings:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in trainer.items() if k in names and v is not None})


def fit_mlp_head(features: np.ndarray, target: np.ndarray, weight: np.ndarray,
                 train_rows: np.ndarray, val_rows: np.ndarray, seed: int,
                 settings: MlpSettings, *, loss: str = "huber") -> tuple[Predictor, int]:
    """(predictor, best epoch): the frozen-mode MLP head trained on ``train_rows`` and stopped
    early on the validation PLCC of ``val_rows``, as ``curate train --mode frozen`` does, with
    the loss spec ``loss`` (``training.loss_registry``; its rating bins fitted on the train
    rows' targets, its classifier, if any, trained with the head)."""
    import torch

    from training.loss import TrainingLoss
    from training.loss_registry import fit_bin_edges, parse_loss
    from training.metrics import pearson
    from training.model import RegressionHead
    from training.trainer import lr_at

    x = np.asarray(features, dtype=np.float32)
    mean = x[train_rows].mean(axis=0)
    spread = x[train_rows].std(axis=0)
    spread = np.where(spread > 1e-6, spread, 1.0)
    inputs = torch.from_numpy((x - mean) / spread)
    y = torch.from_numpy(np.asarray(target, dtype=np.float32))
    w = torch.from_numpy(np.asarray(weight, dtype=np.float32))
    torch.manual_seed(seed)
    head = RegressionHead(x.shape[1])
    with torch.no_grad():  # start at the weighted train mean (see the trainer)
        head[-1].bias.fill_(float((w[train_rows] * y[train_rows]).sum() / w[train_rows].sum()))
    plan = parse_loss(loss)
    training_loss = TrainingLoss(
        plan, huber_delta=settings.huber_delta, renormalise=settings.renormalise,
        edges=fit_bin_edges(plan, np.asarray(target, dtype=np.float64)[train_rows]),
        width=head[-1].in_features)
    trained = [*head.parameters(), *training_loss.parameters()]  # the head's alone for huber
    optimizer = torch.optim.AdamW(trained, lr=settings.lr, weight_decay=settings.weight_decay)
    total = math.ceil(len(train_rows) / settings.batch_size) * settings.epochs
    step, best_plcc, best_epoch, bad = 0, -math.inf, 0, 0
    best_state = {k: v.clone() for k, v in head.state_dict().items()}
    val_target = np.asarray(target, dtype=np.float64)[val_rows]

    def predict_rows(rows: Any) -> np.ndarray:
        head.eval()
        with torch.no_grad():
            return head(inputs[rows]).squeeze(-1).double().numpy()

    for epoch in range(1, settings.epochs + 1):
        head.train()
        shuffle = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = train_rows[torch.randperm(len(train_rows), generator=shuffle).numpy()]
        for start in range(0, len(order), settings.batch_size):
            index = torch.from_numpy(order[start: start + settings.batch_size])
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, settings.warmup, settings.lr)
            output, embedding = head.forward_with_embedding(inputs[index])
            batch_loss, _ = training_loss(output.squeeze(-1), embedding, y[index], w[index])
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, settings.clip)
            optimizer.step()
            step += 1
        plcc = pearson(predict_rows(val_rows), val_target)
        plcc = plcc if math.isfinite(plcc) else -1.0
        if plcc > best_plcc:
            best_plcc, best_epoch, bad = plcc, epoch, 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
            if bad >= settings.patience:
                break
    head.load_state_dict(best_state)

    def predictor(new_features: np.ndarray) -> np.ndarray:
        standard = (np.asarray(new_features, dtype=np.float32) - mean) / spread
        head.eval()
        with torch.no_grad():
            return head(torch.from_numpy(standard)).squeeze(-1).double().numpy()

    return predictor, best_epoch
