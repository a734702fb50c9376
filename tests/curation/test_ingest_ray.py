"""``curate ingest --engine ray`` on a real local Ray cluster: the local engine's bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curation.ingest import ingest

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _files(root: Path) -> dict[str, str]:
    # catalog.duckdb holds views only (rebuilt from catalog.json); every other file compares
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "catalog.duckdb"}


def test_ray_engine_writes_the_local_engines_bytes(ray_cluster, messy_corpus, tmp_path):
    local, distributed = tmp_path / "local", tmp_path / "ray"
    ingest(str(messy_corpus / "raw"), local)
    results = ingest(str(messy_corpus / "raw"), distributed, engine="ray")
    hashes = _files(local)
    assert sum(p.endswith(".parquet") for p in hashes) >= 4
    assert "catalog.json" in hashes
    assert hashes == _files(distributed)
    assert sum(r.lines_quarantined for r in results) > 0  # the planted mess went somewhere
    assert not (distributed / ".staging").exists()  # no attempt folder left behind
    # A second run finds every file unchanged.
    assert all(r.skipped for r in ingest(str(messy_corpus / "raw"), distributed, engine="ray"))


def test_bad_engine_is_one_clear_line(messy_corpus, tmp_path):
    result = CliRunner().invoke(app, ["ingest", str(messy_corpus / "raw"),
                                      "--catalog", str(tmp_path / "c"), "--engine", "spark"])
    assert result.exit_code != 0
    assert "--engine 'spark': choose one of local, ray" in result.output
    assert "Traceback" not in result.output
