"""Fault injection in CI, a sample of what `scripts/faults.py` does in full: a damaged file of
every kind is found by `curate verify` and a rerun restores the catalog byte for byte; a
`build-slice` killed at a point hypothesis picks leaves a catalog that verifies."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("faults", ROOT / "scripts" / "faults.py")
assert _spec and _spec.loader
faults = importlib.util.module_from_spec(_spec)
sys.modules["faults"] = faults  # dataclasses look their module up there
_spec.loader.exec_module(faults)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from curation.ingest import ingest
    from curation.synth import SynthConfig, synthesize

    work = tmp_path_factory.mktemp("faults")
    synthesize(work / "corpus", SynthConfig(n_items=150, seed=3, images=False))
    raw = work / "corpus" / "raw"
    ingest(str(raw), work / "ingested")
    faults.build(raw, work / "base")
    return raw, work, faults.fingerprint(work / "base")


def _one_of_each_kind(baseline: dict[str, str]) -> list[str]:
    wanted = ("bronze/items/", "quarantine/", "silver/default/items.parquet",
              "silver/default/review_rejections.parquet", "splits/default/seed0/assignments",
              "slices/", "weights/", "silver/default/manifest.json", "catalog.json")
    return [next(f for f in sorted(baseline) if f.startswith(prefix)) for prefix in wanted]


@pytest.mark.parametrize("how", faults.DAMAGES)
def test_damage_of_every_kind_is_detected_and_recovered(built, tmp_path, how):
    raw, work, baseline = built
    outcomes = faults.damage_faults(raw, work / "base", tmp_path, baseline,
                                    _one_of_each_kind(baseline), lambda _: None, (how,))
    assert len(outcomes) == 9
    assert [o.fault for o in outcomes if not o.detected] == []
    assert [o.fault for o in outcomes if not o.recovered] == []


@pytest.fixture(scope="module")
def build_slice_seconds(built, tmp_path_factory) -> float:
    raw, work, _ = built
    copy = tmp_path_factory.mktemp("timed") / "catalog"
    shutil.copytree(work / "ingested", copy)
    started = time.perf_counter()
    faults._run_killed(faults.COMMANDS["build-slice"], raw, copy, 300)  # runs to its end
    return time.perf_counter() - started


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(point=st.floats(min_value=0.0, max_value=1.0))
def test_a_build_slice_killed_anywhere_leaves_a_catalog_that_verifies(
        built, build_slice_seconds, tmp_path, point):
    raw, work, baseline = built
    copy = tmp_path / f"kill-{time.monotonic_ns()}"
    shutil.copytree(work / "ingested", copy)
    faults._run_killed(faults.COMMANDS["build-slice"], raw, copy, point * build_slice_seconds)
    damaged, seen = faults.detect(copy)
    assert not damaged, seen  # whatever was cut short left nothing recorded half-written
    recovered, note = faults.recover(raw, copy, baseline)
    assert recovered, note
