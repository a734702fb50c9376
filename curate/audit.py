"""``curate audit``: label quality, duplicates, data maps, image-text alignment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import CatalogOption, command, workers_or_default, writes_to
from curation.paths import DEFAULT_CATALOG

audit_app = typer.Typer(
    help="Data-quality audits: label issues (cleanlab), duplicates and leakage, data maps. "
    "Each writes CATALOG/audit/<audit>/<subject>/ and a view in curate sql.",
    no_args_is_help=True,
)


@command(audit_app, "label-quality")
def audit_label_quality(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice to audit (all its "
                                            "splits).")],
    catalog: CatalogOption = DEFAULT_CATALOG,
    folds: Annotated[int, typer.Option(help="Folds of the out-of-fold predictions.")] = 5,
    method: Annotated[
        str, typer.Option(help="residual: flag a robust z-score of the out-of-fold residual "
                          "above --z; cleanlearning: cleanlab's CleanLearning decides.")
    ] = "residual",
    z: Annotated[float, typer.Option(help="Robust z-score above which an item is "
                                     "flagged.")] = 3.0,
    image_encoder: Annotated[str | None, typer.Option(help="Image encoder of the embeddings "
                                                      "(default: the model's; none: text "
                                                      "only).")] = None,
    text_encoder: Annotated[str | None, typer.Option(help="Text encoder of the embeddings "
                                                     "(default: the model's).")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes.")] = None,
) -> None:
    """Out-of-fold ridge predictions on the frozen embeddings -> cleanlab label-quality
    scores and flags. Writes CATALOG/audit/label_quality/<slice>/; feeds the label_quality
    weighting and build-slice --exclude-label-issues."""
    from audit.label_quality import label_quality_audit

    with writes_to(catalog, "audit label-quality"):
        result = label_quality_audit(catalog, slice_name, image_encoder=image_encoder,
                                     text_encoder=text_encoder, folds=folds, method=method, z=z,
                                     workers=workers_or_default(workers))
    typer.echo(f"{result.items:,} items; out-of-fold predictions correlate "
               f"{result.oof_pearson:.3f} with the label; {result.flagged:,} flagged "
               f"({result.seconds:.0f} s)")
    typer.echo(f"-> {result.folder} (summary.md, items.parquet)")


@command(audit_app, "duplicates")
def audit_duplicates(
    catalog: CatalogOption = DEFAULT_CATALOG,
    threshold: Annotated[float, typer.Option(help="Jaccard similarity of word 2-grams from "
                                             "which two texts are near-duplicates.")] = 0.6,
    regroup: Annotated[bool, typer.Option(help="Split again so that every pair found lands "
                                          "in one split (then rebuild the slices).")] = False,
) -> None:
    """Exact (title, image URL, image bytes) and near (MinHash over text shingles) duplicate
    pairs among the silver items, within and across splits. Writes
    CATALOG/audit/duplicates/<profile>/pairs.parquet and summary.md."""
    from audit.duplicates import duplicates_audit

    with writes_to(catalog, "audit duplicates"):
        result = duplicates_audit(catalog, threshold=threshold, regroup=regroup)
    kinds = ", ".join(f"{k} {v:,}" for k, v in result.by_kind.items())
    typer.echo(f"{result.items:,} items: {result.pairs:,} duplicate pairs ({kinds}); "
               f"{result.cross_split:,} across splits")
    if result.regrouped:
        typer.echo("split again with the pairs kept together: rebuild the slices "
                   "(curate build-slice ...)")
    typer.echo(f"-> {result.folder}")


@command(audit_app, "data-map")
def audit_data_map(
    run: Annotated[Path, typer.Option(help="A finished run folder (curate train).")],
    catalog: CatalogOption = DEFAULT_CATALOG,
) -> None:
    """Dataset cartography from a run's per-item, per-epoch predictions: each train item's
    mean error and variability, its region (easy, ambiguous, hard), a PNG map. Writes
    CATALOG/audit/data_map/<slice>/; feeds the data_map weighting."""
    import polars as pl

    from audit.data_map import AUDIT, REGIONS, data_map_audit
    from curation.paths import CatalogLayout

    with writes_to(catalog, "audit data-map"):
        folder = data_map_audit(catalog, run)
    table = pl.read_parquet(CatalogLayout(catalog).audit_table(AUDIT, folder.name))
    counts = ", ".join(f"{r} {int((table['region'] == r).sum()):,}" for r in REGIONS)
    typer.echo(f"{table.height:,} train items: {counts}")
    typer.echo(f"-> {folder} (data_map.png, summary.md)")



@command(audit_app, "alignment")
def audit_alignment(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice to audit (all its "
                                            "splits).")],
    catalog: CatalogOption = DEFAULT_CATALOG,
    folds: Annotated[int, typer.Option(help="Folds of the cross-fitted alignments.")] = 5,
    z: Annotated[float, typer.Option(help="Flag a score whose robust z-score is below "
                                     "-Z.")] = 3.0,
    image_encoder: Annotated[str | None, typer.Option(help="Image encoder of the embeddings "
                                                      "(default: the slice's alignment's, "
                                                      "else the model's).")] = None,
    text_encoder: Annotated[str | None, typer.Option(help="Text encoder of the embeddings "
                                                     "(default: as for the image).")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes.")] = None,
) -> None:
    """Each item's own image against its text: the cosine in an alignment trained on the
    other folds, and the own image's rank among the slice's images; items far below the
    others flagged. Writes CATALOG/audit/alignment/<slice>/; feeds the alignment weighting."""
    from audit.alignment import alignment_audit

    with writes_to(catalog, "audit alignment"):
        result = alignment_audit(catalog, slice_name, image_encoder=image_encoder,
                                 text_encoder=text_encoder, folds=folds, z=z,
                                 workers=workers_or_default(workers))
    typer.echo(f"{result.items:,} items, {result.with_image:,} with an image: own image's "
               f"median rank {result.median_rank:g}; {result.flagged:,} flagged "
               f"({result.seconds:.0f} s)")
    typer.echo(f"-> {result.folder} (summary.md, items.parquet)")
