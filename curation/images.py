"""``curate images fetch``: the product images a slice needs, fetched once into a local cache.

Every URL ends with one row in ``CATALOG/images/status.parquet`` (url, status, http_status,
attempts, source bytes and sha256, width, height, the cached path, error), so that nothing is
silently lost. Statuses: ``ok``; ``http_404`` / ``http_4xx``; ``http_5xx``, ``timeout`` and
``connection_error`` (each retried with exponential backoff first); ``truncated`` (the body
ended before its Content-Length); ``not_an_image`` (magic bytes or decoding say so, whatever
the Content-Type); ``too_large`` (over the byte limit); ``too_many_pixels`` (over the pixel
limit, checked from the header before decoding: a decompression-bomb guard);
``redirect_loop`` / ``too_many_redirects``; ``bad_scheme`` (only http, https and file);
``bad_url`` (malformed: whitespace, no host, a port out of range, no scheme); ``refused`` (see
below); ``deadline`` (the URL took longer than ``url_deadline`` in all); ``bad_response`` (not
HTTP); ``file_not_found``; ``error`` (anything unforeseen, one row rather than an abort).

Safe by default, because the URLs come from metadata nobody checked: a ``file://`` URL is read
only under the corpus's own folder (from the catalog's recorded sources) or an
``allow_file_roots`` folder, after resolving ``..`` and links; an http(s) host is connected to
only at a public address (the address actually connected to is checked, on every redirect
hop, which is followed by hand), unless ``allow_private_network`` or ``allow_networks`` opens
it; each URL has a total ``url_deadline`` that a server sending a byte at a time cannot
stretch; the stored error never holds bytes of the response.

Images are converted to RGB, resized so that the shorter side is at most ``resize`` pixels,
and stored as JPEG under ``images/<sha[:2]>/<sha>.jpg`` where sha is the SHA-256 of the stored
bytes (content-addressed: two URLs of one image share a file). While a fetch runs, results are
journalled every few seconds (``images/.journal/``); a fetch that is killed resumes without
fetching again what it had recorded; at the end the journal is folded into status.parquet.

``engine="ray"`` fetches blocks of ``block_urls`` URLs as Ray tasks (``curation/engine_ray.py``);
this process keeps the lock, the journal and the status file, so both engines write the same
files. An image is written to a temporary name and renamed (a killed writer leaves no half
image under a real name; its temporary file is swept at the start and end of a fetch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import io
import ipaddress
import os
import re
import socket
import ssl
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urljoin, urlparse, urlsplit

import polars as pl

from curation.catalog import Catalog, parquet_source
from curation.errors import UserError
from curation.manifest import atomic_file
from curation.paths import META_DIR, REVIEW_DIR, CatalogLayout

STATUS_VIEW = "image_status"
OK = "ok"
REFUSED = "refused"
RETRIED = ("http_5xx", "http_429", "timeout", "connection_error")
FAILED_STATUSES = (
    "http_404", "http_4xx", "http_5xx", "http_429", "timeout", "connection_error", "truncated",
    "not_an_image", "too_large", "too_many_pixels", "redirect_loop", "too_many_redirects",
    "bad_scheme", "bad_url", REFUSED, "deadline", "bad_response", "file_not_found", "error",
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
MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]{0,40}/[A-Za-z0-9][\w.+-]{0,60}")
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
    url_deadline: float = 60.0  # seconds for one URL in all: attempts, redirects, waits
    block_urls: int = 64  # URLs per Ray task with engine="ray"
    # file:// URLs are read under these folders only (fetch_images adds the corpus's own)
    allow_file_roots: tuple[Path, ...] = ()
    allow_private_network: bool = False  # loopback, private, link-local, ... addresses too
    allow_networks: tuple[str, ...] = ()  # CIDRs opened one by one (e.g. "10.1.2.3/32")

    def check(self) -> None:
        positive = {"concurrency": self.concurrency, "connect_timeout": self.connect_timeout,
                    "read_timeout": self.read_timeout, "max_bytes": self.max_bytes,
                    "max_pixels": self.max_pixels, "url_deadline": self.url_deadline,
                    "block_urls": self.block_urls}
        for name, value in positive.items():
            if not value > 0:  # NaN too
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.retries < 0 or self.backoff < 0 or self.resize < 0 or self.max_redirects < 0:
            raise UserError("--retries, --backoff, --resize and --max-redirects must be >= 0")
        self.networks()

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """``allow_networks`` parsed; a UserError naming the one that is not a network."""
        parsed = []
        for text in self.allow_networks:
            try:
                parsed.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise UserError(f"--allow-network {text!r} is not an address or CIDR network "
                                "(e.g. 10.1.2.3 or 10.0.0.0/8)") from None
        return parsed


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


# --- what may be fetched ---------------------------------------------------------------------


def corpus_folders(catalog: Catalog) -> list[Path]:
    """The corpus folders of a catalog's local sources: each raw file was read from
    ``RAW/meta_categories/`` or ``RAW/review_categories/``; the corpus folder is ``RAW``, or
    its parent when ``RAW`` is named ``raw`` (Amazon Reviews 2023's layout, which synth
    copies: ``CORPUS/raw/...`` beside ``CORPUS/images/``). Hub sources have none."""
    folders: dict[Path, None] = {}
    for entry in catalog.sources.values():
        source = str(entry.get("source", ""))
        if source.startswith("file://"):
            source = unquote(urlsplit(source).path)
        elif "://" in source:
            continue
        path = Path(source)
        if not path.is_absolute() or path.parent.name not in (META_DIR, REVIEW_DIR):
            continue
        raw = path.parent.parent
        folders[(raw.parent if raw.name == "raw" else raw).resolve()] = None
    return list(folders)


def address_refusal(address: str, settings: FetchSettings) -> str | None:
    """Why an IP address may not be connected to (``None``: it may). Public addresses may;
    loopback, private, link-local, multicast, reserved, unspecified and other non-global ones
    may not, unless ``allow_private_network`` or one of ``allow_networks`` holds them. An
    IPv4 address inside IPv6 (mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``) is judged as
    the IPv4 address it reaches."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a link-local v6 carries %scope
    judged: ipaddress.IPv4Address | ipaddress.IPv6Address = ip
    if isinstance(ip, ipaddress.IPv6Address):
        judged = ip.ipv4_mapped or ip.sixtofour or ip
    if any(judged in net or ip in net for net in settings.networks()):
        return None
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(judged, f"is_{kind}"):
            break
    else:
        if judged.is_global:
            return None
        kind = "not_global"
    if settings.allow_private_network:
        return None
    return kind.replace("_", "-")


def _one_line(text: str, limit: int = 500) -> str:
    """An error as one printable line (what a server sent may hold anything)."""
    return "".join(c if c.isprintable() else " " for c in text)[:limit]


def _parse_url(url: str, redirected: bool = False) -> SplitResult:
    """The parts of a URL we can fetch; a _Failure ``bad_url`` or ``bad_scheme`` if not."""
    where = "redirected to a URL that" if redirected else "URL"
    if not url or any(c.isspace() or not c.isprintable() for c in url):
        raise _Failure("bad_url", f"{where} is empty or holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError as exc:
        raise _Failure("bad_url", f"{where} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise _Failure("bad_url", f"{where} has no scheme (http://, https:// or file://)")
    if scheme == "file":
        if redirected:
            raise _Failure("bad_scheme", f"redirected to scheme {parts.scheme!r}")
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise _Failure("bad_url", "a file URL is file:///absolute/path (no host)")
        return parts
    if scheme not in ("http", "https"):
        raise _Failure("bad_scheme", f"scheme {parts.scheme!r} is not http, https or file")
    if not parts.hostname:
        raise _Failure("bad_url", f"{where} has no host")
    if port == 0:
        raise _Failure("bad_url", f"{where} has port 0")
    return parts


# --- one URL ---------------------------------------------------------------------------------


@dataclass
class _Body:
    data: bytes
    http_status: int | None = None
    content_type: str | None = None


def _download(url: str, settings: FetchSettings, deadline: float) -> _Body:
    """The bytes behind ``url``, its final HTTP status and Content-Type; raises _Failure."""
    parts = _parse_url(url)
    if parts.scheme.lower() == "file":
        path = unquote(parts.path)
        if "\0" in path:
            raise _Failure("bad_url", "a file URL with a NUL byte")
        return _Body(_read_file(Path(path), settings))
    seen = {url}
    current = parts
    for _ in range(settings.max_redirects + 1):
        status, location, body = _http_get(current, settings, deadline)
        if status in (301, 302, 303, 307, 308) and location:
            following = urljoin(current.geturl(), location)
            if following in seen:
                raise _Failure("redirect_loop", f"{_one_line(following, 200)} redirects back",
                               status)
            seen.add(following)
            current = _parse_url(following, redirected=True)  # each hop checked again
            continue
        return body
    raise _Failure("too_many_redirects", f"more than {settings.max_redirects} redirects")


def _read_file(path: Path, settings: FetchSettings) -> bytes:
    """A local image, only under an allowed folder (checked after ``..`` and links are
    resolved, before the file is touched: a refusal says nothing of whether it exists)."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links, say
        raise _Failure(REFUSED, f"file {path} cannot be resolved ({exc.__class__.__name__})"
                       ) from None
    roots = [Path(root).resolve() for root in settings.allow_file_roots]
    if not any(real == root or root in real.parents for root in roots):
        where = ", ".join(map(str, roots)) if roots else "none (no local corpus in the catalog)"
        raise _Failure(REFUSED, f"file {path} is outside the corpus folder and the "
                       f"--allow-file-root folders ({where})")
    try:  # non-blocking: a FIFO planted under the corpus must not hang the fetch
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise _Failure("file_not_found", f"no file {path}") from None
    except OSError as exc:
        raise _Failure("file_not_found", f"cannot open {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # before fdopen, which refuses a folder in its own words
        os.close(fd)
        raise _Failure("file_not_found", f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > settings.max_bytes:
            raise _Failure("too_large", f"{info.st_size:,} bytes > {settings.max_bytes:,}")
        data = handle.read(settings.max_bytes + 1)  # the file may grow after fstat
    if len(data) > settings.max_bytes:
        raise _Failure("too_large", f"more than {settings.max_bytes:,} bytes")
    return data


def _resolve(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """getaddrinfo with a timeout (it has none of its own: a slow resolver would outlast
    every deadline); an IP literal is not looked up."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_NUMERICHOST)
    answer: list[Any] = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    if not answer:
        raise _Failure("timeout", f"resolving {host} took more than {timeout:.3g} s")
    if isinstance(answer[0], OSError):
        raise _Failure("connection_error", f"cannot resolve {host}: {answer[0]}")
    return answer[0]


def _guarded_socket(host: str, port: int, settings: FetchSettings,
                    deadline: float) -> socket.socket:
    """A TCP connection to ``host`` at an address that may be connected to: resolved once,
    each address judged, the connection made to that very address (so a second lookup cannot
    answer differently), and the connected peer judged again."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Failure("deadline", f"over the {settings.url_deadline:g} s deadline for one URL")
    timeout = min(settings.connect_timeout, remaining)
    refused: list[str] = []
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in _resolve(host, port, timeout):
        reason = address_refusal(sockaddr[0], settings)
        if reason:
            refused.append(f"{sockaddr[0]} ({reason})")
            continue
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            peer = sock.getpeername()[0]
            reason = address_refusal(peer, settings)
            if reason or ipaddress.ip_address(peer.split("%")[0]) != \
                    ipaddress.ip_address(sockaddr[0].split("%")[0]):
                raise _Failure(REFUSED, f"{host} connected to {peer} ({reason or 'unexpected'})")
            return sock
        except OSError as exc:
            error = exc
            sock.close()
        except _Failure:
            sock.close()
            raise
    if error is not None:
        raise error
    raise _Failure(REFUSED, f"{host} resolves to {', '.join(refused)}: not a public address "
                   "(--allow-private-network or --allow-network opens it)")


def _connection(parts: SplitResult, settings: FetchSettings,
                deadline: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection whose socket comes from _guarded_socket. For HTTPS the TLS
    handshake runs after ``sock`` is set, so the deadline's watchdog can cut it too."""
    https = parts.scheme.lower() == "https"
    # an explicit port: http.client would read the last group of a bare IPv6 host as one
    host, port = parts.hostname or "", parts.port or (443 if https else 80)

    class Guarded(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = _guarded_socket(self.host, self.port, settings, deadline)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    class GuardedTLS(http.client.HTTPSConnection):
        def connect(self) -> None:
            self.sock = _guarded_socket(self.host, self.port, settings, deadline)
            self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
                self.sock, server_hostname=self.host, do_handshake_on_connect=False)
            self.sock.do_handshake()

    if https:
        return GuardedTLS(host, port, timeout=settings.connect_timeout,
                          context=ssl.create_default_context())
    return Guarded(host, port, timeout=settings.connect_timeout)


class _Watchdog:
    """Cuts a connection when its URL's deadline passes. Socket timeouts bound each wait for
    a byte, not a server that sends one byte per wait (headers included): this does."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.fired = False
        self.timer = threading.Timer(max(seconds, 0.0), self._cut)
        self.timer.daemon = True

    def _cut(self) -> None:
        self.fired = True
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # the plain socket's shutdown, TLS or not
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()


def _http_get(parts: SplitResult, settings: FetchSettings,
              deadline: float) -> tuple[int, str | None, _Body]:
    connection = _connection(parts, settings, deadline)
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")  # non-ASCII: %-encoded
    if parts.query:
        target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    total = 0
    watchdog = _Watchdog(connection, deadline - time.monotonic())

    def late(status: int | None = None) -> _Failure:
        return _Failure("deadline", f"over the {settings.url_deadline:g} s deadline for one "
                        f"URL ({total:,} bytes of the body in)", status)

    try:
        with watchdog:
            try:
                connection.connect()
                connection.sock.settimeout(settings.read_timeout)
                connection.request("GET", target, headers={"User-Agent": USER_AGENT,
                                                           "Accept": "image/*"})
                response = connection.getresponse()
            except TimeoutError as exc:
                raise late() if watchdog.fired else \
                    _Failure("timeout", f"no response in time ({exc})") from None
            except OSError as exc:
                raise late() if watchdog.fired else \
                    _Failure("connection_error", f"{exc.__class__.__name__}: {exc}") from None
            except http.client.HTTPException as exc:  # its message may quote what was sent
                raise late() if watchdog.fired else _Failure(
                    "bad_response", f"not a valid HTTP response ({exc.__class__.__name__})"
                ) from None
            status = response.status
            if status in (301, 302, 303, 307, 308):
                return status, response.getheader("Location"), _Body(b"", status)  # unread
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
            chunks = []
            try:
                while True:
                    # read1: what one receive gives; read(n) would wait for all n bytes
                    chunk = response.read1(64 * 1024)
                    if watchdog.fired or time.monotonic() > deadline:
                        raise late(status)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > settings.max_bytes:
                        raise _Failure("too_large", f"more than {settings.max_bytes:,} bytes",
                                       status)
                    chunks.append(chunk)
            except http.client.IncompleteRead as exc:
                raise _Failure("truncated", f"body ended after {total + len(exc.partial):,} "
                               f"of {declared} bytes", status) from None
            except TimeoutError:
                raise late(status) if watchdog.fired else _Failure(
                    "timeout", f"body stalled after {total:,} bytes", status) from None
            except (OSError, http.client.HTTPException) as exc:
                raise late(status) if watchdog.fired else _Failure(
                    "connection_error", f"{exc.__class__.__name__}", status) from None
            if declared and declared.isdigit() and total < int(declared):
                # http.client returns what came when the peer closes early; the length tells
                raise _Failure("truncated", f"body ended after {total:,} of {declared} bytes",
                               status)
            content_type = response.getheader("Content-Type")
            return status, None, _Body(b"".join(chunks), status, content_type)
    finally:
        connection.close()


def _image_format(data: bytes) -> str | None:
    for magic, name in MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def process_image(data: bytes, settings: FetchSettings,
                  content_type: str | None = None) -> tuple[bytes, int, int]:
    """(stored JPEG bytes, width, height of the source); raises _Failure. Its messages
    never quote the data: what a server or a file sends is not copied into the catalog."""
    from PIL import Image

    media = (content_type or "").split(";")[0].strip()
    described = f"{media}, " if MEDIA_TYPE.fullmatch(media) else ""  # a type, never free text
    described += f"{len(data):,} bytes"
    if _image_format(data) is None:
        raise _Failure("not_an_image", f"not an image ({described}): not an image format")
    try:
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            width, height = probe.size
    except Image.DecompressionBombError as exc:  # over Pillow's own cap, before ours is asked
        raise _Failure("too_many_pixels", str(exc)) from None
    except Exception as exc:  # PIL raises many kinds on garbage
        raise _Failure("not_an_image", f"not an image ({described}): its header does not "
                       f"decode ({exc.__class__.__name__})") from None
    if width * height > settings.max_pixels:
        raise _Failure("too_many_pixels", f"{width}x{height} = {width * height:,} pixels > "
                       f"{settings.max_pixels:,}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = image.convert("RGB")
    except Exception as exc:
        raise _Failure("not_an_image", f"not an image ({described}): undecodable "
                       f"({exc.__class__.__name__})") from None
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
    """Fetch, check, resize and store one URL; retries what is worth retrying, within the
    URL's deadline. Always an Outcome: nothing about one URL stops the others."""
    deadline = time.monotonic() + settings.url_deadline
    attempts = 0
    while True:
        attempts += 1
        body: _Body | None = None
        try:
            body = _download(url, settings, deadline)
            stored, width, height = process_image(body.data, settings, body.content_type)
        except _Failure as failure:
            wait = settings.backoff * 2 ** (attempts - 1)
            if (failure.status in RETRIED and attempts <= settings.retries
                    and time.monotonic() + wait < deadline):
                sleep(wait)
                continue
            # a body that came but is no image keeps the HTTP status it came with
            http_status = failure.http_status if body is None else body.http_status
            return Outcome(url, failure.status, http_status, attempts,
                           error=_one_line(str(failure)))
        except Exception as exc:  # unforeseen: this URL's row says so, the fetch goes on
            return Outcome(url, "error", None, attempts,
                           error=_one_line(f"{exc.__class__.__name__}: {exc}", 200))
        digest = hashlib.sha256(stored).hexdigest()
        relative = f"{digest[:2]}/{digest}.jpg"
        target = images_dir / relative
        if not target.exists():
            with atomic_file(target) as tmp:
                tmp.write_bytes(stored)
        return Outcome(url, OK, body.http_status, attempts, len(body.data),
                       hashlib.sha256(body.data).hexdigest(), width, height, relative)


def fetch_block(urls: Sequence[str], images_dir: Path, settings: FetchSettings) -> list[Outcome]:
    """``fetch_one`` over a block of URLs, ``settings.concurrency`` at once: one Ray task's
    work with ``engine="ray"``. Outcomes in the block's order."""
    with ThreadPoolExecutor(max_workers=max(1, min(settings.concurrency, len(urls)))) as pool:
        return list(pool.map(lambda url: fetch_one(url, images_dir, settings), urls))


def _sweep_partial(images_dir: Path) -> None:
    """Remove what a killed writer left half-written: ``atomic_file``'s temporary names
    (``.<sha>.tmp-...``). Only while no writer of ours runs (under the lock, before or
    after the fetches)."""
    for tmp in images_dir.glob("*/.*.tmp-*"):
        tmp.unlink(missing_ok=True)


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
    # sorted and in one chunk: the same results give the same bytes, however they were
    # journalled (in what order, in how many parts, by which engine)
    status = read_status(layout).sort("url").rechunk()
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
    engine: str = "local",
    ray_address: str = "auto",
) -> FetchResult:
    """Fetch every URL not yet ``ok`` (and, with ``retry_failed``, the failed ones again),
    holding the catalog's writer lock. ``file://`` URLs are read under the corpus's own
    folder (``corpus_folders``) and ``settings.allow_file_roots``, nowhere else.
    ``engine="ray"`` runs blocks of ``settings.block_urls`` URLs as Ray tasks (connecting to
    ``ray_address``: ``auto``, ``local`` or an address); the files written are the same."""
    from curation.engine_ray import check_engine  # imports no Ray

    check_engine(engine)
    settings = settings or FetchSettings()
    settings.check()
    catalog = Catalog.of(catalog)
    settings = dataclasses.replace(settings, allow_file_roots=(
        *corpus_folders(catalog), *map(Path, settings.allow_file_roots)))
    with catalog.writing("images fetch"):
        return _fetch_images(catalog, urls, settings, retry_failed, on_result, engine,
                             ray_address)


def _fetch_images(catalog: Catalog, urls: list[str], settings: FetchSettings,
                  retry_failed: bool,
                  on_result: Callable[[Outcome, Counter[str]], None] | None,
                  engine: str, ray_address: str) -> FetchResult:
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
    _sweep_partial(layout.images)  # what a killed fetch left half-written
    journal = _Journal(layout)
    try:
        if engine == "ray":
            from curation.engine_ray import fetch_blocks

            outcomes = fetch_blocks(ray_address, todo, layout.images, settings)
        else:
            outcomes = _fetch_local(todo, layout.images, settings)
        with contextlib.closing(outcomes):  # on an error, the fetches in flight end first
            for outcome in outcomes:
                counts[outcome.status] += 1
                journal.add(outcome)
                if on_result is not None:
                    on_result(outcome, counts)
        _sweep_partial(layout.images)  # a retried Ray task's killed first attempt, say
    finally:
        journal.flush()
        _fold_journal(layout)  # whatever happened, the status file holds what was recorded
    if STATUS_VIEW not in catalog.tables:
        catalog.register({STATUS_VIEW: {"files": [layout.relative(layout.image_status)]}})
    return FetchResult(len(wanted), len(wanted) - len(todo), len(todo), counts,
                       time.perf_counter() - started, layout.image_status)


def _fetch_local(todo: list[str], images_dir: Path,
                 settings: FetchSettings) -> Iterator[Outcome]:
    """The local engine: threads in this process, outcomes as they finish."""
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        pending: set[Future[Outcome]] = set()
        for url in todo:  # keep at most 2x concurrency in flight: a bounded queue
            pending.add(pool.submit(fetch_one, url, images_dir, settings))
            if len(pending) >= 2 * settings.concurrency:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in finished)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in finished)


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
