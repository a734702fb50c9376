"""``curate demo``: the whole pipeline, as far as it exists, on a generated corpus."""

from __future__ import annotations

from pathlib import Path

import typer

DEMO_QUERIES = (
    "ingest_reconciliation",
    "quarantine_reasons",
    "rating_number_quantiles",
    "orphan_reviews",
)


def run_demo(workdir: Path, *, items: int = 2000, seed: int = 0) -> None:
    from curation.catalog import Catalog
    from curation.ingest import ingest
    from curation.sqlconsole import resolve_query
    from curation.synth import SynthConfig, synthesize

    corpus, catalog_root = workdir / "corpus", workdir / "catalog"
    typer.secho(f"1/3 synth: {items:,} items with planted mess -> {corpus}", bold=True)
    summary = synthesize(corpus, SynthConfig(n_items=items, seed=seed, mess_rate=0.03, gzip=True))
    typer.echo(
        f"    {summary.meta_lines:,} metadata lines, {summary.review_lines:,} review lines, "
        f"{summary.images:,} images"
    )

    typer.secho(f"2/3 ingest -> {catalog_root}", bold=True)
    results = ingest(str(corpus / "raw"), catalog_root)
    lines = sum(r.lines_read for r in results)
    rows = sum(r.rows_ingested for r in results)
    quarantined = sum(r.lines_quarantined for r in results)
    typer.echo(f"    {lines:,} lines read = {rows:,} rows ingested + {quarantined:,} quarantined")

    typer.secho("3/3 exploration queries (curate sql -f NAME)", bold=True)
    con = Catalog.open(catalog_root).connect()
    try:
        for name in DEMO_QUERIES:
            typer.secho(f"-- {name}", fg=typer.colors.CYAN)
            typer.echo(str(con.sql(resolve_query(None, name))))
    finally:
        con.close()
    typer.secho(f"done. Explore further: curate sql --catalog {catalog_root}", bold=True)
