"""Where audits write, and how: one folder per (audit, subject), swapped in whole."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from curation.catalog import Catalog
from curation.manifest import replace_path, sha256_file, versions, write_json_atomic

AUDIT_DIR = "audit"
TABLE = "items.parquet"


def audit_dir(catalog_root: Path | str, audit: str, subject: str) -> Path:
    return Path(catalog_root) / AUDIT_DIR / audit / subject


def view_name(audit: str, subject: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"audit_{audit}__{subject}")


def write_audit(
    catalog_root: Path | str,
    audit: str,
    subject: str,
    table: pl.DataFrame,
    summary: str,
    manifest: dict[str, Any],
    extra: dict[str, Path] | None = None,
    table_name: str = TABLE,
) -> Path:
    """Write table, summary, extra files and manifest to a staging folder, swap it in, and
    register the table as a view. Returns the audit's folder."""
    catalog = Catalog.open(catalog_root)
    final = audit_dir(catalog_root, audit, subject)
    staging = catalog.layout.root / ".staging" / f"audit-{audit}-{subject}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    table.write_parquet(staging / table_name, compression="zstd")
    (staging / "summary.md").write_text(summary)
    for name, source in (extra or {}).items():
        shutil.copyfile(source, staging / name)
    outputs = {p.name: sha256_file(p) for p in sorted(staging.iterdir())}
    write_json_atomic(staging / "manifest.json", {"stage": f"audit:{audit}", "subject": subject,
                                                   **manifest, "outputs": outputs,
                                                   "versions": versions()})
    replace_path(staging, final)
    catalog = Catalog.open(catalog_root)
    catalog.tables[view_name(audit, subject)] = {
        "files": [str((final / table_name).relative_to(catalog.layout.root))],
        "audit": audit,
        "subject": subject,
    }
    catalog.save()
    return final


def read_audit(catalog_root: Path | str, audit: str, subject: str, hint: str) -> pl.DataFrame:
    path = audit_dir(catalog_root, audit, subject) / TABLE
    if not path.exists():
        raise ValueError(f"no {audit} audit for {subject!r}: run {hint} first")
    return pl.read_parquet(path)
