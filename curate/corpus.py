"""``curate synth`` and ``curate ingest``: a corpus made, a corpus read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import (
    CatalogOption,
    EngineOption,
    RayAddressOption,
    command,
    split_list,
)
from curation.paths import DEFAULT_CATALOG

commands = typer.Typer()

@command(commands)
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
    label_noise: Annotated[
        float, typer.Option(help="Share of items given a wrong average_rating (planted label "
                            "errors, in ground_truth/items.parquet).")
    ] = 0.0,
    near_duplicates: Annotated[
        float, typer.Option(help="Share of items relisted as a near-copy (suffixed title, "
                            "same text and image bytes, another URL).")
    ] = 0.0,
    image_attributes: Annotated[
        bool, typer.Option("--image-attributes/--no-image-attributes",
                           help="Images show a coloured shape that the title names "
                           "(ground_truth/images.parquet).")
    ] = False,
    mismatched_images: Annotated[
        float, typer.Option(help="Share of items whose image is swapped with another item's "
                            "(implies --image-attributes; recorded in "
                            "ground_truth/images.parquet).")
    ] = 0.0,
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
        categories=tuple(split_list(categories)) if categories else DEFAULT_CATEGORIES,
        image_base_url=image_base_url,
        label_noise=label_noise,
        near_duplicates=near_duplicates,
        image_attributes=image_attributes,
        mismatched_images=mismatched_images,
    )
    summary = synthesize(out_dir, config)
    typer.echo(
        f"wrote {summary.items:,} items: {summary.meta_lines:,} metadata lines, "
        f"{summary.review_lines:,} review lines, {summary.images:,} images, "
        f"{summary.mess_lines:,} lines with planted mess to {out_dir}"
    )
    if config.draws_attributes:
        typer.echo(f"{summary.mismatched_images:,} items show another item's image")
    if summary.truncated_file:
        typer.echo(f"truncated on purpose: {summary.truncated_file}")


@command(commands)
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
    engine: EngineOption = "local",
    ray_address: RayAddressOption = "auto",
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

    wanted = split_list(categories) or None
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

        run_ingest(raw_dir, catalog, wanted, force=force, progress=on_bytes, on_file_done=on_done,
                   engine=engine, ray_address=ray_address)
    total = [
        sum(getattr(r, k) for r in results)
        for k in ("lines_read", "rows_ingested", "lines_quarantined")
    ]
    typer.echo(
        f"{len(results)} files: {total[0]:,} lines read = {total[1]:,} rows ingested + "
        f"{total[2]:,} quarantined; catalog at {catalog}"
    )

