"""``curate images fetch``: the product images a slice needs, fetched once into a local cache.

Every URL ends with one row in ``CATALOG/images/status.parquet`` (url, status, http_status,
attempts, source bytes and sha256, width, height, the cached path, error), so that nothing is
silently lost. Statuses: ``ok``; ``http_404`` / ``http_4xx``; ``http_5xx``, ``timeout`` and
``connection_error`` (each retried with exponential backoff first); ``truncated`` (the body
ended before its Content-Length); ``not_an_image`` (magic bytes or decoding say so, whatever
the Content-Type); ``too_large`` (over the byte limit); ``too_many_pixels`` (over the pixel
limit, checked from the header before decoding: a decompression-bomb guard);
``redirect_loop`` / ``too_many_redirects``; ``bad_scheme`` (only http, https and file);
``file_not_found``.

Images are converted to RGB, resized so that the shorter side is at most ``resize`` pixels,
and stored as JPEG under ``images/<sha[:2]>/<sha>.jpg`` where sha is the SHA-256 of the stored
bytes (content-addressed: two URLs of one image share a file). While a fetch runs, results are
journalled every few seconds (``images/.journal/``); a fetch that is killed resumes without
fetching again what it had recorded; at the end the journal is folded into status.parquet.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

import polars as pl

from curation.catalog import Catalog, parquet_source
from curation.errors import UserError
from curation.manifest import atomic_file
from curation.paths import CatalogLayout

STATUS_VIEW = "image_status"
OK = "ok"
RETRIED = ("http_5xx", "http_429", "timeout", "connection_error")
FAILED_STATUSES = (
    "http_404", "http_4xx", "http_5xx", "http_429", "timeout", "connection_error", "truncated",
    "not_an_image", "too_large", "too_many_pixels", "redirect_loop", "too_many_redirects",
    "bad_scheme", "file_not_found",
)
STATUS_SCHEMA = {
    "url": pl.String,
    "status": pl.String,
    "http_status": pl.Int32,
    "attempts": pl.Int32,
    "source_bytes": pl.Int64,
    "source_sha256": pl.String,
    "width": pl.Int32,
    "height": pl.Int32,
    "path": pl.String,
    "error": pl.String,
}
# What each image format starts with; anything else is not an image, whatever it claims.
MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
USER_AGENT = "curate-images/0.1 (+https://github.com/)"


@dataclass(frozen=True)
class FetchSettings:
    concurrency: int = 16
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    retries: int = 3  # further attempts after the first, for the statuses in RETRIED
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_redirects: int = 5
    resize: int = 256  # shorter side at most this; 0 keeps the size
    jpeg_quality: int = 90

    def check(self) -> None:
        positive = {"concurrency": self.concurrency, "connect_timeout": self.connect_timeout,
                    "read_timeout": self.read_timeout, "max_bytes": self.max_bytes,
                    "max_pixels": self.max_pixels}
        for name, value in positive.items():
            if value <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.retries < 0 or self.backoff < 0 or self.resize < 0 or self.max_redirects < 0:
            raise UserError("--retries, --backoff, --resize and --max-redirects must be >= 0")


@dataclass
class Outcome:
    url: str
    status: str
    http_status: int | None = None
    attempts: int = 1
    source_bytes: int | None = None
    source_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    path: str | None = None
    error: str | None = None


class _Failure(Exception):
    def __init__(self, status: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.http_status = http_status


# --- one URL ---------------------------------------------------------------------------------


def _download(url: str, settings: FetchSettings) -> tuple[bytes, int | None]:
    """The bytes behind ``url`` and the final HTTP status; raises _Failure."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        if not path.is_file():
            raise _Failure("file_not_found", f"no file {path}")
        size = path.stat().st_size
        if size > settings.max_bytes:
            raise _Failure("too_large", f"{size:,} bytes > {settings.max_bytes:,}")
        return path.read_bytes(), None
    if parsed.scheme not in ("http", "https"):
        raise _Failure("bad_scheme", f"scheme {parsed.scheme or '(none)'!r} is not http, "
                       "https or file")
    seen = {url}
    current = url
    for _ in range(settings.max_redirects + 1):
        status, location, body = _http_get(current, settings)
        if status in (301, 302, 303, 307, 308) and location:
            following = urljoin(current, location)
            if following in seen:
                raise _Failure("redirect_loop", f"{following} redirects back", status)
            seen.add(following)
            current = following
            continue
        return body, status
    raise _Failure("too_many_redirects", f"more than {settings.max_redirects} redirects")


def _http_get(url: str, settings: FetchSettings) -> tuple[int, str | None, bytes]:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise _Failure("bad_scheme", f"redirected to scheme {parsed.scheme!r}")
    connection_class = (http.client.HTTPSConnection if parsed.scheme == "https"
                        else http.client.HTTPConnection)
    kwargs: dict[str, Any] = {"timeout": settings.connect_timeout}
    if parsed.scheme == "https":
        kwargs["context"] = ssl.create_default_context()
    connection = connection_class(parsed.hostname or "", parsed.port, **kwargs)
    try:
        try:
            connection.connect()
            connection.sock.settimeout(settings.read_timeout)
            target = parsed.path or "/"
            if parsed.query:
                target += "?" + parsed.query
            connection.request("GET", target, headers={"User-Agent": USER_AGENT,
                                                       "Accept": "image/*"})
            response = connection.getresponse()
        except TimeoutError as exc:
            raise _Failure("timeout", f"no response in time ({exc})") from None
        except OSError as exc:
            raise _Failure("connection_error", f"{exc.__class__.__name__}: {exc}") from None
        status = response.status
        if status in (301, 302, 303, 307, 308):
            response.read(64 * 1024)
            return status, response.getheader("Location"), b""
        if status == 404 or status == 410:
            raise _Failure("http_404", f"HTTP {status}", status)
        if status == 429:
            raise _Failure("http_429", "HTTP 429 (rate limited)", status)
        if 400 <= status < 500:
            raise _Failure("http_4xx", f"HTTP {status}", status)
        if status >= 500:
            raise _Failure("http_5xx", f"HTTP {status}", status)
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > settings.max_bytes:
            raise _Failure("too_large", f"Content-Length {int(declared):,} > "
                           f"{settings.max_bytes:,}", status)
        chunks, total = [], 0
        try:
            while True:
                chunk = response.read(64 * 1024)
                if not chunk:
                    break
                total += len(chunk)
                if total > settings.max_bytes:
                    raise _Failure("too_large", f"more than {settings.max_bytes:,} bytes", status)
                chunks.append(chunk)
        except http.client.IncompleteRead as exc:
            raise _Failure("truncated", f"body ended after {total + len(exc.partial):,} of "
                           f"{declared} bytes", status) from None
        except TimeoutError:
            raise _Failure("timeout", f"body stalled after {total:,} bytes", status) from None
        except OSError as exc:
            raise _Failure("connection_error", f"{exc.__class__.__name__}: {exc}",
                           status) from None
        if declared and declared.isdigit() and total < int(declared):
            # http.client returns what came when the peer closes early; the length tells
            raise _Failure("truncated", f"body ended after {total:,} of {declared} bytes",
                           status)
        return status, None, b"".join(chunks)
    finally:
        connection.close()


def _image_format(data: bytes) -> str | None:
    for magic, name in MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def process_image(data: bytes, settings: FetchSettings) -> tuple[bytes, int, int]:
    """(stored JPEG bytes, width, height of the source); raises _Failure."""
    from PIL import Image

    if _image_format(data) is None:
        start = data[:16].decode("latin-1").encode("unicode_escape").decode()
        raise _Failure("not_an_image", f"starts with {start!r}, not an image format")
    try:
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            width, height = probe.size
    except Image.DecompressionBombError as exc:  # over Pillow's own cap, before ours is asked
        raise _Failure("too_many_pixels", str(exc)) from None
    except Exception as exc:  # PIL raises many kinds on garbage
        raise _Failure("not_an_image", f"undecodable: {exc}") from None
    if width * height > settings.max_pixels:
        raise _Failure("too_many_pixels", f"{width}x{height} = {width * height:,} pixels > "
                       f"{settings.max_pixels:,}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = image.convert("RGB")
    except Exception as exc:
        raise _Failure("not_an_image", f"undecodable: {exc}") from None
    shorter = min(width, height)
    if settings.resize and shorter > settings.resize:
        scale = settings.resize / shorter
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                         Image.Resampling.BICUBIC)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=settings.jpeg_quality)
    return out.getvalue(), width, height


def fetch_one(url: str, images_dir: Path, settings: FetchSettings,
              sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Fetch, check, resize and store one URL; retries what is worth retrying."""
    attempts = 0
    while True:
        attempts += 1
        try:
            data, http_status = _download(url, settings)
            stored, width, height = process_image(data, settings)
        except _Failure as failure:
            if failure.status in RETRIED and attempts <= settings.retries:
                sleep(settings.backoff * 2 ** (attempts - 1))
                continue
            return Outcome(url, failure.status, failure.http_status, attempts,
                           error=str(failure)[:500])
        digest = hashlib.sha256(stored).hexdigest()
        relative = f"{digest[:2]}/{digest}.jpg"
        target = images_dir / relative
        if not target.exists():
            with atomic_file(target) as tmp:
                tmp.write_bytes(stored)
        return Outcome(url, OK, http_status, attempts, len(data),
                       hashlib.sha256(data).hexdigest(), width, height, relative)


# --- the status table and its journal ----------------------------------------------------------


def _frame(outcomes: Iterable[Outcome]) -> pl.DataFrame:
    return pl.DataFrame([asdict(o) for o in outcomes], schema=STATUS_SCHEMA)


def read_status(layout: CatalogLayout) -> pl.DataFrame:
    """The status table with any journal of an interrupted fetch folded in (latest wins)."""
    frames = []
    if layout.image_status.exists():
        frames.append(pl.read_parquet(layout.image_status))
    journal = layout.image_journal
    frames += [pl.read_parquet(p) for p in sorted(journal.glob("part-*.parquet"))]
    if not frames:
        return _frame([])
    return pl.concat(frames).unique(subset="url", keep="last", maintain_order=True)


class _Journal:
    """Results written in small Parquet parts as they come (a kill loses seconds at most)."""

    def __init__(self, layout: CatalogLayout, every_seconds: float = 2.0, every_rows: int = 256):
        self.dir = layout.image_journal
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pending: list[Outcome] = []
        self.every_seconds, self.every_rows = every_seconds, every_rows
        self.last = time.monotonic()
        self.next_part = len(list(self.dir.glob("part-*.parquet")))

    def add(self, outcome: Outcome) -> None:
        self.pending.append(outcome)
        stale = time.monotonic() - self.last > self.every_seconds
        if len(self.pending) >= self.every_rows or stale:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with atomic_file(self.dir / f"part-{self.next_part:06d}.parquet") as tmp:
            _frame(self.pending).write_parquet(tmp)
        self.next_part += 1
        self.pending = []
        self.last = time.monotonic()


def _fold_journal(layout: CatalogLayout) -> pl.DataFrame:
    """Write status.parquet (sorted by url, so the same results give the same bytes) and
    drop the journal."""
    status = read_status(layout).sort("url")
    with atomic_file(layout.image_status) as tmp:
        status.write_parquet(tmp)
    journal = layout.image_journal
    for part in journal.glob("part-*.parquet"):
        part.unlink()
    return status


# --- the command -------------------------------------------------------------------------------


@dataclass
class FetchResult:
    wanted: int  # distinct URLs asked for
    skipped: int  # already ok (or already failed, without --retry-failed)
    fetched: int  # tried now
    counts: Counter[str] = field(default_factory=Counter)  # status of the URLs tried now
    seconds: float = 0.0
    status_path: Path | None = None


def urls_for(items: Path, all_images: bool) -> list[str]:
    """The distinct image URLs of a Parquet file of items (silver items or a slice): the main
    image of each, or all its images."""
    import duckdb

    column = "unnest(image_urls)" if all_images else "main_image_url"
    rows = duckdb.sql(f"SELECT DISTINCT {column} AS url FROM {parquet_source(items)} "
                      "WHERE url IS NOT NULL AND url <> '' ORDER BY url").fetchall()
    return [url for (url,) in rows]


def fetch_images(
    catalog: Catalog | Path | str,
    urls: list[str],
    settings: FetchSettings | None = None,
    *,
    retry_failed: bool = False,
    on_result: Callable[[Outcome, Counter[str]], None] | None = None,
) -> FetchResult:
    """Fetch every URL not yet ``ok`` (and, with ``retry_failed``, the failed ones again),
    holding the catalog's writer lock."""
    settings = settings or FetchSettings()
    settings.check()
    catalog = Catalog.of(catalog)
    with catalog.writing("images fetch"):
        return _fetch_images(catalog, urls, settings, retry_failed, on_result)


def _fetch_images(catalog: Catalog, urls: list[str], settings: FetchSettings,
                  retry_failed: bool,
                  on_result: Callable[[Outcome, Counter[str]], None] | None) -> FetchResult:
    started = time.perf_counter()
    layout = catalog.layout
    layout.images.mkdir(parents=True, exist_ok=True)
    known = read_status(layout)
    done = {u: s for u, s in known.select("url", "status").iter_rows()}
    ok_files = {u for u, s, p in known.select("url", "status", "path").iter_rows()
                if s == OK and p and (layout.images / p).exists()}
    wanted = list(dict.fromkeys(urls))

    def needs_fetch(url: str) -> bool:
        if url in ok_files:
            return False
        if url not in done or done[url] == OK:  # new, or its cached file is gone
            return True
        return retry_failed  # failed before

    todo = [u for u in wanted if needs_fetch(u)]
    counts: Counter[str] = Counter()
    journal = _Journal(layout)
    try:
        with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
            pending: set[Future[Outcome]] = set()
            queue = iter(todo)
            for url in queue:  # keep at most 2x concurrency in flight: a bounded queue
                pending.add(pool.submit(fetch_one, url, layout.images, settings))
                if len(pending) >= 2 * settings.concurrency:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _collect(finished, journal, counts, on_result)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                _collect(finished, journal, counts, on_result)
    finally:
        journal.flush()
    _fold_journal(layout)
    if STATUS_VIEW not in catalog.tables:
        catalog.register({STATUS_VIEW: {"files": [layout.relative(layout.image_status)]}})
    return FetchResult(len(wanted), len(wanted) - len(todo), len(todo), counts,
                       time.perf_counter() - started, layout.image_status)


def _collect(finished: set[Future[Outcome]], journal: _Journal, counts: Counter[str],
             on_result: Callable[[Outcome, Counter[str]], None] | None) -> None:
    for future in finished:
        outcome = future.result()
        counts[outcome.status] += 1
        journal.add(outcome)
        if on_result is not None:
            on_result(outcome, counts)


def resolve_image_paths(
    urls: Sequence[str | None], layout: CatalogLayout | None = None
) -> list[str | None]:
    """A local file for each URL: file:// URLs directly, http(s) URLs from the image cache of
    the catalog at ``layout``."""
    cached = _image_cache(layout) if layout is not None else {}
    paths: list[str | None] = []
    for url in urls:
        path: str | None = None
        if url:
            parsed = urlparse(url)
            if parsed.scheme == "file":
                path = unquote(parsed.path)
            elif parsed.scheme in ("http", "https"):
                path = cached.get(url)
            elif not parsed.scheme:
                path = url
        paths.append(path if path and os.path.isfile(path) else None)
    return paths


def _image_cache(layout: CatalogLayout) -> dict[str, str]:
    status = read_status(layout)
    ok = status.filter((pl.col("status") == "ok") & pl.col("path").is_not_null())
    return {url: str(layout.images / path) for url, path in ok.select("url", "path").iter_rows()}


def image_stats(layout: CatalogLayout) -> dict[str, Any]:
    """Counts by status, bytes, and a few example errors per failed status."""
    status = read_status(layout)
    if status.height == 0:
        raise UserError(f"{layout.root}: no images fetched yet (curate images fetch)")
    by_status = status.group_by("status").agg(
        pl.len().alias("urls"), pl.col("source_bytes").sum().alias("source_bytes"),
        pl.col("error").drop_nulls().first().alias("example_error"),
        pl.col("url").first().alias("example_url"),
    ).sort("urls", descending=True)
    stored = list(layout.images.glob("*/*.jpg"))
    return {"urls": status.height, "by_status": by_status.to_dicts(),
            "stored_files": len(stored), "stored_bytes": sum(p.stat().st_size for p in stored)}
