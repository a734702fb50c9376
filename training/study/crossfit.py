"""A study's runs fitted in memory on the cached embeddings: the k-fold design and the ridge head.

Every item is encoded once (the 100% slice holds them all: train, val and test). Then, per
evaluation unit (the split's test items for ``holdout``; each fold of each repeat for
``kfold``), per seed, fraction and strategy: the training part's nested slice is cut by the
rule ``build-slice`` uses, its weights computed by ``weighting.compute`` on those train items,
a head fitted, and the unit's test items predicted.

- **Folds** (``assign_folds``): as the split is made, with another hash: within each stratum
  (category x rating bin) the near-duplicate groups of the split are ordered by
  sha256("kfold<repeat>:<group_id>") and cut into ``folds`` equal shares of items, so folds
  are stratified and a group never straddles two folds. Every item is a test item once per
  repeat.
- **Within a fold's training part**: validation items (for the MLP's early stopping; the
  ridge head's penalty comes from GCV on its train items and ignores them) are the groups
  whose hash of ("kfold<repeat>-val", group_id) falls in the first ninth, the 10:80 ratio
  of the split; the rest are the train items, from which the nested slice of each fraction
  is cut exactly as ``curate build-slice`` cuts it (``nested_selection``; a test compares
  the two on the split), so fractions stay nested within a fold.
- **Resume**: each unit writes its predictions and its runs' facts under
  ``STUDY/crossfit/<unit>/``, the runs table last, as its completion marker; a study started
  again skips the finished units.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curation.errors import UserError
from curation.manifest import atomic_file
from curation.split import stable_hash
from training.heads import MlpSettings, fit_mlp_head, fit_weighted_ridge
from training.loss_registry import DEFAULT_LOSS

CROSSFIT_DIR = "crossfit"
PREDICTIONS_FILE = "predictions.parquet"
RUNS_FILE = "runs.parquet"  # written last: the unit's completion marker
VAL_SHARE = 1 / 9  # of a fold's training part: the split's val : train is 10 : 80
TARGET = "average_rating"
# Columns of the 100% slice the folds and slices are drawn from.
DRAW_COLUMNS = ("parent_asin", "split", "category", "stratum", "rating_bin", TARGET)


@dataclass(frozen=True)
class Unit:
    """One evaluation unit: a fold of a repeat (holdout: the split, repeat 0 fold 0)."""

    repeat: int
    fold: int

    @property
    def name(self) -> str:
        return f"r{self.repeat}-f{self.fold}"


def units(design: str, folds: int, repeats: int) -> list[Unit]:
    if design == "kfold":
        return [Unit(r, k) for r in range(repeats) for k in range(folds)]
    return [Unit(0, 0)]


def _hash_share(seed: str, keys: Sequence[str]) -> np.ndarray:
    """Each key's stable hash as a share of 2^64 (in [0, 1))."""
    return np.array([stable_hash(seed, k) for k in keys], dtype=np.float64) / 2.0**64


def assign_folds(groups: pl.DataFrame, folds: int, repeat: int) -> pl.DataFrame:
    """(parent_asin, fold) for items (parent_asin, group_id, category, rating_bin): the
    split's rule with ``folds`` equal shares instead of 80/10/10."""
    seed = f"kfold{repeat}"
    placed = (groups.group_by("group_id").agg(
        pl.len().alias("size"),
        pl.col("category").sort_by("parent_asin").first(),
        pl.col("rating_bin").sort_by("parent_asin").first()))
    placed = placed.with_columns(pl.Series(
        "h", [stable_hash(seed, g) for g in placed["group_id"].to_list()], dtype=pl.UInt64))
    placed = placed.sort("h", "group_id").with_columns(
        (pl.col("size").cum_sum().over("category", "rating_bin") - pl.col("size"))
        .alias("before"),
        pl.col("size").sum().over("category", "rating_bin").alias("total"))
    placed = placed.with_columns(
        ((pl.col("before") + pl.col("size") / 2) / pl.col("total") * folds).floor()
        .cast(pl.Int32).clip(0, folds - 1).alias("fold"))
    return groups.join(placed.select("group_id", "fold"), on="group_id").select(
        "parent_asin", "fold").sort("parent_asin")


def nested_selection(train: pl.DataFrame, fraction: float, seed: int,
                     min_per_category: int = 0) -> pl.Series:
    """Whether each train item (parent_asin, stratum, category) is in the slice of
    ``fraction``: ``curate build-slice``'s rule (curation/slices.py), in memory."""
    keyed = train.select("parent_asin", "stratum", "category").with_row_index("_row")
    keyed = keyed.with_columns(pl.Series(
        "h", [stable_hash(seed, a) for a in keyed["parent_asin"].to_list()], dtype=pl.UInt64))
    keyed = keyed.sort("h", "parent_asin").with_columns(
        ((pl.int_range(1, pl.len() + 1).over("stratum") - 0.5)
         / pl.len().over("stratum")).alias("threshold"))
    keyed = keyed.with_columns(
        (pl.col("threshold") <= fraction).sum().over("category").alias("share"),
        pl.len().over("category").alias("items"))
    keyed = keyed.sort("threshold", "h", "parent_asin").with_columns(
        pl.int_range(1, pl.len() + 1).over("category").alias("rank"))
    chosen = keyed.with_columns(
        (pl.col("rank") <= pl.max_horizontal(
            "share", pl.min_horizontal(pl.lit(min_per_category), "items"))).alias("selected"))
    return chosen.sort("_row")["selected"]


@dataclass
class StudyData:
    """Every item of the study with what the draws need, its group, and its features."""

    items: pl.DataFrame
    features: np.ndarray


def unit_parts(data: StudyData, unit: Unit, design: str,
               folds: int) -> dict[str, np.ndarray]:
    """Row numbers of the unit's training part (train), validation and test items."""
    items = data.items
    if design != "kfold":
        return {s: np.flatnonzero((items["split"] == s).to_numpy())
                for s in ("train", "val", "test")}
    fold = assign_folds(items.select("parent_asin", "group_id", "category", "rating_bin"),
                        folds, unit.repeat)
    fold_of = items.select("parent_asin").join(fold, on="parent_asin", how="left")["fold"]
    test = (fold_of == unit.fold).to_numpy()
    is_val = _hash_share(f"kfold{unit.repeat}-val", items["group_id"].to_list()) < VAL_SHARE
    return {"train": np.flatnonzero(~test & ~is_val), "val": np.flatnonzero(~test & is_val),
            "test": np.flatnonzero(test)}


def run_unit(data: StudyData, unit: Unit, *, design: str, folds: int,
             fractions: Sequence[float], seeds: Sequence[int], head: str,
             trainer: dict[str, Any], strategies: Sequence[str] = (),
             arms: dict[str, tuple[str, str]] | None = None,
             min_per_category: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(predictions on the unit's test items, one row per run) for every seed x fraction x
    arm of one unit. An arm is a (weighting strategy, loss) named by its label (``arms``;
    by default each strategy with the Huber loss, named by the strategy)."""
    items, features = data.items, data.features
    parts = unit_parts(data, unit, design, folds)
    train_all = items[parts["train"]]
    target = items[TARGET].to_numpy().astype(np.float64)
    test_rows = parts["test"]
    predictions: list[pl.DataFrame] = []
    runs: list[dict[str, Any]] = []
    settings = MlpSettings.from_trainer(trainer)
    if arms is None:
        arms = {s: (s, DEFAULT_LOSS) for s in strategies}
    for seed in seeds:
        for fraction in sorted(fractions):
            chosen = nested_selection(train_all, fraction, seed, min_per_category).to_numpy()
            train_rows = parts["train"][chosen]
            frame = items[train_rows].with_columns(pl.lit("train").alias("split"))
            weights: dict[str, np.ndarray] = {}
            for label, (spec, loss) in arms.items():
                started = time.perf_counter()
                if spec not in weights:
                    weights[spec] = _weights(frame, spec, f"fraction {fraction:g}, seed "
                                                          f"{seed}, {unit.name}")
                weight = weights[spec]
                detail: dict[str, Any] = {}
                if head == "ridge":
                    fit = fit_weighted_ridge(features[train_rows], target[train_rows], weight)
                    predicted = fit.predict(features[test_rows])
                    detail = {"ridge_penalty": fit.penalty, "ridge_dof": fit.effective_dof}
                else:
                    full_weight = np.zeros(len(items))
                    full_weight[train_rows] = weight
                    predictor, best_epoch = fit_mlp_head(features, target, full_weight,
                                                         train_rows, parts["val"], seed, settings,
                                                         loss=loss)
                    predicted = predictor(features[test_rows])
                    detail = {"best_epoch": best_epoch}
                predictions.append(pl.DataFrame({
                    "repeat": pl.Series([unit.repeat] * len(test_rows), dtype=pl.Int32),
                    "fold": pl.Series([unit.fold] * len(test_rows), dtype=pl.Int32),
                    "seed": pl.Series([seed] * len(test_rows), dtype=pl.Int64),
                    "fraction": pl.Series([fraction] * len(test_rows), dtype=pl.Float64),
                    "strategy": pl.Series([label] * len(test_rows), dtype=pl.String),
                    "parent_asin": items["parent_asin"].gather(test_rows),
                    "target": target[test_rows],
                    "prediction": predicted.astype(np.float64),
                }))
                runs.append({"repeat": unit.repeat, "fold": unit.fold, "seed": seed,
                             "fraction": fraction, "strategy": label,
                             "train_items": len(train_rows), "val_items": len(parts["val"]),
                             "test_items": len(test_rows),
                             "effective_train_items": float(weight.sum() ** 2
                                                            / (weight**2).sum()),
                             "ridge_penalty": detail.get("ridge_penalty"),
                             "best_epoch": detail.get("best_epoch"),
                             "seconds": round(time.perf_counter() - started, 4)})
    schema = {"repeat": pl.Int32, "fold": pl.Int32, "seed": pl.Int64, "fraction": pl.Float64,
              "strategy": pl.String, "train_items": pl.Int64, "val_items": pl.Int64,
              "test_items": pl.Int64, "effective_train_items": pl.Float64,
              "ridge_penalty": pl.Float64, "best_epoch": pl.Int64, "seconds": pl.Float64}
    return pl.concat(predictions), pl.DataFrame(runs, schema=schema)


def _weights(frame: pl.DataFrame, spec: str, where: str) -> np.ndarray:
    """The train items' weights, or one line naming the strategy and where it failed."""
    import weighting

    try:
        weight = weighting.compute(frame, spec).to_numpy()
    except UserError as exc:
        raise UserError(f"strategy {spec!r}, {where}: {exc}") from None
    if not weight.sum() > 0:
        raise UserError(f"strategy {spec!r} gives every train item weight 0 ({where})")
    return weight


def run_units(data: StudyData, folder: Path, *, design: str, folds: int, repeats: int,
              fractions: Sequence[float], arms: dict[str, tuple[str, str]],
              seeds: Sequence[int], head: str, trainer: dict[str, Any],
              min_per_category: int = 0,
              log: Callable[[str], None] = print) -> tuple[int, int]:
    """Every unfinished unit, each written whole; (units run now, units already done)."""
    todo = [u for u in units(design, folds, repeats)
            if not (folder / CROSSFIT_DIR / u.name / RUNS_FILE).exists()]
    done = len(units(design, folds, repeats)) - len(todo)
    timings: list[float] = []
    for i, unit in enumerate(todo, start=1):
        started = time.perf_counter()
        predictions, runs = run_unit(
            data, unit, design=design, folds=folds, fractions=fractions, arms=arms,
            seeds=seeds, head=head, trainer=trainer, min_per_category=min_per_category)
        out = folder / CROSSFIT_DIR / unit.name
        out.mkdir(parents=True, exist_ok=True)
        with atomic_file(out / PREDICTIONS_FILE) as tmp:
            predictions.write_parquet(tmp)
        with atomic_file(out / RUNS_FILE) as tmp:
            runs.write_parquet(tmp)
        timings.append(time.perf_counter() - started)
        left = (len(todo) - i) * float(np.median(timings))
        scores = predictions.group_by("strategy").agg(
            pl.corr("prediction", "target").alias("plcc")).sort("strategy")
        shown = ", ".join(f"{s} {p:.3f}" for s, p in scores.iter_rows())
        log(f"[{done + i}/{done + len(todo)}] {unit.name}: {runs.height} runs, test PLCC "
            f"(pooled over fractions and seeds) {shown} ({timings[-1]:.1f} s; about "
            f"{left:.0f} s left)")
    return len(todo), done


def read_units(folder: Path, design: str, folds: int,
               repeats: int) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(predictions, runs, names of unfinished units) of a study folder."""
    predictions, runs, missing = [], [], []
    for unit in units(design, folds, repeats):
        out = folder / CROSSFIT_DIR / unit.name
        if not (out / RUNS_FILE).exists():
            missing.append(unit.name)
            continue
        predictions.append(pl.read_parquet(out / PREDICTIONS_FILE))
        runs.append(pl.read_parquet(out / RUNS_FILE))
    if not runs:
        return pl.DataFrame(), pl.DataFrame(), missing
    return pl.concat(predictions), pl.concat(runs), missing
