"""``curate images fetch --engine ray`` on a real local Ray cluster against the real image
server on 127.0.0.1: the local engine's files, byte for byte, even when a task's worker dies."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curation.images import fetch_images, read_status
from curation.paths import CatalogLayout
from curation.synth.image_server import ImageServer
from tests.curation import test_images
from tests.curation.test_images import FAULTS, SETTINGS, jpeg

ray = pytest.importorskip("ray")
from tests.curation import test_ingest_ray  # noqa: E402 (only with Ray)

# the fixtures of the fetch tests and of the Ray ingest test, shared rather than copied
site, _no_proxy = test_images.site, test_images._no_proxy
ray_cluster = test_ingest_ray.ray_cluster

pytestmark = pytest.mark.slow

# blocks of 4 URLs: several tasks on the 2 CPUs, and the two URLs of one image in two blocks
RAY_SETTINGS = dataclasses.replace(SETTINGS, block_urls=4)
# ok, 404, truncated, an HTML page and a text that are not images, a redirect loop
FAILING = ("missing.jpg", "cut.jpg", "page.jpg", "text.jpg", "loop.jpg")


def _urls(server: ImageServer, site: Path) -> list[str]:
    good = [server.url + f"extra-{i}.jpg" for i in range(10)] + [server.url + "die.jpg"]
    return (good + [server.url + name for name in FAILING]
            + [site.as_uri() + "/extra-3.jpg",  # the same image as an http URL: one file
               "file:///etc/passwd",  # outside the allowed folders: refused
               "ftp://example.com/a.jpg"])  # bad_scheme


def _add_images(site: Path) -> None:
    for i in range(10):
        (site / f"extra-{i}.jpg").write_bytes(jpeg(90 + i, 70, 100 + i))
    (site / "die.jpg").write_bytes(jpeg(64, 64, 200))


def _images(catalog: Path) -> dict[str, str]:
    """Every file under images/ (status.parquet included; hidden ones too) by its SHA-256."""
    return {str(p.relative_to(catalog)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((catalog / "images").rglob("*")) if p.is_file()}


def _peer_pid(client_port: int, server_port: int) -> int | None:
    """The process holding the client end of a TCP connection to this machine's server (from
    /proc: the socket's inode, then whose file descriptor it is)."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
                if (local, remote) == (client_port, server_port):
                    sockets.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                for fd in (proc / "fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) in sockets:
                            return int(proc.name)
    return None


class KillingServer(ImageServer):
    """The image server; once ``armed``, the first request for /die.jpg kills (SIGKILL) the
    process that sent it, a Ray worker: the task running that block dies half way, as on a
    lost node."""

    def __init__(self, *args, **kwargs) -> None:
        self.armed = False
        self.killed: list[int] = []
        super().__init__(*args, **kwargs)

    def _handler(self):
        base, server = super()._handler(), self

        class Handler(base):  # type: ignore[misc,valid-type]
            def do_GET(self) -> None:
                if self.path == "/die.jpg" and server.armed and not server.killed:
                    pid = _peer_pid(self.client_address[1], server.httpd.server_address[1])
                    if pid is not None and pid != os.getpid():  # never the test itself
                        server.killed.append(pid)
                        os.kill(pid, signal.SIGKILL)
                        self.close_connection = True
                        return
                super().do_GET()

        return Handler


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="finds the worker in /proc")
def test_ray_fetch_writes_the_local_fetchs_bytes_even_when_a_worker_dies(
        ray_cluster, site, tmp_path):
    """The same URLs (ok ones, failing ones of seven kinds, two URLs of one image) fetched
    into fresh catalogs by the local engine, by Ray, and by Ray with a worker killed while
    its block runs: every image file, status.parquet and catalog.json are byte-identical;
    the killed block was run again and left no duplicate or half-written file."""
    from curation.catalog import Catalog

    _add_images(site)
    settings = dataclasses.replace(RAY_SETTINGS, allow_file_roots=(site,))
    roots = {name: tmp_path / name for name in ("local", "ray", "killed")}
    for root in roots.values():
        Catalog.open(root, create=True).save()
    # one server, so the same URLs; the faults used answer the same every time
    with KillingServer(site, FAULTS) as server:
        urls = _urls(server, site)
        fetch_images(roots["local"], urls, settings)
        fetch_images(roots["ray"], urls, settings, engine="ray")
        before = dict(server.requests)
        server.armed = True
        # what a writer killed mid-write leaves (atomic_file's temporary name): swept
        half = roots["killed"] / "images" / "ab" / f".ab{'0' * 62}.tmp-1-deadbeef.jpg"
        half.parent.mkdir(parents=True)
        half.write_bytes(jpeg(64, 64, 1)[:100])
        seen: list[str] = []
        result = fetch_images(roots["killed"], urls, settings, engine="ray",
                              on_result=lambda outcome, _: seen.append(outcome.url))
        again = {path: n - before.get(path, 0) for path, n in server.requests.items()}
    assert len(server.killed) == 1  # a worker did die mid-block (that request not counted)
    assert again["/die.jpg"] == 1  # ... and its block was run again
    assert sorted(seen) == sorted(urls)  # each URL reported once: none from the dead attempt
    assert result.counts["ok"] == 12 and result.fetched == len(urls)

    statuses = {r["status"] for r in read_status(CatalogLayout(roots["local"])).to_dicts()}
    assert statuses == {"ok", "http_404", "truncated", "not_an_image", "redirect_loop",
                        "refused", "bad_scheme"}
    files = {name: _images(root) for name, root in roots.items()}
    assert sum(not p.endswith("status.parquet") for p in files["local"]) == 11  # 12 ok URLs,
    assert files["ray"] == files["local"]  # two of them one image, and nothing else
    assert files["killed"] == files["local"]  # no temporary file left, nothing twice
    assert not half.exists()
    catalog_json = {(root / "catalog.json").read_bytes() for root in roots.values()}
    assert len(catalog_json) == 1


def test_the_cli_runs_on_ray_and_a_bad_engine_is_one_line(ray_cluster, site, tmp_path):
    from curation.clean import clean
    from curation.ingest import ingest
    from curation.synth import SynthConfig, synthesize

    corpus = tmp_path / "corpus"
    synthesize(corpus, SynthConfig(n_items=30, seed=5))  # file:// image URLs in the corpus
    catalog = tmp_path / "catalog"
    ingest(str(corpus / "raw"), catalog)
    clean(catalog)
    runner = CliRunner()
    # --ray-address local: this process is already connected (the fixture), so it is used
    result = runner.invoke(app, ["images", "fetch", "-c", str(catalog), "--engine", "ray",
                                 "--ray-address", "local"])
    assert result.exit_code == 0, result.output
    status = read_status(CatalogLayout(catalog))
    assert status.height > 0 and (status["status"] == "ok").all()
    assert f"{status.height:,} URLs: 0 already done" in result.output
    bad = runner.invoke(app, ["images", "fetch", "-c", str(catalog), "--engine", "spark"])
    assert bad.exit_code == 2
    assert bad.output.strip() == "error: --engine 'spark': choose one of local, ray"
    helped = runner.invoke(app, ["images", "fetch", "--help"], env={"COLUMNS": "200"})
    assert "--engine" in helped.output and "--ray-address" in helped.output
