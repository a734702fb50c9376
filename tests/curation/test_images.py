"""`curate images fetch` against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from typer.testing import CliRunner

from curate.cli import app
from curation.catalog import Catalog
from curation.clean import clean, silver_shown
from curation.images import FetchSettings, fetch_images, read_status, resolve_image_paths, urls_for
from curation.ingest import ingest
from curation.paths import CatalogLayout
from curation.synth import SynthConfig, synthesize
from curation.synth.image_server import ImageServer

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


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """The tests talk to 127.0.0.1 only."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    os.environ.setdefault("NO_PROXY", "127.0.0.1")
