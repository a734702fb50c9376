"""Streaming writers: raw lines (plain or deterministic gzip) and ground-truth Parquet, each
under a temporary name until closed, and the ground truth's schemas."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


class LineWriter:
    """Writes lines to a .jsonl or deterministic .jsonl.gz file under a temporary name."""

    def __init__(self, path: Path, gz: bool) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self._raw = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()
        self._out: Any = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
            if gz
            else self._raw
        )
        self._buffer = io.BytesIO()
        self.lines = 0

    def write(self, line: bytes) -> int:
        self._buffer.write(line + b"\n")
        self.lines += 1
        if self._buffer.tell() > 1 << 20:
            self._flush()
        return self.lines

    def _flush(self) -> None:
        self._out.write(self._buffer.getvalue())
        self._buffer = io.BytesIO()

    def close(self) -> None:
        self._flush()
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()
        os.replace(self.tmp, self.path)


class TruthWriter:
    """Streams rows to a Parquet file in batches."""

    def __init__(self, path: Path, schema: pa.Schema, batch: int = 20_000) -> None:
        self.path, self.tmp = path, path.with_name(path.name + ".tmp")
        self.schema = schema
        self._writer = pq.ParquetWriter(self.tmp, schema)
        self._rows: list[dict[str, Any]] = []
        self._batch = batch

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
        os.replace(self.tmp, self.path)


TRUTH_ITEM_SCHEMA = pa.schema(
    [
        ("parent_asin", pa.string()),
        ("category", pa.string()),
        ("main_category", pa.string()),
        ("true_quality", pa.float64()),  # the hidden quality q
        ("true_mean_rating", pa.float64()),  # E[star | q]: what average_rating estimates
        ("rating_number", pa.int64()),
        ("average_rating", pa.float64()),
        ("n_reviews", pa.int64()),  # review lines written (before mess)
        ("has_meta", pa.bool_()),
        ("has_image", pa.bool_()),
        ("image_path", pa.string()),
        ("label_replaced", pa.bool_()),  # average_rating planted wrong (label_noise)
        ("clean_average_rating", pa.float64()),  # the average of its ratings, before that
        ("near_duplicate_of", pa.string()),  # a planted near-copy: the item it copies
    ]
)
TRUTH_MESS_SCHEMA = pa.schema(
    [
        ("file", pa.string()),  # relative to OUT
        ("kind", pa.string()),  # reviews | items
        ("line", pa.int64()),
        ("mess", pa.string()),
        ("field", pa.string()),
        ("parent_asin", pa.string()),
        ("expected", pa.string()),  # typed | quarantine
        ("expected_reason", pa.string()),
    ]
)
TRUTH_IMAGE_SCHEMA = pa.schema(
    [
        ("parent_asin", pa.string()),
        ("colour", pa.string()),  # what the title names
        ("shape", pa.string()),
        ("has_image", pa.bool_()),
        ("shown_colour", pa.string()),  # what the image its URL points at shows
        ("shown_shape", pa.string()),
        ("image_of", pa.string()),  # a swapped image: the item whose image it is
    ]
)
