"""The study's in-memory heads trained together (``fit_mlp_heads``) give what each gives alone,
and what the module-based ``fit_mlp_head`` gives for the same seed, dropout included: batching
a grid changes its speed, not its results."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from training.heads import HeadJob, MlpSettings, fit_mlp_head, fit_mlp_heads


def _data(n: int = 300, d: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, d)).astype(np.float32)
    target = np.clip(3.5 + features[:, 0] - 0.5 * features[:, 1] + 0.4 * rng.normal(size=n),
                     1, 5)
    weight = rng.uniform(0.2, 3.0, size=n)
    return features, target, weight


def _grid_jobs(weight: np.ndarray) -> list[HeadJob]:
    """A unit's grid in small: 3 seeds x 2 sizes x 2 weightings; the val rows are shared."""
    val = np.arange(220, 300)
    jobs = []
    for seed in (0, 1, 2):
        order = np.random.default_rng(seed).permutation(220)
        for size in (60, 200):
            rows = np.sort(order[:size])
            jobs.append(HeadJob(rows, np.ones(size), val, seed))
            jobs.append(HeadJob(rows, weight[rows], val, seed))
    return jobs


def test_heads_trained_together_equal_heads_trained_alone():
    features, target, weight = _data()
    jobs = _grid_jobs(weight)
    settings = MlpSettings(epochs=8, batch_size=32, patience=2)
    together = fit_mlp_heads(features, target, jobs, settings)
    best_epochs = set()
    for job, (predictor, best_epoch) in zip(jobs, together, strict=True):
        alone, alone_epoch = fit_mlp_heads(features, target, [job], settings)[0]
        assert best_epoch == alone_epoch
        np.testing.assert_allclose(predictor(features), alone(features), atol=1e-5)
        best_epochs.add(best_epoch)
    # some heads stopped early while the others trained on: the stack shrank mid-way
    assert len(best_epochs) > 1
    # and the weighting matters: the two arms of a seed and size differ
    assert not np.allclose(together[0][0](features), together[1][0](features), atol=1e-3)


def test_groups_of_any_size_give_the_same_heads():
    features, target, weight = _data()
    jobs = _grid_jobs(weight)
    settings = MlpSettings(epochs=5, batch_size=32, patience=5)
    wide = fit_mlp_heads(features, target, jobs, settings, heads_per_group=12)
    narrow = fit_mlp_heads(features, target, jobs, settings, heads_per_group=2)
    for (a, epoch_a), (b, epoch_b) in zip(wide, narrow, strict=True):
        assert epoch_a == epoch_b
        np.testing.assert_allclose(a(features), b(features), atol=1e-5)


@pytest.mark.parametrize(("renormalise", "dropout"), [(False, 0.0), (True, 0.0), (False, 0.1),
                                                     (True, 0.3)])
def test_the_stacked_head_is_the_module_head(renormalise, dropout):
    """One run at a time (``fit_mlp_head``, torch's modules and optimiser) or stacked, a seed
    gives the same head: the stacked (fused) AdamW, clipping, LayerNorm and loss agree, and each
    stacked head's dropout draws the masks the module's dropout layers draw."""
    features, target, weight = _data()
    rows, val = np.arange(0, 220), np.arange(220, 300)
    settings = MlpSettings(epochs=6, batch_size=32, patience=6, dropout=dropout, clip=0.05,
                           renormalise=renormalise)
    full = np.zeros(len(target))
    full[rows] = weight[rows]
    module, module_epoch = fit_mlp_head(features, target, full, rows, val, 3, settings)
    stacked, stacked_epoch = fit_mlp_heads(features, target,
                                           [HeadJob(rows, weight[rows], val, 3)], settings)[0]
    assert module_epoch == stacked_epoch
    np.testing.assert_allclose(stacked(features), module(features), atol=1e-4)
