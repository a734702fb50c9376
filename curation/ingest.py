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

import json
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.catalog import MEMORY_LIMIT, Catalog
from curation.framing import FrameStats, LineBlock, frame_block, iter_line_blocks, shown_text
from curation.manifest import sha256_file, versions
from curation.schema import (
    LINE_COLUMN,
    QUARANTINE_COLUMNS,
    RAW_TEXT_LIMIT,
    REASON_INVALID_JSON,
    REASON_TRUNCATED_GZIP,
    REASON_UNREADABLE,
    bronze_columns,
)
from curation.sources import RawFile, list_raw_files
from curation.typing_sql import (
    ALL_NULL,
    INDEX,
    LINE,
    REASON,
    SKIP,
    fields_from_file,
    fields_from_lines,
    line_check_query,
    typing_query,
)

PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3}
ARROW_SLICES = 8  # a batch is handed to DuckDB in this many pieces so that all threads work

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


def _bronze_schema(con, kind: str) -> pa.Schema:
    select = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in bronze_columns(kind))
    return con.sql(f"SELECT {select} WHERE false").to_arrow_table().schema


class _FileIngest:
    def __init__(self, con, raw: RawFile, staging: Path) -> None:
        self.con, self.raw = con, raw
        self.bronze_path = staging / "bronze.parquet"
        self.quarantine_path = staging / "quarantine.parquet"
        self.block_path = staging / "block.jsonl"  # the current block, bad lines blanked
        self.bronze_schema = _bronze_schema(con, raw.kind)
        self.check_query = line_check_query("block")
        self.fast_query = typing_query(
            raw.kind, raw.category, fields_from_file(raw.kind, str(self.block_path))
        )
        self.fallback_query = typing_query(
            raw.kind, raw.category, fields_from_lines(raw.kind, "clean_block")
        )
        self.quarantined = 0
        self.rows = 0
        self.fallback_blocks = 0  # blocks that read_json refused (a line over 16 MiB, say)

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

    def run(self, progress: ProgressCallback | None) -> tuple[FrameStats, list[str]]:
        stats = FrameStats()
        file_errors: list[str] = []
        bronze = pq.ParquetWriter(self.bronze_path, self.bronze_schema, **PARQUET_OPTIONS)
        quarantine = pq.ParquetWriter(self.quarantine_path, QUARANTINE_SCHEMA, **PARQUET_OPTIONS)
        try:
            try:
                with self.raw.open() as fh:
                    for block in iter_line_blocks(fh, self.raw.url, stats):
                        self._block(block, bronze, quarantine)
                        if progress:
                            progress(self.raw, stats.bytes_in)
            except (OSError, EOFError, zlib.error) as exc:
                # An unreadable stream (a corrupt gzip block, say): everything before it is
                # kept, and the file is marked so that nobody mistakes it for complete.
                file_errors.append(f"{REASON_UNREADABLE}: {exc}")
                quarantine.write_table(
                    self._quarantine_table(
                        [(None, "file", REASON_UNREADABLE, str(exc)[:RAW_TEXT_LIMIT])]
                    )
                )
            if stats.truncated_gzip:
                file_errors.append(f"{REASON_TRUNCATED_GZIP} after line {stats.lines}")
                quarantine.write_table(
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
        finally:
            bronze.close()
            quarantine.close()
            self.block_path.unlink(missing_ok=True)
        return stats, file_errors

    def _register_slices(self, name: str, table: pa.Table) -> None:
        # Handed over in several record batches so that every DuckDB thread gets work.
        per_slice = max(1, -(-table.num_rows // ARROW_SLICES))
        self.con.register(name, pa.Table.from_batches(table.to_batches(max_chunksize=per_slice)))

    def _block(
        self, block: LineBlock, bronze: pq.ParquetWriter, quarantine: pq.ParquetWriter
    ) -> None:
        n = block.count
        self._register_slices("block", pa.table({INDEX: np.arange(n), LINE: block.as_binary()}))
        try:
            bad_lines = self.con.sql(self.check_query).fetchall()
        finally:
            self.con.unregister("block")
        skip = np.zeros(n, dtype=bool)
        bad_index = [i for i, _ in bad_lines]
        skip[bad_index] = True
        numbers = pa.table({LINE_COLUMN: block.line_numbers(), SKIP: skip})
        self.con.register("numbers", numbers)
        try:
            with open(self.block_path, "wb") as fh:
                fh.writelines(block.replaced(bad_index, b"{}"))
            try:
                result = self.con.sql(self.fast_query).to_arrow_table()
            except Exception as exc:  # read_json refused the block: parse line by line
                if not type(exc).__module__.startswith(("duckdb", "_duckdb")):
                    raise
                self.fallback_blocks += 1
                cleaned = b"".join(block.replaced(bad_index, b"{}"))
                cleaned_block = frame_block(cleaned, block.first_line)
                self._register_slices("clean_block", pa.table({LINE: cleaned_block.as_binary()}))
                try:
                    result = self.con.sql(self.fallback_query).to_arrow_table()
                finally:
                    self.con.unregister("clean_block")
        finally:
            self.con.unregister("numbers")
        if result.num_rows != n:  # pragma: no cover - would mean misaligned line numbers
            raise RuntimeError(f"{self.raw.url}: {n} lines in a block but {result.num_rows} rows")
        wrong = result.filter(pc.is_valid(result[REASON]))
        keep = pc.and_(pc.is_null(result[REASON]), pc.invert(result[SKIP]))
        good = result.filter(keep).select(self.bronze_schema.names).cast(self.bronze_schema)
        bronze.write_table(good)
        self.rows += good.num_rows
        rows = [
            (block.first_line + i, "line", reason, shown_text(block.raw(i)))
            for i, reason in bad_lines
        ]
        first = block.first_line
        for line, reason, all_null in zip(
            wrong[LINE_COLUMN].to_pylist(),
            wrong[REASON].to_pylist(),
            wrong[ALL_NULL].to_pylist(),
            strict=True,
        ):
            raw = block.raw(line - first)
            if all_null and not _is_json(raw):
                reason = REASON_INVALID_JSON
            rows.append((line, "line", reason, shown_text(raw)))
        if rows:
            rows.sort(key=lambda r: r[0])
            self.quarantined += len(rows)
            quarantine.write_table(self._quarantine_table(rows))


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
) -> list[FileResult]:
    """Ingest every corpus file under ``raw_root`` into the catalog at ``catalog_root``."""
    import duckdb

    files = list_raw_files(raw_root, categories)
    catalog = Catalog.open(catalog_root, create=True)
    layout = catalog.layout
    shutil.rmtree(layout.staging, ignore_errors=True)  # left by an interrupted run
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT})
    results = []
    try:
        for raw in files:
            previous = catalog.sources.get(raw.key)
            if previous and previous["fingerprint"] == raw.fingerprint and not force:
                result = FileResult(
                    raw.key,
                    skipped=True,
                    lines_read=previous["lines_read"],
                    rows_ingested=previous["rows_ingested"],
                    lines_quarantined=previous["lines_quarantined"],
                )
            else:
                result = _ingest_file(con, raw, catalog, progress)
            results.append(result)
            if on_file_done:
                on_file_done(result)
    finally:
        con.close()
        shutil.rmtree(layout.staging, ignore_errors=True)
    catalog.refresh_views()
    catalog.collect_garbage()
    return results


def _ingest_file(
    con, raw: RawFile, catalog: Catalog, progress: ProgressCallback | None
) -> FileResult:
    layout = catalog.layout
    started = time.perf_counter()
    staging = layout.staging / uuid.uuid4().hex
    staging.mkdir(parents=True)
    job = _FileIngest(con, raw, staging)
    stats, file_errors = job.run(progress)
    if stats.lines != job.rows + job.quarantined:  # pragma: no cover - an internal bug
        raise RuntimeError(
            f"{raw.url}: {stats.lines} lines read but {job.rows} ingested + "
            f"{job.quarantined} quarantined"
        )
    version = raw.fingerprint[:16]
    bronze = layout.bronze_file(raw.kind, raw.category, version)
    quarantine = layout.quarantine_file(raw.kind, raw.category, version)
    for src, dst in ((job.bronze_path, bronze), (job.quarantine_path, quarantine)):
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    seconds = time.perf_counter() - started
    catalog.sources[raw.key] = {
        "kind": raw.kind,
        "category": raw.category,
        "source": raw.url,
        "source_bytes": raw.size,
        "fingerprint": raw.fingerprint,
        "lines_read": stats.lines,
        "rows_ingested": job.rows,
        "lines_quarantined": job.quarantined,
        "file_errors": file_errors,
        "fallback_blocks": job.fallback_blocks,
        "bronze": str(bronze.relative_to(layout.root)),
        "quarantine": str(quarantine.relative_to(layout.root)),
        "bronze_sha256": sha256_file(bronze),
        "quarantine_sha256": sha256_file(quarantine),
        "versions": versions(),
    }
    catalog.save(refresh_views=False)  # the swap: from here on the catalog uses the new files
    return FileResult(
        raw.key,
        skipped=False,
        lines_read=stats.lines,
        rows_ingested=job.rows,
        lines_quarantined=job.quarantined,
        file_errors=tuple(file_errors),
        seconds=seconds,
    )
