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

from curation.catalog import sql_literal

# Parquet written by copy_sorted (and bronze parts): row groups of about this many bytes. A
# row group of wide rows (text, lists) at DuckDB's default of 122,880 rows takes over 100 MB
# to write and tens of MB per column to read, on every thread, whatever the memory limit.
ROW_GROUP_BYTES = 4 * 2**20
SORT_RUN_SHARE = 16  # a run of wide rows sorted in memory takes at most this share of the limit
# Python holds about this many runs' worth while it scatters and appends (a run being written,
# the next one read and sorted beside it): DuckDB's limit is lowered by as much meanwhile, so
# the two together stay within the limit instead of each taking all of it.
PYTHON_RUNS_HELD = 4
SCATTER_BATCH_ROWS = 16_384  # rows handed from DuckDB to the scatter at a time


def copy_sorted(con, select: str, order_by: str, path: Path | str, *, key: str,
                keys: str | None = None) -> int:
    """Write ``select`` to Parquet in ``order_by`` order; returns the rows written.

    ``key`` is a column of the select that tells its rows apart, and ``order_by`` must give a
    total order, so the same inputs give the same bytes. ``keys``, when given, is a cheaper
    query for the same rows with the key and the columns ``order_by`` reads (without it the
    select is run a second time for them, DuckDB reading only those columns): the select must
    give the same rows each time it runs (no ``random()``, no ``LIMIT`` without a total
    order). A key that no row or several rows of the select hold is an error. DuckDB's sort
    does not spill wide rows (text, lists) within its limit (1.5 ran past it, 2.0 fails at
    it), so only the narrow keys are sorted and the wide rows are moved in bounded pieces,
    through scratch files beside ``path`` (in its staging folder), every step streaming:

    1. the keys are ranked (a narrow sort): each key gets its position;
    2. one pass of the select, joined to the positions, hands the rows to the scatter, which
       appends each to the file of its run of positions (a run is a share of the memory
       limit), so the work grows linearly with the data;
    3. each run is sorted on its own and the runs are appended in order, in row groups of a
       fixed number of rows (sized from the first rows), so the bytes depend neither on the
       memory limit nor on the threads.
    """
    import itertools
    import shutil

    path = Path(path)
    scratch = path.with_name(f".{path.stem}.sort")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _curate_order AS
            SELECT {key} AS _key, row_number() OVER (ORDER BY {order_by}) - 1 AS _pos
            FROM ({keys or select})
        """)
        rows = con.execute("SELECT count(*) FROM _curate_order").fetchone()[0]
        limit = memory_limit_bytes(con)
        budget = limit / SORT_RUN_SHARE
        duckdb_share = max(limit / 4, limit - PYTHON_RUNS_HELD * budget)
        # The hash table on the narrow positions, as written: DuckDB only guesses how many rows
        # the select gives and may otherwise build it on the wide rows, past a small limit.
        with (insertion_order(con, False), memory_limit(con, duckdb_share),
              duckdb_setting(con, "disabled_optimizers", "build_side_probe_side")):
            reader = con.sql(f"""
                SELECT s.*{_as_parquet_stores(con, select)}, o._pos FROM ({select}) AS s
                LEFT JOIN _curate_order AS o ON s.{key} IS NOT DISTINCT FROM o._key
            """).to_arrow_reader(SCATTER_BATCH_ROWS)
            try:
                head = []  # up to the first batch that holds rows: a run's rows from their width
                for batch in _batches_of(reader):
                    head.append(batch)
                    if batch.num_rows:
                        break
                sized = head[-1] if head and head[-1].num_rows else None
                run = rows_per(budget, sized.nbytes / sized.num_rows if sized else 1.0)
                batches = itertools.chain(head, _batches_of(reader))
                run_files = _scatter(batches, reader.schema, run, -(-rows // run), scratch,
                                     budget)
            finally:
                reader.close()  # else the connection stays busy with its result
            con.execute("DROP TABLE _curate_order")
            try:
                return _append_runs(run_files, reader.schema, path, run, rows)
            except Exception:
                path.unlink(missing_ok=True)
                raise
    finally:
        con.execute("DROP TABLE IF EXISTS _curate_order")
        shutil.rmtree(scratch, ignore_errors=True)


def _batches_of(reader) -> Iterator[Any]:
    """The reader's batches. An error DuckDB raises while it makes them (a damaged page, its
    memory limit) comes through Arrow's stream as a bare OSError: it is raised again as
    DuckDB's, so that callers tell it from a failed write (``blame_damaged_inputs`` checks
    the inputs on DuckDB's errors)."""
    import duckdb

    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except OSError as exc:
            raise duckdb.Error(str(exc)) from exc
        yield batch


def _as_parquet_stores(con, select: str) -> str:
    """A ``REPLACE`` clause giving the select's 128-bit integers (a sum of BIGINTs is one) the
    type DuckDB's Parquet writer stores them as, DOUBLE: its Arrow export would make them
    decimal128(38, 0), and a column's type would depend on how the rows reached the file."""
    wide = [row[0] for row in con.execute(f"DESCRIBE ({select})").fetchall()
            if row[1] in ("HUGEINT", "UHUGEINT")]
    if not wide:
        return ""
    quoted = ['"' + name.replace('"', '""') + '"' for name in wide]
    return " REPLACE (" + ", ".join(f"s.{q}::DOUBLE AS {q}" for q in quoted) + ")"


def _scatter(batches, schema: Any, run: int, runs: int, scratch: Path,
             budget: float) -> list[Path]:
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
            writers[i] = pq.ParquetWriter(files[i], schema)
        for piece in pending.pop(i, []):
            writers[i].write_batch(piece)
        held.pop(i, None)

    try:
        for batch in batches:
            positions = batch.column(batch.schema.get_field_index("_pos"))
            if positions.null_count:  # a row whose key is not among the keys ranked
                raise RuntimeError("copy_sorted: the select holds a row its keys do not")
            ids = positions.to_numpy() // run
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


def _append_runs(run_files: list[Path], schema: Any, path: Path, run: int, rows: int) -> int:
    """Sort each run by position and append the runs in order to ``path``, in row groups of
    a fixed number of rows (sized from the first 2,048 rows). Returns the rows written. Run
    ``k`` must hold positions ``k * run`` up to the next run's or ``rows``, each once.

    The next run is read and sorted in a second thread while this one is written: both steps
    run in Arrow's C++ without the GIL, so on two cores they overlap."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    def sorted_run(k: int) -> Any:
        table = pq.read_table(run_files[k]).sort_by("_pos")
        start, end = k * run, min((k + 1) * run, rows)
        if not np.array_equal(table["_pos"].to_numpy(), np.arange(start, end)):
            raise RuntimeError(f"copy_sorted: rows {start} to {end - 1} in the order do not "
                               "match one row of the select each (a key no row or several "
                               "rows hold)")
        run_files[k].unlink()
        table = table.drop_columns(["_pos"])
        pa.default_memory_pool().release_unused()  # the unsorted copy, back to the system
        return table

    out_schema = schema.remove(schema.get_field_index("_pos"))
    written, group = 0, None
    pending: list[Any] = []
    with (pq.ParquetWriter(path, out_schema, compression="zstd") as writer,
          ThreadPoolExecutor(1, thread_name_prefix="curate-sort") as reader):
        upcoming = [reader.submit(sorted_run, 0)] if run_files else []
        for k in range(len(run_files)):
            table = upcoming.pop().result()
            if k + 1 < len(run_files):
                upcoming.append(reader.submit(sorted_run, k + 1))
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
    pending = table = whole = rest = None  # the last run's buffers: freed, then
    pa.default_memory_pool().release_unused()  # handed back before DuckDB's next step
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


def rows_per(budget: float, row_bytes: float) -> int:
    """Rows of ``row_bytes`` in ``budget`` bytes, in whole vectors of 2,048, at most DuckDB's
    default row group (122,880)."""
    return min(122_880, max(2048, int(budget / row_bytes) // 2048 * 2048))
