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


# Parquet written by copy_sorted (and bronze parts): row groups of about this many bytes. A
# row group of wide rows (text, lists) at DuckDB's default of 122,880 rows takes over 100 MB
# to write and tens of MB per column to read, on every thread, whatever the memory limit.
ROW_GROUP_BYTES = 4 * 2**20
SORT_RUN_SHARE = 8  # a run of wide rows sorted in memory takes at most this share of the limit
SCRATCH_ROWS = 2048  # row groups of the scratch file (one DuckDB vector): small read buffers
SCATTER_BATCH_ROWS = 16_384  # rows handed from DuckDB to the scatter at a time


def copy_sorted(con, select: str, order_by: str, path: Path | str) -> int:
    """Write ``select`` to Parquet in ``order_by`` order; returns the rows written.

    ``order_by`` is over the select's output columns and must give a total order (unique keys),
    so the same inputs give the same bytes. DuckDB's sort does not spill wide rows (text,
    lists) within its limit (1.5 ran past it, 2.0 fails at it), so only the narrow keys are
    sorted and the wide rows are moved in bounded pieces, through scratch files beside
    ``path`` (in its staging folder), every step streaming:

    1. the rows are written as they come, each with its row number in the file;
    2. their keys are ranked (a narrow sort): each row number gets its position;
    3. one pass hands the rows with their positions to the scatter, which appends each to the
       file of its run of positions (a run is a share of the memory limit), so the work
       grows linearly with the data;
    4. each run is sorted on its own and the runs are appended in order, in row groups of a
       fixed number of rows (sized from the first rows), so the bytes depend neither on the
       memory limit nor on the threads.
    """
    path = Path(path)
    scratch = path.with_name(f".{path.stem}.sort")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    rows_file = scratch / "rows.parquet"
    try:
        with insertion_order(con, False):  # the order is made below
            con.execute(f"COPY ({select}) TO {sql_literal(str(rows_file))} "
                        f"(FORMAT parquet, ROW_GROUP_SIZE {SCRATCH_ROWS})")
        rows_source = (f"read_parquet({sql_literal(str(rows_file))}, file_row_number = true, "
                       "hive_partitioning = false)")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _curate_order AS
            SELECT file_row_number AS _row, row_number() OVER (ORDER BY {order_by}) - 1 AS _pos
            FROM {rows_source}
        """)
        rows = con.execute("SELECT count(*) FROM _curate_order").fetchone()[0]
        budget = memory_limit_bytes(con) / SORT_RUN_SHARE
        run = rows_per(budget, _row_bytes(con, parquet_source(rows_file)))
        with insertion_order(con, False):
            batches = con.sql(f"""
                SELECT r.* EXCLUDE (file_row_number), o._pos FROM {rows_source} AS r
                JOIN _curate_order AS o ON r.file_row_number = o._row
            """).to_arrow_reader(SCATTER_BATCH_ROWS)
            run_files = _scatter(batches, run, -(-rows // run), scratch, budget)
        con.execute("DROP TABLE _curate_order")
        return _append_runs(run_files, batches.schema, path)
    finally:
        con.execute("DROP TABLE IF EXISTS _curate_order")
        shutil.rmtree(scratch, ignore_errors=True)


def _scatter(batches, run: int, runs: int, scratch: Path, budget: float) -> list[Path]:
    """Append each row to the file of its run (position // run), buffering at most about
    ``budget`` bytes over all runs. Returns the run files in order (one per run)."""
    from collections import defaultdict

    import numpy as np
    import pyarrow.parquet as pq

    files = [scratch / f"run-{i:06d}.parquet" for i in range(runs)]
    writers: dict[int, Any] = {}
    pending: dict[int, list[Any]] = defaultdict(list)
    held: dict[int, int] = defaultdict(int)
    cap = max(2**18, budget / max(runs, 1))

    def flush(i: int) -> None:
        if i not in writers:
            writers[i] = pq.ParquetWriter(files[i], batches.schema)
        for piece in pending.pop(i, []):
            writers[i].write_batch(piece)
        held.pop(i, None)

    try:
        for batch in batches:
            ids = batch.column(batch.schema.get_field_index("_pos")).to_numpy() // run
            order = np.argsort(ids, kind="stable")
            batch, ids = batch.take(order), ids[order]
            starts = np.flatnonzero(np.diff(ids, prepend=-1))
            for start, end in zip(starts, [*starts[1:], len(ids)], strict=True):
                i = int(ids[start])
                piece = batch.slice(start, end - start)
                pending[i].append(piece)
                held[i] += piece.nbytes
                if held[i] >= cap:
                    flush(i)
        for i in range(runs):
            flush(i)
    finally:
        for writer in writers.values():
            writer.close()
    return files


def _append_runs(run_files: list[Path], schema: Any, path: Path) -> int:
    """Sort each run by position and append the runs in order to ``path``, in row groups of
    a fixed number of rows (sized from the first 2,048 rows). Returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_schema = schema.remove(schema.get_field_index("_pos"))
    written, group = 0, None
    pending: list[Any] = []
    with pq.ParquetWriter(path, out_schema, compression="zstd") as writer:
        for run_file in run_files:
            table = pq.read_table(run_file).sort_by("_pos").drop_columns(["_pos"])
            run_file.unlink()
            if group is None and table.num_rows:
                first = table.slice(0, 2048)
                group = rows_per(ROW_GROUP_BYTES, first.nbytes / first.num_rows)
            pending.append(table)
            whole = pa.concat_tables(pending)
            full = whole.num_rows - whole.num_rows % (group or 1)
            if full:
                writer.write_table(whole.slice(0, full), row_group_size=group)
            pending = [whole.slice(full)]
            written += full
        rest = pa.concat_tables(pending) if pending else None
        if rest is not None and rest.num_rows:
            writer.write_table(rest, row_group_size=group)
            written += rest.num_rows
    return written


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
    """Bytes of a row of ``table`` (a table or a source), estimated on its first rows."""
    sample = con.execute(
        f"SELECT count(*), sum(strlen(CAST(COLUMNS(*) AS VARCHAR))) FROM (FROM {table} LIMIT 2048)"
    ).fetchone()
    count, columns = sample[0], len(sample) - 1
    return sum(v or 0 for v in sample[1:]) / max(count, 1) + 16 * columns


def rows_per(budget: float, row_bytes: float) -> int:
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
