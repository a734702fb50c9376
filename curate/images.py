"""``curate images``: fetch, stats, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import (
    CatalogOption,
    EngineOption,
    JsonOption,
    Output,
    QuietOption,
    RayAddressOption,
    command,
)
from curation.paths import DEFAULT_CATALOG

images_app = typer.Typer(
    help="Product images: fetch what a slice needs into the catalog's cache, see what failed.",
    no_args_is_help=True,
)


@command(images_app, "fetch")
def images_fetch(
    catalog: CatalogOption = DEFAULT_CATALOG,
    slice_name: Annotated[
        str | None, typer.Option("--slice", help="Fetch this slice's images (default: every "
                                 "silver item's).")
    ] = None,
    all_images: Annotated[
        bool, typer.Option("--all-images", help="Every image URL of an item, not only the "
                           "main one.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="Try again the URLs that failed before (ok ones are never "
                           "fetched again).")
    ] = False,
    concurrency: Annotated[int, typer.Option(help="Fetches at once.")] = 16,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to connect.")] = 5.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds without a byte.")] = 15.0,
    retries: Annotated[
        int, typer.Option(help="Further tries on timeouts, connection errors, 429 and 5xx "
                          "(never on 404), with exponential backoff.")
    ] = 3,
    backoff: Annotated[float, typer.Option(help="Seconds before the first retry.")] = 0.5,
    max_bytes: Annotated[int, typer.Option(help="Largest image accepted, bytes.")] = 20 << 20,
    max_pixels: Annotated[
        int, typer.Option(help="Largest image accepted, pixels (decompression-bomb guard).")
    ] = 40_000_000,
    resize: Annotated[
        int, typer.Option(help="Shorter side of the stored image at most this (0: keep).")
    ] = 256,
    url_deadline: Annotated[
        float, typer.Option(help="Seconds for one URL in all (attempts, redirects, waits), "
                            "however slowly a server sends: past it the URL is 'deadline'.")
    ] = 60.0,
    allow_file_root: Annotated[
        list[Path] | None, typer.Option(
            "--allow-file-root", metavar="PATH",
            help="Also read file:// URLs under this folder (repeatable). By default only "
                 "the corpus's own folder (from the catalog's sources); others are 'refused'.")
    ] = None,
    allow_private_network: Annotated[
        bool, typer.Option("--allow-private-network",
                           help="Also connect to loopback, private, link-local, multicast and "
                                "reserved addresses (e.g. curate images serve on 127.0.0.1); "
                                "by default they are 'refused'.")
    ] = False,
    allow_network: Annotated[
        list[str] | None, typer.Option(
            "--allow-network", metavar="CIDR",
            help="Also connect to addresses in this network only, e.g. 10.1.2.3 or "
                 "10.0.0.0/8 (repeatable; narrower than --allow-private-network).")
    ] = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = "auto",
) -> None:
    """Fetch product images into CATALOG/images/ (content-addressed JPEGs) with a status row
    per URL in CATALOG/images/status.parquet (view image_status in curate sql). Resumable:
    URLs already fetched are skipped; a killed fetch picks up where it stopped. Safe by
    default: file:// only under the corpus's folder, http(s) only to public addresses (each
    redirect checked), a deadline per URL; a malformed URL is a 'bad_url' row. With --engine
    ray, blocks of 64 URLs are Ray tasks; the catalog must be at the same path on every node."""
    from collections import Counter

    from curation.catalog import Catalog
    from curation.clean import silver_shown
    from curation.engine_ray import check_engine
    from curation.images import FetchSettings, fetch_images, urls_for
    from curation.progress import progress_bar
    from curation.slices import Slice

    settings = FetchSettings(concurrency=concurrency, connect_timeout=connect_timeout,
                             read_timeout=read_timeout, retries=retries, backoff=backoff,
                             max_bytes=max_bytes, max_pixels=max_pixels, resize=resize,
                             url_deadline=url_deadline,
                             allow_file_roots=tuple(p.resolve() for p in allow_file_root or ()),
                             allow_private_network=allow_private_network,
                             allow_networks=tuple(allow_network or ()))
    settings.check()
    check_engine(engine)
    opened = Catalog.open(catalog)
    items = Slice.open(opened, slice_name).path if slice_name else silver_shown(opened)[1]
    urls = urls_for(items, all_images)
    with progress_bar("fetching", total=len(urls), unit="URLs",
                      lines_when_logged=True) as advance:
        def on_result(_outcome: object, counts: Counter[str]) -> None:
            advance(1, " ".join(f"{k} {v:,}" for k, v in counts.most_common()))

        with opened.writing("images fetch"):
            result = fetch_images(opened, urls, settings, retry_failed=retry_failed,
                                  on_result=on_result, engine=engine, ray_address=ray_address)
    tried = ", ".join(f"{k} {v:,}" for k, v in result.counts.most_common()) or "nothing"
    rate = result.fetched / result.seconds if result.seconds else 0.0
    typer.echo(f"{result.wanted:,} URLs: {result.skipped:,} already done, {result.fetched:,} "
               f"tried now ({tried}) in {result.seconds:.1f} s ({rate:,.1f}/s); status: "
               f"{result.status_path}")


@command(images_app, "stats")
def images_stats(catalog: CatalogOption = DEFAULT_CATALOG, quiet: QuietOption = False,
                 as_json: JsonOption = False) -> None:
    """URLs by status, with an example error of each, and what the cache holds."""
    from curation.images import image_stats
    from curation.paths import CatalogLayout

    out = Output(quiet=quiet, json=as_json)
    stats = image_stats(CatalogLayout(catalog))
    out.document(stats)
    out.line(f"{stats['urls']:,} URLs; {stats['stored_files']:,} images stored "
             f"({stats['stored_bytes'] / 1e6:,.1f} MB)")
    for row in stats["by_status"]:
        example = f"  e.g. {row['example_url']}: {row['example_error']}" \
            if row["example_error"] else ""
        out.line(f"  {row['status']:<20} {row['urls']:>8,}{example}")


@command(images_app, "serve")
def images_serve(
    folder: Annotated[Path, typer.Argument(help="Folder of images (e.g. a synth corpus's "
                                           "images/).")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free one).")] = 8765,
) -> None:
    """Serve a folder of images over HTTP on 127.0.0.1, to try curate images fetch without
    the internet (curate synth --image-base-url http://127.0.0.1:PORT/; fetch with
    --allow-private-network, or --allow-network 127.0.0.1, since 127.0.0.1 is refused by
    default)."""
    import time

    from curation.synth.image_server import ImageServer

    if not folder.is_dir():
        typer.echo(f"error: {folder} is not a folder", err=True)
        raise typer.Exit(2)
    with ImageServer(folder, port=port) as server:
        typer.echo(f"serving {folder} at {server.url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass

