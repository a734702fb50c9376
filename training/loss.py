"""The paper's loss: the batch mean of w x huber(prediction - target)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.config import DEFAULT_HUBER_DELTA


def weighted_huber(
    prediction: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    delta: float = DEFAULT_HUBER_DELTA,
    renormalise: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-item unweighted Huber). The loss is mean(w x huber) over the batch, as in
    the paper (an item of weight 0 contributes nothing, and the weights are not rescaled);
    with ``renormalise`` it is sum(w x huber) / sum(w), a weighted mean within the batch."""
    per_item = F.huber_loss(prediction, target, reduction="none", delta=delta)
    weighted = weight * per_item
    if renormalise:
        total = weight.sum()
        loss = weighted.sum() / total if total > 0 else weighted.sum() * 0.0
    else:
        loss = weighted.mean()
    return loss, per_item.detach()
