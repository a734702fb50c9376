"""The catalog: ``catalog.json`` (what exists, with fingerprints and counts) and
``catalog.duckdb`` (a real DuckDB database whose views read the catalog's Parquet files).

The views use paths relative to the catalog folder and are opened with DuckDB's
``file_search_path`` set to it, so a catalog can be moved or copied whole. To use
``catalog.duckdb`` from another DuckDB client, start it inside the catalog folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import UserError
from curation.lock import writing
from curation.manifest import (
    output_stats,
    replace_path,
    sha256_file,
    versions,
    write_json_atomic,
)
from curation.paths import MANIFEST, CatalogLayout
from curation.schema import KINDS, QUARANTINE_COLUMNS, bronze_columns

CATALOG_FORMAT = 1
MEMORY_LIMIT = "1GB"  # DuckDB spills past this rather than growing
MEMORY_LIMIT_ENV = "CURATE_MEMORY_LIMIT"  # a user's (or a test's) own limit, e.g. "4GB"
# DuckDB's threads (default: one per core). Each thread holds vectors and row groups of its own,
# so a limit under about 100 MB wants a single thread.
THREADS_ENV = "CURATE_THREADS"
# How long connect() waits for another process to let go of catalog.duckdb.
DATABASE_WAIT_SECONDS = 10.0


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
    # Every output folder's manifest.json as written (folder -> SHA-256): a manifest edited,
    # damaged or deleted afterwards is found by `curate verify`.
    manifests: dict[str, str] = field(default_factory=dict)
    # (mtime, size) of catalog.json as last read or written: a change means another job wrote
    _seen: tuple[int, int] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, root: Path | str, create: bool = False) -> Catalog:
        layout = CatalogLayout(Path(root))
        if layout.root.exists() and not layout.root.is_dir():
            raise CatalogError(f"{layout.root} is a file, not a catalog folder")
        if layout.manifest.exists():
            catalog = cls(layout)
            catalog._read()
            return catalog
        if layout.catalog_backup.exists():
            raise CatalogError(f"{layout.manifest} is missing (deleted?), its copy "
                               f"{layout.catalog_backup.name} is there: `curate verify --repair "
                               f"-c {layout.root}` restores it")
        if not create:
            raise CatalogError(
                f"no catalog at {layout.root} (no catalog.json): run `curate ingest RAW_DIR "
                f"--catalog {layout.root}` first"
            )
        cls.check_location(layout)
        layout.root.mkdir(parents=True, exist_ok=True)
        return cls(layout)

    @staticmethod
    def check_location(layout: CatalogLayout) -> None:
        """Where a catalog may be made: a catalog, a new or empty folder, or one left by an
        interrupted first ingest; never a file or someone else's folder."""
        if layout.root.exists() and not layout.root.is_dir():
            raise CatalogError(f"{layout.root} is a file, not a catalog folder")
        if layout.manifest.exists() or not layout.root.exists():
            return
        foreign = sorted(p.name for p in layout.root.iterdir() if p.name not in layout.own_names)
        if foreign:  # a catalog is never made among someone else's files
            raise CatalogError(f"{layout.root} holds no catalog.json but other files "
                               f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}):"
                               " give a new or empty folder for the catalog")

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
        try:
            payload = json.loads(self.layout.manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CatalogError(f"{self.layout.manifest}: not valid JSON ({exc}); `curate verify "
                               "--repair` restores it from its copy") from None
        if payload.get("format") != CATALOG_FORMAT:
            raise CatalogError(f"{self.layout.manifest}: unknown catalog format "
                               f"{payload.get('format')}")
        self.sources = payload.get("sources", {})
        self.tables = payload.get("tables", {})
        self.manifests = payload.get("manifests", {})
        self._seen = seen

    def write_backup(self) -> None:
        """catalog.json's copy written again from catalog.json as it is (verify --repair)."""
        write_catalog_backup(self.layout, self._payload())

    def _payload(self) -> dict[str, Any]:
        return {"format": CATALOG_FORMAT, "sources": self.sources, "tables": self.tables,
                "manifests": self.manifests}

    def save(self, refresh_views: bool = True) -> None:
        """Swap in the new catalog.json, then bring the DuckDB views in line with it.

        With refresh_views=False the views are brought in line later (at the end of a job, or
        by the next connect(), which notices that catalog.json changed)."""
        # the copy first: a crash between the two leaves a copy that is newer, never older,
        # than catalog.json, and every file it names is already in place
        write_catalog_backup(self.layout, self._payload())
        write_json_atomic(self.layout.manifest, self._payload())
        self._seen = self._stat()
        if refresh_views:
            self.refresh_views()

    def writing(self, job: str) -> AbstractContextManager[None]:
        """The catalog's writer lock, held for the block (see curation.lock): a second writer
        fails at once naming the holder; re-entrant within one process."""
        return writing(self.layout, job)

    def register(self, views: dict[str, dict[str, Any]]) -> None:
        """Add (or replace) catalog tables and save; what another job saved since this
        catalog was read is read first, so it is kept."""
        with self.writing("register"):
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
        removed and ``final`` is left as it was. The writer lock is held throughout."""
        with self.writing(job):
            staged = Staged(self.layout.staging / job)
            shutil.rmtree(staged.path, ignore_errors=True)  # our own job's, never another's
            staged.path.mkdir(parents=True)
            try:
                yield staged
                files = [p for p in sorted(staged.path.iterdir())
                         if p.is_file() and p.name != MANIFEST]
                write_json_atomic(staged.path / MANIFEST, {
                    **staged.manifest,
                    "outputs": {p.name: sha256_file(p) for p in files},
                    "output_stats": {p.name: output_stats(p) for p in files},  # quick checks
                    "versions": versions()})
                manifest_sha = sha256_file(staged.path / MANIFEST)
                replace_path(staged.path, final)
            finally:
                remove_own_staging(staged.path)
            if self._stat() != self._seen:  # another job saved since: keep what it recorded
                self._read()
            self.manifests[self.layout.relative(final)] = manifest_sha
            if staged.views:
                self.register(staged.views)
            else:
                self.save()

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
        unreadable = self.missing_tables()
        for name, table in sorted(self.tables.items()):
            if name not in unreadable:
                views[name] = _union_or_empty(table["files"], None)
        return views

    def missing_tables(self) -> dict[str, list[str]]:
        """Catalog tables whose files are gone or unreadable (deleted or cut by hand, say):
        they get no view, so that one lost file does not break every later command, and say
        so (`curate verify` names them too)."""
        from curation.manifest import parquet_rows

        return {name: gone for name, table in sorted(self.tables.items())
                if (gone := [f for f in table["files"]
                             if parquet_rows(self.layout.root / f) is None])}

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

    def stamp(self) -> str:
        """A hash of catalog.json's content: the views in catalog.duckdb were made from it."""
        import hashlib

        return hashlib.sha256(json.dumps(self._payload(), sort_keys=True).encode()).hexdigest()

    def _views_are_current(self) -> bool:
        import duckdb

        if not self.layout.database.exists():
            return False
        try:
            con = duckdb.connect(str(self.layout.database), read_only=True)
        except duckdb.Error as exc:  # locked by a writer: use what is there
            return not _database_damaged(exc)
        try:
            row = con.execute("SELECT stamp FROM _curate_state").fetchone()
        except Exception:
            return False
        finally:
            con.close()
        return row is not None and row[0] == self.stamp()

    def connect(self, read_only: bool = True):
        import duckdb

        current = self._views_are_current() or self.refresh_views()
        config = {"file_search_path": str(self.layout.root), **duckdb_config(self.layout.spill)}
        # A writer holds catalog.duckdb alone for the moment it refreshes the views: wait that
        # out rather than fail (a `curate sql --write` session holds it for longer).
        waited = 0.0
        while True:
            try:
                con = duckdb.connect(str(self.layout.database), read_only=read_only,
                                     config=config)
                break
            except duckdb.IOException as exc:
                if "Could not set lock" not in str(exc):
                    raise
                if waited >= DATABASE_WAIT_SECONDS:
                    raise CatalogError(
                        f"{self.layout.database} is held by another process: "
                        f"{str(exc).splitlines()[0]}") from None
                time.sleep(0.05)
                waited += 0.05
        con.execute("SET enable_progress_bar = false")  # a session option, not a global one
        if not current:
            # The stored views are behind catalog.json and another process keeps the database
            # open: this connection gets current views of its own (temporary ones come first).
            for name, select in self.view_definitions().items():
                con.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {select}')
        return con

    def _open_database_for_views(self):
        """catalog.duckdb to write views into. It holds only views made from catalog.json, so
        a damaged one is made again (with a note) rather than failing every command."""
        import duckdb

        config = {"file_search_path": str(self.layout.root)}
        try:
            return duckdb.connect(str(self.layout.database), config=config)
        except duckdb.Error as exc:
            if not _database_damaged(exc):
                raise
            print(f"note: {self.layout.database} is damaged ({str(exc).splitlines()[0][:80]}); "
                  "making its views again", file=sys.stderr)
            for path in (self.layout.database, self.layout.database.with_name(
                    self.layout.database.name + ".wal")):
                path.unlink(missing_ok=True)
            return duckdb.connect(str(self.layout.database), config=config)

    def refresh_views(self) -> bool:
        """Bring the views in catalog.duckdb in line with catalog.json. False (with a note)
        when another process has the database open, a `curate sql` prompt say: DuckDB lets
        no one write a database file that another process reads, and a reader must not make
        a writer fail. The next connect() brings them in line."""
        import duckdb

        # A first catalog.duckdb is made under another name and renamed when whole: a job
        # killed while DuckDB creates the file leaves none rather than a half-made one.
        fresh = not self.layout.database.exists()
        creating = self.layout.database.with_name(f".{self.layout.database.name}.new")
        try:
            if fresh:
                creating.unlink(missing_ok=True)
                con = duckdb.connect(str(creating),
                                     config={"file_search_path": str(self.layout.root)})
            else:
                con = self._open_database_for_views()
        except duckdb.IOException as exc:
            if "Could not set lock" not in str(exc):
                raise
            print(f"note: {self.layout.database} is open in another process; its views are "
                  "brought in line by the next command that opens it", file=sys.stderr)
            return False
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
                "CREATE OR REPLACE TABLE _curate_state AS SELECT ? AS stamp", [self.stamp()]
            )
            con.execute("COMMIT")
        finally:
            con.close()
        if fresh:
            os.replace(creating, self.layout.database)
        for name, gone in self.missing_tables().items():
            print(f"note: view {name} left out: {', '.join(gone)} missing or unreadable in "
                  f"{self.layout.root}",
                  file=sys.stderr)
        return True


def _database_damaged(exc: Exception) -> bool:
    """Whether DuckDB refused catalog.duckdb for its content, not for a lock held elsewhere."""
    return "Could not set lock" not in str(exc)


def remove_own_staging(folder: Path) -> None:
    """Remove a job's own staging folder, and ``.staging`` itself once it is empty; never
    another job's folder."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: another job of this process stages there
        folder.parent.rmdir()


def write_catalog_backup(layout: CatalogLayout, payload: dict[str, Any]) -> None:
    """Beside catalog.json, a copy of it with the SHA-256 of its bytes: `curate verify` tells
    a catalog.json changed or damaged after curate wrote it, and `--repair` restores it."""
    text = catalog_text(payload)
    write_json_atomic(layout.catalog_backup, {
        "catalog_sha256": hashlib.sha256(text.encode()).hexdigest(), "catalog": payload})


def catalog_text(payload: dict[str, Any]) -> str:
    """catalog.json's bytes for a payload (what write_json_atomic writes)."""
    return json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"


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
