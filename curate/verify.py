"""``curate verify``: the catalog against what it recorded, and ``--repair`` for what can be
re-derived (bronze from an unchanged raw file; silver, splits and slices from their inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.common import CatalogOption, JsonOption, Output, QuietOption, command
from curation.catalog import Catalog, CatalogError
from curation.errors import IntegrityError
from curation.integrity import Problem, VerifyReport, restore_catalog_json, verify_catalog
from curation.manifest import read_record
from curation.paths import DEFAULT_CATALOG, MANIFEST, CatalogLayout

commands = typer.Typer()


@command(commands, "verify")
def verify(
    catalog: CatalogOption = DEFAULT_CATALOG,
    quick: Annotated[
        bool, typer.Option("--quick", help="Sizes, row counts and Parquet footers only (what "
                           "every stage checks before it reads), not a SHA-256 of every byte.")
    ] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="Re-derive what differs: bronze from its raw file "
                           "if that is unchanged; silver, splits and slices from their inputs. "
                           "What cannot be re-derived is named with the command that rebuilds it.")
    ] = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Check every output of the catalog against what it recorded: bronze parts and quarantine
    files against catalog.json (parts, rows, SHA-256, reconciliation), every output folder's
    files against its manifest.json (bytes, rows, SHA-256), and every file a view reads.
    Exits 0 when all match, 1 naming each file that differs (on stderr; --json: in the
    document on stdout; --quiet: only the exit status)."""
    out = Output(quiet=quiet, json=as_json)
    try:
        opened = Catalog.open(catalog)
    except CatalogError:  # catalog.json missing or damaged: its copy, if --repair
        if not (repair and restore_catalog_json(CatalogLayout(catalog))):
            raise
        typer.echo(f"repair: {catalog / 'catalog.json'} restored from its copy", err=True)
        opened = Catalog.open(catalog)
    report = verify_catalog(opened, hashes=not quick)
    if report.problems and repair:
        repair_catalog(opened, report.problems)
        report = verify_catalog(Catalog.open(catalog), hashes=not quick)
    out.document({
        "root": str(report.root), "files_checked": report.files_checked,
        "hashed": report.hashed, "ok": not report.problems,
        "problems": [{"path": p.path, "what": p.what, "owner": p.owner}
                     for p in report.problems],
        "unrecorded": report.unrecorded,
    })
    _print(report, out)
    if report.problems:
        raise typer.Exit(1)


def _print(report: VerifyReport, out: Output) -> None:
    depth = "SHA-256 of every byte" if report.hashed else "sizes and rows only, --quick"
    for problem in report.problems:
        out.line(f"{problem.path}: {problem.what}", err=True)
    for folder in report.unrecorded:
        out.line(f"note: {folder}: its manifest records no checksums (not checked)", err=True)
    n = len(report.problems)
    verdict = f"{n} differ{'s' if n == 1 else ''}" if n else "all as recorded"
    out.line(f"{report.root}: {report.files_checked:,} files checked ({depth}): {verdict}")


def repair_catalog(catalog: Catalog, problems: list[Problem]) -> None:
    """Re-derive each broken record's outputs, bronze first (the rest is made from it)."""
    root = catalog.layout.root
    for owner in sorted({p.owner for p in problems}, key=_stage_order):
        if owner == "catalog.json":
            restore_catalog_json(CatalogLayout(root))
            typer.echo("repair: catalog.json restored from its copy", err=True)
            continue
        if owner == CatalogLayout(root).database.name:  # views only: made from catalog.json
            CatalogLayout(root).database.unlink(missing_ok=True)
            Catalog.open(root).refresh_views()
            typer.echo(f"repair: {owner}: views made again from catalog.json", err=True)
            continue
        if owner == CatalogLayout(root).catalog_backup.name:  # catalog.json is the record
            Catalog.open(root).write_backup()
            typer.echo(f"repair: {owner} written again from catalog.json", err=True)
            continue
        catalog = Catalog.open(root)  # as the repairs before this one left it
        if owner in catalog.sources:
            _reingest(catalog, owner)
            continue
        manifest_path = root / owner / MANIFEST
        try:
            manifest = read_record(manifest_path) if manifest_path.exists() else {}
        except IntegrityError:
            manifest = {}  # its stage is unknown: named below as not re-derivable
        stage = manifest.get("stage")
        typer.echo(f"repair: {owner} ({stage or 'unknown stage'}) ...", err=True)
        if stage == "clean":
            from curation.clean import clean

            clean(catalog, manifest["profile"])
        elif stage == "split":
            from curation.split import build_split

            shares = manifest["shares"]
            build_split(catalog, profile=manifest["profile"], seed=manifest["seed"],
                        shares=(shares["train"], shares["val"], shares["test"]))
        elif stage == "slice" and not _excludes(manifest["parameters"]):
            from curation.slices import build_slice

            p = manifest["parameters"]
            build_slice(catalog, p["frac"], seed=p["seed"], strata=tuple(p["strata"]),
                        min_per_category=p["min_per_category"], profile=p["profile"],
                        split_seed=p["split_seed"], name=manifest["name"])
        else:
            typer.echo(f"repair: {owner}: cannot be re-derived here; run the command that "
                       "made it again (its manifest.json says which inputs and parameters)",
                       err=True)


def _excludes(parameters: dict) -> bool:
    """Whether a slice left out items an audit flagged (--exclude-label-issues,
    --exclude-misaligned): its parameters alone do not make it again."""
    from curation.slices import exclusion_parameters

    return bool(exclusion_parameters(parameters))


def _reingest(catalog: Catalog, key: str) -> None:
    """Ingest one raw file again, if it is still there and unchanged since it was ingested."""
    from curation.errors import UserError
    from curation.ingest import ingest
    from curation.sources import list_raw_files

    entry = catalog.sources[key]
    source, category = entry["source"], entry["category"]
    raw_root = source.rsplit("/", 2)[0]  # <root>/{meta,review}_categories/<file>
    try:
        raw = {f.key: f for f in list_raw_files(raw_root, [category])}.get(key)
    except UserError:
        raw = None
    if raw is None or raw.fingerprint != entry["fingerprint"]:
        typer.echo(f"repair: {key}: its raw file {source} is gone or changed since it was "
                   "ingested; run `curate ingest` on the corpus you mean", err=True)
        return
    typer.echo(f"repair: {key}: ingesting {source} again", err=True)
    ingest(raw_root, catalog.layout.root, [category], force=True)  # its outputs may look whole


def _stage_order(owner: str) -> tuple[int, str]:
    top = Path(owner).parts[0]
    order = {"catalog.json": -2, ".catalog.backup.json": -1, "items": 0, "reviews": 0,
             "silver": 1, "splits": 2, "slices": 3}
    return order.get(top, 4), owner

