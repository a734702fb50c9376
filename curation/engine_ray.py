"""``curate ingest --engine ray``: each raw file's per-file work as a Ray task.

A task reads, frames and types one file into its own per-attempt staging folder and returns
a ``StagedFile``; the driver (which holds the catalog's writer lock) swaps the finished
folders in and records the sources in the local engine's order, so every file and
catalog.json are byte-identical to a local ingest. A failed attempt removes its folder and
is retried; a retry stages afresh, so nothing is swapped in twice or half-written.
Ray is imported only here, and this module only with ``--engine ray``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from curation.catalog import Catalog, duckdb_config, remove_own_staging
from curation.errors import UserError
from curation.sources import RawFile

MAX_RETRIES = 2  # a task (or its worker) that fails is run again this many times


def _stage(raw: RawFile, spill: Path, run_root: Path):
    import duckdb

    from curation.ingest import stage_file

    started = time.perf_counter()
    attempt = run_root / f"attempt-{uuid.uuid4().hex}"  # this attempt's alone
    attempt.mkdir(parents=True)
    con = duckdb.connect(config=duckdb_config(spill))
    try:
        con.execute("SET enable_progress_bar = false")
        return stage_file(con, raw, attempt, None, started)
    except BaseException:
        shutil.rmtree(attempt, ignore_errors=True)  # no partial files from a failed attempt
        raise
    finally:
        con.close()


class RayStager:
    """Connects to (or starts) Ray and stages files as tasks for the driver to swap in."""

    def __init__(self, address: str, catalog: Catalog) -> None:
        try:
            import ray
        except ImportError:
            raise UserError(
                "--engine ray needs Ray: pip install 'curate[ray]' (or use --engine local)"
            ) from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            try:
                if address == "local":
                    ray.init(include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=address, log_to_driver=False)
            except ConnectionError as e:
                raise UserError(
                    f"--ray-address {address}: no Ray cluster found ({e}); start one with "
                    "'ray start --head', or pass --ray-address local for one in this process"
                ) from None
            self.started = True
        self.spill = catalog.layout.spill
        self.run_root = catalog.layout.staging / f"ray-{uuid.uuid4().hex}"
        self.task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=True)(_stage)

    def run(self, files: list[RawFile]) -> Iterator[tuple[RawFile, object]]:
        """Submit every file at once; hand results back in the given order."""
        refs = [self.task.remote(raw, self.spill, self.run_root) for raw in files]
        for raw, ref in zip(files, refs, strict=True):
            yield raw, self.ray.get(ref)

    def done(self, staged) -> None:
        shutil.rmtree(staged.bronze_dir.parent, ignore_errors=True)  # its attempt folder

    def close(self) -> None:
        remove_own_staging(self.run_root)
        if self.started:
            self.ray.shutdown()
