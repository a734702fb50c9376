"""``curate encode``, and frozen encoding with ``--engine ray`` on a real local Ray cluster
(2 CPUs): the embedding cache gets the local engine's bytes. Tiny encoders, 300 items."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

import training.embeddings  # noqa: E402
from curate.cli import app  # noqa: E402
from curation.slices import Slice  # noqa: E402
from tests.conftest import copy_catalog, synthetic_catalog  # noqa: E402
from training.embeddings import embed_slice  # noqa: E402
from training.encoders import NO_IMAGE_ENCODER, TINY_IMAGE_ENCODER, TINY_TEXT_ENCODER  # noqa: E402

SLICE = "default-frac1-seed0"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 items with images (file:// URLs into the corpus), cleaned, split, one slice."""
    return synthetic_catalog(tmp_path_factory, "encode", 300, 21, {1.0: None})


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_no_ray_cluster_is_one_line_before_any_encoder_loads(catalog):
    """Before the module's cluster starts (tests run in file order): "auto" connects to any
    Ray cluster running on the machine, and an unreachable address is retried for minutes."""
    import subprocess
    import sys
    import time

    ray = pytest.importorskip("ray")
    from ray._private.services import find_gcs_addresses

    if ray.is_initialized() or find_gcs_addresses():
        pytest.skip("a Ray cluster runs on this machine: --ray-address auto would find it")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "curate", "encode", SLICE, "--catalog", str(catalog),
         "--image-encoder", TINY_IMAGE_ENCODER, "--text-encoder", TINY_TEXT_ENCODER,
         "--engine", "ray", "--ray-address", "auto"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: --ray-address auto: no Ray cluster found")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (catalog / "embeddings").exists()  # nothing loaded, calibrated or written
    assert time.perf_counter() - started < 60


@pytest.mark.slow
def test_ray_engine_writes_the_local_engines_cache_though_an_actor_dies(
        ray_cluster, catalog, tmp_path, monkeypatch):
    import sys

    import ray.cloudpickle

    import training.encode_ray

    class DiesOnce(training.encode_ray.BatchEncoder):
        """The first batch any actor takes kills its process, as an out-of-memory kill would."""

        marker = str(tmp_path / "died")

        def __call__(self, rows):  # type: ignore[no-untyped-def]
            if not os.path.exists(self.marker):
                Path(self.marker).touch()
                os._exit(1)
            return super().__call__(rows)

    # the actors get the class itself, not an import of this test module
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(training.encode_ray, "BatchEncoder", DiesOnce)
    # Small shards and a batch size that does not divide them: several part files, each
    # closed at the first batch end past SHARD_ITEMS, which both engines must find alike.
    monkeypatch.setattr(training.embeddings, "SHARD_ITEMS", 100)
    caches = {}
    for engine in ("local", "ray"):
        copy = copy_catalog(catalog, tmp_path / engine)
        _, embedded = embed_slice(Slice.open(copy, SLICE), image_encoder=TINY_IMAGE_ENCODER,
                                  text_encoder=TINY_TEXT_ENCODER, batch_size=24, workers=0,
                                  engine=engine)
        caches[engine] = _files(copy / "embeddings")
        assert embedded.encoded_now == len(embedded.has_image) > 200
        assert embedded.with_image > 200  # the images were decoded
    assert os.path.exists(DiesOnce.marker)  # an actor did die
    local = caches["local"]
    assert sum(name.endswith(".parquet") for name in local) == 3  # 100+ items a shard
    assert sum(name.endswith(("encoder.json", "calibration.safetensors")) for name in local) == 2
    assert caches["ray"] == local  # calibration, description and every shard, written once


@pytest.mark.slow
def test_encode_command_on_ray_text_only(ray_cluster, catalog, tmp_path, monkeypatch):
    monkeypatch.setattr(training.embeddings, "SHARD_ITEMS", 100)
    caches = {}
    for engine in ("local", "ray"):
        copy = copy_catalog(catalog, tmp_path / engine)
        command = ["encode", SLICE, "--catalog", str(copy), "--image-encoder", NO_IMAGE_ENCODER,
                   "--text-encoder", TINY_TEXT_ENCODER, "--batch-size", "24", "--workers", "0",
                   "--engine", engine, "--ray-address", "local"]
        first = CliRunner().invoke(app, command)
        assert first.exit_code == 0, first.output
        items = len(Slice.open(copy, SLICE).items(["parent_asin"]))
        assert f"{items:,} items of {SLICE}: {items:,} encoded now ({engine} engine" in \
            first.output
        caches[engine] = _files(copy / "embeddings")
        second = CliRunner().invoke(app, command)
        assert second.exit_code == 0, second.output
        assert f"{items:,} items of {SLICE}: 0 encoded now" in second.output
        assert _files(copy / "embeddings") == caches[engine]
    assert sum(name.endswith(".parquet") for name in caches["local"]) == 3
    assert caches["ray"] == caches["local"]


def test_encode_command_locally(catalog, tmp_path):
    copy = copy_catalog(catalog, tmp_path / "catalog")
    command = ["encode", SLICE, "--catalog", str(copy), "--image-encoder", NO_IMAGE_ENCODER,
               "--text-encoder", TINY_TEXT_ENCODER, "--workers", "0"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    items = len(Slice.open(copy, SLICE).items(["parent_asin"]))
    assert f"{items:,} items of {SLICE}: {items:,} encoded now (local engine" in result.output
    assert "0 with an image" in result.output  # text only: no image read
    assert "image encoder: none (text-only model)" in result.output
    (cache,) = (copy / "embeddings").iterdir()
    assert str(cache) in result.output
    assert any(cache.glob("part-*.parquet"))
    again = CliRunner().invoke(app, command)
    assert f"{items:,} items of {SLICE}: 0 encoded now" in again.output


def test_encode_help_and_mistakes(catalog):
    help_text = CliRunner().invoke(app, ["encode", "--help"]).output
    assert "embedding cache" in help_text and "--engine" in help_text
    bad_slice = CliRunner().invoke(app, ["encode", "no-such-slice", "--catalog", str(catalog)])
    assert bad_slice.exit_code == 2
    assert bad_slice.output.strip() == f"error: no slice named 'no-such-slice' (slices: {SLICE})"
    bad_engine = CliRunner().invoke(app, ["encode", SLICE, "--catalog", str(catalog),
                                          "--engine", "spark"])
    assert bad_engine.exit_code == 2
    assert bad_engine.output.strip() == "error: --engine 'spark': choose one of local, ray"


