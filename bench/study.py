"""Head training for a study grid: one run at a time against the heads trained together.

    scripts/demo                                           # once: the catalog and its cache
    HF_HUB_OFFLINE=1 .venv/bin/python bench/study.py --catalog demo/catalog   # medians of 3

On the demo's catalog (the full model's cached embeddings, 1,664 features per item), the
heads of one fold of the demo's grid (7 fractions x the demo's 2 weightings x 1 seed; the
split's train items, early stopping on its val items) are trained three ways, side by side
in one process, each a median over --runs:

- ``trainer``: one ``curate train --mode frozen`` run folder per run, as a holdout study
  runs them (slices, weights table, checkpoints, predictions, manifest);
- ``one at a time``: ``training.heads.fit_mlp_head`` per run, in memory;
- ``together``: ``training.heads.fit_mlp_heads``, the runs' heads stacked (what a k-fold
  study does now).

It prints each time, the ratios of the first two to the third (issue 17 asks for at least
10x over one run at a time), a floor (the grid's forward and backward passes alone: each
head's rows, as its early stop ran them, in steps of 64, times a head's share of the stacked
passes on 64 rows at the stack size where it is least, no optimizer, dropout or data
handling: a floor measured for this implementation, torch's batched products on this CPU,
not a bound on every possible one; one at a time / floor is about what batching these
passes can gain), and the
largest difference between the predictions of
``one at a time`` and ``together`` (the same recipe and seeds, dropout masks included: the
difference is float rounding; before 2026-12-06 the stacked heads drew dropout elsewhere and
it was that of two seeds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from curation.catalog import Catalog
from curation.slices import Slice, build_slice, list_slices, slice_name
from training.config import TrainConfig
from training.embeddings import embed_slice
from training.heads import (  # stacked_heads and stacked_forward: the passes alone, the floor
    HeadJob,
    MlpSettings,
    fit_mlp_head,
    fit_mlp_heads,
    stacked_forward,
    stacked_heads,
)
from training.metrics import pearson
from training.study.config import DEFAULT_FRACTIONS

STRATEGIES = ("uniform", "effiminivlm")


def median_seconds(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=Path("demo/catalog"),
                        help="a catalog with the full model's embeddings cached (scripts/demo)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not (args.catalog / "catalog.json").exists():
        raise SystemExit(f"{args.catalog}: no catalog; run scripts/demo first")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    import weighting

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "catalog"  # a copy: the trainer's slices must not land in the demo's
        shutil.copytree(args.catalog, root)
        catalog = Catalog.open(root)
        have = {m["name"] for m in list_slices(catalog)}
        for fraction in DEFAULT_FRACTIONS:
            if slice_name("default", fraction, 0) not in have:
                build_slice(catalog, fraction, seed=0)
        every = Slice.open(catalog, slice_name("default", 1.0, 0))
        items, embedded = embed_slice(every)
        features = embedded.features
        target = items["average_rating"].to_numpy().astype(np.float64)
        position = {a: i for i, a in enumerate(items["parent_asin"].to_list())}
        val_rows = np.flatnonzero((items["split"] == "val").to_numpy())
        jobs, configs = [], []
        for fraction in DEFAULT_FRACTIONS:
            name = slice_name("default", fraction, 0)
            train = Slice.open(catalog, name).items().filter(split="train")
            rows = np.array([position[a] for a in train["parent_asin"].to_list()])
            for spec in STRATEGIES:
                weight = weighting.compute(train, spec).to_numpy()
                jobs.append(HeadJob(rows, weight, val_rows, 0))
                configs.append(TrainConfig(catalog=str(root), slice=name, weights=spec, seed=0))
        print(f"{len(jobs)} runs ({len(DEFAULT_FRACTIONS)} fractions x {len(STRATEGIES)} "
              f"weightings), {features.shape[1]} features, {len(val_rows):,} val items")
        settings = MlpSettings()
        from training.trainer import train

        def by_trainer() -> None:
            for i, config in enumerate(configs):
                out = Path(tmp) / "runs" / f"run{i}"
                shutil.rmtree(out, ignore_errors=True)
                train(config, out, workers=0, log=lambda _: None)

        def one_at_a_time() -> list[np.ndarray]:
            out = []
            for job in jobs:
                full = np.zeros(len(target))
                full[job.train_rows] = job.train_weight
                predictor, _ = fit_mlp_head(features, target, full, job.train_rows,
                                            job.val_rows, job.seed, settings)
                out.append(predictor(features))
            return out

        def together() -> list[np.ndarray]:
            return [p(features) for p, _ in fit_mlp_heads(features, target, jobs, settings)]

        def step_seconds() -> float:
            """A head's forward and backward pass on a batch of 64 rows, nothing else: the
            stacked heads' passes (as fit_mlp_heads runs them, gradients cleared before each)
            timed for stacks of 1 to 14 heads, at the stack size where a head's share is the
            least."""

            def passes(params: list[torch.Tensor], inputs: torch.Tensor) -> None:
                for p in params:
                    p.grad = None
                stacked_forward(params, inputs, None).sum().backward()

            shares = []
            for size in (1, 2, 4, 8, 14):
                params, _ = stacked_heads(jobs[:size], features.shape[1], settings, target)
                inputs = torch.randn(size, settings.batch_size, features.shape[1])
                for _ in range(10):  # warm
                    passes(params, inputs)
                started, repeats = time.perf_counter(), max(20, 200 // size)
                for _ in range(repeats):
                    passes(params, inputs)
                shares.append((time.perf_counter() - started) / repeats / size)
            return min(shares)

        by_trainer()  # the weights tables and the first run's imports, out of the timing
        trainer_s = median_seconds(args.runs, by_trainer)
        single_s = median_seconds(args.runs, one_at_a_time)
        together_s = median_seconds(args.runs, together)
        single, batched = one_at_a_time(), together()
        # each head ran min(epochs, best + patience) epochs of ceil(n / batch) steps
        epochs_run = [min(settings.epochs, best + settings.patience)
                      for _, best in fit_mlp_heads(features, target, jobs, settings)]
        # rows, not steps: an epoch's last batch is short, and counted as its share of 64
        # (a short batch costs at least its share, so the floor errs low)
        head_rows = sum(e * len(j.train_rows) for e, j in zip(epochs_run, jobs, strict=True))
        head_steps = head_rows / settings.batch_size
        floor_s = head_steps * statistics.median(step_seconds() for _ in range(args.runs))
        test_rows = np.flatnonzero((items["split"] == "test").to_numpy())
        plcc = {label: float(np.mean([pearson(p[test_rows], target[test_rows]) for p in got]))
                for label, got in (("one at a time", single), ("together", batched))}
    gap = max(float(np.abs(a - b).max()) for a, b in zip(single, batched, strict=True))
    print(f"| way | seconds for {len(jobs)} runs (median of {args.runs}) | vs together |")
    print("|---|---:|---:|")
    for label, seconds in (("trainer, one run folder at a time", trainer_s),
                           ("fit_mlp_head, one at a time in memory", single_s),
                           ("fit_mlp_heads, together", together_s)):
        print(f"| {label} | {seconds:.1f} | {seconds / together_s:.1f}x |")
    print(f"| floor: {head_steps:,.0f} head steps of 64 rows x a step's forward and backward "
          f"passes | "
          f"{floor_s:.1f} | {floor_s / together_s:.2f}x |")
    print(f"one at a time / floor: {single_s / floor_s:.1f}x (about the most that batching "
          f"these float32 passes as torch runs them here could gain); "
          f"together / floor: {together_s / floor_s:.1f}x")
    print(f"largest |prediction difference| one at a time vs together: {gap:.2e} stars "
          "(same seeds and dropout masks: float rounding)")
    print("mean test PLCC over the runs: " + ", ".join(f"{k} {v:.3f}" for k, v in plcc.items()))


if __name__ == "__main__":
    main()
