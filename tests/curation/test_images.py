"""`curate images fetch` against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

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

SETTINGS = FetchSettings(concurrency=4, connect_timeout=2.0, read_timeout=0.4, retries=2,
                         backoff=0.01, max_bytes=60_000, max_pixels=1_000_000)
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
        result = fetch_images(catalog, urls, SETTINGS)
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
    settings = FetchSettings(resize=256, max_bytes=10_000_000)
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
             "--concurrency", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        rows = fetch_rows(catalog, urls, SETTINGS)
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


def test_why_a_file_is_not_an_image_is_named_from_its_magic_or_its_decoding(tmp_path):
    """No known magic bytes: the first 16 bytes are shown. Known magic but no image behind
    it: Pillow's complaint. A WEBP is an image, another RIFF file (a WAVE) is not."""
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
    settings = dataclasses.replace(SETTINGS, retries=0)
    out = {name: fetch_one((tmp_path / name).as_uri(), tmp_path / "images", settings)
           for name in files}
    assert {name: o.status for name, o in out.items()} == {
        "text.jpg": "not_an_image", "fake.png": "not_an_image", "sound.webp": "not_an_image",
        "photo.webp": "ok"}
    assert out["text.jpg"].error == "starts with 'just some text, ', not an image format"
    assert out["sound.webp"].error.endswith(", not an image format")
    assert out["fake.png"].error.startswith("undecodable: ")
    assert (out["photo.webp"].width, out["photo.webp"].height) == (40, 30)


def test_an_image_of_exactly_max_pixels_is_kept_and_one_pixel_more_is_not(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg(100, 80, 1))
    url = (tmp_path / "a.jpg").as_uri()
    at_cap = dataclasses.replace(SETTINGS, max_pixels=8000)
    assert fetch_one(url, tmp_path / "images", at_cap).status == "ok"
    below = dataclasses.replace(SETTINGS, max_pixels=7999)
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
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        out = {code: fetch_one(f"{base}/r{code}", catalog / "images", SETTINGS)
               for code in (301, 302, 303, 307, 308)}
    finally:
        server.shutdown()
        server.server_close()
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
            at_cap = dataclasses.replace(SETTINGS, max_bytes=len(data))
            assert fetch_one(url, catalog / "images", at_cap).status == "ok"
            under = dataclasses.replace(SETTINGS, max_bytes=len(data) - 1)
            assert fetch_one(url, catalog / "images", under).status == "too_large"


def test_resize_zero_keeps_the_size(tmp_path):
    from curation.images import process_image

    settings = dataclasses.replace(SETTINGS, resize=0)
    settings.check()  # 0 is allowed: it means no resizing
    stored, width, height = process_image(jpeg(300, 200, 6), settings)
    with Image.open(io.BytesIO(stored)) as image:
        assert image.size == (width, height) == (300, 200)
