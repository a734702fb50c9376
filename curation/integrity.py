"""Is the catalog what it recorded? Checks of every output against catalog.json and the
manifests, for ``curate verify`` and for every stage before it reads an input.

What is recorded, and so what can be checked:
- per ingested raw file (catalog.json ``sources``): the bronze parts (how many, their rows,
  one SHA-256 over them) and the quarantine file (its rows and SHA-256);
- per output folder (silver, splits, slices, weights, audits: its ``manifest.json``): the
  SHA-256 of every file, and since manifests carry ``output_stats``, their bytes and rows.

Two depths: ``quick`` reads sizes and Parquet footers (milliseconds a file, what stages check
before they read); the full check hashes every byte (what ``curate verify`` does by default,
and stages do when ``CURATE_VERIFY`` is set).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.catalog import Catalog, catalog_text
from curation.errors import IntegrityError
from curation.manifest import atomic_file, parquet_rows, read_record, sha256_file, sha256_parts
from curation.paths import MANIFEST, CatalogLayout

VERIFY_ENV = "CURATE_VERIFY"  # set (to 1) for stages to hash their inputs, not only size them
# Folders of work in progress or scratch, never checked.
UNCHECKED_TOPS = (".staging", ".spill")


@dataclass(frozen=True)
class Problem:
    """One recorded output that is not as recorded. ``owner`` is the catalog.json source key
    or the output folder (relative to the catalog) whose record it breaks."""

    path: str
    what: str
    owner: str


@dataclass
class VerifyReport:
    root: Path
    files_checked: int = 0
    hashed: bool = True
    problems: list[Problem] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)  # folders with a manifest but no checksums

    @property
    def ok(self) -> bool:
        return not self.problems


def full_checks() -> bool:
    """Whether stages hash their inputs (``CURATE_VERIFY=1``), not only size them."""
    return os.environ.get(VERIFY_ENV, "") not in ("", "0")


# -- one output folder ------------------------------------------------------------------------
def check_folder(folder: Path, root: Path, *, hashes: bool, names: list[str] | None = None,
                 manifest: dict[str, Any] | None = None) -> tuple[int, list[Problem]]:
    """Check the files a folder's manifest records (or only ``names`` of them; ``manifest``
    when the caller has read it already). Returns how many were checked and what differs."""
    owner = _relative(folder, root)
    if manifest is None:
        try:
            manifest = read_record(folder / MANIFEST)
        except IntegrityError:
            return 1, [Problem(_relative(folder / MANIFEST, root), "not valid JSON", owner)]
    recorded: dict[str, str] = manifest.get("outputs", {})
    stats: dict[str, dict[str, Any]] = manifest.get("output_stats", {})
    problems, checked = [], 0
    for name in names if names is not None else sorted(recorded):
        path = folder / name
        rel = _relative(path, root)
        checked += 1
        if name not in recorded:
            problems.append(Problem(rel, "not in its folder's manifest", owner))
            continue
        if not path.is_file():
            problems.append(Problem(rel, "missing", owner))
            continue
        what = _differs(path, recorded[name], stats.get(name), hashes=hashes)
        if what:
            problems.append(Problem(rel, what, owner))
    return checked, problems


def _differs(path: Path, sha256: str, stats: dict[str, Any] | None, *, hashes: bool) -> str:
    """How ``path`` differs from its record ('' when it does not, as far as was checked)."""
    if stats:
        size = path.stat().st_size
        if size != stats["bytes"]:
            return f"{size:,} bytes where {stats['bytes']:,} were written"
        if stats.get("rows") is not None:
            rows = parquet_rows(path)
            if rows != stats["rows"]:
                found = "an unreadable footer" if rows is None else f"{rows:,} rows"
                return f"{found} where {stats['rows']:,} were written"
    if (hashes or not stats) and sha256_file(path) != sha256:
        return "SHA-256 differs from the one recorded when it was written"
    return ""


def check_output(folder: Path, name: str, root: Path, manifest: dict[str, Any]) -> None:
    """Before a stage reads ``folder/name``: raise IntegrityError if it is not what the
    folder's manifest recorded (sizes and rows; every byte under CURATE_VERIFY=1)."""
    _, problems = check_folder(folder, root, hashes=full_checks(), names=[name],
                               manifest=manifest)
    if problems:
        raise IntegrityError(_message(problems[0], root))


# -- ingested sources -------------------------------------------------------------------------
def check_source(catalog: Catalog, key: str, *, hashes: bool) -> tuple[int, list[Problem]]:
    """Check one ingested raw file's bronze parts and quarantine against catalog.json."""
    entry = catalog.sources[key]
    root = catalog.layout.root
    bronze, quarantine = root / entry["bronze"], root / entry["quarantine"]
    problems: list[Problem] = []
    parts = sorted(bronze.glob("*.parquet"))
    checked = len(parts) + 1
    if len(parts) != entry["bronze_parts"]:
        problems.append(Problem(entry["bronze"], f"{len(parts)} Parquet parts where "
                                f"{entry['bronze_parts']} were written", key))
    else:
        counts = [parquet_rows(p) for p in parts]
        if None in counts:
            bad = parts[counts.index(None)]
            problems.append(Problem(_relative(bad, root), "an unreadable footer", key))
        elif sum(counts) != entry["rows_ingested"]:  # type: ignore[arg-type]
            problems.append(Problem(entry["bronze"], f"{sum(counts):,} rows where "  # type: ignore[arg-type]
                                    f"{entry['rows_ingested']:,} were ingested", key))
        elif hashes and sha256_parts(bronze) != entry["bronze_sha256"]:
            problems.append(Problem(entry["bronze"], "SHA-256 of the parts differs from the "
                                    "one recorded at ingest", key))
    if not quarantine.is_file():
        problems.append(Problem(entry["quarantine"], "missing", key))
    elif parquet_rows(quarantine) != entry["lines_quarantined"] + len(entry["file_errors"]):
        # a row per quarantined line, and one (without a line number) per file-level error
        problems.append(Problem(entry["quarantine"], f"{parquet_rows(quarantine)} rows where "
                                f"{entry['lines_quarantined']:,} quarantined lines and "
                                f"{len(entry['file_errors'])} file errors were written", key))
    elif hashes and sha256_file(quarantine) != entry["quarantine_sha256"]:
        problems.append(Problem(entry["quarantine"], "SHA-256 differs from the one recorded "
                                "at ingest", key))
    if entry["lines_read"] != entry["rows_ingested"] + entry["lines_quarantined"]:
        problems.append(Problem("catalog.json", f"{key}: lines read do not reconcile with rows "
                                "ingested + lines quarantined", key))
    return checked, problems


def check_sources(catalog: Catalog, keys: list[str] | None = None, *,
                  hashes: bool | None = None) -> None:
    """Before a stage reads bronze: raise IntegrityError naming the first part that is not
    what ingest wrote (counts and rows; every byte under CURATE_VERIFY=1 or ``hashes``)."""
    for key in sorted(keys if keys is not None else catalog.sources):
        _, problems = check_source(catalog, key,
                                   hashes=full_checks() if hashes is None else hashes)
        if problems:
            raise IntegrityError(_message(problems[0], catalog.layout.root)
                                 + " (`curate verify --repair` ingests it again from its raw file)")


@contextmanager
def blame_damaged_inputs(recheck: Callable[[], None]) -> Iterator[None]:
    """A read that DuckDB or Arrow refuses (a page that does not decompress, say) is checked
    against the records: ``recheck`` raises IntegrityError naming the damaged input; when it
    finds none, the error was not the data's and keeps its traceback."""
    try:
        yield
    except Exception as exc:
        if type(exc).__module__.startswith(("duckdb", "_duckdb", "pyarrow")):
            recheck()
        raise


def check_folders(folders: list[Path], root: Path) -> None:
    """Every byte of derived folders (silver, a split) against their manifests: raise
    IntegrityError naming the first file that differs."""
    for folder in folders:
        _, problems = check_folder(folder, root, hashes=True)
        if problems:
            raise IntegrityError(_message(problems[0], root))


# -- catalog.json and the manifests ------------------------------------------------------------
def check_records(catalog: Catalog) -> tuple[int, list[Problem]]:
    """catalog.json against its copy, and every output folder's manifest against the SHA-256
    catalog.json recorded when it was written."""
    layout, problems = catalog.layout, []
    backup = _read_backup(layout)
    if backup is None:
        what = "damaged" if layout.catalog_backup.exists() else "missing"
        problems.append(Problem(layout.catalog_backup.name, f"{what}: catalog.json cannot be "
                                "checked against its copy", layout.catalog_backup.name))
    elif sha256_file(layout.manifest) != backup["catalog_sha256"]:
        problems.append(Problem(layout.manifest.name, "changed after curate wrote it (it "
                                f"differs from its copy {layout.catalog_backup.name})",
                                layout.manifest.name))
    for folder, sha in sorted(catalog.manifests.items()):
        path = layout.root / folder / MANIFEST
        if not path.is_file():
            problems.append(Problem(_relative(path, layout.root), "missing", folder))
        elif sha256_file(path) != sha:
            problems.append(Problem(_relative(path, layout.root), "changed after curate "
                                    "wrote it (SHA-256 differs from catalog.json's record)",
                                    folder))
    return 1 + len(catalog.manifests), problems


def check_database(catalog: Catalog) -> list[Problem]:
    """catalog.duckdb (only views, made from catalog.json): it opens, and its views are
    catalog.json's. Skipped while another process holds it."""
    import duckdb

    name = catalog.layout.database.name
    if not catalog.layout.database.exists():
        # not damage: ingest makes it at its end, and any command that opens the catalog
        print(f"note: no {name} yet (the next command that opens the catalog makes it)",
              file=sys.stderr)
        return []
    try:
        con = duckdb.connect(str(catalog.layout.database), read_only=True,
                             config={"file_search_path": str(catalog.layout.root)})
    except duckdb.Error as exc:
        if "Could not set lock" in str(exc):
            return []
        return [Problem(name, f"unreadable ({str(exc).splitlines()[0][:80]})", name)]
    try:
        # (not binding each view: a view over a damaged file is that file's problem)
        views = {row[0] for row in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        stamp = con.execute("SELECT stamp FROM _curate_state").fetchone()
    except duckdb.Error as exc:
        return [Problem(name, f"unreadable ({str(exc).splitlines()[0][:80]})", name)]
    finally:
        con.close()
    if stamp is None or stamp[0] != catalog.stamp() or set(catalog.view_definitions()) - views:
        # not damage: a job saves catalog.json first and the views after (ingest at its end),
        # and the next command that connects makes them again
        print(f"note: {name}: its views are behind catalog.json (the next command that opens "
              "the catalog brings them in line)", file=sys.stderr)
    return []


def _read_backup(layout: CatalogLayout) -> dict[str, Any] | None:
    """catalog.json's copy, if there is one and it is whole (its payload gives its hash)."""
    try:
        backup = read_record(layout.catalog_backup)
        text = catalog_text(backup["catalog"])
    except (IntegrityError, FileNotFoundError, KeyError, TypeError):
        return None
    if hashlib.sha256(text.encode()).hexdigest() != backup.get("catalog_sha256"):
        return None
    return backup


def restore_catalog_json(layout: CatalogLayout) -> bool:
    """Put catalog.json back from its copy; False when there is no whole copy."""
    backup = _read_backup(layout)
    if backup is None:
        return False
    with atomic_file(layout.manifest) as tmp:
        tmp.write_text(catalog_text(backup["catalog"]))
    return True


# -- the whole catalog ------------------------------------------------------------------------
def verify_catalog(catalog: Catalog | Path | str, *, hashes: bool = True) -> VerifyReport:
    """Every recorded output of the catalog against its record, and every file the views read."""
    catalog = Catalog.of(catalog)
    root = catalog.layout.root
    report = VerifyReport(root, hashed=hashes)
    checked, problems = check_records(catalog)
    report.files_checked += checked + 1
    report.problems += problems + check_database(catalog)
    for key in sorted(catalog.sources):
        checked, problems = check_source(catalog, key, hashes=hashes)
        report.files_checked += checked
        report.problems += problems
    for manifest in manifest_files(root):
        folder = manifest.parent
        try:
            recorded = "outputs" in read_record(manifest)
        except IntegrityError:
            recorded = True  # check_folder reports it
        if not recorded:
            report.unrecorded.append(_relative(folder, root))
            continue
        checked, problems = check_folder(folder, root, hashes=hashes)
        report.files_checked += checked
        report.problems += problems
    for name, gone in catalog.missing_tables().items():
        for path in gone:
            if not any(p.path == path for p in report.problems):
                report.problems.append(Problem(
                    path, f"missing or unreadable (the view {name} reads it)",
                    str(Path(path).parent)))
    return report


def manifest_files(root: Path) -> list[Path]:
    """Every output folder's manifest under the catalog, work in progress left out."""
    return sorted(p for p in root.rglob(MANIFEST)
                  if p.relative_to(root).parts[0] not in UNCHECKED_TOPS)


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def _message(problem: Problem, root: Path) -> str:
    return (f"{root / problem.path}: {problem.what}; it was changed after curate wrote it "
            "(`curate verify` checks the whole catalog)")
