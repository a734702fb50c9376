"""``curate demo``: the whole pipeline, as far as it exists, on a generated corpus."""

from __future__ import annotations

from pathlib import Path

import typer

DEMO_QUERIES = (
    "ingest_reconciliation",
    "quarantine_reasons",
    "rating_number_quantiles",
    "orphan_reviews",
    "rejections_per_rule",
    "slice_strata",
)
DEMO_FRACTIONS = (0.2, 0.4)
DEMO_WEIGHTS = ("uniform", "effiminivlm", "inverse_variance", "lds")


def run_demo(workdir: Path, *, items: int = 2000, seed: int = 0) -> None:
    from curation.catalog import Catalog
    from curation.clean import clean
    from curation.ingest import ingest
    from curation.slices import build_slice
    from curation.sqlconsole import resolve_query
    from curation.synth import SynthConfig, synthesize
    from curation.validate import validate_all
    from weighting.catalog_io import compute_weights

    corpus, catalog_root = workdir / "corpus", workdir / "catalog"
    typer.secho(f"1/7 synth: {items:,} items with planted mess -> {corpus}", bold=True)
    summary = synthesize(corpus, SynthConfig(n_items=items, seed=seed, mess_rate=0.03, gzip=True))
    typer.echo(
        f"    {summary.meta_lines:,} metadata lines, {summary.review_lines:,} review lines, "
        f"{summary.images:,} images"
    )

    typer.secho(f"2/7 ingest -> {catalog_root}", bold=True)
    results = ingest(str(corpus / "raw"), catalog_root)
    lines = sum(r.lines_read for r in results)
    rows = sum(r.rows_ingested for r in results)
    quarantined = sum(r.lines_quarantined for r in results)
    typer.echo(f"    {lines:,} lines read = {rows:,} rows ingested + {quarantined:,} quarantined")

    typer.secho("3/7 clean (default profile)", bold=True)
    cleaned = clean(catalog_root, "default")
    typer.echo(f"    {cleaned.rows_in:,} item lines -> {cleaned.kept:,} silver items")

    typer.secho(f"4/7 nested slices of the train split: {DEMO_FRACTIONS}", bold=True)
    for frac in DEMO_FRACTIONS:
        result = build_slice(catalog_root, frac)
        rows = result.manifest["rows"]
        typer.echo(
            f"    {result.name}: train {rows['train']:,}, val {rows['val']:,}, "
            f"test {rows['test']:,}"
        )

    typer.secho("5/7 validate (great-expectations)", bold=True)
    reports = validate_all(catalog_root)
    for report in reports:
        typer.echo("    " + report.summary().replace("\n", "\n    "))
    typer.echo(f"    data docs: {reports[0].docs_path}")

    typer.secho(f"6/7 sample weights on {result.name}", bold=True)
    for spec in DEMO_WEIGHTS:
        table = compute_weights(catalog_root, result.name, spec)
        d = table.manifest["diagnostics"]
        typer.echo(
            f"    {spec:<18} train ESS {d['ess_share']:.1%}, max/mean "
            f"{d['max_over_mean']:.3g}, top rating-count decile holds "
            f"{d['mass_per_count_decile'][-1]['mass']:.1%} of the weight"
        )

    typer.secho("7/7 exploration queries (curate sql -f NAME)", bold=True)
    con = Catalog.open(catalog_root).connect()
    try:
        for name in DEMO_QUERIES:
            typer.secho(f"-- {name}", fg=typer.colors.CYAN)
            typer.echo(str(con.sql(resolve_query(None, name))))
    finally:
        con.close()
    typer.secho(f"done. Explore further: curate sql --catalog {catalog_root}", bold=True)
