"""Sorted Parquet writes that stay within DuckDB's memory limit, whatever the data's size.

DuckDB's sort does not spill wide rows (text, lists) within its limit (1.5 ran past it, 2.0
fails at it), so ``copy_sorted`` sorts only the narrow keys and moves the wide rows through
scratch files in runs of bounded size; see its docstring. ``rows_per`` and
``ROW_GROUP_BYTES`` size row groups by bytes, for every Parquet file a stage writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from curation.catalog import parquet_source, sql_literal

# Parquet written by copy_sorted (and bronze parts): row groups of about this many bytes. A
# row group of wide rows (text, lists) at DuckDB's default of 122,880 rows takes over 100 MB
# to write and tens of MB per column to read, on every thread, whatever the memory limit.
ROW_GROUP_BYTES = 4 * 2**20
SORT_RUN_SHARE = 8  # a run of wide rows sorted in memory takes at most this share of the limit
# Python holds about this many runs' worth while it scatters and appends (a run read, sorted and
# concatenated): DuckDB's limit is lowered by as much meanwhile, so the two together stay
# within the limit instead of each taking all of it.
PYTHON_RUNS_HELD = 4
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
    import shutil

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
        limit = memory_limit_bytes(con)
        budget = limit / SORT_RUN_SHARE
        run = rows_per(budget, _row_bytes(con, parquet_source(rows_file)))
        duckdb_share = max(limit / 4, limit - PYTHON_RUNS_HELD * budget)
        with insertion_order(con, False), memory_limit(con, duckdb_share):
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
            pa.default_memory_pool().release_unused()  # the unsorted copy, back to the system
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
def duckdb_setting(con, name: str, value: object) -> Iterator[None]:
    """Set one of DuckDB's settings for a block, then put back what it was."""
    before = con.execute(f"SELECT current_setting('{name}')").fetchone()[0]
    con.execute(f"SET {name} = {sql_literal(str(value).lower())}")
    try:
        yield
    finally:
        con.execute(f"SET {name} = {sql_literal(str(before).lower())}")


def insertion_order(con, preserve: bool) -> AbstractContextManager[None]:
    """DuckDB's preserve_insertion_order for a block."""
    return duckdb_setting(con, "preserve_insertion_order", preserve)


def memory_limit(con, limit: float) -> AbstractContextManager[None]:
    """A lower DuckDB memory limit for a block (it spills what it holds past it)."""
    return duckdb_setting(con, "memory_limit", f"{int(limit)}B")


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
