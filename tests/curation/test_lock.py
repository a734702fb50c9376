"""One writer at a time: real processes contend for a catalog's writer lock."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curation.catalog import Catalog
from curation.ingest import ingest
from curation.lock import CatalogBusy, holding, read_holder, writing
from curation.paths import CatalogLayout

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

HOLD = """
import sys
from pathlib import Path
from curation.lock import writing
from curation.paths import CatalogLayout
layout = CatalogLayout(Path(sys.argv[1]))
with writing(layout, sys.argv[2]):
    staging = layout.staging / sys.argv[2]
    staging.mkdir(parents=True)
    (staging / "part.parquet").write_bytes(b"half written")
    print("holding", flush=True)
    sys.stdin.readline()
"""


def curate(*args: str, **kwargs) -> subprocess.Popen:
    """The real command line, in a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "curate", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@contextmanager
def held_elsewhere(catalog: Path, job: str) -> Iterator[subprocess.Popen]:
    """Another process holds the catalog's writer lock (and stages into .staging/<job>) until
    the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(catalog), job], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def busy_line(stderr: str, pid: int) -> str:
    """The one line a refused writer prints, checked to name the holder."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "is being written by" in lines[0] and f"PID {pid} " in lines[0], lines[0]
    return lines[0]


def test_two_ingests_at_once_one_fails_naming_the_other(messy_corpus, tmp_path):
    catalog = tmp_path / "catalog"
    raw = str(messy_corpus / "raw")
    first = curate("ingest", raw, "-c", str(catalog))
    layout = CatalogLayout(catalog)
    deadline = time.monotonic() + 60
    while (read_holder(layout) or {}).get("pid") != first.pid:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.005)
    # Frozen while it holds the lock, mid-ingest, so that the second one surely meets it.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        second = curate("ingest", raw, "-c", str(catalog))
        _, err = second.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2
    line = busy_line(err, first.pid)
    assert "curate ingest" in line and "(ingest," in line and "Traceback" not in err
    assert took < 30  # it did not wait for the first one (which is still stopped)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    opened = Catalog.open(catalog)
    assert len(opened.sources) == len(list((messy_corpus / "raw").rglob("*.jsonl*")))
    for entry in opened.sources.values():
        assert list((catalog / entry["bronze"]).glob("*.parquet"))
        assert (catalog / entry["quarantine"]).exists()
    con = opened.connect()
    try:
        for kind in ("items", "reviews"):
            rows = sum(e["rows_ingested"] for e in opened.sources.values() if e["kind"] == kind)
            assert con.execute(f"SELECT count(*) FROM {kind}").fetchone()[0] == rows
    finally:
        con.close()
    assert not layout.writer_holder.exists()  # released, record removed


def test_an_idle_ingest_leaves_a_running_jobs_staging_alone(messy_catalog, tmp_path):
    catalog = Path(shutil.copytree(messy_catalog, tmp_path / "catalog"))
    layout = CatalogLayout(catalog)
    raw = str(Path(Catalog.open(catalog).sources["items/All_Beauty"]["source"]).parents[1])
    # Another process is building a slice: the ingest fails at once and touches nothing.
    with held_elsewhere(catalog, "slice-x") as holder:
        proc = curate("ingest", raw, "-c", str(catalog))
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2
        assert "slice-x" in busy_line(err, holder.pid)
        assert (layout.staging / "slice-x" / "part.parquet").read_bytes() == b"half written"
    # Within one process (build-slice cleans and splits, each taking the lock again), an
    # ingest removes its own staging folders only.
    with writing(layout, "build-slice"):
        mine = layout.staging / "slice-y"
        mine.mkdir(parents=True)
        (mine / "part.parquet").write_bytes(b"half written")
        results = ingest(raw, catalog)
        assert results and all(r.skipped for r in results)
        ingest(raw, catalog, ["All_Beauty"], force=True)
        assert [p.name for p in layout.staging.iterdir()] == ["slice-y"]
        assert holding(layout)
    assert not holding(layout) and not layout.writer_holder.exists()


def test_a_dead_writers_lock_is_taken_over_with_a_note(messy_catalog, tmp_path):
    catalog = Path(shutil.copytree(messy_catalog, tmp_path / "catalog"))
    layout = CatalogLayout(catalog)
    with held_elsewhere(catalog, "slice-z") as holder:
        os.kill(holder.pid, signal.SIGKILL)  # kill -9: no clean-up of any kind
        holder.wait()
    stale = read_holder(layout)
    assert stale is not None and stale["pid"] == holder.pid
    assert (layout.staging / "slice-z").exists()
    result = runner.invoke(app, ["clean", "-c", str(catalog)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: took over")]
    assert len(notes) == 1 and f"PID {holder.pid} " in notes[0] and "slice-z" in notes[0]
    assert not (layout.staging / "slice-z").exists()  # a dead job's staging is cleared
    assert not layout.writer_holder.exists()


def test_readers_are_never_blocked(split_catalog, tmp_path):
    catalog = Path(shutil.copytree(split_catalog, tmp_path / "catalog"))
    with held_elsewhere(catalog, "slice-w"):
        query = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM silver_items", "-c",
                                    str(catalog), "--format", "csv"])
        assert query.exit_code == 0 and int(query.stdout.splitlines()[1]) > 0, query.output
        listed = runner.invoke(app, ["slices", "list", "-c", str(catalog)])
        assert listed.exit_code == 0, listed.output
        # a real process too, not only this one (which could hold the lock itself)
        proc = curate("sql", "SELECT count(*) AS n FROM items", "-c", str(catalog),
                      "--format", "csv")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.splitlines()[0] == "n", err


@pytest.mark.parametrize("command", [
    ["clean"],
    ["build-slice", "--frac", "0.5", "--no-validate"],
    ["validate"],
    ["weights", "compute", "--slice", "any", "--strategy", "uniform"],
    ["images", "fetch"],
    ["audit", "duplicates"],
    ["audit", "label-quality", "--slice", "any"],
    ["audit", "data-map", "--run", "any"],
])
def test_every_writer_fails_at_once_while_another_writes(split_catalog, tmp_path, command):
    catalog = Path(shutil.copytree(split_catalog, tmp_path / "catalog"))
    before = (catalog / "catalog.json").read_bytes()
    with held_elsewhere(catalog, "holder-job") as holder:
        result = runner.invoke(app, [*command, "-c", str(catalog)])
        assert result.exit_code == 2, result.output
        assert "holder-job" in busy_line(result.stderr, holder.pid)
    assert (catalog / "catalog.json").read_bytes() == before


def test_the_lock_is_reentrant_and_released(tmp_path):
    layout = CatalogLayout(tmp_path / "catalog")
    with writing(layout, "outer"):
        with writing(layout, "inner"):
            assert read_holder(layout)["job"] == "outer"
        assert holding(layout) and layout.writer_holder.exists()
    assert not holding(layout) and not layout.writer_holder.exists()
    # Released for real: another process takes it at once.
    with (held_elsewhere(layout.root, "next") as holder,
          pytest.raises(CatalogBusy, match=f"PID {holder.pid} "),
          writing(layout, "mine")):
        pass
    assert not layout.writer_holder.exists()


def test_weights_compare_into_the_catalog_writes_and_slices_show_reads(split_catalog, tmp_path):
    catalog = Path(shutil.copytree(split_catalog, tmp_path / "catalog"))
    built = runner.invoke(app, ["build-slice", "--frac", "0.5", "--no-validate", "-c",
                                str(catalog), "--name", "half"])
    assert built.exit_code == 0, built.output
    with held_elsewhere(catalog, "holder-job") as holder:
        compare = runner.invoke(app, ["weights", "compare", "--slice", "half", "uniform",
                                      "-c", str(catalog)])
        assert compare.exit_code == 2
        busy_line(compare.stderr, holder.pid)
        elsewhere = runner.invoke(app, ["weights", "compare", "--slice", "half", "uniform",
                                        "-c", str(catalog), "--out", str(tmp_path / "plots")])
        assert elsewhere.exit_code == 0, elsewhere.output
        shown = runner.invoke(app, ["slices", "show", "half", "-c", str(catalog)])
        assert shown.exit_code == 0 and '"half"' in shown.stdout, shown.output


def test_library_writers_take_the_lock(split_catalog, tmp_path):
    """Not only the command line: publish(), register(), fetch_images(), validate_all() hold
    the lock (the demo and the study call the library)."""
    from curation.clean import clean
    from curation.images import fetch_images
    from curation.validate import validate_all

    catalog = Path(shutil.copytree(split_catalog, tmp_path / "catalog"))
    with held_elsewhere(catalog, "holder-job") as holder:
        for write in (lambda: clean(catalog), lambda: fetch_images(catalog, []),
                      lambda: Catalog.open(catalog).register({}),
                      lambda: validate_all(catalog)):
            with pytest.raises(CatalogBusy, match=f"PID {holder.pid} "):
                write()


READ = """
import sys
from curation.catalog import Catalog
con = Catalog.open(sys.argv[1]).connect()
print(con.execute("SELECT count(*) FROM items").fetchone()[0], flush=True)
sys.stdin.readline()
con.close()
"""


def test_an_open_reader_does_not_make_a_writer_fail(messy_catalog, tmp_path):
    """DuckDB lets no process write catalog.duckdb while another has it open (a `curate sql`
    prompt, say): the writers still succeed, and every connection sees current views. Clean,
    split and slice read the database read-only: one that opened it for writing would wait
    for the reader and fail."""
    catalog = Path(shutil.copytree(messy_catalog, tmp_path / "catalog"))
    reader = subprocess.Popen([sys.executable, "-c", READ, str(catalog)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert int(reader.stdout.readline()) > 0
        cleaned = runner.invoke(app, ["clean", "-c", str(catalog)])
        assert cleaned.exit_code == 0, cleaned.output
        assert "is open in another process" in cleaned.stderr
        built = runner.invoke(app, ["build-slice", "--frac", "0.5", "--no-validate", "-c",
                                    str(catalog)])
        assert built.exit_code == 0, built.output
        query = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM silver_items", "-c",
                                    str(catalog), "--format", "csv"])
        assert query.exit_code == 0 and int(query.stdout.splitlines()[1]) > 0, query.output
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
    con = Catalog.open(catalog).connect()  # the stored views are brought in line now
    try:
        assert con.execute("SELECT count(*) FROM silver_items").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE temporary "
                           "AND NOT internal").fetchone()[0] == 0
    finally:
        con.close()


HOLD_DATABASE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # read-write: no other process may open it meanwhile
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_a_reader_waits_out_a_writers_moment_on_the_database(messy_catalog, tmp_path):
    catalog = Path(shutil.copytree(messy_catalog, tmp_path / "catalog"))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_DATABASE,
                               str(CatalogLayout(catalog).database), "1.0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        query = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM items", "-c",
                                    str(catalog), "--format", "csv"])
        assert query.exit_code == 0 and int(query.stdout.splitlines()[1]) > 0, query.output
    finally:
        holder.wait(timeout=60)
