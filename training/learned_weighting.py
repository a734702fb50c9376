"""The learned weight: a curve f(log(1 + n)) fitted to what the weights are for.

The weighting layer evaluates a fitted curve (``weighting.learned``); this module fits one,
on a training part only, because the fit needs the items' cached embeddings:

1. **A smaller stand-in for the head.** The training part's features are standardised and
   projected on their top ``components`` principal axes (``FeatureBasis``, fitted on the
   training part's features; no targets). The weighted ridge on these scores, its intercept
   unpenalised, has a closed form; its penalty is chosen at every step as the head chooses
   its own, by weighted generalised cross-validation over ``training.heads.RIDGE_GRID`` for
   the current weights, and held fixed in the gradient.
2. **The curve.** Knots at the quantiles of log(1 + n) over the items; a weight is linear
   between knots and flat beyond them. ``monotone``: the values are a positive start plus
   non-negative increments (softplus), so f never falls as n grows; otherwise each value is
   free (softplus, >= 0). The weights are scaled to mean 1 over the items and never fall
   below ``FLOOR`` (an item of weight 0 leaves the head, and a head on few rows overfits).
3. **The objective.** The items are cut into ``inner_folds`` folds; for each, the ridge is
   solved on the other folds with the weights and predicts this one (uniformly scored: the
   test metric is unweighted). The objective is the mean validation PLCC over the folds
   (``objective="plcc"``) or the pooled validation mean squared error (``"mse"``), with a
   small penalty on the differences between neighbouring knots' weights (so the curve stays
   flat where the data are silent). Its gradient in the curve's parameters (the
   hypergradient through the ridge solve) comes from torch autograd. Because the ridge
   normal equations are linear in the weights, each fold's Gram matrix is precomputed once per
   knot, and a step costs a few (components x components) solves whatever the item count:
   a fit takes well under a second.

No test item is seen: the caller hands in the rows of a training part (the study's slice of
a fold's training part).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training.heads import RIDGE_GRID
from weighting.learned import KNOTS_KEY, VALUES_KEY

STEPS = 200  # at most this many Adam steps;
PATIENCE = 25  # stop once this many in a row gained less than TOLERANCE (relative)
TOLERANCE = 1e-4
LEARNING_RATE = 0.05
SMOOTHNESS = 1e-3  # x mean squared difference between neighbouring knots' weights
MIN_ITEMS = 20  # fewer items than this: the curve is flat (uniform), and says why
FLOOR = 0.1  # the least weight, as a share of the mean: every item stays in the head


@dataclass(frozen=True)
class FeatureBasis:
    """Standardisation and principal axes of a training part's features."""

    mean: np.ndarray
    scale: np.ndarray
    axes: np.ndarray  # d x components

    @classmethod
    def fit(cls, features: np.ndarray, components: int) -> FeatureBasis:
        x = np.asarray(features, dtype=np.float64)
        mean = x.mean(axis=0)
        spread = x.std(axis=0)
        scale = np.where(spread > 1e-12, spread, 1.0)
        z = (x - mean) / scale
        k = max(1, min(components, z.shape[0] - 1, z.shape[1]))
        if z.shape[0] > z.shape[1]:
            values, vectors = np.linalg.eigh(z.T @ z)
            axes = vectors[:, np.argsort(values)[::-1][:k]]
        else:
            axes = np.linalg.svd(z, full_matrices=False)[2][:k].T
        # a sign per axis, so the same features give the same bytes whatever LAPACK chose
        signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
        return cls(mean, scale, axes * np.where(signs == 0, 1.0, signs))

    def scores(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, dtype=np.float64) - self.mean) / self.scale) @ self.axes


def knot_positions(log1p_n: np.ndarray, knots: int) -> np.ndarray:
    """About ``knots`` distinct knots over log(1 + n), the ends included: half at its
    quantiles (where the items are), half evenly spaced (where counts are rare, heavy tails
    included); fewer where they coincide."""
    u = np.asarray(log1p_n, dtype=np.float64)
    half = max(2, (knots + 1) // 2)
    spots = np.r_[np.quantile(u, np.linspace(0.0, 1.0, half)),
                  np.linspace(u.min(), u.max(), knots - half + 2)[1:-1]]
    return np.unique(np.round(spots, 9))


def hat_basis(log1p_n: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """items x knots: f(u_i) = hat[i] @ values for the piecewise-linear curve (flat beyond
    the end knots), as ``np.interp`` evaluates it."""
    u = np.clip(np.asarray(log1p_n, dtype=np.float64), knots[0], knots[-1])
    hat = np.zeros((len(u), len(knots)))
    if len(knots) == 1:
        hat[:, 0] = 1.0
        return hat
    right = np.clip(np.searchsorted(knots, u, side="right"), 1, len(knots) - 1)
    share = (u - knots[right - 1]) / (knots[right] - knots[right - 1])
    rows = np.arange(len(u))
    hat[rows, right - 1] = 1.0 - share
    hat[rows, right] += share
    return hat


def gcv_choice(s2: np.ndarray, projected: np.ndarray, outside: float, rows: int) -> float:
    """The absolute ridge penalty weighted GCV picks over the heads' grid (relative to the
    mean squared singular value), from the spectrum ``s2`` of the weighted, centred features,
    the centred target in its basis (``projected``) and the part no feature reaches, as
    ``training.heads.fit_weighted_ridge`` picks it."""
    kept = s2 > s2.max() * 1e-12 if len(s2) and s2.max() > 0 else s2 > 0
    s2, projected = s2[kept], projected[kept]
    unit = float(s2.mean()) if len(s2) else 1.0
    best = (RIDGE_GRID[-1], np.inf)
    for relative in RIDGE_GRID:
        shrink = s2 / (s2 + relative * unit)
        dof = float(shrink.sum()) + 1.0
        if dof >= rows:
            continue
        residual = outside + float((((1 - shrink) * projected) ** 2).sum())
        gcv = (residual / rows) / (1 - dof / rows) ** 2
        if gcv < best[1]:
            best = (relative, gcv)
    return float(best[0] * unit)


def _penalty_for(gram: np.ndarray, rhs: np.ndarray, target_ss: float, rows: int) -> float:
    """GCV's penalty for the weighted normal equations (gram, rhs) of ``rows`` rows whose
    weighted, centred target has sum of squares ``target_ss``."""
    s2, vectors = np.linalg.eigh(gram)
    s2 = np.clip(s2, 0.0, None)
    projected = np.where(s2 > 0, (vectors.T @ rhs) / np.sqrt(np.where(s2 > 0, s2, 1.0)), 0.0)
    return gcv_choice(s2, projected, max(target_ss - float(projected @ projected), 0.0), rows)


def inner_folds_of(count: int, folds: int, seed: int) -> np.ndarray:
    """Each item's inner fold: a seeded permutation cut into equal shares."""
    order = np.random.default_rng([seed, 23]).permutation(count)
    fold = np.empty(count, dtype=np.int64)
    fold[order] = np.arange(count) % folds
    return fold


def fit_learned_curve(features: np.ndarray, target: np.ndarray, rating_number: np.ndarray, *,
                      knots: int = 8, monotone: int = 1, objective: str = "plcc",
                      inner_folds: int = 3, components: int = 64, seed: int = 0,
                      basis: FeatureBasis | None = None,
                      steps: int = STEPS) -> dict[str, Any]:
    """The learned curve's statistics (``weighting.learned``'s stats) fitted on these rows:
    knots and values, with what the fit saw (its inner validation score with uniform weights
    and with the curve, the penalty, the items). ``basis``: the principal axes to use (the
    study fits them once per training part); by default fitted on ``features``."""
    import torch

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    u = np.log1p(np.clip(np.nan_to_num(np.asarray(rating_number, dtype=np.float64)), 0, None))
    record: dict[str, Any] = {"items": len(y), "objective": objective, "monotone": monotone,
                              "inner_folds": inner_folds,
                              "mean_log1p_n": float(u.mean()) if len(u) else 0.0}
    positions = knot_positions(u, knots) if len(u) else np.zeros(1)
    if len(y) < MIN_ITEMS or len(positions) < 2:
        why = (f"{len(y)} items (a fit needs {MIN_ITEMS})" if len(y) < MIN_ITEMS
               else "every item has the same rating count")
        return {**record, KNOTS_KEY: [float(positions[0])], VALUES_KEY: [1.0],
                "flat_because": why}
    basis = basis or FeatureBasis.fit(x, components)
    z = basis.scores(x)[:, :components]
    hat = hat_basis(u, positions)
    fold = inner_folds_of(len(y), inner_folds, seed)
    pieces = []
    for f in range(inner_folds):
        train, val = fold != f, fold == f
        h, zt, yt = hat[train], z[train], y[train]
        pieces.append({  # the ridge's normal equations, one term per knot (linear in w)
            "gram": torch.from_numpy(np.einsum("ik,ia,ib->kab", h, zt, zt)),
            "zsum": torch.from_numpy(h.T @ zt), "zy": torch.from_numpy(np.einsum(
                "ik,ia,i->ka", h, zt, yt)),
            "count": torch.from_numpy(h.sum(axis=0)), "ysum": torch.from_numpy(h.T @ yt),
            "yy": torch.from_numpy(h.T @ yt**2), "rows": int(train.sum()),
            "z_val": torch.from_numpy(z[val]),
            "y_val": torch.from_numpy(y[val])})
    mean_hat = torch.from_numpy(hat.mean(axis=0))
    eye = torch.eye(z.shape[1], dtype=torch.float64)

    def values_of(theta: torch.Tensor) -> torch.Tensor:
        positive = torch.nn.functional.softplus(theta)
        return torch.cumsum(positive, 0) if monotone else positive

    def weights_of(values: Any) -> Any:
        """Values at the knots -> weights there: mean 1 over the items, never below FLOOR
        (an item of weight 0 would leave the head, and few rows make its GCV overfit)."""
        return FLOOR + (1.0 - FLOOR) * values / (mean_hat @ values)

    penalties: list[float] = []

    def loss_of(values: torch.Tensor) -> torch.Tensor:
        v = weights_of(values)
        losses = []
        for p in pieces:
            total = p["count"] @ v
            mx = (v @ p["zsum"]) / total
            my = (p["ysum"] @ v) / total
            gram = torch.einsum("k,kab->ab", v, p["gram"]) - total * torch.outer(mx, mx)
            rhs = v @ p["zy"] - total * mx * my
            # the penalty the head's GCV would pick for these weights, held fixed in the
            # gradient (a choice over a grid has none)
            penalty = _penalty_for(gram.detach().numpy(), rhs.detach().numpy(),
                                   float((p["yy"] @ v - total * my**2).detach()), p["rows"])
            penalties.append(penalty)
            beta = torch.linalg.solve(gram + penalty * eye, rhs)
            predicted = (p["z_val"] - mx) @ beta + my
            if objective == "mse":
                losses.append(((predicted - p["y_val"]) ** 2).sum() / len(y))
            else:
                losses.append(-_pearson(predicted, p["y_val"]) / inner_folds)
        smooth = SMOOTHNESS * (torch.diff(v) ** 2).mean()
        return torch.stack(losses).sum() + smooth

    start = np.full(len(positions), 1e-2 if monotone else 1.0)
    start[0] = 1.0
    theta = torch.tensor(np.log(np.expm1(start)), dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        uniform = float(loss_of(torch.ones(len(positions), dtype=torch.float64)))
    optimiser = torch.optim.Adam([theta], lr=LEARNING_RATE)
    best = (uniform, np.ones(len(positions)))
    taken, since_better = 0, 0
    while taken < steps:
        taken += 1
        optimiser.zero_grad()
        values = values_of(theta)
        loss = loss_of(values)
        value = float(loss.detach())
        since_better = 0 if value < best[0] - TOLERANCE * abs(best[0]) else since_better + 1
        if value < best[0]:
            best = (value, values.detach().numpy().copy())
        if since_better >= PATIENCE:  # flat: more steps would only polish the inner score
            break
        loss.backward()
        optimiser.step()
    values = FLOOR + (1.0 - FLOOR) * best[1] / float(hat.mean(axis=0) @ best[1])
    sign = -1.0 if objective == "plcc" else 1.0  # report scores, not losses
    return {**record, KNOTS_KEY: positions.tolist(), VALUES_KEY: values.tolist(),
            "components": int(z.shape[1]), "penalty_last": penalties[-len(pieces):],
            "steps": taken,
            "inner_score_uniform": sign * uniform, "inner_score_learned": sign * best[0]}


def _pearson(a: Any, b: Any) -> Any:
    a = a - a.mean()
    b = b - b.mean()
    return (a @ b) / ((a @ a).sqrt() * (b @ b).sqrt() + 1e-12)
