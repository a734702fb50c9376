"""`curate images fetch` against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from typer.testing import CliRunner

from curate.cli import app
from curation.catalog import Catalog
from curation.clean import clean, silver_shown
from curation.images import (
    FetchSettings,
    address_refusal,
    corpus_folders,
    fetch_images,
    fetch_one,
    read_status,
    resolve_image_paths,
    urls_for,
)
from curation.ingest import ingest
from curation.paths import CatalogLayout
from curation.synth import SynthConfig, synthesize
from curation.synth.image_server import ENDLESS_BYTES, ImageServer
from tests.conftest import serving

# the test server is on 127.0.0.1, which is refused unless opened
SETTINGS = FetchSettings(concurrency=4, connect_timeout=2.0, read_timeout=0.4, retries=2,
                         backoff=0.01, max_bytes=60_000, max_pixels=1_000_000,
                         allow_private_network=True)
FAULTS = {
    "/missing.jpg": "status:404",
    "/flaky.jpg": "flaky:1",
    "/down.jpg": "status:503",
    "/slow.jpg": "slow:1.5",
    "/cut.jpg": "truncate",
    "/page.jpg": "html",
    "/loop.jpg": "redirect:/loop.jpg",
    "/moved.jpg": "redirect:/good-0.jpg",
}
EXPECTED = {
    "missing.jpg": ("http_404", 1),
    "flaky.jpg": ("ok", 2),
    "down.jpg": ("http_5xx", 3),
    "slow.jpg": ("timeout", 3),
    "cut.jpg": ("truncated", 1),
    "page.jpg": ("not_an_image", 1),
    "loop.jpg": ("redirect_loop", 1),
    "moved.jpg": ("ok", 1),
    "big.jpg": ("too_large", 1),
    "bomb.png": ("too_many_pixels", 1),
    "text.jpg": ("not_an_image", 1),
}


def jpeg(width: int, height: int, seed: int, quality: int = 85) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that is all header: it claims width x height pixels and holds none."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def fetch_rows(catalog: Path, urls: list[str], settings: FetchSettings) -> dict[str, dict]:
    """Fetch, then the status row of each URL by its last path segment."""
    fetch_images(catalog, urls, settings)
    status = read_status(CatalogLayout(catalog))
    assert status.height == len(set(urls))
    return {row["url"].rsplit("/", 1)[-1]: row for row in status.iter_rows(named=True)}


def stored_files(catalog: Path) -> list[Path]:
    return sorted((catalog / "images").glob("*/*.jpg"))


@pytest.fixture()
def site(tmp_path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    for i in range(6):
        (root / f"good-{i}.jpg").write_bytes(jpeg(120 + i, 90, i))
    for name in ("flaky.jpg", "cut.jpg", "slow.jpg", "down.jpg"):
        (root / name).write_bytes(jpeg(100, 80, 99))
    (root / "big.jpg").write_bytes(jpeg(400, 400, 7, quality=100))  # > 60,000 bytes
    assert (root / "big.jpg").stat().st_size > SETTINGS.max_bytes
    bomb = io.BytesIO()
    Image.new("L", (2000, 2000), 255).save(bomb, format="PNG")  # 4M pixels, a few KB
    (root / "bomb.png").write_bytes(bomb.getvalue())
    (root / "text.jpg").write_bytes(b"just some text, named like a picture")
    return root


@pytest.fixture()
def catalog(tmp_path) -> Path:
    root = tmp_path / "catalog"
    Catalog.open(root, create=True).save()
    return root


def test_each_fault_ends_with_its_status_and_nothing_else_is_affected(site, catalog):
    with ImageServer(site, FAULTS) as server:
        good = [server.url + f"good-{i}.jpg" for i in range(6)]
        urls = good + [server.url + name for name in EXPECTED] + ["ftp://example.com/a.jpg",
                                                                 site.as_uri() + "/good-1.jpg"]
        result = fetch_images(catalog, urls, dataclasses.replace(SETTINGS,
                                                                 allow_file_roots=(site,)))
        requests = dict(server.requests)
    status = read_status(CatalogLayout(catalog))
    assert status.height == len(urls) and set(status["url"]) == set(urls)  # one row per URL
    by_name = {row["url"].rsplit("/", 1)[-1]: row for row in status.iter_rows(named=True)}
    for name, (expected, attempts) in EXPECTED.items():
        row = by_name[name]
        assert (row["status"], row["attempts"]) == (expected, attempts), (name, row)
        if expected != "ok":
            assert row["path"] is None and row["error"]
    assert requests["/missing.jpg"] == 1  # a 404 is not retried
    assert requests["/down.jpg"] == 3 and requests["/slow.jpg"] == 3  # 5xx, timeouts are
    assert by_name["a.jpg"]["status"] == "bad_scheme"
    assert "'ftp' is not http, https or file" in by_name["a.jpg"]["error"]
    for url in good:
        row = status.filter(pl.col("url") == url).row(0, named=True)
        assert row["status"] == "ok" and row["attempts"] == 1
        stored = catalog / "images" / row["path"]
        with Image.open(stored) as image:
            assert image.format == "JPEG" and image.size == (row["width"], row["height"])
    # content-addressed: the file:// copy of good-1 is the same image, so the same file
    file_row = status.filter(pl.col("url").str.starts_with("file://")).row(0, named=True)
    assert file_row["status"] == "ok"
    assert file_row["path"] == status.filter(pl.col("url") == good[1])["path"][0]
    assert result.counts["ok"] == 6 + 2 + 1  # good, flaky, moved, the file:// one

    # the trainer finds the cached files by URL
    paths = resolve_image_paths([good[0], server.url + "missing.jpg"], CatalogLayout(catalog))
    assert paths[0] is not None and Path(paths[0]).is_file() and paths[1] is None


def test_resizing_keeps_the_shape_and_limits_the_shorter_side(tmp_path, catalog):
    root = tmp_path / "big"
    root.mkdir()
    (root / "wide.jpg").write_bytes(jpeg(1000, 500, 3))
    settings = FetchSettings(resize=256, max_bytes=10_000_000, allow_file_roots=(root,))
    fetch_images(catalog, [(root / "wide.jpg").as_uri()], settings)
    row = read_status(CatalogLayout(catalog)).row(0, named=True)
    with Image.open(catalog / "images" / row["path"]) as image:
        assert image.size == (512, 256)
    assert (row["width"], row["height"]) == (1000, 500)  # the source's size is recorded


def test_a_rerun_skips_what_is_done_and_retry_failed_tries_only_the_failures(site, catalog):
    with ImageServer(site, FAULTS) as server:
        urls = [server.url + f"good-{i}.jpg" for i in range(6)] + [server.url + "missing.jpg"]
        fetch_images(catalog, urls, SETTINGS)
        before = dict(server.requests)
        first = (catalog / "images" / "status.parquet").read_bytes()
        again = fetch_images(catalog, urls, SETTINGS)
        assert again.fetched == 0 and again.skipped == 7
        assert dict(server.requests) == before
        assert (catalog / "images" / "status.parquet").read_bytes() == first  # same bytes
        retried = fetch_images(catalog, urls, SETTINGS, retry_failed=True)
        assert retried.fetched == 1 and retried.counts["http_404"] == 1
        assert server.requests["/missing.jpg"] == before["/missing.jpg"] + 1
        assert all(server.requests[f"/good-{i}.jpg"] == 1 for i in range(6))


def test_a_killed_fetch_resumes_without_fetching_again(tmp_path):
    corpus = tmp_path / "corpus"
    synthesize(corpus, SynthConfig(n_items=120, seed=4, image_base_url="http://placeholder/"))
    with ImageServer(corpus / "images", delay=0.05) as server:
        # the corpus again, now pointing at the server (same seed: the same images)
        synthesize(corpus, SynthConfig(n_items=120, seed=4, image_base_url=server.url))
        catalog = tmp_path / "catalog"
        ingest(str(corpus / "raw"), catalog)
        clean(catalog)
        journal = catalog / "images" / ".journal"
        proc = subprocess.Popen(
            [sys.executable, "-m", "curate", "images", "fetch", "-c", str(catalog),
             "--concurrency", "2", "--allow-private-network"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not list(journal.glob("part-*.parquet")):
                assert proc.poll() is None, "the fetch ended before it could be killed"
                assert time.monotonic() < deadline
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        recorded = read_status(CatalogLayout(catalog))
        done_before = recorded.filter(pl.col("status") == "ok")["url"].to_list()
        assert 0 < len(done_before) < 110
        silver = silver_shown(Catalog.open(catalog))[1]
        rest = fetch_images(catalog, urls_for(silver, False), SETTINGS)
        assert rest.skipped == len(recorded)  # what the killed fetch recorded is not redone
        for url in done_before:  # fetched once, before the kill
            assert server.requests["/" + url.removeprefix(server.url)] == 1
    status = read_status(CatalogLayout(catalog))
    assert not list(journal.glob("part-*.parquet"))  # folded into status.parquet
    assert status.height == rest.wanted and (status["status"] == "ok").all()


def test_stats_and_the_sql_view(site, catalog):
    with ImageServer(site, FAULTS) as server:
        fetch_images(catalog, [server.url + "good-0.jpg", server.url + "missing.jpg"], SETTINGS)
    runner = CliRunner()
    result = runner.invoke(app, ["images", "stats", "-c", str(catalog)])
    assert result.exit_code == 0, result.output
    assert "2 URLs; 1 images stored" in result.output
    assert "http_404" in result.output and "HTTP 404" in result.output
    result = runner.invoke(app, ["sql", "-c", str(catalog), "--format", "csv",
                                 "SELECT status, count(*) AS n FROM image_status GROUP BY 1 "
                                 "ORDER BY 1"])
    assert result.exit_code == 0, result.output
    assert "http_404,1" in result.output and "ok,1" in result.output
    empty = runner.invoke(app, ["images", "stats", "-c", str(site.parent / "nothing")])
    assert empty.exit_code == 2


def test_bad_settings_are_one_line(catalog):
    result = CliRunner().invoke(app, ["images", "fetch", "-c", str(catalog),
                                      "--concurrency", "0"])
    assert result.exit_code == 2 and "--concurrency must be positive" in result.output


# --- each safeguard on its own, against a server that breaks it ------------------------------


def test_the_byte_cap_stops_a_body_while_it_streams(site, catalog):
    """--max-bytes holds without a Content-Length: an endless body is cut off after about the
    cap (the server cannot finish writing it), a declared size over the cap is refused from
    the header before any body comes, and a file:// URL is checked by its size."""
    shutil.copy(site / "big.jpg", site / "unsized-big.jpg")
    shutil.copy(site / "good-0.jpg", site / "unsized-good.jpg")
    faults = {"/endless.jpg": "endless", "/huge.jpg": "huge",
              "/unsized-big.jpg": "nolength", "/unsized-good.jpg": "nolength"}
    with ImageServer(site, faults) as server:
        names = ["endless.jpg", "huge.jpg", "unsized-big.jpg", "unsized-good.jpg"]
        urls = [server.url + name for name in names] + [site.as_uri() + "/big.jpg",
                                                       site.as_uri() + "/absent.jpg"]
        rows = fetch_rows(catalog, urls, dataclasses.replace(SETTINGS, allow_file_roots=(site,)))
        requests, sent = dict(server.requests), dict(server.sent)
    for name in ("endless.jpg", "huge.jpg", "unsized-big.jpg", "big.jpg"):
        row = rows[name]
        assert (row["status"], row["attempts"], row["path"]) == ("too_large", 1, None), row
        assert "60,000" in row["error"]
    assert requests["/endless.jpg"] == requests["/huge.jpg"] == 1  # too_large is not retried
    # the endless body was abandoned after the cap, not read to its end (64 MiB)
    assert 60_000 < sent["/endless.jpg"] < ENDLESS_BYTES // 4
    # the terabyte was refused at its header, not after waiting for a body that never comes
    assert "Content-Length" in rows["huge.jpg"]["error"]
    # without a Content-Length, an image under the cap is read to the end of the connection
    assert rows["unsized-good.jpg"]["status"] == "ok"
    assert rows["unsized-good.jpg"]["source_bytes"] == (site / "good-0.jpg").stat().st_size
    assert rows["absent.jpg"]["status"] == "file_not_found"
    assert len(stored_files(catalog)) == 1


def test_redirects_within_the_cap_are_followed_and_longer_chains_and_loops_are_not(
        site, catalog):
    settings = dataclasses.replace(SETTINGS, max_redirects=3)
    with ImageServer(site) as server:
        server.faults.update({  # three hops to good-0 (the cap), four to good-1 (one too many)
            "/a1.jpg": "redirect:/a2.jpg", "/a2.jpg": f"redirect:{server.url}a3.jpg",
            "/a3.jpg": "redirect:good-0.jpg",
            "/b1.jpg": "redirect:/b2.jpg", "/b2.jpg": "redirect:/b3.jpg",
            "/b3.jpg": "redirect:/b4.jpg", "/b4.jpg": "redirect:/good-1.jpg",
            "/ping.jpg": "redirect:/pong.jpg", "/pong.jpg": "redirect:/ping.jpg",
            "/local.jpg": f"redirect:{site.as_uri()}/good-2.jpg",  # a server may not read files
        })
        rows = fetch_rows(catalog, [server.url + n for n in
                                    ("a1.jpg", "b1.jpg", "ping.jpg", "local.jpg")], settings)
        requests = dict(server.requests)
    expected = {"a1.jpg": ("ok", 200), "b1.jpg": ("too_many_redirects", None),
                "ping.jpg": ("redirect_loop", 302), "local.jpg": ("bad_scheme", None)}
    for name, (status, http_status) in expected.items():
        row = rows[name]
        assert (row["status"], row["http_status"], row["attempts"]) == (status, http_status, 1)
    assert rows["a1.jpg"]["width"] == 120  # good-0, at the end of the chain
    assert all(requests[f"/a{i}.jpg"] == 1 for i in (1, 2, 3)) and requests["/good-0.jpg"] == 1
    assert all(requests[f"/b{i}.jpg"] == 1 for i in (1, 2, 3, 4))
    assert "/good-1.jpg" not in requests  # the fifth request was never made
    assert requests["/ping.jpg"] == requests["/pong.jpg"] == 1  # the loop is seen, not run
    assert "/good-2.jpg" not in requests and len(stored_files(catalog)) == 1


def test_429_is_retried_with_exponential_backoff(site, catalog):
    settings = dataclasses.replace(SETTINGS, retries=3, backoff=0.05)
    shutil.copy(site / "good-0.jpg", site / "busy.jpg")
    faults = {"/busy.jpg": "flaky:2:429", "/limited.jpg": "status:429"}
    with ImageServer(site, faults) as server:
        rows = fetch_rows(catalog, [server.url + "busy.jpg", server.url + "limited.jpg"],
                          settings)
        requests, times = dict(server.requests), dict(server.times)
    assert (rows["busy.jpg"]["status"], rows["busy.jpg"]["attempts"]) == ("ok", 3)
    limited = rows["limited.jpg"]
    assert (limited["status"], limited["http_status"], limited["attempts"]) == ("http_429", 429, 4)
    assert requests["/limited.jpg"] == 4 and requests["/busy.jpg"] == 3  # retries + 1 at most
    # the waits the server saw between attempts: backoff, then doubling
    gaps = np.diff(times["/limited.jpg"])
    assert (gaps >= 0.95 * settings.backoff * 2.0 ** np.arange(3)).all(), gaps
    assert (np.diff(times["/busy.jpg"]) >= 0.95 * settings.backoff * 2.0 ** np.arange(2)).all()


def test_connection_errors_are_retried_and_4xx_are_not(site, catalog):
    shutil.copy(site / "good-0.jpg", site / "reset-once.jpg")
    faults = {"/reset.jpg": "reset", "/reset-once.jpg": "reset:1",
              "/forbidden.jpg": "status:403", "/gone.jpg": "status:410"}
    with ImageServer(site, faults) as server, socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: a connection is refused
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}/nobody.jpg"
        urls = [server.url + n for n in ("reset.jpg", "reset-once.jpg", "forbidden.jpg",
                                         "gone.jpg", "missing.jpg")] + [nobody]
        rows = fetch_rows(catalog, urls, SETTINGS)
        requests = dict(server.requests)
    expected = {"reset.jpg": ("connection_error", 3), "nobody.jpg": ("connection_error", 3),
                "reset-once.jpg": ("ok", 2), "forbidden.jpg": ("http_4xx", 1),
                "gone.jpg": ("http_404", 1), "missing.jpg": ("http_404", 1)}
    for name, (status, attempts) in expected.items():
        row = rows[name]
        assert (row["status"], row["attempts"]) == (status, attempts), row
    assert requests["/reset.jpg"] == 3 and requests["/reset-once.jpg"] == 2
    assert requests["/forbidden.jpg"] == requests["/gone.jpg"] == requests["/missing.jpg"] == 1
    assert rows["forbidden.jpg"]["http_status"] == 403


def test_a_body_that_stalls_and_a_connection_that_never_opens_time_out(site, catalog):
    settings = dataclasses.replace(SETTINGS, retries=1, connect_timeout=0.3, read_timeout=0.3)
    shutil.copy(site / "good-0.jpg", site / "stall.jpg")
    with ImageServer(site, {"/stall.jpg": "stall:3"}) as server:
        rows = fetch_rows(catalog, [server.url + "stall.jpg"], settings)
        assert server.requests["/stall.jpg"] == 2
    assert (rows["stall.jpg"]["status"], rows["stall.jpg"]["attempts"]) == ("timeout", 2)
    assert "stalled" in rows["stall.jpg"]["error"]

    # a listener whose backlog is full: the kernel drops further SYNs, connect() hangs
    with socket.socket() as full, socket.socket() as filler:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        filler.connect(full.getsockname())
        outcome: list = []
        url = f"http://127.0.0.1:{full.getsockname()[1]}/never.jpg"
        worker = threading.Thread(target=lambda: outcome.append(
            fetch_one(url, catalog / "images", settings)), daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "connect() was not bounded by the connect timeout"
    assert (outcome[0].status, outcome[0].attempts) == ("timeout", 2)


def test_only_images_are_stored_whatever_the_content_type(site, catalog):
    """Magic bytes first, then a header-only pixel count, then a full decode: a TIFF is not
    one of the accepted formats, a bomb is refused from its header (these PNGs have no pixel
    data, so decoding them would fail differently), a JPEG cut short does not decode."""
    tiff = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tiff, format="TIFF")
    (site / "photo.jpg").write_bytes(tiff.getvalue())
    (site / "wide.png").write_bytes(png_header(2000, 2000))  # 4M pixels > 1M, Pillow opens it
    (site / "vast.png").write_bytes(png_header(20_000, 10_000))  # 200M: past Pillow's own cap
    whole = (site / "good-3.jpg").read_bytes()
    (site / "half.jpg").write_bytes(whole[: len(whole) // 2])  # served whole, as it is
    with ImageServer(site) as server:
        rows = fetch_rows(catalog, [server.url + n for n in
                                    ("photo.jpg", "wide.png", "vast.png", "half.jpg")], SETTINGS)
    expected = {"photo.jpg": "not_an_image", "wide.png": "too_many_pixels",
                "vast.png": "too_many_pixels", "half.jpg": "not_an_image"}
    assert {name: row["status"] for name, row in rows.items()} == expected
    assert "not an image format" in rows["photo.jpg"]["error"]
    assert "2000x2000" in rows["wide.png"]["error"]
    assert all(row["attempts"] == 1 and row["path"] is None for row in rows.values())
    assert stored_files(catalog) == []


def test_a_cached_file_that_is_gone_is_fetched_again_and_nothing_else(site, catalog):
    with ImageServer(site) as server:
        urls = [server.url + f"good-{i}.jpg" for i in range(3)]
        fetch_images(catalog, urls, SETTINGS)
        first = {row["url"]: row["path"] for row in
                 read_status(CatalogLayout(catalog)).iter_rows(named=True)}
        (catalog / "images" / first[urls[0]]).unlink()
        again = fetch_images(catalog, urls, SETTINGS)
        requests = dict(server.requests)
    assert (again.fetched, again.skipped, again.counts["ok"]) == (1, 2, 1)
    assert requests == {"/good-0.jpg": 2, "/good-1.jpg": 1, "/good-2.jpg": 1}
    assert (catalog / "images" / first[urls[0]]).is_file()


def test_concurrency_is_bounded(site, catalog):
    settings = dataclasses.replace(SETTINGS, concurrency=2)
    with ImageServer(site, delay=0.05) as server:
        result = fetch_images(catalog, [server.url + f"good-{i}.jpg" for i in range(6)],
                              settings)
        assert server.max_in_flight <= 2
    assert result.counts["ok"] == 6


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """The tests talk to 127.0.0.1 only."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    os.environ.setdefault("NO_PROXY", "127.0.0.1")


# --- safe by default: what the metadata may not make a fetch do --------------------------------

PUBLIC_ONLY = dataclasses.replace(SETTINGS, allow_private_network=False)  # the default's policy


def leaks(error: str | None, *secrets: str) -> list[str]:
    return [s for s in secrets if error and s.lower() in error.lower()]


def test_file_urls_are_read_only_under_the_corpus_folder_or_an_allowed_root(tmp_path):
    """The corpus folder comes from the catalog's sources (CORPUS/raw/meta_categories/...):
    synth's own file:// image URLs work out of the box, through the CLI too; /etc/passwd, an
    image elsewhere, a ``..`` way out and a link out of the corpus are refused without being
    read (a refusal does not even say whether the file exists)."""
    corpus, catalog = tmp_path / "corpus", tmp_path / "catalog"
    synthesize(corpus, SynthConfig(n_items=30, seed=2))
    ingest(str(corpus / "raw"), catalog)
    assert corpus_folders(Catalog.open(catalog)) == [corpus.resolve()]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.jpg").write_bytes(jpeg(64, 48, 1))
    inside = sorted((corpus / "images").glob("*/*.jpg"))[0]
    (corpus / "images" / "link.jpg").symlink_to(elsewhere / "photo.jpg")
    urls = {
        "inside": inside.as_uri(),
        "passwd": "file:///etc/passwd",
        "absent": "file:///etc/no-such-file-here",
        "outside": (elsewhere / "photo.jpg").as_uri(),
        "dotdot": corpus.as_uri() + "/images/../../elsewhere/photo.jpg",
        "link": (corpus / "images" / "link.jpg").as_uri(),
        "host": "file://otherhost/etc/passwd",
    }
    fetch_images(catalog, list(urls.values()), PUBLIC_ONLY)
    rows = {row["url"]: row for row in read_status(CatalogLayout(catalog)).iter_rows(named=True)}
    got = {name: rows[url]["status"] for name, url in urls.items()}
    assert got == {"inside": "ok", "passwd": "refused", "absent": "refused",
                   "outside": "refused", "dotdot": "refused", "link": "refused",
                   "host": "bad_url"}
    passwd = rows[urls["passwd"]]
    assert "outside the corpus folder" in passwd["error"] and str(corpus) in passwd["error"]
    assert passwd["source_bytes"] is None and passwd["path"] is None
    assert not leaks(passwd["error"], "root:", "/bin/", "nologin")
    assert len(stored_files(catalog)) == 1

    # --allow-file-root opens that folder (and only it) to a retry
    opened = dataclasses.replace(PUBLIC_ONLY, allow_file_roots=(elsewhere,))
    fetch_images(catalog, list(urls.values()), opened, retry_failed=True)
    rows = {row["url"]: row for row in read_status(CatalogLayout(catalog)).iter_rows(named=True)}
    assert rows[urls["outside"]]["status"] == rows[urls["link"]]["status"] == "ok"
    assert rows[urls["dotdot"]]["status"] == "ok"  # it resolves into the allowed folder
    assert rows[urls["passwd"]]["status"] == "refused"

    # the CLI, with its defaults: every silver item's synth image is corpus-local, so fetched
    clean(catalog)
    result = CliRunner().invoke(app, ["images", "fetch", "-c", str(catalog)])
    assert result.exit_code == 0, result.output
    silver = read_status(CatalogLayout(catalog)).filter(
        pl.col("url").is_in(urls_for(silver_shown(Catalog.open(catalog))[1], False)))
    assert silver.height > 0 and (silver["status"] == "ok").all()


@pytest.mark.parametrize(("address", "refusal"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("10.1.2.3", "private"),
    ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "link-local"),
    ("224.0.0.251", "multicast"), ("0.0.0.0", "unspecified"), ("240.0.0.1", "private"),
    ("255.255.255.255", "private"), ("100.64.0.1", "not-global"), ("192.0.2.1", "private"),
    ("::1", "loopback"), ("::", "unspecified"), ("fe80::1%lo", "link-local"),
    ("fc00::1", "private"), ("ff02::1", "multicast"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"), ("::ffff:10.0.0.1", "private"),
    ("2002:7f00:1::1", "loopback"), ("2002:a9fe:a9fe::1", "link-local"),
    ("::127.0.0.1", "reserved"),
    ("8.8.8.8", None), ("93.184.216.34", None), ("2606:4700::1111", None),
    ("::ffff:8.8.8.8", None),
])
def test_address_refusal_judges_each_kind_of_address(address, refusal):
    assert address_refusal(address, FetchSettings()) == refusal
    assert address_refusal(address, FetchSettings(allow_private_network=True)) is None
    narrow = FetchSettings(allow_networks=("127.0.0.1/32", "169.254.169.254"))
    opened = address in ("127.0.0.1", "169.254.169.254", "::ffff:127.0.0.1",  # v4 inside v6
                         "::ffff:169.254.169.254", "2002:7f00:1::1", "2002:a9fe:a9fe::1")
    assert address_refusal(address, narrow) == (None if opened else refusal)


def test_a_local_address_is_refused_by_default_and_fetched_when_opened(site, catalog):
    with ImageServer(site) as server:
        port = server.httpd.server_address[1]
        urls = [server.url + "good-0.jpg", f"http://localhost:{port}/good-1.jpg",
                f"http://[::1]:{port}/good-2.jpg", f"http://0.0.0.0:{port}/good-3.jpg",
                f"http://[::ffff:127.0.0.1]:{port}/good-4.jpg", "http://[::1]/good-5.jpg"]
        rows = fetch_rows(catalog, urls, PUBLIC_ONLY)
        assert dict(server.requests) == {}  # nothing reached the server
        assert {name: row["status"] for name, row in rows.items()} == {
            f"good-{i}.jpg": "refused" for i in range(6)}
        assert "::1 (loopback)" in rows["good-5.jpg"]["error"]  # a bare IPv6 host, port 80
        assert "127.0.0.1 (loopback)" in rows["good-0.jpg"]["error"]
        assert "--allow-private-network" in rows["good-0.jpg"]["error"]
        assert "0.0.0.0 (unspecified)" in rows["good-3.jpg"]["error"]

        # opened by the flag, or by naming the one network
        fetch_images(catalog, urls[:2], SETTINGS, retry_failed=True)
        narrow = dataclasses.replace(PUBLIC_ONLY, allow_networks=("127.0.0.1",))
        fetch_images(catalog, urls[4:5], narrow, retry_failed=True)  # mapped: judged as v4
        requests = dict(server.requests)
    rows = {row["url"]: row for row in read_status(CatalogLayout(catalog)).iter_rows(named=True)}
    assert [rows[url]["status"] for url in urls] == ["ok", "ok", "refused", "refused", "ok",
                                                      "refused"]
    assert requests == {"/good-0.jpg": 1, "/good-1.jpg": 1, "/good-4.jpg": 1}


def test_every_redirect_hop_is_checked_at_the_address_connected_to(site, catalog):
    """The first hop's 127.0.0.1 is opened by --allow-network 127.0.0.1, nothing else: a
    redirect to another loopback server (127.0.0.2, which is listening), to the cloud
    metadata address, to ::1 or to a mapped ::ffff:127.0.0.2 is refused before any
    connection, while a redirect on the same host is followed."""
    opened = dataclasses.replace(PUBLIC_ONLY, allow_networks=("127.0.0.1/32",))
    with ImageServer(site) as first, ImageServer(site, host="127.0.0.2") as other:
        port = other.httpd.server_address[1]
        first.faults.update({
            "/to-other.jpg": f"redirect:{other.url}good-0.jpg",
            "/to-metadata.jpg": "redirect:http://169.254.169.254/latest/meta-data/",
            "/to-v6.jpg": f"redirect:http://[::1]:{port}/good-0.jpg",
            "/to-mapped.jpg": f"redirect:http://[::ffff:127.0.0.2]:{port}/good-0.jpg",
            "/to-same.jpg": "redirect:/good-1.jpg",
        })
        rows = fetch_rows(catalog, [first.url + n for n in (
            "to-other.jpg", "to-metadata.jpg", "to-v6.jpg", "to-mapped.jpg", "to-same.jpg")],
            opened)
        assert dict(other.requests) == {}  # the listening server behind the hop saw nothing
        assert all(count == 1 for count in first.requests.values())
    assert {name: row["status"] for name, row in rows.items()} == {
        "to-other.jpg": "refused", "to-metadata.jpg": "refused", "to-v6.jpg": "refused",
        "to-mapped.jpg": "refused", "to-same.jpg": "ok"}
    assert "127.0.0.2 (loopback)" in rows["to-other.jpg"]["error"]
    assert "169.254.169.254 (link-local)" in rows["to-metadata.jpg"]["error"]


def test_malformed_urls_are_bad_url_rows_and_the_rest_is_fetched(site, catalog):
    with ImageServer(site, {"/to-bad.jpg": "redirect:http://127.0.0.1:99999/x.jpg"}) as server:
        bad = ["http://exa mple.com/a.jpg", "http://127.0.0.1:99999/a.jpg", "http:///a.jpg",
               "http://[::1/a.jpg", "no-scheme.jpg", server.url + "a b.jpg",
               "http://example.com:abc/a.jpg", "http://127.0.0.1:0/a.jpg",
               server.url + "to-bad.jpg"]
        good = [server.url + f"good-{i}.jpg" for i in range(3)]
        result = fetch_images(catalog, bad + good + ["gopher://example.com/a.jpg"], SETTINGS)
    status = read_status(CatalogLayout(catalog))
    assert (catalog / "images" / "status.parquet").is_file()
    assert status.height == len(bad) + len(good) + 1
    rows = {row["url"]: row for row in status.iter_rows(named=True)}
    assert [rows[url]["status"] for url in bad] == ["bad_url"] * len(bad)
    assert all(rows[url]["status"] == "ok" for url in good)
    assert rows["gopher://example.com/a.jpg"]["status"] == "bad_scheme"
    assert "out of range" in rows["http://127.0.0.1:99999/a.jpg"]["error"]
    assert "redirected" in rows[server.url + "to-bad.jpg"]["error"]
    assert result.counts == {"bad_url": len(bad), "ok": 3, "bad_scheme": 1}


def test_a_server_sending_a_byte_at_a_time_is_cut_at_the_url_deadline(site, catalog):
    """Each byte comes well within the read timeout (2 s); the deadline (1 s) ends the URL
    all the same, whether the bytes trickle in the body or in the headers, and retries stop
    when their wait would pass it."""
    settings = dataclasses.replace(SETTINGS, read_timeout=2.0, url_deadline=1.0, retries=5,
                                   backoff=0.4)
    faults = {"/drip.jpg": "trickle:0.1", "/drip-head.jpg": "trickle-head:0.1",
              "/down.jpg": "status:503"}
    with ImageServer(site, faults) as server:
        started = time.monotonic()
        rows = fetch_rows(catalog, [server.url + n for n in faults], settings)
        seconds = time.monotonic() - started
        sent = dict(server.sent)
    assert 1.0 <= seconds < 2.5, seconds
    for name in ("drip.jpg", "drip-head.jpg"):
        assert (rows[name]["status"], rows[name]["attempts"]) == ("deadline", 1), rows[name]
        assert "1 s deadline" in rows[name]["error"]
        assert 3 <= sent["/" + name] < 20  # it was trickling, and was left mid-way
    # 503, wait 0.4 s, 503, the next wait (0.8 s) would end past the deadline: no third try
    assert (rows["down.jpg"]["status"], rows["down.jpg"]["attempts"]) == ("http_5xx", 2)


def test_errors_never_quote_what_a_non_image_sent(site, catalog):
    (site / "secret.jpg").write_bytes(b"password=hunter2 and more text")
    with socket.socket() as banner:  # not HTTP at all: a service's greeting
        banner.bind(("127.0.0.1", 0))
        banner.listen(4)

        def greet() -> None:
            for _ in range(3):
                with contextlib.suppress(OSError):
                    peer, _ = banner.accept()
                    peer.sendall(b"SSH-2.0-OpenSSH_9.6 secret-banner\r\n\r\n")
                    peer.close()

        threading.Thread(target=greet, daemon=True).start()
        service = f"http://127.0.0.1:{banner.getsockname()[1]}/service.jpg"
        with ImageServer(site, {"/page.jpg": "html"}) as server:
            rows = fetch_rows(catalog, [server.url + "page.jpg", server.url + "secret.jpg",
                                        service], SETTINGS)
    assert rows["page.jpg"]["error"] == "not an image (image/jpeg, 48 bytes): not an image format"
    assert rows["secret.jpg"]["error"] == ("not an image (image/jpeg, 30 bytes): not an image "
                                           "format")
    assert rows["service.jpg"]["status"] == "bad_response"
    for row in rows.values():
        assert not leaks(row["error"], "sign in", "doctype", "hunter2", "password", "OpenSSH",
                         "banner"), row


def test_the_safety_options_have_help_and_bad_values_are_one_line(catalog):
    runner = CliRunner()
    result = runner.invoke(app, ["images", "fetch", "--help"], env={"COLUMNS": "200"})
    for option in ("--allow-file-root", "--allow-private-network", "--allow-network",
                   "--url-deadline"):
        assert option in result.output
    for args, message in ((["--allow-network", "intranet"], "--allow-network 'intranet' is not"),
                          (["--url-deadline", "0"], "--url-deadline must be positive")):
        result = runner.invoke(app, ["images", "fetch", "-c", str(catalog), *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_the_cli_defaults_are_the_library_defaults():
    """One place for each default: every fetch option the CLI shares with FetchSettings has
    the same default there (the safe ones included)."""
    import inspect

    from curate.images import images_fetch

    cli = inspect.signature(images_fetch).parameters
    library = {f.name: f.default for f in dataclasses.fields(FetchSettings)}
    shared = set(cli) & set(library)
    assert {"url_deadline", "allow_private_network", "read_timeout"} <= shared
    assert {name: cli[name].default for name in shared} == {name: library[name]
                                                             for name in shared}
    assert cli["allow_file_root"].default is None and cli["allow_network"].default is None
    assert library["allow_file_roots"] == library["allow_networks"] == ()


def test_why_a_file_is_not_an_image_is_named_from_its_magic_or_its_decoding(tmp_path):
    """No known magic bytes or known magic with no image behind it: not an image, said
    without quoting a byte of it. A WEBP is an image, another RIFF file (a WAVE) is not."""
    files = {
        "text.jpg": b"just some text, named like a picture",
        "fake.png": b"\x89PNG\r\n\x1a\n" + b"not a png at all" * 4,
        "sound.webp": b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32),
    }
    picture = io.BytesIO()
    Image.fromarray(np.full((30, 40, 3), 90, dtype=np.uint8)).save(picture, format="WEBP")
    files["photo.webp"] = picture.getvalue()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    settings = dataclasses.replace(SETTINGS, retries=0, allow_file_roots=(tmp_path,))
    out = {name: fetch_one((tmp_path / name).as_uri(), tmp_path / "images", settings)
           for name in files}
    assert {name: o.status for name, o in out.items()} == {
        "text.jpg": "not_an_image", "fake.png": "not_an_image", "sound.webp": "not_an_image",
        "photo.webp": "ok"}
    assert out["text.jpg"].error == "not an image (36 bytes): not an image format"
    assert out["sound.webp"].error.endswith(": not an image format")
    assert out["fake.png"].error.startswith("not an image (") and "not a png" not in \
        out["fake.png"].error
    assert (out["photo.webp"].width, out["photo.webp"].height) == (40, 30)


def test_an_image_of_exactly_max_pixels_is_kept_and_one_pixel_more_is_not(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg(100, 80, 1))
    url = (tmp_path / "a.jpg").as_uri()
    at_cap = dataclasses.replace(SETTINGS, max_pixels=8000, allow_file_roots=(tmp_path,))
    assert fetch_one(url, tmp_path / "images", at_cap).status == "ok"
    below = dataclasses.replace(at_cap, max_pixels=7999)
    refused = fetch_one(url, tmp_path / "images", below)
    assert refused.status == "too_many_pixels" and "100x80 = 8,000 pixels > 7,999" in refused.error


def test_resizing_to_one_pixel_keeps_the_shape(tmp_path):
    from curation.images import process_image

    stored, width, height = process_image(jpeg(4, 2, 5), dataclasses.replace(SETTINGS, resize=1))
    assert (width, height) == (4, 2)  # the source's size
    with Image.open(io.BytesIO(stored)) as image:
        assert image.size == (2, 1)


def test_an_https_url_whose_server_does_not_speak_tls_is_a_connection_error(site, catalog):
    with ImageServer(site) as server:
        url = server.url.replace("http://", "https://", 1) + "good-0.jpg"
        outcome = fetch_one(url, catalog / "images", dataclasses.replace(SETTINGS, retries=0))
    assert outcome.status == "connection_error" and outcome.path is None
    assert "SSL" in outcome.error


def test_every_redirect_status_is_followed(tmp_path, catalog):
    import hashlib
    from http.server import BaseHTTPRequestHandler

    body = jpeg(50, 40, 2)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/img.jpg":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(int(self.path.strip("/r")))
            self.send_header("Location", "/img.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    with serving(Handler) as base:
        out = {code: fetch_one(f"{base}/r{code}", catalog / "images", SETTINGS)
               for code in (301, 302, 303, 307, 308)}
    assert {code: (o.status, o.http_status) for code, o in out.items()} == {
        code: ("ok", 200) for code in out}
    # content-addressed: images/<sha[:2]>/<sha>.jpg, the SHA-256 of the stored JPEG
    stored = (catalog / "images" / out[301].path).read_bytes()
    digest = hashlib.sha256(stored).hexdigest()
    assert out[301].path == f"{digest[:2]}/{digest}.jpg"
    assert out[301].source_sha256 == hashlib.sha256(body).hexdigest()


def test_a_body_of_exactly_max_bytes_is_kept_and_one_byte_more_is_not(site, catalog):
    data = jpeg(60, 50, 4) + b"\0" * 100  # bytes after a JPEG's end are ignored by decoders
    (site / "exact.jpg").write_bytes(data)
    with ImageServer(site) as server:
        for url in (server.url + "exact.jpg", (site / "exact.jpg").as_uri()):
            at_cap = dataclasses.replace(SETTINGS, max_bytes=len(data), allow_file_roots=(site,))
            assert fetch_one(url, catalog / "images", at_cap).status == "ok"
            under = dataclasses.replace(at_cap, max_bytes=len(data) - 1)
            assert fetch_one(url, catalog / "images", under).status == "too_large"


def test_resize_zero_keeps_the_size(tmp_path):
    from curation.images import process_image

    settings = dataclasses.replace(SETTINGS, resize=0)
    settings.check()  # 0 is allowed: it means no resizing
    stored, width, height = process_image(jpeg(300, 200, 6), settings)
    with Image.open(io.BytesIO(stored)) as image:
        assert image.size == (width, height) == (300, 200)


def test_a_url_with_a_query_is_requested_with_its_path_and_its_query(catalog):
    """Image hosts often tell sizes or versions apart by the query: the server must be asked
    for the path and the query, as the URL has them."""
    from http.server import BaseHTTPRequestHandler

    body = jpeg(60, 40, 8)
    wanted = "/img/a.jpg?v=2&size=large"
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            found = self.path == wanted
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    with serving(Handler) as base:
        outcome = fetch_one(f"{base}{wanted}", catalog / "images",
                            dataclasses.replace(SETTINGS, retries=0))
    assert seen == [wanted]
    assert (outcome.status, outcome.http_status, outcome.error) == ("ok", 200, None)


@pytest.mark.parametrize("option,shown", [
    ("--concurrency", "0"), ("--connect-timeout", "0.0"), ("--read-timeout", "0.0"),
    ("--max-bytes", "0"), ("--max-pixels", "0"), ("--url-deadline", "0.0"),
])
def test_each_setting_that_must_be_positive_is_named_in_its_one_line(catalog, option, shown):
    result = CliRunner().invoke(app, ["images", "fetch", "-c", str(catalog), option, "0"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {option} must be positive, got {shown}"]
