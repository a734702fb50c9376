"""Weights tables in the catalog (``weights/<slice>/<id>/``), their diagnostics and plots."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from curation.errors import UserError
from curation.integrity import check_output
from curation.manifest import read_record, sha256_file
from curation.paths import MANIFEST, view_name
from curation.slices import Slice
from weighting.compute import SPLIT, TRAIN, compute_with_stats

WEIGHTS_VIEW = "weights"  # views weights_<slice>__<id>


@dataclass
class WeightsTable:
    slice_name: str
    weights_id: str
    path: Path
    manifest: dict[str, Any]


def weights_id(spec: str, clip=None, power=None, normalise=False) -> str:
    """A file-safe name for a spec and its transforms, e.g. 'effiminivlm', 'lds_sigma-3'."""
    text = (
        spec
        + (f"|clip={clip[0]},{clip[1]}" if clip else "")
        + (f"|power={power}" if power is not None else "")
        + ("|norm" if normalise else "")
    )
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.-]+", "_", text.replace("=", "-"))).strip("_")


def compute_weights(
    slice_: Slice,
    spec: str,
    *,
    clip: tuple[float | None, float | None] | None = None,
    power: float | None = None,
    normalise: bool = False,
) -> WeightsTable:
    """Weights for every item of a slice: weights/<slice>/<id>/weights.parquet + manifest."""
    catalog, layout = slice_.catalog, slice_.catalog.layout
    frame = _with_audits(slice_, slice_.items(text=False), spec)
    weights, stats = compute_with_stats(frame, spec, clip=clip, power=power, normalise=normalise)
    wid = weights_id(spec, clip, power, normalise)
    final = layout.weights_file(slice_.name, wid)
    with catalog.publish(final.parent, f"weights-{slice_.name}-{wid}") as staged:
        table = frame.select("parent_asin", SPLIT).with_columns(weights)
        table.write_parquet(staged.path / final.name, compression="zstd")
        staged.manifest = {
            "stage": "weights",
            "slice": slice_.name,
            "id": wid,
            "spec": spec,
            "statistics_from": "train split only",
            "normalised": normalise,
            "fit": stats,
            "inputs": {"slice": sha256_file(slice_.path)},
            "diagnostics": describe_frame(frame.with_columns(weights)),
        }
        staged.views = {view_name(WEIGHTS_VIEW, slice_.name, wid): {
            "files": [layout.relative(final)], "slice": slice_.name, "weights": wid}}
    manifest = json.loads((final.parent / MANIFEST).read_text())
    return WeightsTable(slice_.name, wid, final, manifest)


# Strategies that read an audit: strategy -> (audit, audit columns -> frame columns, command).
AUDIT_INPUTS = {
    "label_quality": ("label_quality", {"label_quality": "label_quality",
                                        "is_label_issue": "is_label_issue"},
                      "curate audit label-quality --slice {slice}"),
    "data_map": ("data_map", {"region": "dm_region"}, "curate train ... then curate audit "
                 "data-map --run RUN (a run on {slice} or on a slice holding it)"),
    "alignment": ("alignment", {"is_misaligned": "is_misaligned"},
                  "curate audit alignment --slice {slice}"),
}


def try_weights(slice_: Slice, spec: str) -> None:
    """Compute ``spec``'s weights on a slice without writing them: a UserError if it cannot
    run there (a missing audit or column, weights that are not finite)."""
    compute_with_stats(_with_audits(slice_, slice_.items(text=False), spec), spec)


def _with_audits(slice_: Slice, frame: pl.DataFrame, spec: str) -> pl.DataFrame:
    """The slice with the columns of the audits its spec needs. An audit of this slice is
    used, else the largest audit of another slice that covers all of this one's train items
    (a label-quality audit of the 100% slice serves every nested slice). Audits reach the
    weights as files in the catalog, never as imports of the audit layer."""
    from weighting.compute import parse_spec

    for name, _ in parse_spec(spec):
        if name not in AUDIT_INPUTS:
            continue
        audit, columns, command = AUDIT_INPUTS[name]
        tables = sorted(slice_.catalog.layout.audit_tables(audit),
                        key=lambda p: (p.parent.name != slice_.name, -pl.scan_parquet(p)
                                       .select(pl.len()).collect().item(), p.parent.name))
        train = set(frame.filter(pl.col(SPLIT) == TRAIN)["parent_asin"].to_list())
        for table_path in tables:
            check_output(table_path.parent, table_path.name, slice_.catalog.layout.root,
                         read_record(table_path.parent / MANIFEST))
            table = pl.read_parquet(table_path, columns=["parent_asin", *columns])
            if train <= set(table["parent_asin"].to_list()):
                frame = frame.join(table.rename(columns), on="parent_asin", how="left")
                break
        else:
            raise UserError(f"strategy {name!r} needs a {audit.replace('_', '-')} audit that "
                            f"covers slice {slice_.name!r}: run "
                            f"{command.format(slice=slice_.name)}")
    return frame


def load_weights(slice_: Slice, wid: str) -> pl.DataFrame:
    """A weights table of the slice; an unknown id is a UserError listing those computed."""
    layout = slice_.catalog.layout
    path = layout.weights_file(slice_.name, wid)
    if not path.exists():
        known = sorted(p.name for p in layout.weights_root(slice_.name).glob("*"))
        raise UserError(
            f"no weights {wid!r} for slice {slice_.name!r} (computed: "
            f"{', '.join(known) or 'none'}): run curate weights compute"
        )
    check_output(path.parent, path.name, layout.root, read_record(path.parent / MANIFEST))
    return pl.read_parquet(path)


def describe_frame(frame: pl.DataFrame, weight: str = "weight") -> dict[str, Any]:
    """Diagnostics of the train rows' weights (what a reader needs to judge a weighting)."""
    train = frame.filter(pl.col(SPLIT) == TRAIN) if SPLIT in frame.columns else frame
    w = train[weight]
    total = float(w.sum())
    squares = float((w * w).sum())
    mean = float(w.mean() or 0.0)
    quantiles = {
        f"q{int(q * 100):02d}": float(w.quantile(q, "linear") or 0.0)
        for q in (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
    }
    by = train.with_columns(pl.col("rating_number").fill_null(0).rank("ordinal").alias("_rank"))
    by = by.with_columns(((pl.col("_rank") - 1) * 10 // max(by.height, 1)).alias("count_decile"))
    mass_decile = (
        by.group_by("count_decile")
        .agg(
            (pl.col(weight).sum() / total if total else pl.lit(0.0)).alias("mass"),
            pl.col("rating_number").min().alias("n_min"),
            pl.col("rating_number").max().alias("n_max"),
        )
        .sort("count_decile")
    )
    strata_column = "stratum" if "stratum" in train.columns else "category"
    mass_stratum = (
        train.group_by(strata_column)
        .agg(
            pl.len().alias("items"),
            (pl.col(weight).sum() / total if total else pl.lit(0.0)).alias("mass"),
        )
        .sort(strata_column)
    )
    corr = train.select(pl.corr(weight, "average_rating")).item() if train.height > 1 else None
    return {
        "train_rows": train.height,
        "effective_sample_size": total * total / squares if squares else 0.0,
        "ess_share": (total * total / squares / train.height) if squares and train.height else 0.0,
        "mean": mean,
        "max_over_mean": float(w.max() or 0.0) / mean if mean else None,
        "zero_weights": int((w == 0).sum()),
        "quantiles": quantiles,
        "corr_with_target": None if corr is None or corr != corr else float(corr),
        "mass_per_count_decile": mass_decile.to_dicts(),
        "mass_per_stratum": mass_stratum.to_dicts(),
    }


def compare_plot(frames: dict[str, pl.DataFrame], out: Path) -> list[Path]:
    """PNG plots: weight against rating_number, and weight histograms, one colour a strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    scatter, hist = out / "weight_vs_rating_number.png", out / "weight_histograms.png"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, frame in frames.items():
        train = frame.filter(pl.col(SPLIT) == TRAIN)
        mean = float(train["weight"].mean() or 1.0) or 1.0
        ax.scatter(
            train["rating_number"].fill_null(0) + 1,
            train["weight"] / mean,
            s=6,
            alpha=0.5,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel("rating_number + 1")
    ax.set_ylabel("weight / mean weight (train)")
    ax.set_title("Weight against rating count")
    ax.legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    fig.savefig(scatter, dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames), 3), squeeze=False)
    for ax, (name, frame) in zip(axes[0], frames.items(), strict=True):
        train = frame.filter(pl.col(SPLIT) == TRAIN)
        mean = float(train["weight"].mean() or 1.0) or 1.0
        ax.hist((train["weight"] / mean).to_numpy(), bins=40)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("weight / mean")
    fig.tight_layout()
    fig.savefig(hist, dpi=110)
    plt.close(fig)
    return [scatter, hist]
