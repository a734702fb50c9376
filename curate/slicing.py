"""``curate clean``, ``build-slice``, ``validate`` and ``slices``: silver items, splits and
nested slices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from curate.common import (
    CatalogOption,
    JsonOption,
    Output,
    QuietOption,
    VerboseOption,
    command,
    split_list,
    writes_to,
)
from curation.paths import DEFAULT_CATALOG

if TYPE_CHECKING:
    from curation.catalog import Catalog
    from curation.slices import Exclusion

# Strata named in a default summary: the largest deviations from the exact share F x n.
SUMMARY_STRATA = 3

commands = typer.Typer()

def _print_funnel(funnel: list[dict], echo: Callable[[str], None] = typer.echo) -> None:
    echo(f"  {'rule':<26} {'in':>9} {'rejected':>9} {'kept':>9}")
    for step in funnel:
        echo(f"  {step['rule']:<26} {step['in']:>9,} {step['rejected']:>9,} {step['kept']:>9,}")


def _funnel_line(funnel: list[dict], profile: str) -> str:
    """The rules that rejected anything, on one line."""
    hits = [f"{step['rule']} {step['rejected']:,}" for step in funnel if step["rejected"]]
    return (f"rejections per rule ({profile} profile): {', '.join(hits) or 'none'}")


def _largest_deviations(strata: list[dict], n: int = SUMMARY_STRATA) -> list[dict]:
    """The strata whose train items in the slice lie furthest from their exact share F x n."""
    ranked = sorted(strata, key=lambda s: (-abs(s["selected"] - s["exact_share"]), s["stratum"]))
    return ranked[:n]


def _strata_lines(manifest: dict) -> list[str]:
    """How many strata, and the largest deviations from the exact share, in two lines."""
    strata = manifest["strata"]
    top = _largest_deviations(strata)
    worst = max((abs(s["selected"] - s["exact_share"]) for s in strata), default=0.0)
    lines = [f"  {len(strata)} strata; the largest deviation of a stratum from its exact share "
             f"F x n is {worst:.1f} items"]
    if top and worst > 0:
        lines.append("  largest deviations (stratum: in slice / exact share): " + "; ".join(
            f"{s['stratum']}: {s['selected']:,} / {s['exact_share']:.1f}" for s in top))
    return lines


def _view_line(name: str) -> str:
    """Where the slice is in curate sql, saying so when its name had to change there."""
    from curation.paths import view_name
    from curation.slices import SLICE_VIEW

    view = view_name(SLICE_VIEW, name)
    literal = f"{SLICE_VIEW}_{name}"
    renamed = "" if view == literal else (f" (not {literal}: characters other than letters, "
                                          "digits and _ become _ in view names)")
    return f"  in curate sql: the view {view}{renamed}"


def _strata_table(manifest: dict, echo: Callable[[str], None]) -> None:
    echo(f"  {'stratum':<48} {'train items':>11} {'in slice':>9} {'exact share':>11}")
    for s in manifest["strata"]:
        echo(f"  {s['stratum'][:48]:<48} {s['train_items']:>11,} {s['selected']:>9,} "
             f"{s['exact_share']:>11.1f}")


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
    exclude_misaligned: Annotated[
        str | None,
        typer.Option(help="Drop from train the items that curate audit alignment flagged in "
                     "this (audited) slice; the name gets -nomisaligned. Both: the union."),
    ] = None,
    validate: Annotated[
        bool,
        typer.Option("--validate/--no-validate", help="Run the great-expectations suites after."),
    ] = True,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Cut a nested, stratified, reproducible slice of the train split (val and test whole).

    Cleans and splits first when needed. Writes CATALOG/slices/<name>/items.parquet and
    manifest.json, a view slice_<name> in curate sql, and validation results under
    CATALOG/validation/. Exits 1 when validation fails. Prints the rows per split and the
    strata furthest from their exact share; --verbose every stratum and the cleaning funnel.
    """
    from curation.catalog import Catalog

    out = Output(quiet=quiet, json=as_json, verbose=verbose)
    opened = Catalog.open(catalog)
    with opened.writing("build-slice"):
        _build_slice(opened, frac, seed=seed, strata=strata, min_per_category=min_per_category,
                     profile=profile, split_seed=split_seed, name=name, export_hf=export_hf,
                     exclude={"label_issues": exclude_label_issues,
                              "misaligned": exclude_misaligned},
                     validate=validate, out=out)


def _exclusion(opened: Catalog, kind: str, audited_slice: str) -> Exclusion:
    """The Exclusion of the items that the audit of ``kind`` flagged in ``audited_slice``.
    The flags are read here, in the face: curation cannot import audit."""
    from curation.slices import Exclusion, Slice

    if kind == "label_issues":
        from audit.label_quality import AUDIT
        from audit.label_quality import flagged_items as read
    else:
        from audit.alignment import AUDIT
        from audit.alignment import misaligned_items as read
    if not opened.layout.audit_table(AUDIT, audited_slice).exists():
        Slice.open(opened, audited_slice, check=False)  # an unknown slice says so, not the audit
    return Exclusion(read(opened, audited_slice), audited_slice, kind)


def _excluded_lines(excluded: dict[str, Any]) -> list[str]:
    """Where every flagged item went, per audit, and the train items left out in all."""
    audits = {"label_issues": "label-quality", "misaligned": "alignment"}
    lines = [f"  left out of train: {excluded['dropped_from_train']:,} items (val and test "
             "whole)"]
    for kind, e in excluded.items():
        if kind in audits:
            lines.append(f"    flagged by the {audits[kind]} audit of {e['audited_slice']}: "
                         f"{e['flagged']:,} = {e['dropped_from_train']:,} left out of train + "
                         f"{e['kept_in_val_test']:,} kept in val/test + "
                         f"{e['not_in_slice_train']:,} not in this slice's train")
    return lines


def _build_slice(opened: Catalog, frac: float, *, seed: int, strata: str, min_per_category: int,
                 profile: str, split_seed: int, name: str | None, export_hf: Path | None,
                 exclude: dict[str, str | None], validate: bool, out: Output) -> None:
    from curation.clean import read_clean_manifest
    from curation.slices import Slice, build_slice

    exclusions = [_exclusion(opened, kind, audited) for kind, audited in exclude.items()
                  if audited is not None]
    result = build_slice(
        opened,
        frac,
        seed=seed,
        strata=tuple(split_list(strata)),
        min_per_category=min_per_category,
        profile=profile,
        split_seed=split_seed,
        name=name,
        exclude=exclusions,
    )
    rows = result.manifest["rows"]
    out.line(
        f"slice {result.name}: train {rows['train']:,}, val {rows['val']:,}, "
        f"test {rows['test']:,} items ({result.seconds:.1f}s) -> {result.path}"
    )
    out.line(_view_line(result.name))
    if "excluded" in result.manifest:
        for line in _excluded_lines(result.manifest["excluded"]):
            out.line(line)
    if out.verbose:
        _strata_table(result.manifest, out.line)
    else:
        for line in _strata_lines(result.manifest):
            out.line(line)
    cleaned = read_clean_manifest(opened.layout, profile)
    assert cleaned is not None  # build_slice cleans first when needed
    if out.verbose:
        out.line(f"rejections per rule ({profile} profile):")
        _print_funnel(cleaned["funnel"], out.line)
    else:
        out.line(_funnel_line(cleaned["funnel"], profile))
        out.line(f"  every stratum and the funnel: --verbose, or curate slices show "
                 f"{result.name} --verbose")
    document: dict[str, Any] = {"slice": result.manifest, "path": str(result.path),
                                "seconds": result.seconds, "funnel": cleaned["funnel"]}
    if export_hf:
        from curate.export import export_slice, print_export

        report = export_slice(Slice.open(opened, result.name), export_hf)
        document["export_hf"] = report
        if out.text:
            print_export(report)
    if validate:
        document["validation"] = _run_validation(opened, [result.name], out, document)
    out.document(document)


def _run_validation(catalog: Catalog | Path, slice_names: list[str] | None,
                    out: Output | None = None,
                    document: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run the suites, print their summaries; exit 1 (after printing ``document`` under
    --json) when any failed."""
    from curation.validate import validate_all
    from curation.validation_page import page_path

    out = out or Output()
    reports = validate_all(catalog, slice_names)
    for report in reports:
        out.line(report.summary())
    out.line(
        f"validation results: {reports[0].json_path.parent}; data docs: {reports[0].docs_path}"
    )
    out.line(f"validation page (works offline): {page_path(reports[0].json_path.parent)}")
    results = [{"summary": r.summary(), "success": r.success, "results": str(r.json_path)}
               for r in reports]
    if not all(r.success for r in reports):
        if document is not None:
            out.document({**document, "validation": results})
        raise typer.Exit(1)
    return results


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
def slices_list(
    catalog: CatalogOption = DEFAULT_CATALOG,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """One line per slice: name, fraction, seed, rows per split (--json: every manifest)."""
    from curation.slices import list_slices

    out = Output(quiet=quiet, json=as_json)
    manifests = list_slices(catalog)
    out.document(manifests)
    if not manifests:
        out.line("no slices yet: curate build-slice --frac F")
    for m in manifests:
        p, r = m["parameters"], m["rows"]
        out.line(
            f"{m['name']:<36} frac={p['frac']:<6g} seed={p['seed']:<3} "
            f"train={r['train']:>9,} val={r['val']:>8,} test={r['test']:>8,}"
        )


@command(slices_app, "show")
def slices_show(
    name: str,
    catalog: CatalogOption = DEFAULT_CATALOG,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """A slice's parameters, rows per split and the strata furthest from their exact share;
    --verbose (or --json) the whole manifest: inputs, checksums, every stratum, versions."""
    import json

    from curation.slices import Slice

    out = Output(quiet=quiet, json=as_json, verbose=verbose)
    slice_ = Slice.open(catalog, name)
    manifest = slice_.manifest
    out.document(manifest)
    if out.verbose:
        out.line(json.dumps(manifest, indent=2, sort_keys=True))
        return
    rows = manifest["rows"]
    out.line(f'slice "{name}": {json.dumps(manifest["parameters"], sort_keys=True)}')
    out.line(f"  rows: train {rows['train']:,}, val {rows['val']:,}, test {rows['test']:,}")
    out.line(_view_line(name))
    for line in _strata_lines(manifest):
        out.line(line)
    items_sha = manifest.get("outputs", {}).get(slice_.path.name, "?")
    out.line(f"  items: {slice_.path} (SHA-256 {items_sha[:16]}...)")
    out.line(f"  the whole manifest: curate slices show {name} --verbose (or --json)")


@command(slices_app, "diff")
def slices_diff(a: str, b: str, catalog: CatalogOption = DEFAULT_CATALOG) -> None:
    """Items only in A, only in B and in both, per split; and whether one lies inside the other."""
    from curation.slices import diff_slices

    diff = diff_slices(catalog, a, b)
    typer.echo(f"{'split':<6} {'only ' + a:>30} {'only ' + b:>30} {'both':>9}")
    for split, d in diff["per_split"].items():
        typer.echo(f"{split:<6} {d['only_a']:>30,} {d['only_b']:>30,} {d['both']:>9,}")
    typer.echo(f"{a} inside {b}: {diff['a_inside_b']}; {b} inside {a}: {diff['b_inside_a']}")

