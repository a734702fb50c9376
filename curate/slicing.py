"""``curate clean``, ``build-slice``, ``validate`` and ``slices``: silver items, splits and
nested slices."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from curate.common import CatalogOption, command, split_list, writes_to
from curation.paths import DEFAULT_CATALOG

if TYPE_CHECKING:
    from curation.catalog import Catalog

commands = typer.Typer()

def _print_funnel(funnel: list[dict]) -> None:
    typer.echo(f"  {'rule':<26} {'in':>9} {'rejected':>9} {'kept':>9}")
    for step in funnel:
        typer.echo(
            f"  {step['rule']:<26} {step['in']:>9,} {step['rejected']:>9,} {step['kept']:>9,}"
        )


@command(commands, "clean")
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

    with writes_to(catalog, "clean"):
        result = clean(catalog, profile)
    typer.echo(
        f"clean ({profile}): {result.rows_in:,} item lines -> {result.kept:,} items "
        f"in {result.seconds:.1f}s"
    )
    _print_funnel(result.funnel)


@command(commands, "build-slice")
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
    from curation.catalog import Catalog

    opened = Catalog.open(catalog)
    with opened.writing("build-slice"):
        _build_slice(opened, frac, seed=seed, strata=strata, min_per_category=min_per_category,
                     profile=profile, split_seed=split_seed, name=name, export_hf=export_hf,
                     exclude_label_issues=exclude_label_issues, validate=validate)


def _build_slice(opened: Catalog, frac: float, *, seed: int, strata: str, min_per_category: int,
                 profile: str, split_seed: int, name: str | None, export_hf: Path | None,
                 exclude_label_issues: str | None, validate: bool) -> None:
    from curation.clean import read_clean_manifest
    from curation.slices import Exclusion, Slice, build_slice
    from curation.slices import export_hf as save_hf

    exclude = None
    if exclude_label_issues is not None:
        from audit.label_quality import flagged_items

        exclude = Exclusion(flagged_items(opened, exclude_label_issues), exclude_label_issues)
    result = build_slice(
        opened,
        frac,
        seed=seed,
        strata=tuple(split_list(strata)),
        min_per_category=min_per_category,
        profile=profile,
        split_seed=split_seed,
        name=name,
        exclude=exclude,
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
    cleaned = read_clean_manifest(opened.layout, profile)
    assert cleaned is not None  # build_slice cleans first when needed
    typer.echo(f"rejections per rule ({profile} profile):")
    _print_funnel(cleaned["funnel"])
    if export_hf:
        saved = save_hf(Slice.open(opened, result.name), export_hf)
        typer.echo(f"saved as a datasets.Dataset in {saved}")
    if validate:
        _run_validation(opened, [result.name])


def _run_validation(catalog: Catalog | Path, slice_names: list[str] | None) -> None:
    from curation.validate import validate_all

    reports = validate_all(catalog, slice_names)
    for report in reports:
        typer.echo(report.summary())
    typer.echo(
        f"validation results: {reports[0].json_path.parent}; data docs: {reports[0].docs_path}"
    )
    if not all(r.success for r in reports):
        raise typer.Exit(1)


@command(commands, "validate")
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
    with writes_to(catalog, "validate"):
        _run_validation(catalog, slice_name or None)


slices_app = typer.Typer(help="Inspect slices: list, show, diff.", no_args_is_help=True)


@command(slices_app, "list")
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


@command(slices_app, "show")
def slices_show(name: str, catalog: CatalogOption = DEFAULT_CATALOG) -> None:
    """A slice's manifest: parameters, inputs, rows per split and per stratum."""
    import json

    from curation.slices import Slice

    typer.echo(json.dumps(Slice.open(catalog, name).manifest, indent=2, sort_keys=True))


@command(slices_app, "diff")
def slices_diff(a: str, b: str, catalog: CatalogOption = DEFAULT_CATALOG) -> None:
    """Items only in A, only in B and in both, per split; and whether one lies inside the other."""
    from curation.slices import diff_slices

    diff = diff_slices(catalog, a, b)
    typer.echo(f"{'split':<6} {'only ' + a:>30} {'only ' + b:>30} {'both':>9}")
    for split, d in diff["per_split"].items():
        typer.echo(f"{split:<6} {d['only_a']:>30,} {d['only_b']:>30,} {d['both']:>9,}")
    typer.echo(f"{a} inside {b}: {diff['a_inside_b']}; {b} inside {a}: {diff['b_inside_a']}")

