"""The ``curate`` command line. Heavy libraries are imported inside commands, so that
``curate --help`` and the data commands start fast and never import torch."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from curation.paths import DEFAULT_CATALOG

app = typer.Typer(
    name="curate",
    help="Curate: curation and sample weighting for the Amazon Reviews 2023 corpus.\n\n"
    "Raw JSONL -> bronze Parquet (ingest) -> queries (sql).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CatalogOption = Annotated[
    Path,
    typer.Option(
        "--catalog",
        "-c",
        envvar="CURATE_CATALOG",
        help="Catalog folder (catalog.json, catalog.duckdb, Parquet).",
        show_default=True,
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(func: F) -> F:
    """Turn the errors a user can cause into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from curation.catalog import CatalogError
        from curation.sources import SourceError

        try:
            return func(*args, **kwargs)
        except (CatalogError, SourceError, FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except Exception as exc:  # DuckDB's own errors on a user's query
            if type(exc).__module__.startswith(("duckdb", "_duckdb")):
                first = str(exc).strip().splitlines()[0]
                typer.echo(f"error: {first}", err=True)
                raise typer.Exit(2) from None
            raise

    return wrapper  # type: ignore[return-value]


@app.command()
@_user_errors
def synth(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to write raw/, images/, ground_truth/ to.")
    ],
    items: Annotated[int, typer.Option(help="Number of items, spread over the categories.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
    mess: Annotated[
        float,
        typer.Option(help="Share of lines given a defect (nulls, HTML, bad JSON, bad UTF-8, ...)."),
    ] = 0.0,
    gzip: Annotated[bool, typer.Option("--gzip/--no-gzip", help="Write .jsonl.gz files.")] = False,
    images: Annotated[
        bool, typer.Option("--images/--no-images", help="Write product image files.")
    ] = True,
    categories: Annotated[
        str | None,
        typer.Option(help="Comma-separated categories (default: all six synthetic ones)."),
    ] = None,
    image_base_url: Annotated[
        str | None,
        typer.Option(help="URL prefix for image URLs (default: file:// URL of OUT_DIR/images/)."),
    ] = None,
) -> None:
    """Write a synthetic corpus in the raw Amazon Reviews 2023 layout, with ground truth.

    Writes OUT_DIR/raw/review_categories/<Category>.jsonl[.gz],
    OUT_DIR/raw/meta_categories/meta_<Category>.jsonl[.gz], OUT_DIR/images/ and, beside the
    corpus, OUT_DIR/ground_truth/ (items.parquet, mess.parquet, manifest.json).
    """
    from curation.synth import DEFAULT_CATEGORIES, SynthConfig, synthesize

    config = SynthConfig(
        n_items=items,
        seed=seed,
        mess_rate=mess,
        gzip=gzip,
        images=images,
        categories=tuple(_split(categories)) if categories else DEFAULT_CATEGORIES,
        image_base_url=image_base_url,
    )
    summary = synthesize(out_dir, config)
    typer.echo(
        f"wrote {summary.items:,} items: {summary.meta_lines:,} metadata lines, "
        f"{summary.review_lines:,} review lines, {summary.images:,} images, "
        f"{summary.mess_lines:,} lines with planted mess to {out_dir}"
    )
    if summary.truncated_file:
        typer.echo(f"truncated on purpose: {summary.truncated_file}")


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@app.command()
@_user_errors
def ingest(
    raw_dir: Annotated[
        str,
        typer.Argument(
            help="Folder holding review_categories/ and meta_categories/: a local path, a "
            "file:// URL, or 'hub' for hf://datasets/McAuley-Lab/Amazon-Reviews-2023/raw."
        ),
    ],
    catalog: CatalogOption = DEFAULT_CATALOG,
    categories: Annotated[
        str | None,
        typer.Option(help="Comma-separated categories to ingest (default: every one found)."),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Re-ingest files whose fingerprint is unchanged.")
    ] = False,
) -> None:
    """Stream raw JSONL(.gz) into typed bronze Parquet; unusable lines go to quarantine.

    Writes CATALOG/bronze/{reviews,items}/category=<C>/*.parquet,
    CATALOG/quarantine/..., and updates CATALOG/catalog.json and CATALOG/catalog.duckdb.
    Unchanged files (same fingerprint) are skipped.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from curation.ingest import FileResult
    from curation.ingest import ingest as run_ingest
    from curation.sources import list_raw_files

    wanted = _split(categories) or None
    files = list_raw_files(raw_dir, wanted)
    console = Console(stderr=True)
    results: list[FileResult] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("ingesting", total=sum(f.size for f in files) or None)
        done_bytes = {"base": 0}

        def on_bytes(raw, read: int) -> None:
            progress.update(task, completed=done_bytes["base"] + read, description=raw.key)

        def on_done(result: FileResult) -> None:
            size = next(f.size for f in files if f.key == result.key)
            done_bytes["base"] += size
            progress.update(task, completed=done_bytes["base"])
            results.append(result)
            state = "unchanged, skipped" if result.skipped else f"{result.seconds:.1f}s"
            errors = f"  [{'; '.join(result.file_errors)}]" if result.file_errors else ""
            console.print(
                f"{result.key:<40} {result.lines_read:>11,} lines = {result.rows_ingested:>11,} "
                f"rows + {result.lines_quarantined:>8,} quarantined ({state}){errors}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

        run_ingest(raw_dir, catalog, wanted, force=force, progress=on_bytes, on_file_done=on_done)
    total = [
        sum(getattr(r, k) for r in results)
        for k in ("lines_read", "rows_ingested", "lines_quarantined")
    ]
    typer.echo(
        f"{len(results)} files: {total[0]:,} lines read = {total[1]:,} rows ingested + "
        f"{total[2]:,} quarantined; catalog at {catalog}"
    )


@app.command()
@_user_errors
def sql(
    query: Annotated[
        str | None, typer.Argument(help="SQL to run; omit for --file, stdin or a prompt.")
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file", "-f", help="A .sql file, or the name of a query in sql/ (see --list)."
        ),
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    output_format: Annotated[
        str, typer.Option("--format", help="table, csv, json (one object a line) or parquet.")
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the result to this file instead of stdout."),
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Rows shown in table format.")] = 40,
    write: Annotated[
        bool,
        typer.Option(
            "--write", help="Open catalog.duckdb read-write (to keep your own tables or views)."
        ),
    ] = False,
    list_queries: Annotated[bool, typer.Option("--list", help="List the named queries.")] = False,
) -> None:
    """Query the catalog with DuckDB (views: reviews, items, quarantine, ingest_files).

    Read-only unless --write is given. Examples: curate sql "SELECT count(*) FROM items";
    curate sql -f quarantine_reasons; curate sql (a prompt).
    """
    from curation import sqlconsole

    if list_queries:
        for name, summary in sqlconsole.named_queries().items():
            typer.echo(f"{name:<28} {summary}")
        return
    if output_format not in sqlconsole.FORMATS:
        raise ValueError(
            f"--format must be one of {', '.join(sqlconsole.FORMATS)}, not {output_format!r}"
        )
    text = sqlconsole.resolve_query(query, file)
    if text is None and not sys.stdin.isatty():
        text = sys.stdin.read()
    if text is None:
        sqlconsole.interactive(catalog, write=write, max_rows=max_rows)
        return
    sqlconsole.run(
        text, catalog, output_format=output_format, output=output, max_rows=max_rows, write=write
    )


@app.command()
@_user_errors
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Folder for the corpus, catalog and reports.")
    ] = Path("demo"),
    items: Annotated[int, typer.Option(help="Items in the generated corpus.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the generated corpus.")] = 0,
) -> None:
    """Run the whole pipeline on a generated corpus: synth, ingest, exploration queries."""
    from curation.demo import run_demo

    run_demo(workdir, items=items, seed=seed)


def main() -> None:  # pragma: no cover
    app()
