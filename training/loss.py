"""The training losses (their names, parameters and specs: ``training.loss_registry``).

- ``weighted_huber``: the paper's loss, the batch mean of w x huber(prediction - target);
- ``contrastive_term``: a label-aware (supervised) contrastive term with hard-negative weights
  on the head's penultimate activation, rating bins as labels (CLCE's contrastive part);
- ``TrainingLoss``: a ``LossPlan``'s terms summed (Huber, + lambda x contrastive, + ce x a
  cross-entropy over the rating bins, whose classifier it holds).

Sample weights apply to every term, and an item of weight 0 contributes no gradient to any.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from training.config import DEFAULT_HUBER_DELTA
from training.loss_registry import LossPlan


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


def rating_bins(target: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Each target's bin: how many of the (sorted, inner) ``edges`` are at or below it."""
    return torch.bucketize(target, edges.to(target.dtype), right=True)


def _log_hardness_weights(similarity: torch.Tensor, negatives: torch.Tensor,
                          hardness: float) -> torch.Tensor:
    """log h: log |N(i)| + log softmax_k(hardness x s_ik) over k in N(i); finite everywhere
    (entries outside N(i), and rows without negatives, are not meaningful)."""
    masked = torch.where(negatives, hardness * similarity, -math.inf)
    has_negative = negatives.any(dim=1, keepdim=True)
    safe = torch.where(has_negative, masked, 0.0)  # a row of -inf has no log-sum-exp
    count = negatives.sum(dim=1, keepdim=True).clamp_min(1).to(similarity.dtype)
    log_h = safe - torch.logsumexp(safe, dim=1, keepdim=True) + torch.log(count)
    return torch.where(negatives, log_h, 0.0)


def hardness_weights(similarity: torch.Tensor, negatives: torch.Tensor,
                     hardness: float) -> torch.Tensor:
    """h_ik = |N(i)| x softmax_k(hardness x s_ik) over the negatives N(i) of anchor i (the
    True entries of row i of ``negatives``), 0 elsewhere: mean 1 over each anchor's
    negatives, larger for a more similar (harder) negative; hardness 0 gives every negative
    1 (plain supervised-contrastive weighting)."""
    return torch.where(negatives, _log_hardness_weights(similarity, negatives, hardness).exp(),
                       0.0)


def contrastive_term(
    embedding: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    *,
    tau: float,
    hardness: float,
    renormalise: bool = False,
) -> torch.Tensor:
    """The label-aware contrastive term with hard negatives over a batch.

    z = L2-normalised ``embedding`` rows, s_ij = z_i . z_j / tau. For anchor i, the positives
    P(i) are the other items of its label, the negatives N(i) the items of other labels, both
    among the items of positive weight (an item of weight 0 takes no part in any other
    item's term). With the hardness weights h_ik of ``hardness_weights``::

        l_i = - sum_{p in P(i)} w_p log(exp(s_ip) / (exp(s_ip) + sum_{k in N(i)} w_k h_ik
              exp(s_ik))) / sum_{p in P(i)} w_p

    and the term is the mean of w_i l_i over the anchors with at least one positive and one
    negative (an anchor of weight 0 counts in the mean and adds 0, as an item of weight 0
    does in the Huber's batch mean); with ``renormalise``, sum w_i l_i / sum w_i over them.
    0 when no item is such an anchor.

    h is computed from the similarities without gradient: it says how much each negative's
    push counts, as a sample weight does, and is not itself a quantity to optimise (with a
    gradient through h, its log-softmax would add a pull towards the hard negatives that
    partly undoes the weighting). Everything is in log space (log-sum-exp), so a small tau
    cannot overflow.
    """
    z = F.normalize(embedding, dim=1)
    similarity = z @ z.T / tau
    n = len(z)
    used = weight > 0
    same = labels[:, None] == labels[None, :]
    positives = same & ~torch.eye(n, dtype=torch.bool, device=z.device) & used[None, :]
    negatives = ~same & used[None, :]
    anchors = positives.any(dim=1) & negatives.any(dim=1)
    log_h = _log_hardness_weights(similarity.detach(), negatives, hardness)
    log_w = torch.log(torch.where(used, weight, 1.0)).to(similarity.dtype)
    pushed = torch.where(negatives, similarity + log_w[None, :] + log_h, -math.inf)
    has_negative = negatives.any(dim=1, keepdim=True)
    pushed = torch.where(has_negative, pushed, 0.0)  # rows without negatives are not anchors
    log_negatives = torch.logsumexp(pushed, dim=1, keepdim=True)
    log_prob = similarity - torch.logaddexp(similarity, log_negatives)
    w_positive = torch.where(positives, weight[None, :], 0.0).to(similarity.dtype)
    per_anchor = -(w_positive * torch.where(positives, log_prob, 0.0)).sum(dim=1) \
        / w_positive.sum(dim=1).clamp_min(torch.finfo(similarity.dtype).tiny)
    total = torch.where(anchors & used, weight.to(similarity.dtype) * per_anchor, 0.0).sum()
    denominator = weight[anchors].sum() if renormalise else anchors.sum()
    return total / denominator if denominator > 0 else total * 0.0


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                           renormalise: bool = False) -> torch.Tensor:
    """mean(w x CE) over the batch (with ``renormalise``, sum(w x CE) / sum(w))."""
    per_item = F.cross_entropy(logits, labels, reduction="none")
    weighted = torch.where(weight > 0, weight * per_item, 0.0)
    if renormalise:
        total = weight.sum()
        return weighted.sum() / total if total > 0 else weighted.sum() * 0.0
    return weighted.mean()


class TrainingLoss(nn.Module):
    """A plan's loss for one batch. It holds what the loss trains or fits beside the model:
    the rating bins' edges (a buffer) and, when ``plan.ce > 0``, the Linear(width -> bins)
    classifier. Both are in its ``state_dict`` (checkpointed with the run) and the classifier's
    parameters in its ``parameters()`` (optimised with the model). A Huber plan holds nothing
    and computes exactly ``weighted_huber``."""

    edges: torch.Tensor

    def __init__(self, plan: LossPlan, *, huber_delta: float = DEFAULT_HUBER_DELTA,
                 renormalise: bool = False, edges: Sequence[float] = (), width: int = 0) -> None:
        super().__init__()
        self.plan = plan
        self.delta = plan.huber_delta(huber_delta)
        self.renormalise = renormalise
        self.classifier: nn.Linear | None = None
        if plan.needs_embedding:
            if len(edges) != plan.bins - 1:
                raise ValueError(f"{plan.bins} bins need {plan.bins - 1} edges, got {len(edges)}")
            self.register_buffer("edges", torch.tensor(list(edges), dtype=torch.float32))
            if plan.ce > 0:
                self.classifier = nn.Linear(width, plan.bins)

    def bin_edges(self) -> list[float]:
        return self.edges.tolist() if self.plan.needs_embedding else []

    def forward(self, prediction: torch.Tensor, embedding: torch.Tensor | None,
                target: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, per-item unweighted Huber): the Huber is what a run's training dynamics
        record for every loss."""
        loss, per_item = weighted_huber(prediction, target, weight, self.delta, self.renormalise)
        plan = self.plan
        if not plan.needs_embedding:
            return loss, per_item
        if embedding is None:
            raise ValueError(f"loss {plan.name!r} needs the head's penultimate activation")
        labels = rating_bins(target, self.edges)
        if plan.contrastive > 0:
            loss = loss + plan.contrastive * contrastive_term(
                embedding, labels, weight, tau=plan.tau, hardness=plan.hardness,
                renormalise=self.renormalise)
        if self.classifier is not None:
            loss = loss + plan.ce * weighted_cross_entropy(self.classifier(embedding), labels,
                                                           weight, self.renormalise)
        return loss, per_item
