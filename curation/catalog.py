"""The catalog: ``catalog.json`` (what exists, with fingerprints and counts) and
``catalog.duckdb`` (a real DuckDB database whose views read the catalog's Parquet files).

The views use paths relative to the catalog folder and are opened with DuckDB's
``file_search_path`` set to it, so a catalog can be moved or copied whole. To use
``catalog.duckdb`` from another DuckDB client, start it inside the catalog folder.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import UserError
from curation.manifest import replace_path, sha256_file, versions, write_json_atomic
from curation.paths import MANIFEST, CatalogLayout
from curation.schema import KINDS, QUARANTINE_COLUMNS, bronze_columns

CATALOG_FORMAT = 1
MEMORY_LIMIT = "1GB"  # DuckDB spills past this rather than growing
MEMORY_LIMIT_ENV = "CURATE_MEMORY_LIMIT"  # a user's (or a test's) own limit, e.g. "4GB"
# DuckDB's threads (default: one per core). Each thread holds vectors and row groups of its own,
# so a limit under about 100 MB wants a single thread.
THREADS_ENV = "CURATE_THREADS"


def duckdb_config(spill_dir: Path) -> dict[str, Any]:
    """Settings for every connection a job opens: a memory limit with a place to spill to (a
    read-only database has none by default, and a large sort would fail), and no DuckDB
    progress bar (the commands report progress themselves)."""
    import os

    spill_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"memory_limit": os.environ.get(MEMORY_LIMIT_ENV) or MEMORY_LIMIT,
                              "temp_directory": str(spill_dir)}
    if os.environ.get(THREADS_ENV):
        config["threads"] = int(os.environ[THREADS_ENV])
    return config


class CatalogError(UserError):
    """A catalog that is missing or unusable; the message is meant for the user."""


@dataclass
class Staged:
    """An output folder being written: files go into ``path``; ``manifest`` is what the
    manifest says besides the outputs' checksums and the versions; ``views`` are the catalog
    tables to register once it is in place (view name -> entry with its ``files``)."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Catalog:
    layout: CatalogLayout
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # "kind/category" -> entry
    # Further Parquet-backed views added by later stages (slices, weights): name -> files.
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (mtime, size) of catalog.json as last read or written: a change means another job wrote
    _seen: tuple[int, int] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, root: Path | str, create: bool = False) -> Catalog:
        layout = CatalogLayout(Path(root))
        if layout.manifest.exists():
            catalog = cls(layout)
            catalog._read()
            return catalog
        if not create:
            raise CatalogError(
                f"no catalog at {layout.root} (no catalog.json): run `curate ingest RAW_DIR "
                f"--catalog {layout.root}` first"
            )
        layout.root.mkdir(parents=True, exist_ok=True)
        return cls(layout)

    @classmethod
    def of(cls, catalog: Catalog | Path | str) -> Catalog:
        """The catalog itself, or the one opened at a path (so callers that hold one never
        read catalog.json again)."""
        return catalog if isinstance(catalog, Catalog) else cls.open(catalog)

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.layout.manifest.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _read(self) -> None:
        seen = self._stat()
        payload = json.loads(self.layout.manifest.read_text())
        if payload.get("format") != CATALOG_FORMAT:
            raise CatalogError(f"{self.layout.manifest}: unknown catalog format "
                               f"{payload.get('format')}")
        self.sources = payload.get("sources", {})
        self.tables = payload.get("tables", {})
        self._seen = seen

    def _payload(self) -> dict[str, Any]:
        return {"format": CATALOG_FORMAT, "sources": self.sources, "tables": self.tables}

    def save(self, refresh_views: bool = True) -> None:
        """Swap in the new catalog.json, then bring the DuckDB views in line with it.

        With refresh_views=False the views are brought in line later (at the end of a job, or
        by the next connect(), which notices that catalog.json changed)."""
        write_json_atomic(self.layout.manifest, self._payload())
        self._seen = self._stat()
        if refresh_views:
            self.refresh_views()

    def register(self, views: dict[str, dict[str, Any]]) -> None:
        """Add (or replace) catalog tables and save; what another job saved since this
        catalog was read is read first, so it is kept."""
        if self._stat() != self._seen:
            self._read()
        self.tables.update(views)
        self.save()

    @contextmanager
    def publish(self, final: Path, job: str) -> Iterator[Staged]:
        """Stage -> manifest -> swap -> register, for one output folder.

        Yields a ``Staged`` whose folder (``.staging/<job>``) the caller fills and whose
        manifest and views it sets. When the block ends without an error, the manifest is
        written with the SHA-256 of every file staged and the versions, the folder replaces
        ``final`` whole, and the views are registered. On an error the staging folder is
        removed and ``final`` is left as it was."""
        staged = Staged(self.layout.staging / job)
        shutil.rmtree(staged.path, ignore_errors=True)
        staged.path.mkdir(parents=True)
        try:
            yield staged
            outputs = {p.name: sha256_file(p) for p in sorted(staged.path.iterdir())
                       if p.is_file() and p.name != MANIFEST}
            write_json_atomic(staged.path / MANIFEST,
                              {**staged.manifest, "outputs": outputs, "versions": versions()})
            replace_path(staged.path, final)
        finally:
            shutil.rmtree(staged.path, ignore_errors=True)
        if staged.views:
            self.register(staged.views)

    def referenced_files(self) -> set[Path]:
        files = set()
        for entry in self.sources.values():
            files.update((self.layout.root / entry["bronze"]).glob("*.parquet"))
            files.add(self.layout.root / entry["quarantine"])
        for table in self.tables.values():
            files.update(self.layout.root / f for f in table["files"])
        return files

    def collect_garbage(self) -> list[Path]:
        """Delete Parquet files under bronze/ and quarantine/ that the catalog no longer uses."""
        keep = self.referenced_files()
        removed = []
        for top in self.layout.ingested_tops:
            for path in sorted(top.rglob("*.parquet")):
                if path not in keep:
                    path.unlink()
                    removed.append(path)
            for folder in sorted(top.rglob("*"), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        return removed

    # -- views -------------------------------------------------------------------------------
    def view_definitions(self) -> dict[str, str]:
        views: dict[str, str] = {}
        for kind in KINDS:
            files = [
                f"{e['bronze']}/*.parquet"
                for _, e in sorted(self.sources.items())
                if e["kind"] == kind
            ]
            views[kind] = _union_or_empty(files, bronze_columns(kind))
        quarantined = [e["quarantine"] for _, e in sorted(self.sources.items())]
        views["quarantine"] = _union_or_empty(quarantined, QUARANTINE_COLUMNS)
        views["ingest_files"] = self._ingest_files_view()
        for name, table in sorted(self.tables.items()):
            if all((self.layout.root / f).exists() for f in table["files"]):
                views[name] = _union_or_empty(table["files"], None)
        return views

    def missing_tables(self) -> dict[str, list[str]]:
        """Catalog tables whose files are gone (deleted by hand, say): they get no view, so
        that one lost file does not break every later command, and say so."""
        return {name: gone for name, table in sorted(self.tables.items())
                if (gone := [f for f in table["files"] if not (self.layout.root / f).exists()])}

    def _ingest_files_view(self) -> str:
        columns = [
            ("key", "VARCHAR"),
            ("kind", "VARCHAR"),
            ("category", "VARCHAR"),
            ("source", "VARCHAR"),
            ("lines_read", "BIGINT"),
            ("rows_ingested", "BIGINT"),
            ("lines_quarantined", "BIGINT"),
            ("file_errors", "VARCHAR"),
        ]
        if not self.sources:
            return _union_or_empty([], columns)
        rows = []
        for key, e in sorted(self.sources.items()):
            values = [
                key,
                e["kind"],
                e["category"],
                e["source"],
                e["lines_read"],
                e["rows_ingested"],
                e["lines_quarantined"],
                "; ".join(e["file_errors"]),
            ]
            rows.append("(" + ", ".join(sql_literal(v) for v in values) + ")")
        names = ", ".join(n for n, _ in columns)
        return f"SELECT * FROM (VALUES {', '.join(rows)}) AS t({names})"

    def _stamp(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self._payload(), sort_keys=True).encode()).hexdigest()

    def _views_are_current(self) -> bool:
        import duckdb

        if not self.layout.database.exists():
            return False
        try:
            con = duckdb.connect(str(self.layout.database), read_only=True)
        except Exception:  # locked by a writer: use what is there
            return True
        try:
            row = con.execute("SELECT stamp FROM _curate_state").fetchone()
        except Exception:
            return False
        finally:
            con.close()
        return row is not None and row[0] == self._stamp()

    def connect(self, read_only: bool = True):
        import duckdb

        if not self._views_are_current():
            self.refresh_views()
        con = duckdb.connect(
            str(self.layout.database),
            read_only=read_only,
            config={"file_search_path": str(self.layout.root), **duckdb_config(self.layout.spill)},
        )
        con.execute("SET enable_progress_bar = false")  # a session option, not a global one
        return con

    def refresh_views(self) -> None:
        import duckdb

        con = duckdb.connect(
            str(self.layout.database), config={"file_search_path": str(self.layout.root)}
        )
        try:
            con.execute("BEGIN")
            con.execute("CREATE TABLE IF NOT EXISTS _curate_views (name VARCHAR PRIMARY KEY)")
            wanted = self.view_definitions()
            for (name,) in con.execute("SELECT name FROM _curate_views").fetchall():
                if name not in wanted:
                    con.execute(f'DROP VIEW IF EXISTS "{name}"')
            con.execute("DELETE FROM _curate_views")
            for name, select in wanted.items():
                con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {select}')
                con.execute("INSERT INTO _curate_views VALUES (?)", [name])
            con.execute(
                "CREATE OR REPLACE TABLE _curate_state AS SELECT ? AS stamp", [self._stamp()]
            )
            con.execute("COMMIT")
        finally:
            con.close()
        for name, gone in self.missing_tables().items():
            print(f"note: view {name} left out: {', '.join(gone)} missing in {self.layout.root}",
                  file=sys.stderr)


def parquet_source(path: Path | str) -> str:
    """SQL reading one Parquet file by path (never as a hive-partitioned folder, whatever the
    folder names on the way)."""
    return f"read_parquet({sql_literal(str(path))}, hive_partitioning = false)"


def sql_literal(value: object) -> str:
    """A SQL literal: an int as is, anything else as a quoted string (a path may hold a ')."""
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _sql_list(files: list[str]) -> str:
    return "[" + ", ".join(sql_literal(f) for f in files) + "]"


def _union_or_empty(files: list[str], columns: list[tuple[str, str]] | None) -> str:
    if files:
        return f"SELECT * FROM read_parquet({_sql_list(files)}, hive_partitioning = false)"
    if columns is None:
        return "SELECT NULL AS empty WHERE false"
    return "SELECT " + ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in columns) + " WHERE false"
