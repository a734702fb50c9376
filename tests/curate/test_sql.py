"""``curate sql`` without --write: DuckDB itself refuses writes, and reads outside the catalog."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.sql import interactive, named_queries
from curation.paths import CatalogLayout

runner = CliRunner()


def sql(catalog: Path, *args: str):
    return runner.invoke(app, ["sql", "-c", str(catalog), *args])


def refused(result, *words: str) -> None:
    """Exit 2 with one line on stderr (no traceback) that says each of ``words``."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def count(catalog: Path, view: str) -> int:
    result = sql(catalog, f"SELECT count(*) AS n FROM {view}", "--format", "csv")
    assert result.exit_code == 0, result.output
    return int(result.stdout.splitlines()[1])


@pytest.fixture
def catalog(split_catalog, tmp_path) -> Path:
    """A private copy of the cleaned and split catalog (the tests try to damage it)."""
    return Path(shutil.copytree(split_catalog, tmp_path / "catalog"))


def test_copy_onto_a_catalog_file_is_refused_and_the_view_keeps_its_rows(catalog):
    layout = CatalogLayout(catalog)
    rows = count(catalog, "rejections")
    assert rows > 0
    manifest = layout.manifest.read_bytes()
    target = layout.rejections("default")
    refused(sql(catalog, f"COPY (SELECT 1 AS a WHERE false) TO '{target}' (FORMAT parquet)"),
            "COPY", "read-only")
    refused(sql(catalog, f"COPY (SELECT 1 AS a) TO '{layout.manifest}' (FORMAT csv)"), "COPY")
    # relative to the catalog folder, as the views' own paths are
    refused(sql(catalog, "COPY (SELECT 1 AS a) TO 'silver/default/rejections.parquet'"), "COPY")
    assert count(catalog, "rejections") == rows
    assert layout.manifest.read_bytes() == manifest


def test_explain_analyze_and_prepare_cannot_smuggle_a_copy(catalog):
    target = catalog / "smuggled.csv"
    refused(sql(catalog, f"EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{target}'"), "COPY")
    refused(sql(catalog, f"PREPARE p AS COPY (SELECT 1 AS a) TO '{target}'"), "PREPARE")
    refused(sql(catalog, f"SELECT 1; COPY (SELECT 1 AS a) TO '{target}'"), "COPY")
    assert not target.exists()
    explained = sql(catalog, "EXPLAIN ANALYZE SELECT count(*) FROM items", "--format", "csv")
    assert explained.exit_code == 0 and "analyzed_plan" in explained.stdout


def test_export_and_attach_are_refused(catalog):
    refused(sql(catalog, f"EXPORT DATABASE '{catalog / 'exported'}'"), "EXPORT")
    assert not (catalog / "exported").exists()
    refused(sql(catalog, f"ATTACH '{catalog / 'catalog.duckdb'}' AS again (READ_WRITE)"),
            "ATTACH")
    # a database file of one's own inside the catalog folder, which DuckDB would open read-write
    mine = catalog / "mine.duckdb"
    duckdb.connect(str(mine)).close()
    before = mine.read_bytes()
    refused(sql(catalog, f"ATTACH '{mine}' AS mine (READ_WRITE); CREATE TABLE mine.t AS "
                "SELECT 1 AS a"), "ATTACH")
    assert mine.read_bytes() == before


def test_no_create_on_the_catalog_no_extensions_no_settings(catalog):
    refused(sql(catalog, "CREATE TABLE mine AS SELECT 1 AS x"), "read-only")
    refused(sql(catalog, "CREATE VIEW items AS SELECT 1 AS x"), "read-only")
    assert count(catalog, "items") > 1
    refused(sql(catalog, "INSTALL httpfs"), "disabled by configuration")
    refused(sql(catalog, "LOAD httpfs"), "disabled through configuration")
    for setting in ("SET enable_external_access = true", "SET allowed_directories = ['/']",
                    "RESET allowed_paths", "SET lock_configuration = false",
                    "SET autoload_known_extensions = true",
                    "PRAGMA enable_profiling = 'json'"):
        refused(sql(catalog, setting), "locked")
    refused(sql(catalog, "CALL enable_logging()"), "locked")
    variable = sql(catalog, "SET VARIABLE x = 41; SELECT getvariable('x') + 1 AS y",
                   "--format", "csv")
    assert variable.stdout.splitlines() == ["y", "42"], variable.output
    # temporary objects live in memory: allowed
    temp = sql(catalog, "CREATE TEMP TABLE t AS SELECT 41 AS x; SELECT x + 1 AS y FROM t",
               "--format", "csv")
    assert temp.stdout.splitlines() == ["y", "42"], temp.output


def test_reads_outside_the_catalog_are_refused(messy_catalog):
    refused(sql(messy_catalog, "SELECT * FROM read_csv('/etc/passwd')"), "/etc/passwd",
            "--allow-read")
    refused(sql(messy_catalog, "SELECT * FROM read_text('/etc/hostname')"), "/etc/hostname")
    refused(sql(messy_catalog, "SELECT * FROM glob('/root/*')"), "/root/*")
    refused(sql(messy_catalog, "SELECT * FROM read_text('../*')"), "../*")
    inside = sql(messy_catalog, f"SELECT count(*) AS n FROM glob('{messy_catalog}/catalog.json')",
                 "--format", "csv")
    assert inside.stdout.splitlines() == ["n", "1"], inside.output


def test_allow_read_opens_exactly_the_named_paths(messy_catalog, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n2\n")
    other = tmp_path / "other.csv"
    other.write_text("x\n3\n")
    query = f"SELECT sum(x) AS s FROM read_csv('{folder / 'a.csv'}')"
    refused(sql(messy_catalog, query), "a.csv")
    allowed = sql(messy_catalog, query, "--allow-read", str(folder), "--format", "csv")
    assert allowed.stdout.splitlines() == ["s", "3"], allowed.output
    refused(sql(messy_catalog, f"SELECT * FROM read_csv('{other}')", "--allow-read",
                str(folder)), "other.csv")
    one_file = sql(messy_catalog, f"SELECT sum(x) AS s FROM read_csv('{other}')",
                   "--allow-read", str(other), "--allow-read", str(folder), "--format", "csv")
    assert one_file.stdout.splitlines() == ["s", "3"], one_file.output
    refused(sql(messy_catalog, "SELECT 1", "--allow-read", str(tmp_path / "absent")),
            "--allow-read", "absent")


def test_output_is_written_by_curate_outside_the_catalog(split_catalog, tmp_path):
    cwd = Path.cwd()
    query = "SELECT category, count(*) AS n FROM items GROUP BY 1 ORDER BY 1"
    for fmt, read in (("parquet", pl.read_parquet), ("csv", pl.read_csv),
                      ("json", pl.read_ndjson)):
        out = tmp_path / f"out.{fmt}"
        result = sql(split_catalog, query, "--format", fmt, "-o", str(out))
        assert result.exit_code == 0, result.output
        assert read(out).height == 6
    table = tmp_path / "out.txt"
    assert sql(split_catalog, query, "-o", str(table)).exit_code == 0
    assert "All_Beauty" in table.read_text()
    assert Path.cwd() == cwd  # the session's working directory is given back


def test_named_queries_run_read_only_with_output(split_catalog, tmp_path):
    for name in named_queries():
        out = tmp_path / f"{name}.csv"
        result = sql(split_catalog, "-f", name, "--format", "csv", "-o", str(out))
        assert result.exit_code == 0, (name, result.output)
        assert out.read_text().strip(), name


def test_write_keeps_todays_behaviour(catalog, tmp_path):
    out = tmp_path / "copied.csv"
    result = sql(catalog, f"COPY (SELECT 1 AS a) TO '{out}'", "--write")
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == ["a", "1"]
    read = sql(catalog, "SELECT count(*) AS n FROM read_csv('/etc/passwd', header=false, "
               "sep=':')", "--write")
    assert read.exit_code == 0, read.output


def test_the_prompt_refuses_in_one_line_and_goes_on(messy_catalog, capsys, monkeypatch):
    statements = [f"COPY (SELECT 1) TO '{messy_catalog / 'x.csv'}';",
                  "SELECT * FROM read_text('/etc/hostname');",
                  "SELECT 40 + 2 AS answer;", ".quit"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(statements) + "\n"))
    interactive(messy_catalog)
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if "error:" in line]
    assert len(errors) == 2 and "COPY is not allowed" in errors[0]
    assert "Permission Error" in errors[1]
    assert "42" in out and not (messy_catalog / "x.csv").exists()


def test_views_still_read_their_files(messy_catalog):
    catalog = json.loads((messy_catalog / "catalog.json").read_text())
    rows = sum(e["rows_ingested"] for e in catalog["sources"].values() if e["kind"] == "items")
    assert count(messy_catalog, "items") == rows
    relative = sql(messy_catalog, "SELECT count(*) AS n FROM read_parquet("
                   "'bronze/items/*/*/*.parquet', hive_partitioning = false)", "--format", "csv")
    assert relative.stdout.splitlines() == ["n", str(rows)], relative.output


def test_a_relative_catalog_path_keeps_the_spill_folder_inside_it(messy_catalog, monkeypatch):
    """The session runs inside the catalog folder: DuckDB's own folders stay absolute."""
    monkeypatch.chdir(messy_catalog.parent)
    result = sql(Path(messy_catalog.name), "SELECT current_setting('temp_directory') AS t, "
                 "count(*) AS n FROM items", "--format", "csv")
    assert result.exit_code == 0, result.output
    spill, rows = result.stdout.splitlines()[1].split(",")
    assert spill == str(CatalogLayout(messy_catalog).spill) and int(rows) > 0
