"""``curate recsys``: recommendation-benchmark cuts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import CatalogOption, command
from curation.paths import DEFAULT_CATALOG

recsys_app = typer.Typer(
    help="Recommendation-benchmark cuts: rating-only tables, k-cores, the official splits.",
    no_args_is_help=True,
)


@command(recsys_app, "export")
def recsys_export(
    category: Annotated[str, typer.Option(help="Category (a raw file's name, e.g. "
                                          "All_Beauty).")],
    core: Annotated[int, typer.Option(help="k of the k-core (0: every interaction).")] = 5,
    split: Annotated[
        str, typer.Option(help="last_out (per user: last to test, second last to valid) or "
                          "timestamp (valid from 1628643414042 ms, test from 1658002729837).")
    ] = "last_out",
    out: Annotated[Path, typer.Option(help="Folder to write <category>-<k>core-<split>/ "
                                      "into.")] = Path("recsys"),
    profile: Annotated[str, typer.Option(help="Cleaning profile whose items join the item "
                                         "table.")] = "default",
    catalog: CatalogOption = DEFAULT_CATALOG,
) -> None:
    """Export one category as the official benchmark cuts it: one row per (user, item), the
    earliest review kept; iterative k-core to the fixed point; the split. Writes CSV in the
    official columns (user_id, parent_asin, rating, timestamp) and Parquet, an item table
    with the cleaned text and cached image paths, and a manifest."""
    from curation.recsys import export

    result = export(catalog, category, core, split, out, profile=profile)
    c, k = result.counts, result.kcore
    assert k is not None
    typer.echo(f"{c['review_rows']:,} review rows = {c['interactions']:,} interactions + "
               f"{c['later_duplicates']:,} later duplicates + {c['missing_field']:,} missing a "
               "field")
    typer.echo(f"{core}-core in {k.rounds} rounds: {k.users:,} users, {k.items:,} items, "
               f"{k.interactions_out:,} interactions (density {k.density:.2e}); "
               f"{c['removed_by_kcore']:,} removed")
    typer.echo(f"{split}: train {c['train']:,}, valid {c['valid']:,}, test {c['test']:,}; "
               f"items with metadata {c['items_with_metadata']:,}, with a cached image "
               f"{c['items_with_image']:,}")
    typer.echo(f"-> {result.folder} ({result.seconds:.1f} s)")


@command(recsys_app, "kcore")
def recsys_kcore(
    source: Annotated[Path, typer.Argument(help="A rating-only CSV (user_id, parent_asin, "
                                           "rating, timestamp; header optional).")],
    core: Annotated[int, typer.Option(help="k of the k-core.")] = 5,
    out: Annotated[Path, typer.Option(help="CSV to write (with a header).")] = Path(
        "kcore.csv"),
) -> None:
    """k-core of an existing rating-only CSV, in its row order (a k-core file filtered again
    with the same k comes back unchanged)."""
    from curation.recsys import kcore_csv

    result = kcore_csv(source, core, out)
    typer.echo(f"{result.interactions_in:,} -> {result.interactions_out:,} interactions in "
               f"{result.rounds} rounds: {result.users:,} users, {result.items:,} items "
               f"-> {out}")

