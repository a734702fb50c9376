"""How audits write: one folder per (audit, subject), swapped in whole, with a view."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl

from curation.catalog import Catalog
from curation.errors import UserError
from curation.paths import view_name

AUDIT_VIEW = "audit"  # views audit_<audit>__<subject>


def write_audit(
    catalog: Catalog | Path | str,
    audit: str,
    subject: str,
    table: pl.DataFrame,
    summary: str,
    manifest: dict[str, Any],
    extra: dict[str, Path] | None = None,
    table_name: str | None = None,
) -> Path:
    """Write table, summary, extra files and manifest to a staging folder, swap it in, and
    register the table as a view. Returns the audit's folder."""
    catalog = Catalog.of(catalog)
    layout = catalog.layout
    final = layout.audit_dir(audit, subject)
    table_name = table_name or layout.audit_table(audit, subject).name
    with catalog.publish(final, f"audit-{audit}-{subject}") as staged:
        table.write_parquet(staged.path / table_name, compression="zstd")
        (staged.path / "summary.md").write_text(summary)
        for name, source in (extra or {}).items():
            shutil.copyfile(source, staged.path / name)
        staged.manifest = {"stage": f"audit:{audit}", "subject": subject, **manifest}
        staged.views = {view_name(AUDIT_VIEW, audit, subject): {
            "files": [layout.relative(final / table_name)], "audit": audit, "subject": subject}}
    return final


def read_audit(catalog: Catalog | Path | str, audit: str, subject: str,
               hint: str) -> pl.DataFrame:
    """An audit's per-item table; a missing one is a UserError that says how to make it."""
    path = Catalog.of(catalog).layout.audit_table(audit, subject)
    if not path.exists():
        raise UserError(f"no {audit} audit for {subject!r}: run {hint} first")
    return pl.read_parquet(path)
