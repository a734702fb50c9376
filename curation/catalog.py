"""The catalog: ``catalog.json`` (what exists, with fingerprints and counts) and
``catalog.duckdb`` (a real DuckDB database whose views read the catalog's Parquet files).

The views use paths relative to the catalog folder and are opened with DuckDB's
``file_search_path`` set to it, so a catalog can be moved or copied whole. To use
``catalog.duckdb`` from another DuckDB client, start it inside the catalog folder.
"""

from __future__ import annotations

import json
import shutil
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


def duckdb_config(spill_dir: Path) -> dict[str, Any]:
    """Settings for every connection a job opens: a memory limit with a place to spill to (a
    read-only database has none by default, and a large sort would fail), and no DuckDB
    progress bar (the commands report progress themselves)."""
    spill_dir.mkdir(parents=True, exist_ok=True)
    return {"memory_limit": MEMORY_LIMIT, "temp_directory": str(spill_dir)}


# Parquet written by copy_sorted: row groups of about this many bytes of data. DuckDB's
# default of 122,880 rows makes a row group of wide rows (text, lists) take over 100 MB to
# write and tens of MB per page to read, on every thread, whatever the memory limit.
ROW_GROUP_BYTES = 16 * 2**20
SORT_CHUNK_SHARE = 8  # a run of wide rows sorted in memory takes at most this share of the limit
SCATTER_ROWS = 2048  # rows a run file buffers before it writes them (one DuckDB vector)
SCATTER_OPEN_FILES = 16  # run files open at once while the rows are scattered


def copy_sorted(con, select: str, order_by: str, path: Path | str) -> int:
    """Write ``select`` to Parquet in ``order_by`` order; returns the rows written.

    ``order_by`` is over the select's output columns and must give a total order (unique keys),
    so the same inputs give the same bytes. DuckDB's sort does not spill wide rows (text,
    lists) well: 1.5 ran past the memory limit and 2.0 fails at it. So only the narrow keys
    are sorted, and the wide rows are moved, never sorted, in bounded pieces:

    1. the rows go to a temporary table as they come (a table spills);
    2. their keys are ranked (a narrow sort): each row gets its position;
    3. one pass writes every row to the file of its run of positions (each run a small share
       of the memory limit), so the work grows linearly with the data;
    4. each run is sorted on its own, in memory, and appended in order to a table that is
       written in stored order, in row groups sized from its first rows.
    """
    path = Path(path)
    runs_dir = path.with_name(f".{path.stem}.runs")  # beside the output, in its staging folder
    tables = ("_curate_rows", "_curate_order", "_curate_sorted")
    try:
        with insertion_order(con, False):  # the order is made below
            con.execute(f"CREATE OR REPLACE TEMP TABLE _curate_rows AS {select}")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _curate_order AS
            SELECT rowid AS _rid, row_number() OVER (ORDER BY {order_by}) - 1 AS _pos
            FROM _curate_rows
        """)
        rows = con.execute("SELECT count(*) FROM _curate_order").fetchone()[0]
        run = _rows_per(memory_limit_bytes(con) / SORT_CHUNK_SHARE,
                        _row_bytes(con, "_curate_rows"))
        con.execute("CREATE OR REPLACE TEMP TABLE _curate_sorted AS FROM _curate_rows LIMIT 0")
        positioned = ("SELECT r.*, o._pos FROM _curate_rows AS r "
                      "JOIN _curate_order AS o ON r.rowid = o._rid")
        if rows <= run:  # one run: sorted in memory straight away
            sources = [f"({positioned})"]
        else:
            # Every open run file buffers a row group: small row groups and few open files
            # keep the scatter within the limit (a run may then span several files).
            con.execute(f"SET partitioned_write_flush_threshold = {SCATTER_ROWS}")
            con.execute(f"SET partitioned_write_max_open_files = {SCATTER_OPEN_FILES}")
            with insertion_order(con, False):
                con.execute(f"""
                    COPY (SELECT *, _pos // {run} AS _run FROM ({positioned}))
                    TO {_sql_literal(str(runs_dir))}
                    (FORMAT parquet, PARTITION_BY (_run), ROW_GROUP_SIZE {SCATTER_ROWS})
                """)
            con.execute("RESET partitioned_write_flush_threshold")
            con.execute("RESET partitioned_write_max_open_files")
            for table in tables[:2]:  # free their memory for what follows
                con.execute(f"DROP TABLE {table}")
            sources = [parquet_source(runs_dir / f"_run={i}" / "*.parquet")
                       for i in range((rows + run - 1) // run)]
        with insertion_order(con, True):
            for source in sources:
                con.execute(f"INSERT INTO _curate_sorted "
                            f"SELECT * EXCLUDE (_pos) FROM {source} ORDER BY _pos")
            for table in tables[:2]:
                con.execute(f"DROP TABLE IF EXISTS {table}")
            # From the first rows in order, so the same inputs give the same row groups.
            row_group = _rows_per(ROW_GROUP_BYTES, _row_bytes(con, "_curate_sorted"))
            return con.execute(
                f"COPY _curate_sorted TO {_sql_literal(str(path))} "
                f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group})"
            ).fetchone()[0]
    finally:
        for table in tables:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        shutil.rmtree(runs_dir, ignore_errors=True)


@contextmanager
def insertion_order(con, preserve: bool) -> Iterator[None]:
    """Set DuckDB's preserve_insertion_order for a block, then put back what it was."""
    before = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute(f"SET preserve_insertion_order = {str(preserve).lower()}")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {str(before).lower()}")


_UNITS = {
    "": 1,
    "bytes": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def memory_limit_bytes(con) -> int:
    """The connection's memory limit in bytes (DuckDB reports it as text: '953.6 MiB')."""
    import re

    text = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        return 2**30
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _row_bytes(con, table: str) -> float:
    """Bytes of a row of ``table``, estimated on its first rows."""
    sample = con.execute(
        f"SELECT count(*), sum(strlen(CAST(COLUMNS(*) AS VARCHAR))) FROM (FROM {table} LIMIT 2048)"
    ).fetchone()
    count, columns = sample[0], len(sample) - 1
    return sum(v or 0 for v in sample[1:]) / max(count, 1) + 16 * columns


def _rows_per(budget: float, row_bytes: float) -> int:
    """Rows of ``row_bytes`` in ``budget`` bytes, in whole vectors of 2,048, at most DuckDB's
    default row group (122,880)."""
    return min(122_880, max(2048, int(budget / row_bytes) // 2048 * 2048))


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
            views[name] = _union_or_empty(table["files"], None)
        return views

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
            rows.append("(" + ", ".join(_sql_literal(v) for v in values) + ")")
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


def parquet_source(path: Path | str) -> str:
    """SQL reading one Parquet file by path (never as a hive-partitioned folder, whatever the
    folder names on the way)."""
    return f"read_parquet({_sql_literal(str(path))}, hive_partitioning = false)"


def _sql_literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _sql_list(files: list[str]) -> str:
    return "[" + ", ".join(_sql_literal(f) for f in files) + "]"


def _union_or_empty(files: list[str], columns: list[tuple[str, str]] | None) -> str:
    if files:
        return f"SELECT * FROM read_parquet({_sql_list(files)}, hive_partitioning = false)"
    if columns is None:
        return "SELECT NULL AS empty WHERE false"
    return "SELECT " + ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in columns) + " WHERE false"
