"""``curate ingest --engine ray``: each raw file's per-file work as a Ray task.

A task reads, frames and types one file into its own per-attempt staging folder and returns
a ``StagedFile``; the driver (which holds the catalog's writer lock) swaps the finished
folders in and records the sources in the local engine's order, so every file and
catalog.json are byte-identical to a local ingest. A failed attempt removes its folder and
is retried; a retry stages afresh, so nothing is swapped in twice or half-written.
``curate images fetch --engine ray``: blocks of URLs as Ray tasks (``fetch_blocks``). The
driver keeps the lock and journals the outcomes; a task only writes content-addressed images
(temporary name, then rename), so a retried block rewrites the same bytes under the same
names and a killed attempt leaves no half image (its temporary file is swept by the driver).

``connect(address)`` is the one way in: it connects to (or starts) Ray and says whether it
started it. Ray is imported only here, inside functions, so only with ``--engine ray``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from curation.catalog import Catalog, duckdb_config, remove_own_staging
from curation.errors import UserError
from curation.sources import RawFile

if TYPE_CHECKING:
    from curation.images import FetchSettings, Outcome

MAX_RETRIES = 2  # a task (or its worker) that fails is run again this many times
ENGINES = ("local", "ray")  # where the parallel work of a command runs


def check_engine(engine: str) -> None:
    """A UserError naming the choices unless ``engine`` is one of ENGINES."""
    if engine not in ENGINES:
        raise UserError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")


def connect(address: str) -> bool:
    """Connect this process to Ray unless it already is: ``address`` is ``auto`` (a running
    cluster), ``local`` (start one in this process) or a cluster address. Returns whether
    this call started Ray, i.e. whether the caller should ``ray.shutdown()`` when done.
    Ray not installed, or no cluster at ``address``, is a UserError."""
    try:
        import ray
    except ImportError:
        raise UserError(
            "--engine ray needs Ray: pip install 'curate[ray]' (or use --engine local)"
        ) from None
    if ray.is_initialized():
        return False
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
    except ValueError as e:  # Ray's word for an address it cannot parse
        raise UserError(
            f"--ray-address {address}: {e}; give auto, local or a cluster's host:port"
        ) from None
    return True


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
        self.started = connect(address)  # first: it says so in one line if Ray is missing
        import ray

        self.ray = ray
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


def _fetch_block(urls: Sequence[str], images_dir: Path, settings: FetchSettings) -> list[Outcome]:
    from curation.images import fetch_block

    return fetch_block(urls, images_dir, settings)


def fetch_blocks(address: str, urls: list[str], images_dir: Path,
                 settings: FetchSettings) -> Iterator[Outcome]:
    """Fetch ``urls`` in blocks of ``settings.block_urls``, one Ray task a block (retried
    ``MAX_RETRIES`` times if it or its worker fails), yielding each block's outcomes as it
    finishes. At most two blocks per cluster CPU are in flight, so a long list does not
    flood the cluster. Connects (``connect``) only when there is something to fetch."""
    if not urls:
        return
    started = connect(address)
    import ray

    task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=True)(_fetch_block)
    size = settings.block_urls
    blocks = (urls[i:i + size] for i in range(0, len(urls), size))
    most = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending: list = []
    try:
        for block in blocks:
            pending.append(task.remote(block, images_dir, settings))
            if len(pending) >= most:
                finished, pending = ray.wait(pending, num_returns=1)
                yield from ray.get(finished[0])
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield from ray.get(finished[0])
    finally:
        for ref in pending:  # an error or an interrupted driver: the rest is not wanted
            ray.cancel(ref)
        if started:
            ray.shutdown()
