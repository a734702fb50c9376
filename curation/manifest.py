"""Atomic writes, file checksums and the versions that go into every manifest."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curation import __version__
from curation.errors import IntegrityError


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write to; when the block ends without an
    error it is renamed to ``path`` (readers never see half a file), otherwise removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the suffix is kept: some writers (DuckDB's COPY, matplotlib) take the format from it
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON (sorted keys, so the same payload gives the same bytes) atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_record(path: Path) -> dict[str, Any]:
    """A manifest (or catalog.json) as curate wrote it; a damaged one is an IntegrityError
    naming it, not a traceback."""
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path}: not valid JSON ({exc}); it was changed after curate "
                             "wrote it (`curate verify` checks the whole catalog)") from None
    if not isinstance(record, dict):
        raise IntegrityError(f"{path}: not a JSON object; it was changed after curate wrote it")
    return record


def replace_path(src: Path, dst: Path) -> None:
    """Rename a finished output (file or folder) to its final name. An existing folder of that
    name is moved aside first and removed after, since a folder cannot be replaced in one go."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_dir():
        aside = dst.with_name(f".old-{uuid.uuid4().hex}")
        os.replace(dst, aside)
        os.replace(src, dst)
        shutil.rmtree(aside)
    else:
        os.replace(src, dst)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parquet_rows(path: Path) -> int | None:
    """Rows of a Parquet file from its footer; None when it has none a reader can trust."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # a truncated or overwritten file: the caller reports it
        return None


def output_stats(path: Path) -> dict[str, Any]:
    """What a manifest records of an output besides its SHA-256: bytes and, for Parquet, rows."""
    stats: dict[str, Any] = {"bytes": path.stat().st_size}
    if path.suffix == ".parquet":
        stats["rows"] = parquet_rows(path)
    return stats


def sha256_parts(folder: Path) -> str:
    """One digest for a folder of Parquet parts: over their names and contents, in order."""
    digest = hashlib.sha256()
    for part in sorted(folder.glob("*.parquet")):
        digest.update(part.name.encode() + b"\0" + sha256_file(part).encode())
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the code and of the libraries whose output lands in files."""
    import duckdb
    import polars
    import pyarrow

    return {
        "curate": __version__,
        "duckdb": duckdb.__version__,
        "polars": polars.__version__,
        "pyarrow": pyarrow.__version__,
        "python": platform.python_version(),
    }
