"""A catalog checked against what it recorded: deleted, flipped and rewritten outputs are
found by `curate verify` and by the stage that would read them, and repaired from their inputs
to the same bytes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from curation.catalog import Catalog
from curation.clean import clean
from curation.ingest import ingest
from curation.integrity import VERIFY_ENV, IntegrityError, verify_catalog
from curation.slices import Slice, build_slice
from tests.conftest import alter_a_page_silently, break_a_page, copy_catalog

SLICE = "default-frac0.5-seed0"


@pytest.fixture
def built(messy_catalog, tmp_path) -> Path:
    root = copy_catalog(messy_catalog, tmp_path / "catalog")
    build_slice(root, 0.5)
    return root


def _files(root: Path) -> dict[str, bytes]:
    """Every Parquet file of the catalog, by path (what a repair must give back byte for byte)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))
            if not p.relative_to(root).parts[0].startswith(".")}


def _curate(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "curate", *args, "--catalog", str(root)],
                          capture_output=True, text=True, timeout=300)


def _a_bronze_part(root: Path) -> Path:
    entry = Catalog.open(root).sources["items/All_Beauty"]
    return sorted((root / entry["bronze"]).glob("*.parquet"))[0]


def test_a_fresh_catalog_verifies(built):
    report = verify_catalog(built)
    assert report.ok, report.problems
    # bronze parts and quarantines of every source, silver, split and slice files
    assert report.files_checked >= len(Catalog.open(built).sources) * 2 + 5


def test_a_deleted_bronze_part_is_found_refused_and_reingested(built):
    before = _files(built)
    part = _a_bronze_part(built)
    part.unlink()
    report = verify_catalog(built, hashes=False)
    assert [p.owner for p in report.problems] == ["items/All_Beauty"]
    assert "Parquet parts where" in report.problems[0].what
    with pytest.raises(IntegrityError, match=str(part.parent)):
        clean(built, "effiminivlm")  # a stage never reads a bronze that lost a part
    ingest(Catalog.open(built).sources["items/All_Beauty"]["source"].rsplit("/", 2)[0], built)
    assert _files(built) == before  # a rerun of ingest noticed, and gave the same bytes
    assert verify_catalog(built).ok


def test_a_flipped_bit_that_still_decompresses_is_found_by_the_full_check(built, monkeypatch):
    part = _a_bronze_part(built)
    alter_a_page_silently(part)  # reads back without an error, to other values
    assert verify_catalog(built, hashes=False).ok  # sizes and footers cannot see it
    report = verify_catalog(built)
    assert [p.path for p in report.problems] == [str(part.parent.relative_to(built))]
    monkeypatch.setenv(VERIFY_ENV, "1")
    with pytest.raises(IntegrityError, match="SHA-256"):
        clean(built)


def test_a_slice_rewritten_by_hand_is_refused_and_repaired(built):
    before = _files(built)
    path = Catalog.open(built).layout.slice_items(SLICE)
    pl.read_parquet(path).head(10).write_parquet(path)  # the slice edited by hand
    with pytest.raises(IntegrityError, match=re.escape(f"{path}: ") + ".* were written"):
        Slice.open(built, SLICE)  # weights, train and audits all open slices this way
    done = _curate("verify", root=built)
    assert done.returncode == 1
    assert f"slices/{SLICE}/items.parquet:" in done.stderr
    assert "1 differs" in done.stdout
    fixed = _curate("verify", "--repair", root=built)
    assert fixed.returncode == 0, fixed.stderr
    assert "all as recorded" in fixed.stdout
    assert _files(built) == before


def test_altered_silver_is_made_again_not_read(built, capsys):
    before = _files(built)
    layout = Catalog.open(built).layout
    silver = layout.silver_items("default")
    pl.read_parquet(silver).with_columns(pl.col("average_rating") * 0 + 5.0).write_parquet(silver)
    build_slice(built, 0.5)
    assert "silver/default/items.parquet" in capsys.readouterr().err
    assert _files(built) == before


def test_a_deleted_output_is_named_by_the_cli_in_one_line(built):
    layout = Catalog.open(built).layout
    layout.split_leakage("default", 0).unlink()
    done = _curate("verify", "--quick", root=built)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["splits/default/seed0/leakage.parquet: missing"]
    assert "Traceback" not in done.stderr


def test_stages_check_only_what_they_read(built):
    """A broken record of one category does not stop a stage that reads the whole catalog
    from saying which file: the message names the part, not a DuckDB error."""
    part = _a_bronze_part(built)
    part.write_bytes(b"not parquet")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "curate", "clean", "--catalog", str(built)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and str(part.parent) in done.stderr


def test_a_manifest_deleted_or_edited_is_named(built):
    folder = Catalog.open(built).layout.slice_dir(SLICE)
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"frac": 0.5', '"frac": 0.4'))
    [problem] = verify_catalog(built).problems
    assert problem.path == f"slices/{SLICE}/manifest.json"
    assert problem.what.startswith("changed after curate wrote it")
    manifest.unlink()
    assert [(p.path, p.what) for p in verify_catalog(built, hashes=False).problems] == [
        (f"slices/{SLICE}/manifest.json", "missing")]


def test_catalog_json_deleted_or_edited_is_found_and_restored_from_its_copy(built):
    before = _files(built)
    path = built / "catalog.json"
    path.write_text(path.read_text().replace('"lines_read": ', '"lines_read": 1', 1))
    assert verify_catalog(built).problems[0].path == "catalog.json"
    path.unlink()
    done = _curate("verify", root=built)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "catalog.json is missing (deleted?)" in done.stderr and "--repair" in done.stderr
    fixed = _curate("verify", "--repair", root=built)
    assert fixed.returncode == 0, fixed.stderr
    assert "all as recorded" in fixed.stdout and _files(built) == before


def test_a_damaged_copy_of_catalog_json_is_named_and_written_again(built):
    copy = built / ".catalog.backup.json"
    copy.write_text(copy.read_text()[:100])
    assert [(p.path, p.what.split(":")[0]) for p in verify_catalog(built).problems] == [
        (".catalog.backup.json", "damaged")]
    fixed = _curate("verify", "--repair", root=built)
    assert fixed.returncode == 0 and "all as recorded" in fixed.stdout


def test_ingest_reconciliation_counts_what_bronze_holds_now(built):
    from curate.sql import resolve_query

    part = _a_bronze_part(built)
    pl.read_parquet(part).head(3).write_parquet(part)  # rows lost from a part
    con = Catalog.open(built).connect()
    try:
        rows = con.sql(resolve_query(None, "ingest_reconciliation")).fetchall()
    finally:
        con.close()
    off = {key for key, *_, reconciles, _errors in rows if not reconciles}
    assert off == {"items/All_Beauty"}  # it said true for every file before


def test_weights_read_by_a_run_are_checked_against_their_manifest(built):
    from weighting.catalog_io import compute_weights, load_weights

    table = compute_weights(Slice.open(built, SLICE), "effiminivlm")
    pl.read_parquet(table.path).with_columns(weight=pl.lit(1.0)).write_parquet(table.path)
    with pytest.raises(IntegrityError, match=r"weights\.parquet"):
        load_weights(Slice.open(built, SLICE), table.weights_id)


def test_a_page_that_no_longer_decompresses_is_named_with_or_without_the_verify_option(
        built):
    part = _a_bronze_part(built)
    break_a_page(part)  # in compressed column data: sizes and footers cannot see it
    for args in (["clean"], ["--verify", "clean"]):  # found when the read fails, or before
        done = subprocess.run([sys.executable, "-m", "curate", *args, "--catalog", str(built)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
        assert str(part.parent) in done.stderr and "SHA-256" in done.stderr
