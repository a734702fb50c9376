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
from curation.manifest import atomic_file, write_json_atomic
from curation.split import stable_hash
from training.heads import (
    HeadJob,
    MlpSettings,
    fit_mlp_head,
    fit_mlp_heads,
    fit_weighted_ridge,
)
from training.loss_registry import DEFAULT_LOSS

CROSSFIT_DIR = "crossfit"
PREDICTIONS_FILE = "predictions.parquet"
RUNS_FILE = "runs.parquet"  # written last: the unit's completion marker
CURVES_FILE = "learned.json"  # the unit's learned curves (learned arms, learned pruning scores)
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
             min_per_category: int = 0,
             curves: list[dict[str, Any]] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(predictions on the unit's test items, one row per run) for every seed x fraction x
    arm of one unit. An arm is a (weighting strategy, loss) named by its label (``arms``;
    by default each strategy with the Huber loss, named by the strategy). A pruning arm
    trains on its own selection, as large as the random slice; ``curves`` receives the
    learned curves fitted."""
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
    fits = _UnitFits(data, parts["train"], unit)
    planned: list[dict[str, Any]] = []  # each run's rows and weights, in the output's order
    for seed in seeds:
        for fraction in sorted(fractions):
            chosen = nested_selection(train_all, fraction, seed, min_per_category).to_numpy()
            random_rows = parts["train"][chosen]
            weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for label, (spec, loss) in arms.items():
                started = time.perf_counter()
                if spec not in weights:
                    weights[spec] = fits.rows_and_weights(spec, random_rows, seed, fraction)
                train_rows, weight = weights[spec]
                planned.append({"seed": seed, "fraction": fraction, "label": label,
                                "loss": loss, "rows": train_rows, "weight": weight,
                                "seconds": time.perf_counter() - started})
    # The MLP heads with the Huber loss are trained together (training.heads.fit_mlp_heads);
    # each run is charged an equal share of that time.
    batched = [run for run in planned if head != "ridge" and run["loss"] == DEFAULT_LOSS]
    if batched:
        started = time.perf_counter()
        jobs = [HeadJob(run["rows"], run["weight"], parts["val"], run["seed"])
                for run in batched]
        for run, (predictor, best_epoch) in zip(
                batched, fit_mlp_heads(features, target, jobs, settings), strict=True):
            run["predicted"], run["detail"] = (predictor(features[test_rows]),
                                               {"best_epoch": best_epoch})
        share = (time.perf_counter() - started) / len(batched)
        for run in batched:
            run["seconds"] += share
    for run in planned:
        train_rows, weight, seed = run["rows"], run["weight"], run["seed"]
        if "predicted" not in run:
            started = time.perf_counter()
            if head == "ridge":
                fit = fit_weighted_ridge(features[train_rows], target[train_rows], weight)
                run["predicted"] = fit.predict(features[test_rows])
                run["detail"] = {"ridge_penalty": fit.penalty, "ridge_dof": fit.effective_dof}
            else:
                full_weight = np.zeros(len(items))
                full_weight[train_rows] = weight
                predictor, best_epoch = fit_mlp_head(features, target, full_weight, train_rows,
                                                     parts["val"], seed, settings,
                                                     loss=run["loss"])
                run["predicted"] = predictor(features[test_rows])
                run["detail"] = {"best_epoch": best_epoch}
            run["seconds"] += time.perf_counter() - started
        detail = run["detail"]
        predictions.append(pl.DataFrame({
            "repeat": pl.Series([unit.repeat] * len(test_rows), dtype=pl.Int32),
            "fold": pl.Series([unit.fold] * len(test_rows), dtype=pl.Int32),
            "seed": pl.Series([seed] * len(test_rows), dtype=pl.Int64),
            "fraction": pl.Series([run["fraction"]] * len(test_rows), dtype=pl.Float64),
            "strategy": pl.Series([run["label"]] * len(test_rows), dtype=pl.String),
            "parent_asin": items["parent_asin"].gather(test_rows),
            "target": target[test_rows],
            "prediction": run["predicted"].astype(np.float64),
        }))
        runs.append({"repeat": unit.repeat, "fold": unit.fold, "seed": seed,
                     "fraction": run["fraction"], "strategy": run["label"],
                     "train_items": len(train_rows), "val_items": len(parts["val"]),
                     "test_items": len(test_rows),
                     "effective_train_items": float(weight.sum() ** 2 / (weight**2).sum()),
                     "ridge_penalty": detail.get("ridge_penalty"),
                     "best_epoch": detail.get("best_epoch"),
                     "seconds": round(run["seconds"], 4)})
    if curves is not None:
        curves += fits.curves
    schema = {"repeat": pl.Int32, "fold": pl.Int32, "seed": pl.Int64, "fraction": pl.Float64,
              "strategy": pl.String, "train_items": pl.Int64, "val_items": pl.Int64,
              "test_items": pl.Int64, "effective_train_items": pl.Float64,
              "ridge_penalty": pl.Float64, "best_epoch": pl.Int64, "seconds": pl.Float64}
    return pl.concat(predictions), pl.DataFrame(runs, schema=schema)


def _weights(frame: pl.DataFrame, spec: str, where: str,
             learned: dict[str, Any] | None = None) -> np.ndarray:
    """The train items' weights (``learned``: a fitted curve's), or one line naming the
    strategy and where it failed."""
    import weighting
    from weighting.learned import learned_weights

    try:
        weight = (weighting.compute(frame, spec).to_numpy() if learned is None
                  else learned_weights(frame, learned))
    except UserError as exc:
        raise UserError(f"strategy {spec!r}, {where}: {exc}") from None
    if not weight.sum() > 0:
        raise UserError(f"strategy {spec!r} gives every train item weight 0 ({where})")
    return weight


class _UnitFits:
    """The training rows and weights of each arm in one unit: ``weighting.compute`` on the
    random slice; a learned curve fitted on the slice (``training.learned_weighting``, the
    principal axes of the unit's whole training part fitted once); a pruning arm's top items
    of the training part by its score (ties broken by the seed's hash), as many as the random
    slice holds, so the two are set side by side at equal size."""

    def __init__(self, data: StudyData, training_part: np.ndarray, unit: Unit) -> None:
        self.data, self.part, self.unit = data, training_part, unit
        self.curves: list[dict[str, Any]] = []
        self._basis: Any = None
        self._scores: dict[str, np.ndarray] = {}

    def rows_and_weights(self, spec: str, random_rows: np.ndarray, seed: int,
                         fraction: float) -> tuple[np.ndarray, np.ndarray]:
        from training.study.config import prune_arm

        where = f"fraction {fraction:g}, seed {seed}, {self.unit.name}"
        arm = prune_arm(spec)
        if arm is None:
            return random_rows, self._weights(spec, random_rows, seed, fraction, where)
        score = self._score(arm.score, spec)
        order = np.lexsort((_hash_share(str(seed), self._asins(self.part)), -score))
        kept = np.sort(self.part[order[:len(random_rows)]])
        return kept, self._weights(arm.weight, kept, seed, fraction, where)

    def _asins(self, rows: np.ndarray) -> list[str]:
        return self.data.items["parent_asin"].gather(rows).to_list()

    def _frame(self, rows: np.ndarray) -> pl.DataFrame:
        return self.data.items[rows].with_columns(pl.lit("train").alias("split"))

    def _weights(self, spec: str, rows: np.ndarray, seed: int, fraction: float,
                 where: str) -> np.ndarray:
        import weighting

        name, params = weighting.parse_spec(spec)[0]
        if name != "learned":
            return _weights(self._frame(rows), spec, where)
        stats = self._learned(rows, params, seed)
        self.curves.append({"repeat": self.unit.repeat, "fold": self.unit.fold, "seed": seed,
                            "fraction": fraction, "strategy": spec, "fitted_on": "slice",
                            "stats": stats})
        return _weights(self._frame(rows), spec, where, stats)

    def _learned(self, rows: np.ndarray, params: dict[str, Any], seed: int) -> dict[str, Any]:
        import weighting
        from training.learned_weighting import FeatureBasis, fit_learned_curve

        settings = weighting.get_strategy("learned").resolve(params)
        if self._basis is None:  # the training part's features only: no target, no test item
            self._basis = FeatureBasis.fit(self.data.features[self.part],
                                           int(settings["components"]))
        items = self.data.items
        return fit_learned_curve(
            self.data.features[rows], items[TARGET].gather(rows).to_numpy(),
            items["rating_number"].gather(rows).fill_null(0).to_numpy(), seed=seed,
            basis=self._basis, **settings)

    def _score(self, score: str, spec: str) -> np.ndarray:
        """Each item of the training part's score (higher: kept first)."""
        if score in self._scores:
            return self._scores[score]
        items = self.data.items
        if score == "rating_count":
            value = items["rating_number"].gather(self.part).fill_null(0).to_numpy()
        elif score == "learned":
            stats = self._learned(self.part, {}, 0)
            self.curves.append({"repeat": self.unit.repeat, "fold": self.unit.fold, "seed": 0,
                                "fraction": 1.0, "strategy": spec,
                                "fitted_on": "training part", "stats": stats})
            value = _weights(self._frame(self.part), "learned", self.unit.name, stats)
        else:
            value = _weights(self._frame(self.part), score, f"{spec}, {self.unit.name}")
        self._scores[score] = np.asarray(value, dtype=np.float64)
        return self._scores[score]


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
        curves: list[dict[str, Any]] = []
        predictions, runs = run_unit(
            data, unit, design=design, folds=folds, fractions=fractions, arms=arms,
            seeds=seeds, head=head, trainer=trainer, min_per_category=min_per_category,
            curves=curves)
        out = folder / CROSSFIT_DIR / unit.name
        out.mkdir(parents=True, exist_ok=True)
        if curves:  # the learned curves, beside the predictions they weighted
            write_json_atomic(out / CURVES_FILE, curves)
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


def read_curves(folder: Path, design: str, folds: int, repeats: int) -> list[dict[str, Any]]:
    """Every finished unit's learned curves (``learned.json``), in unit order."""
    import json

    curves: list[dict[str, Any]] = []
    for unit in units(design, folds, repeats):
        out = folder / CROSSFIT_DIR / unit.name
        if (out / RUNS_FILE).exists() and (out / CURVES_FILE).exists():
            curves += json.loads((out / CURVES_FILE).read_text())
    return curves
