"""Raw JSONL(.gz) -> typed bronze Parquet, with every unusable line in quarantine.

One unit of work is one raw file (the reviews or the metadata of one category). For each:
lines are framed exactly (:mod:`curation.framing`), typed by DuckDB
(:mod:`curation.typing_sql`), and streamed into two Parquet files, bronze and quarantine,
written under a staging name and renamed into place. The catalog then swaps in the new
entry, so an interrupted ingest leaves the previous catalog intact and usable. A file whose
fingerprint is unchanged is skipped.

Per file the manifest records lines_read = rows_ingested + lines_quarantined.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import queue
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.catalog import Catalog, duckdb_config, remove_own_staging, sql_literal
from curation.framing import FrameStats, LineBlock, frame_block, iter_line_blocks, shown_text
from curation.integrity import check_source, full_checks
from curation.lock import writing
from curation.manifest import replace_path, sha256_file, sha256_parts, versions
from curation.paths import CatalogLayout
from curation.schema import (
    FIELDS_BY_KIND,
    LINE_COLUMN,
    QUARANTINE_COLUMNS,
    RAW_TEXT_LIMIT,
    REASON_BLANK,
    REASON_INVALID_JSON,
    REASON_INVALID_UTF8,
    REASON_NOT_OBJECT,
    REASON_TRUNCATED_GZIP,
    REASON_UNREADABLE,
    bronze_columns,
)
from curation.sorting import ROW_GROUP_BYTES, duckdb_setting, memory_limit_bytes, rows_per
from curation.sources import RawFile, list_raw_files
from curation.typing_sql import (
    ALL_NULL,
    LINE,
    REASON,
    SKIP,
    fields_from_file,
    fields_from_lines,
    typing_query,
)

PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd"  # DuckDB COPY options for bronze parts
QUARANTINE_OPTIONS: dict[str, Any] = {"compression": "zstd"}
OPEN_BRACE = ord("{")
WHITESPACE = b" \t\r\n"
# DuckDB memory a lane is given (read_json alone buffers 32 MiB; a 16 MiB block of long item
# lines took about 85 MB in all): no more lanes than the memory limit holds
LANE_MEMORY = 128 << 20

QUARANTINE_SCHEMA = pa.schema(
    [(n, {"VARCHAR": pa.string(), "BIGINT": pa.int64()}[t]) for n, t in QUARANTINE_COLUMNS]
)


@dataclass
class FileResult:
    key: str
    skipped: bool
    lines_read: int = 0
    rows_ingested: int = 0
    lines_quarantined: int = 0
    file_errors: tuple[str, ...] = ()
    seconds: float = 0.0


ProgressCallback = Callable[[RawFile, int], None]  # (file, bytes read so far)


@dataclass
class _BlockResult:
    """What one block gave: the bronze rows written and the lines for quarantine."""

    rows: int
    quarantine: list[tuple[int | None, str, str, str]]
    fallback: bool  # read_json refused the block, so it was typed line by line


class _Lane:
    """A DuckDB cursor of ``parent`` with its own block file and temporary table ``typed``."""

    def __init__(self, parent, block_path: Path) -> None:
        self._parent, self.block_path = parent, block_path  # the block, bad lines blanked
        self.con = self._cursor()

    def _cursor(self):
        con = self._parent.cursor()  # not of an old cursor: closing that closes its cursors
        con.execute("SET enable_progress_bar = false")
        return con

    def close(self) -> None:
        # Its temporary table goes with it. A cursor that cannot close (a query of it still
        # running after a second Ctrl-C, say) must not hide the error that is ending ingest.
        with contextlib.suppress(Exception):
            self.con.close()
        self.block_path.unlink(missing_ok=True)

    def renew(self) -> None:
        """A fresh cursor: after running out of memory, DuckDB may leave a cursor's temporary
        tables unusable ("write-write conflict" on ``typed``)."""
        with contextlib.suppress(Exception):
            self.con.close()
        self.con = self._cursor()


class _Gate:
    """Lanes type their blocks beside one another, or one alone while the others wait."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._beside = 0  # lanes typing beside one another now
        self._alone = False

    @contextlib.contextmanager
    def beside_others(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._alone)
            self._beside += 1
        try:
            yield
        finally:
            with self._changed:
                self._beside -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._alone)
            self._alone = True
            self._changed.wait_for(lambda: self._beside == 0)
        try:
            yield
        finally:
            with self._changed:
                self._alone = False
                self._changed.notify_all()


class _Lanes:
    """Blocks typed on several lanes at once, since typing one keeps about one core busy,
    while this thread frames the next; their results are taken back in the order the blocks
    were added, so that parts, quarantine rows and files keep their order.

    At most one block per lane waits or is being typed, and this thread frames one more:
    memory stays flat however large the file. A block that runs DuckDB out of memory beside
    the others is typed again alone, the other lanes waiting."""

    def __init__(self, con, staging: Path) -> None:
        threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])
        self.count = max(1, min(threads, memory_limit_bytes(con) // LANE_MEMORY))
        # One DuckDB thread, so that each lane's query runs on its own (Python) thread alone:
        # the lanes use as many cores as DuckDB's threads allow (and its memory limit), and a
        # block's rows are written in one order and in the same row groups whatever the
        # threads (the same file, the same bytes)
        self._settings = contextlib.ExitStack()
        self._settings.enter_context(duckdb_setting(con, "threads", 1))
        self.line_by_line = threading.Lock()  # read_json's refusals are typed one at a time
        self._gate = _Gate()
        self._closing = False
        self._pool = ThreadPoolExecutor(max_workers=self.count, thread_name_prefix="ingest")
        self._free: queue.SimpleQueue[_Lane] = queue.SimpleQueue()
        self._lanes: list[_Lane] = []
        # (file, its block's result, bytes read when it was framed), or (None, a step, 0)
        self._queue: deque[tuple[Any, Any, int]] = deque()
        self._blocks = 0  # blocks in the queue
        try:
            for i in range(self.count):
                self._lanes.append(_Lane(con, staging / f"block-{i}.jsonl"))
                self._free.put(self._lanes[-1])
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> _Lanes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing = True  # a lane that has not begun a block does not begin it now
        try:
            futures = [item for job, item, _ in self._queue if job is not None]
            for future in futures:
                future.cancel()  # those not begun
            while True:
                # A query still running (after an error) stops now; again, in case one began
                # just after (DuckDB forgets an interrupt when a query begins)
                for lane in self._lanes:
                    lane.con.interrupt()
                if not wait(futures, timeout=0.1).not_done:
                    break
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            try:
                for lane in self._lanes:
                    lane.close()
            finally:
                self._settings.close()

    def add(self, job: _FileIngest, block: LineBlock) -> None:
        part = job.bronze_dir / f"part-{job.parts:05d}.parquet"
        job.parts += 1
        self._queue.append((job, self._pool.submit(self._on_a_lane, job, block, part),
                            job.stats.bytes_in))
        self._blocks += 1
        while self._blocks > self.count:
            self._take_oldest()

    def then(self, step: Callable[[], None]) -> None:
        """Run ``step`` once every block added before it has been taken."""
        self._queue.append((None, step, 0))
        # Steps of files without a block (empty, say) are bounded too: each holds a file open
        while len(self._queue) > 2 * self.count + 1:
            self._take_oldest()

    def drain(self) -> None:
        while self._queue:
            self._take_oldest()

    def _on_a_lane(self, job: _FileIngest, block: LineBlock, part: Path) -> _BlockResult:
        import duckdb

        lane = self._free.get()
        try:
            if self._closing:
                raise CancelledError
            try:
                with self._gate.beside_others():
                    return job.type_block(lane, block, part, self.line_by_line)
            except duckdb.OutOfMemoryException:
                with self._gate.alone():
                    lane.renew()
                    return job.type_block(lane, block, part, self.line_by_line)
        finally:
            self._free.put(lane)

    def _take_oldest(self) -> None:
        job, item, bytes_in = self._queue[0]
        if job is None:
            self._queue.popleft()
            item()
        else:
            result = item.result()  # still in the queue while waited for: close() stops it
            self._queue.popleft()
            self._blocks -= 1
            job.take(result, bytes_in)


class _FileIngest:
    """One raw file: its blocks go to the lanes, their rows and quarantine lines come back."""

    def __init__(self, con, raw: RawFile, staging: Path,
                 progress: ProgressCallback | None) -> None:
        self.con, self.raw, self.staging, self.progress = con, raw, staging, progress
        self.bronze_dir = staging / "bronze"  # one Parquet part per block
        self.quarantine_path = staging / "quarantine.parquet"
        self.bronze_names = [name for name, _ in bronze_columns(raw.kind)]
        self.fallback_query = typing_query(
            raw.kind, raw.category, fields_from_lines(raw.kind, "clean_block")
        )
        self.stats = FrameStats()
        self.read_errors: list[BaseException] = []
        self.quarantined = 0
        self.rows = 0
        self.fallback_blocks = 0  # blocks that read_json refused (a line over 16 MiB, say)
        self.parts = 0
        self.bronze_dir.mkdir(parents=True)
        self.quarantine = pq.ParquetWriter(
            self.quarantine_path, QUARANTINE_SCHEMA, **QUARANTINE_OPTIONS
        )

    def _quarantine_table(self, rows: list[tuple[int | None, str, str, str]]) -> pa.Table:
        n = len(rows)
        lines, scopes, reasons, texts = (
            (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [], [])
        )
        return pa.table(
            {
                "category": [self.raw.category] * n,
                "kind": [self.raw.kind] * n,
                "source_file": [self.raw.url] * n,
                "source_line": pa.array(lines, pa.int64()),
                "scope": scopes,
                "reason": reasons,
                "raw_text": texts,
            },
            schema=QUARANTINE_SCHEMA,
        )

    def blocks(self) -> Iterator[LineBlock]:
        """The file's blocks; an unreadable stream (a corrupt gzip block, say) ends them and
        is kept in ``read_errors``, so that everything before it is kept."""
        try:
            with self.raw.open() as fh:
                yield from iter_line_blocks(fh, self.raw.url, self.stats)
        except (OSError, EOFError, zlib.error) as exc:
            self.read_errors.append(exc)

    def take(self, result: _BlockResult, bytes_in: int) -> None:
        self.rows += result.rows
        self.fallback_blocks += result.fallback
        if result.quarantine:
            self.quarantined += len(result.quarantine)
            self.quarantine.write_table(self._quarantine_table(result.quarantine))
        if self.progress:
            self.progress(self.raw, bytes_in)

    def finish(self) -> StagedFile:
        """After the last block is taken: the file's own errors, and its staged outputs."""
        file_errors = []
        stats = self.stats
        for exc in self.read_errors:
            # Kept, and the file is marked so that nobody mistakes it for complete.
            file_errors.append(f"{REASON_UNREADABLE}: {exc}")
            self.quarantine.write_table(
                self._quarantine_table(
                    [(None, "file", REASON_UNREADABLE, str(exc)[:RAW_TEXT_LIMIT])]
                )
            )
        if stats.truncated_gzip:
            file_errors.append(f"{REASON_TRUNCATED_GZIP} after line {stats.lines}")
            self.quarantine.write_table(
                self._quarantine_table(
                    [
                        (
                            None,
                            "file",
                            REASON_TRUNCATED_GZIP,
                            f"gzip stream ends early; {stats.lines} lines were readable",
                        )
                    ]
                )
            )
        if self.parts == 0:
            self.write_empty_part()
        self.quarantine.close()
        if stats.lines != self.rows + self.quarantined:  # pragma: no cover - an internal bug
            raise RuntimeError(
                f"{self.raw.url}: {stats.lines} lines read but {self.rows} ingested + "
                f"{self.quarantined} quarantined"
            )
        return StagedFile(self.bronze_dir, self.quarantine_path, stats.lines, self.rows,
                          self.quarantined, self.parts, self.fallback_blocks,
                          tuple(file_errors), 0.0)

    def _type_rows(self, lane: _Lane, block: LineBlock, unusable_index: list[int],
                   one_at_a_time: threading.Lock) -> bool:
        """Fill the lane's temporary table ``typed`` with one row per line of the block;
        True where read_json refused it and it was typed line by line."""
        import duckdb

        with open(lane.block_path, "wb") as fh:
            fh.writelines(block.replaced(unusable_index, b"{}"))
        fast_query = typing_query(self.raw.kind, self.raw.category,
                                  fields_from_file(self.raw.kind, str(lane.block_path)))
        try:
            lane.con.execute(f"CREATE OR REPLACE TEMP TABLE typed AS {fast_query}")
        except duckdb.OutOfMemoryException:
            raise  # not a refusal of the block: the lanes type it again alone
        except duckdb.Error:
            self._type_block_line_by_line(lane, block, unusable_index, one_at_a_time)
            return True
        return False

    def _type_block_line_by_line(self, lane: _Lane, block: LineBlock,
                                 unusable_index: list[int], one_at_a_time: threading.Lock) -> None:
        # One lane at a time: a line of tens of MB takes hundreds of MB to parse this way
        with one_at_a_time:
            cleaned = frame_block(b"".join(block.replaced(unusable_index, b"{}")),
                                  block.first_line)
            lane.con.register("clean_block", pa.table({LINE: cleaned.as_binary()}))
            try:
                lane.con.execute(f"CREATE OR REPLACE TEMP TABLE typed AS {self.fallback_query}")
            finally:
                lane.con.unregister("clean_block")

    def type_block(self, lane: _Lane, block: LineBlock, part: Path,
                   one_at_a_time: threading.Lock) -> _BlockResult:
        """Type one block on ``lane``, write its bronze rows to ``part``, and return them
        counted with its lines for quarantine (in line order). ``one_at_a_time`` is held
        while a block that read_json refused is typed line by line."""
        con, n = lane.con, block.count
        unusable = unusable_lines(block)
        skip = np.zeros(n, dtype=bool)
        unusable_index = [i for i, _ in unusable]
        skip[unusable_index] = True
        con.register("numbers", pa.table({LINE_COLUMN: block.line_numbers(), SKIP: skip}))
        try:
            fallback = self._type_rows(lane, block, unusable_index, one_at_a_time)
            flagged = con.execute(
                f"SELECT {LINE_COLUMN}, {REASON}, {ALL_NULL} FROM typed "
                f"WHERE {REASON} IS NOT NULL ORDER BY {LINE_COLUMN}"
            ).fetchall()
            # read_json gives an all-NULL row for a line it could not read: malformed JSON,
            # or a valid object it refused (over its size limit). The latter is typed again.
            first = block.first_line
            if any(
                all_null and _has_known_field(block.raw(line - first), self.raw.kind)
                for line, _, all_null in flagged
            ):
                self._type_block_line_by_line(lane, block, unusable_index, one_at_a_time)
                fallback = True
                flagged = con.execute(
                    f"SELECT {LINE_COLUMN}, {REASON}, false FROM typed "
                    f"WHERE {REASON} IS NOT NULL ORDER BY {LINE_COLUMN}"
                ).fetchall()
        finally:
            # Left registered at worst (the next block's replaces it): running out of memory
            # here must not hide the error that brought us here
            with contextlib.suppress(Exception):
                con.unregister("numbers")
        total = con.execute("SELECT count(*) FROM typed").fetchone()[0]
        if total != n:  # pragma: no cover - would mean misaligned line numbers
            raise RuntimeError(f"{self.raw.url}: {n} lines in a block but {total} rows")
        columns = ", ".join(f'"{c}"' for c in self.bronze_names)
        # Row groups of bounded bytes (a block of long item texts in one row group would need
        # tens of MB per column to read back, on every thread, whatever the memory limit).
        row_group = rows_per(ROW_GROUP_BYTES, len(block.data) / max(n, 1))
        # No ORDER BY: on one DuckDB thread (see _Lanes) the rows of ``typed`` come in line
        # order, as read_json and the POSITIONAL JOIN give them
        written = con.execute(
            f"COPY (SELECT {columns} FROM typed WHERE {REASON} IS NULL AND NOT {SKIP}) "
            f"TO {sql_literal(str(part))} "
            f"({PARQUET_OPTIONS}, ROW_GROUP_SIZE {row_group})"
        ).fetchone()[0]
        rows = [(first + i, "line", reason, shown_text(block.raw(i))) for i, reason in unusable]
        for line, reason, all_null in flagged:
            raw = block.raw(line - first)
            if all_null and not _is_json(raw):
                reason = REASON_INVALID_JSON
            rows.append((line, "line", reason, shown_text(raw)))
        rows.sort(key=lambda r: r[0])
        return _BlockResult(written, rows, fallback)

    def write_empty_part(self) -> None:
        """A file with no lines still gets one (empty, typed) bronze part."""
        select = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in bronze_columns(self.raw.kind))
        part = self.bronze_dir / "part-00000.parquet"
        self.con.execute(f"COPY (SELECT {select} WHERE false) TO {sql_literal(str(part))} "
                         f"({PARQUET_OPTIONS})")
        self.parts = 1


def unusable_lines(block: LineBlock) -> list[tuple[int, str]]:
    """(index in block, reason) of the lines that cannot become a row, in index order: not
    UTF-8, blank, or not starting (after whitespace) with '{' (then not an object, or not JSON).
    A line that starts like an object but is malformed is left to read_json, which gives it an
    all-NULL row."""
    view = np.frombuffer(block.data, dtype=np.uint8)
    not_utf8: set[int] = set()
    try:
        # Arrow checks the whole block at once, in place (a decode would build the text)
        block.as_binary().cast(pa.string())
    except pa.ArrowInvalid:
        # Only lines holding a byte above 127 can be invalid: decode those one by one (each
        # line's largest byte, without an array the size of the block).
        largest = np.maximum.reduceat(view, block.offsets[:-1])
        for i in np.flatnonzero(largest >= 0x80).tolist():
            try:
                block.raw(i).decode("utf-8")
            except UnicodeDecodeError:
                not_utf8.add(i)
    # Only lines that do not start with '{' need a look (blank lines among them).
    suspects = set(np.flatnonzero(view[block.offsets[:-1]] != OPEN_BRACE).tolist())
    unusable = []
    for i in sorted(suspects | not_utf8):
        if i in not_utf8:
            unusable.append((i, REASON_INVALID_UTF8))
            continue
        text = block.raw(i).strip(WHITESPACE)
        if not text:
            unusable.append((i, REASON_BLANK))
        elif not text.startswith(b"{"):
            unusable.append((i, REASON_NOT_OBJECT if _is_json(text) else REASON_INVALID_JSON))
    return unusable


def _has_known_field(raw: bytes, kind: str) -> bool:
    try:
        value = json.loads(raw)
    except ValueError:
        return False
    return isinstance(value, dict) and any(f.name in value for f in FIELDS_BY_KIND[kind])


def _is_json(raw: bytes) -> bool:
    """Strict JSON (no NaN or Infinity), as DuckDB reads it."""

    def reject(constant: str) -> None:
        raise ValueError(constant)

    try:
        json.loads(raw, parse_constant=reject)
    except ValueError:
        return False
    return True


def ingest(
    raw_root: str,
    catalog_root: Path | str,
    categories: list[str] | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
    on_file_done: Callable[[FileResult], None] | None = None,
    engine: str = "local",
    ray_address: str = "auto",
) -> list[FileResult]:
    """Ingest every corpus file under ``raw_root`` into the catalog at ``catalog_root``.

    ``engine="ray"`` runs the per-file work as Ray tasks; this process keeps the lock, swaps
    the results in and records the sources in the local engine's order (same bytes).
    """
    import duckdb

    from curation.engine_ray import check_engine  # imports no Ray

    check_engine(engine)

    files = list_raw_files(raw_root, categories)
    Catalog.check_location(CatalogLayout(Path(catalog_root)))  # before the lock file is made
    # The lock first, then catalog.json: what we read is what no one else changes until we end.
    with writing(CatalogLayout(Path(catalog_root)), "ingest"):
        catalog = Catalog.open(catalog_root, create=True)
        con = duckdb.connect(config=duckdb_config(catalog.layout.spill))
        con.execute("SET enable_progress_bar = false")
        results: list[FileResult | None] = []
        pending = None
        if engine == "ray":
            from curation.engine_ray import RayStager

            pending = RayStager(ray_address, catalog)
        try:
            if pending is None:
                results = _ingest_here(con, files, catalog, force, progress, on_file_done)
            else:
                to_stage = []
                for raw in files:
                    result = _unchanged(catalog, raw, force)
                    if result is None:
                        to_stage.append(raw)
                    results.append(result)
                staged = iter(pending.run(to_stage))  # in order, each as its task finishes
                for i, result in enumerate(results):
                    if result is None:
                        raw, staged_file = next(staged)
                        results[i] = commit_staged(raw, catalog, staged_file)
                        pending.done(staged_file)
                    if on_file_done:
                        on_file_done(results[i])
        finally:
            con.close()
            if pending is not None:
                pending.close()
        catalog.refresh_views()
        catalog.collect_garbage()
    return results


def _unchanged(catalog: Catalog, raw: RawFile, force: bool) -> FileResult | None:
    """The file's result when it is unchanged since it was ingested, and so skipped."""
    previous = catalog.sources.get(raw.key)
    if previous and previous["fingerprint"] == raw.fingerprint and not force:
        _, problems = check_source(catalog, raw.key, hashes=full_checks())
        if problems:  # the raw file is unchanged but what was made of it is not
            print(f"note: {raw.key}: {problems[0].path}: {problems[0].what}; "
                  "ingesting it again", file=sys.stderr)
            previous = None
    if previous and previous["fingerprint"] == raw.fingerprint and not force:
        return FileResult(
            raw.key,
            skipped=True,
            lines_read=previous["lines_read"],
            rows_ingested=previous["rows_ingested"],
            lines_quarantined=previous["lines_quarantined"],
        )
    return None


def _ingest_here(con, files: list[RawFile], catalog: Catalog, force: bool,
                 progress: ProgressCallback | None,
                 on_file_done: Callable[[FileResult], None] | None) -> list[FileResult]:
    """Every file in this process, in order: the lanes go on with the next file's first
    blocks while the last ones of a file are typed, and each file is swapped in (and
    reported) once its last block is taken."""
    results: list[FileResult] = []
    open_jobs: list[_FileIngest] = []  # staged, not yet swapped in

    def report(result: FileResult) -> None:
        results.append(result)
        if on_file_done:
            on_file_done(result)

    def swap_in(job: _FileIngest, started: float) -> None:
        staged = dataclasses.replace(job.finish(), seconds=time.perf_counter() - started)
        report(commit_staged(job.raw, catalog, staged))
        open_jobs.remove(job)
        remove_own_staging(job.staging)

    lanes_dir = catalog.layout.staging / f"ingest-{uuid.uuid4().hex}"
    lanes_dir.mkdir(parents=True)
    try:
        with _Lanes(con, lanes_dir) as lanes:
            for raw in files:
                skipped = _unchanged(catalog, raw, force)
                if skipped is not None:
                    lanes.then(functools.partial(report, skipped))
                    continue
                started = time.perf_counter()
                staging = catalog.layout.staging / f"ingest-{uuid.uuid4().hex}"
                staging.mkdir(parents=True)
                try:
                    job = _FileIngest(con, raw, staging, progress)
                except BaseException:
                    remove_own_staging(staging)
                    raise
                open_jobs.append(job)
                for block in job.blocks():
                    lanes.add(job, block)
                lanes.then(functools.partial(swap_in, job, started))
            lanes.drain()
    finally:
        for job in open_jobs:  # an interrupted ingest: their staging goes, nothing else
            job.quarantine.close()
            remove_own_staging(job.staging)
        remove_own_staging(lanes_dir)
    return results


@dataclass(frozen=True)
class StagedFile:
    """One raw file's finished outputs in its staging folder, before the swap (picklable)."""

    bronze_dir: Path
    quarantine_path: Path
    lines: int
    rows: int
    quarantined: int
    parts: int
    fallback_blocks: int
    file_errors: tuple[str, ...]
    seconds: float


def stage_file(con, raw: RawFile, staging: Path, progress: ProgressCallback | None,
               started: float) -> StagedFile:
    """The per-file work (read, frame, type) into ``staging``; the catalog is not touched."""
    with _Lanes(con, staging) as lanes:
        job = _FileIngest(con, raw, staging, progress)
        try:
            for block in job.blocks():
                lanes.add(job, block)
            lanes.drain()
            staged = job.finish()
        finally:
            job.quarantine.close()
    return dataclasses.replace(staged, seconds=time.perf_counter() - started)


def commit_staged(raw: RawFile, catalog: Catalog, staged: StagedFile) -> FileResult:
    """Swap the staged outputs in and record the source (the driver's part; under the lock)."""
    layout = catalog.layout
    version = raw.fingerprint[:16]
    bronze = layout.bronze_dir(raw.kind, raw.category, version)
    quarantine = layout.quarantine_file(raw.kind, raw.category, version)
    for src, dst in ((staged.bronze_dir, bronze), (staged.quarantine_path, quarantine)):
        replace_path(src, dst)
    catalog.sources[raw.key] = {
        "kind": raw.kind,
        "category": raw.category,
        "source": raw.url,
        "source_bytes": raw.size,
        "fingerprint": raw.fingerprint,
        "lines_read": staged.lines,
        "rows_ingested": staged.rows,
        "lines_quarantined": staged.quarantined,
        "file_errors": list(staged.file_errors),
        "fallback_blocks": staged.fallback_blocks,
        "bronze": str(bronze.relative_to(layout.root)),
        "quarantine": str(quarantine.relative_to(layout.root)),
        "bronze_parts": staged.parts,
        "bronze_sha256": sha256_parts(bronze),
        "quarantine_sha256": sha256_file(quarantine),
        "versions": versions(),
    }
    catalog.save(refresh_views=False)  # the swap: from here on the catalog uses the new files
    return FileResult(
        raw.key,
        skipped=False,
        lines_read=staged.lines,
        rows_ingested=staged.rows,
        lines_quarantined=staged.quarantined,
        file_errors=staged.file_errors,
        seconds=staged.seconds,
    )
