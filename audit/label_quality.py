"""``curate audit label-quality``: items whose average_rating is probably wrong.

1. Every item of the slice is embedded by the frozen encoders (the trainer's embedding cache:
   an audit after a frozen study costs no encoding).
2. Out-of-fold predictions: K folds by a stable hash of parent_asin; in each, ridge
   regression on the standardised embeddings, its penalty chosen by generalised
   cross-validation on the training folds (``RidgeCV``).
3. ``cleanlab.regression.rank.get_label_quality_scores(labels, predictions)`` gives each item
   a label-quality score in [0, 1] (low: the label disagrees with what the rest of the data
   predicts).
4. Flags, by ``method``:
   - ``residual`` (default): the out-of-fold residual's robust z-score (median and MAD of
     the residuals) above ``z``;
   - ``cleanlearning``: cleanlab's ``CleanLearning(model=Ridge).find_label_issues``, which
     picks how many to flag by refitting without them. On the planted synthetic corpus it
     flags a fifth of the items (the residual rule about as many as were planted), which is
     why it is not the default.

Writes ``CATALOG/audit/label_quality/<slice>/`` (items.parquet: parent_asin, split, label,
oof_prediction, residual, residual_z, label_quality, is_label_issue; summary.md;
manifest.json). The ``label_quality`` weighting strategy and ``build-slice
--exclude-label-issues`` read it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from audit.outputs import read_audit, write_audit
from curation.catalog import Catalog
from curation.errors import UserError
from curation.slices import Slice

AUDIT = "label_quality"
METHODS = ("residual", "cleanlearning")
DEFAULT_Z = 3.0
ALPHAS = np.logspace(-1, 5, 13)


@dataclass
class LabelQualityResult:
    folder: Path
    items: int
    flagged: int
    oof_pearson: float
    seconds: float


def fold_of(parent_asins: list[str], folds: int, seed: int = 0) -> np.ndarray:
    from curation.split import stable_hash

    return np.array([stable_hash(f"fold{seed}", a) % folds for a in parent_asins])


def out_of_fold_predictions(features: np.ndarray, labels: np.ndarray, folds: np.ndarray
                            ) -> np.ndarray:
    """Ridge (penalty by GCV on the other folds) on features standardised per fold."""
    from sklearn.linear_model import RidgeCV

    oof = np.empty(len(labels), dtype=np.float64)
    for fold in np.unique(folds):
        held = folds == fold
        train = ~held
        mean = features[train].mean(axis=0)
        std = features[train].std(axis=0)
        std[std < 1e-8] = 1.0
        model = RidgeCV(alphas=ALPHAS).fit((features[train] - mean) / std, labels[train])
        oof[held] = model.predict((features[held] - mean) / std)
    return oof


def flag_by_residual(labels: np.ndarray, oof: np.ndarray, z: float) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """(robust z-score of |residual|, flags)."""
    residual = np.abs(labels - oof)
    median = float(np.median(residual))
    mad = float(np.median(np.abs(residual - median))) * 1.4826
    scores = (residual - median) / (mad if mad > 0 else 1.0)
    return scores, scores > z


def label_quality_audit(
    catalog: Catalog | Path | str,
    slice_name: str,
    *,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    folds: int = 5,
    method: str = "residual",
    z: float = DEFAULT_Z,
    workers: int = 1,
) -> LabelQualityResult:
    from cleanlab.regression.rank import get_label_quality_scores

    from training.embeddings import embed_slice, encoders_ran

    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if folds < 2:
        raise UserError(f"--folds must be at least 2, got {folds}")
    started = time.perf_counter()
    encoders = {k: v for k, v in (("image_encoder", image_encoder),
                                  ("text_encoder", text_encoder)) if v}
    catalog = Catalog.of(catalog)
    items, embedded = embed_slice(Slice.open(catalog, slice_name), **encoders, workers=workers)
    features = embedded.features
    labels = items["average_rating"].to_numpy().astype(np.float64)
    if len(labels) < 2 * folds:
        raise UserError(f"slice {slice_name!r} has {len(labels)} items; the audit needs at "
                        f"least {2 * folds} for {folds} folds")
    assignment = fold_of(items["parent_asin"].to_list(), folds)
    oof = out_of_fold_predictions(features.astype(np.float64), labels, assignment)
    quality = get_label_quality_scores(labels, oof)
    residual_z, flags = flag_by_residual(labels, oof, z)
    if method == "cleanlearning":
        from cleanlab.regression.learn import CleanLearning
        from sklearn.linear_model import Ridge, RidgeCV

        standardised = (features - features.mean(axis=0)) / np.maximum(features.std(axis=0),
                                                                         1e-8)
        alpha = float(RidgeCV(alphas=ALPHAS).fit(standardised, labels).alpha_)
        issues = CleanLearning(model=Ridge(alpha=alpha), cv_n_folds=folds, seed=0) \
            .find_label_issues(standardised, labels)
        flags = issues["is_label_issue"].to_numpy().astype(bool)
    table = items.select("parent_asin", "split", "category").with_columns(
        label=pl.Series(labels),
        oof_prediction=pl.Series(oof),
        residual=pl.Series(labels - oof),
        residual_z=pl.Series(residual_z),
        label_quality=pl.Series(quality.astype(np.float64)),
        is_label_issue=pl.Series(flags),
    ).sort("label_quality", "parent_asin")
    pearson = float(np.corrcoef(oof, labels)[0, 1]) if len(labels) > 1 else float("nan")
    summary = _summary(slice_name, table, pearson, method, z, folds)
    folder = write_audit(catalog, AUDIT, slice_name, table, summary, {
        "parameters": {"slice": slice_name, "folds": folds, "method": method, "z": z,
                       "encoders": encoders or "defaults"},
        "counts": {"items": table.height, "flagged": int(flags.sum())},
        "encoders_ran": encoders_ran(embedded),
        "oof_pearson": pearson,
    })
    return LabelQualityResult(folder, table.height, int(flags.sum()), pearson,
                              time.perf_counter() - started)


def _summary(slice_name: str, table: pl.DataFrame, pearson: float, method: str, z: float,
             folds: int) -> str:
    flagged = table.filter(pl.col("is_label_issue"))
    rule = (f"out-of-fold residual robust z > {z:g}" if method == "residual"
            else "cleanlab CleanLearning.find_label_issues")
    lines = [
        f"# Label quality of slice `{slice_name}`",
        "",
        f"- {table.height:,} items; out-of-fold ridge predictions ({folds} folds) correlate "
        f"{pearson:.3f} with average_rating",
        f"- flagged: {flagged.height:,} ({flagged.height / max(table.height, 1):.1%}) by "
        f"{rule}",
        f"- cleanlab label-quality score: median {table['label_quality'].median():.3f}; "
        f"of flagged items {flagged['label_quality'].median() or 0:.3f}",
        "",
        "| parent_asin | split | label | predicted | label quality |",
        "|---|---|---:|---:|---:|",
    ]
    for row in flagged.head(10).iter_rows(named=True):
        lines.append(f"| {row['parent_asin']} | {row['split']} | {row['label']:.1f} | "
                     f"{row['oof_prediction']:.2f} | {row['label_quality']:.3f} |")
    return "\n".join(lines) + "\n"


def flagged_items(catalog: Catalog | Path | str, audited_slice: str) -> list[str]:
    """The parent_asins a label-quality audit of ``audited_slice`` flagged (what
    ``build-slice --exclude-label-issues`` hands to the slice as its exclusion)."""
    table = read_audit(catalog, AUDIT, audited_slice,
                       f"curate audit label-quality --slice {audited_slice}")
    return table.filter(pl.col("is_label_issue"))["parent_asin"].to_list()
