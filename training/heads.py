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
- ``fit_mlp_heads``: many such heads with the weighted Huber loss trained at once, their
  parameters stacked along a first axis (batched matrix products, torch's fused AdamW over
  the stack): a study grid's runs share one loop instead of one each. Every head has its own
  generators (shuffles, dropout), its own steps, schedule, clipping and early stop, so a
  head's result does not depend on which heads it is trained beside, and it is the head
  ``fit_mlp_head`` trains with the same seed (the same shuffles and dropout masks; the
  batched products may differ in the last bits).
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
    dropout: float = 0.1  # the head's (training.model.HEAD_DROPOUT)

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
    head = RegressionHead(x.shape[1], dropout=settings.dropout)
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


@dataclass(frozen=True)
class HeadJob:
    """One head of ``fit_mlp_heads``: its train rows with their weights, its validation rows
    (early stopping) and its seed (initialisation, shuffles, dropout)."""

    train_rows: np.ndarray
    train_weight: np.ndarray  # one per train row
    val_rows: np.ndarray
    seed: int


# Heads trained together at most: each holds about 20 MB (parameters, two Adam moments, the
# best state and gradients at 1,664 inputs), so a group stays near half a gigabyte.
HEADS_PER_GROUP = 24
_BETAS, _EPS = (0.9, 0.999), 1e-8  # torch.optim.AdamW's defaults, as fit_mlp_head uses


def fit_mlp_heads(features: np.ndarray, target: np.ndarray, jobs: list[HeadJob],
                  settings: MlpSettings, *,
                  heads_per_group: int = HEADS_PER_GROUP) -> list[tuple[Predictor, int]]:
    """(predictor, best epoch) of each job, in the jobs' order: ``fit_mlp_head``'s recipe with
    the Huber loss, heads of the same number of steps per epoch trained together, at most
    ``heads_per_group`` at a time. Initialisation is ``fit_mlp_head``'s (the global generator
    seeded with the job's seed); shuffles are too; dropout draws from a generator of the
    job's own, started where ``fit_mlp_head``'s dropout starts (the global generator after the
    initialisation), with torch's CPU dropout's draws. So a job gives the same head alone or
    among others, and the same head as ``fit_mlp_head``, up to float rounding (the batched
    products may differ in the last bits)."""
    steps = [math.ceil(len(j.train_rows) / settings.batch_size) for j in jobs]
    fitted: dict[int, tuple[Predictor, int]] = {}
    for count in sorted(set(steps)):
        same = [i for i, s in enumerate(steps) if s == count]
        for start in range(0, len(same), heads_per_group):
            group = same[start:start + heads_per_group]
            results = _fit_head_group(features, target, [jobs[i] for i in group], settings)
            fitted.update(zip(group, results, strict=True))
    return [fitted[i] for i in range(len(jobs))]


def stacked_heads(jobs: list[HeadJob], width: int, settings: MlpSettings,
                  target: np.ndarray) -> tuple[list[Any], list[Any]]:
    """The parameters of ``RegressionHead`` for each job, stacked: per hidden layer the weight
    (transposed, inputs x outputs), bias, LayerNorm scale and shift; then the last layer's
    weight and bias. The last bias starts at the job's weighted train mean. And each job's
    dropout generator: the global generator's state after ``fit_mlp_head``'s initialisation,
    from which that head's dropout layers draw."""
    import torch

    from training.model import RegressionHead

    heads, generators = [], []
    for job in jobs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job.seed)
            heads.append(RegressionHead(width, dropout=settings.dropout))
            generators.append(torch.Generator())
            generators[-1].set_state(torch.get_rng_state())
    layers = [m for m in heads[0] if isinstance(m, torch.nn.Linear | torch.nn.LayerNorm)]
    stacked = []
    for i, layer in enumerate(layers):
        members = [[m for m in h if isinstance(m, torch.nn.Linear | torch.nn.LayerNorm)][i]
                   for h in heads]
        if isinstance(layer, torch.nn.Linear):
            stacked.append(torch.stack([m.weight.detach().T for m in members]))
        else:
            stacked.append(torch.stack([m.weight.detach() for m in members]))
        stacked.append(torch.stack([m.bias.detach() for m in members]))
    for r, job in enumerate(jobs):  # start at the weighted train mean (see the trainer)
        y = np.asarray(target, dtype=np.float32)[job.train_rows]
        w = np.asarray(job.train_weight, dtype=np.float32)
        stacked[-1][r] = float((w * y).sum() / w.sum())
    return [p.contiguous().clone().requires_grad_(True) for p in stacked], generators


def stacked_forward(params: list[Any], inputs: Any, dropout_masks: list[Any] | None) -> Any:
    """Outputs (heads x rows) of the stacked heads on inputs (heads x rows x features)."""
    import torch
    import torch.nn.functional as F

    hidden = inputs
    blocks = (len(params) - 2) // 4
    for k in range(blocks):
        weight, bias, scale, shift = params[4 * k: 4 * k + 4]
        hidden = torch.baddbmm(bias[:, None, :], hidden, weight)
        hidden = F.layer_norm(hidden, (hidden.shape[-1],)) * scale[:, None, :] + shift[:, None, :]
        hidden = F.gelu(hidden)
        if dropout_masks is not None:
            hidden = hidden * dropout_masks[k]
    return torch.baddbmm(params[-1][:, None, :], hidden, params[-2]).squeeze(-1)


def _padded(rows: list[np.ndarray]) -> tuple[Any, Any]:
    """(index, valid): rows of unequal length as one heads x longest index, padded with 0."""
    import torch

    longest = max(1, max(len(r) for r in rows))
    index = np.zeros((len(rows), longest), dtype=np.int64)
    valid = np.zeros((len(rows), longest), dtype=np.float32)
    for r, part in enumerate(rows):
        index[r, :len(part)] = part
        valid[r, :len(part)] = 1.0
    return torch.from_numpy(index), torch.from_numpy(valid)


def _fit_head_group(features: np.ndarray, target: np.ndarray, jobs: list[HeadJob],
                    settings: MlpSettings) -> list[tuple[Predictor, int]]:
    """Heads with the same number of steps per epoch, trained in step: they share the step
    count and so the learning rate; a head that stops early leaves the stack."""
    import torch
    import torch.nn.functional as F

    from training.metrics import pearson
    from training.trainer import lr_at

    x_np = np.asarray(features, dtype=np.float32)
    x = torch.from_numpy(x_np)
    y = torch.from_numpy(np.asarray(target, dtype=np.float32))
    batch, keep = settings.batch_size, 1.0 - settings.dropout
    steps_per_epoch = math.ceil(len(jobs[0].train_rows) / batch)
    total = steps_per_epoch * settings.epochs
    means = np.stack([x_np[j.train_rows].mean(axis=0) for j in jobs])
    spreads = np.stack([x_np[j.train_rows].std(axis=0) for j in jobs])
    spreads = np.where(spreads > 1e-6, spreads, 1.0)
    params, dropout_generators = stacked_heads(jobs, x.shape[1], settings, target)
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    adam_steps = [torch.zeros((), dtype=torch.float32) for _ in params]  # AdamW's step count
    best: list[list[Any]] = [[p.detach()[r].clone() for p in params] for r in range(len(jobs))]
    best_plcc = [-math.inf] * len(jobs)
    best_epoch = [0] * len(jobs)
    bad = [0] * len(jobs)
    weight_of = []
    for j in jobs:
        full = np.zeros(len(x_np), dtype=np.float32)
        full[j.train_rows] = j.train_weight
        weight_of.append(torch.from_numpy(full))
    val_targets = [np.asarray(target, dtype=np.float64)[j.val_rows] for j in jobs]
    widths = [p.shape[-1] for p in params[0:-2:4]]  # each hidden layer's outputs
    alive = list(range(len(jobs)))  # the jobs in the stack, in its order
    step = 0
    for epoch in range(1, settings.epochs + 1):
        mean_t = torch.from_numpy(means[alive])[:, None, :]
        spread_t = torch.from_numpy(spreads[alive])[:, None, :]
        orders = []
        for r in alive:
            shuffle = torch.Generator().manual_seed(jobs[r].seed * 1_000_003 + epoch)
            rows = jobs[r].train_rows
            orders.append(rows[torch.randperm(len(rows), generator=shuffle).numpy()])
        weights = torch.stack([weight_of[r] for r in alive])
        for s in range(steps_per_epoch):
            index, valid = _padded([order[s * batch:(s + 1) * batch] for order in orders])
            masks = None
            if settings.dropout:
                masks = [torch.zeros(len(alive), index.shape[1], width) for width in widths]
                for k, r in enumerate(alive):
                    n = int(valid[k].sum())
                    for mask, width in zip(masks, widths, strict=True):
                        # as torch's dropout on a CPU draws its mask: the same numbers
                        drawn = torch.empty(n, width).bernoulli_(keep,
                                                                 generator=dropout_generators[r])
                        mask[k, :n] = drawn.div_(keep)
            output = stacked_forward(params, (x[index] - mean_t) / spread_t, masks)
            weight = torch.gather(weights, 1, index) * valid
            per_item = F.huber_loss(output, y[index], reduction="none",
                                    delta=settings.huber_delta) * weight
            if settings.renormalise:
                loss = per_item.sum(1) / weight.sum(1).clamp_min(1e-30)
            else:
                loss = per_item.sum(1) / valid.sum(1)
            for p in params:
                p.grad = None
            loss.sum().backward()  # the heads' losses are independent: each gets its own
            _adamw_step(params, moments, adam_steps,
                        lr_at(step, total, settings.warmup, settings.lr), settings)
            step += 1
        val_index, _ = _padded([jobs[r].val_rows for r in alive])
        with torch.no_grad():
            predicted = stacked_forward(params, (x[val_index] - mean_t) / spread_t, None)
        stopped = []
        for k, r in enumerate(alive):
            plcc = pearson(predicted[k, :len(val_targets[r])].double().numpy(), val_targets[r])
            plcc = plcc if math.isfinite(plcc) else -1.0
            if plcc > best_plcc[r]:
                best_plcc[r], best_epoch[r], bad[r] = plcc, epoch, 0
                best[r] = [p.detach()[k].clone() for p in params]
            else:
                bad[r] += 1
                if bad[r] >= settings.patience:
                    stopped.append(k)
        if stopped:  # out of the stack, so that it costs nothing more
            kept = [k for k in range(len(alive)) if k not in stopped]
            if not kept:
                break
            params = [p.detach()[kept].clone().requires_grad_(True) for p in params]
            moments = [(first[kept].clone(), second[kept].clone()) for first, second in moments]
            alive = [alive[k] for k in kept]

    def predictor_for(r: int) -> Predictor:
        own = [p[None] for p in best[r]]
        mean, spread = means[r], spreads[r]

        def predictor(new_features: np.ndarray) -> np.ndarray:
            standard = (np.asarray(new_features, dtype=np.float32) - mean) / spread
            with torch.no_grad():
                standard_t = torch.from_numpy(standard)[None]
                return stacked_forward(own, standard_t, None)[0].double().numpy()

        return predictor

    return [(predictor_for(r), best_epoch[r]) for r in range(len(jobs))]


def _adamw_step(params: list[Any], moments: list[tuple[Any, Any]], steps: list[Any], lr: float,
                settings: MlpSettings) -> None:
    """``clip_grad_norm_`` to ``settings.clip`` over each head's own parameters, then one
    ``torch.optim.AdamW`` step (decoupled weight decay, bias-corrected moments) over the
    stack, by torch's fused AdamW kernel: one pass over each parameter's memory, where the
    step written out in tensor operations took ten (it was 43% of a study grid's head
    training). ``steps`` holds one step count per parameter, which the kernel advances; the
    heads share the step count and learning rate."""
    import torch
    from torch.optim.adamw import adamw

    heads = params[0].shape[0]
    beta1, beta2 = _BETAS
    with torch.no_grad():
        grads = [p.grad for p in params]
        # clip_grad_norm_'s norm: of the parameters' norms, per head
        norms = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g.reshape(heads, -1), dim=1) for g in grads]), dim=0)
        clip = (settings.clip / (norms + 1e-6)).clamp(max=1.0)
        if not bool((clip == 1.0).all()):  # a factor of exactly 1 changes no gradient
            for g in grads:
                g.mul_(clip.view((heads,) + (1,) * (g.dim() - 1)))
        # The fused kernel reads the tensors' memory as laid out: every one here is contiguous
        # (stacked with .contiguous(), re-sliced by index, moments made with zeros_like).
        adamw(params, grads, [first for first, _ in moments], [second for _, second in moments],
              [], steps, fused=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=lr,
              weight_decay=settings.weight_decay, eps=_EPS, maximize=False)
