from __future__ import annotations

import json
import subprocess
import sys
import time

import polars as pl
from typer.testing import CliRunner

from curate.cli import app
from curate.sql import named_queries

runner = CliRunner()


def test_help_lists_the_stages():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "ingest", "sql", "demo"):
        assert command in result.output


def test_data_commands_start_fast_without_torch():
    code = "import sys, curate.cli; print('torch' in sys.modules)"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert time.perf_counter() - started < 2.0  # generous for a loaded CI machine
    help_out = subprocess.run(
        [sys.executable, "-m", "curate", "ingest", "--help"], capture_output=True, text=True
    )
    assert help_out.returncode == 0 and "quarantine" in help_out.stdout


def test_synth_then_ingest_from_the_command_line(tmp_path):
    corpus, catalog = tmp_path / "corpus", tmp_path / "catalog"
    result = runner.invoke(
        app,
        [
            "synth",
            str(corpus),
            "--items",
            "40",
            "--mess",
            "0.1",
            "--no-images",
            "--categories",
            "All_Beauty,Video_Games",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "40 items" in result.output
    result = runner.invoke(app, ["ingest", str(corpus / "raw"), "--catalog", str(catalog)])
    assert result.exit_code == 0, result.output
    assert "4 files:" in result.output and "quarantined" in result.output
    again = runner.invoke(app, ["ingest", str(corpus / "raw"), "--catalog", str(catalog)])
    assert again.exit_code == 0 and "unchanged, skipped" in again.output, again.output
    # the rerun reports the same totals as the run that ingested
    total = next(line for line in result.output.splitlines() if line.startswith("4 files:"))
    assert total in again.output.splitlines()


def test_every_named_query_runs(split_catalog):
    assert {
        "rating_distribution",
        "rating_number_quantiles",
        "orphan_reviews",
        "quarantine_reasons",
    } <= set(named_queries())
    for name in named_queries():
        result = runner.invoke(app, ["sql", "-f", name, "-c", str(split_catalog)])
        assert result.exit_code == 0, (name, result.output)
        assert "│" in result.output  # a table was printed


def test_reconciliation_query_says_every_file_reconciles(messy_catalog, tmp_path):
    out = tmp_path / "rec.csv"
    result = runner.invoke(
        app,
        [
            "sql",
            "-f",
            "ingest_reconciliation",
            "-c",
            str(messy_catalog),
            "--format",
            "csv",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pl.read_csv(out)
    assert table.height == 12 and table["reconciles"].all()


def test_output_formats(messy_catalog, tmp_path):
    query = "SELECT category, count(*) AS n FROM items GROUP BY 1 ORDER BY 1"
    csv = runner.invoke(app, ["sql", query, "-c", str(messy_catalog), "--format", "csv"])
    assert csv.output.splitlines()[0] == "category,n" and len(csv.output.splitlines()) == 7
    js = runner.invoke(app, ["sql", query, "-c", str(messy_catalog), "--format", "json"])
    assert json.loads(js.output.splitlines()[0])["category"] == "All_Beauty"
    target = tmp_path / "out.parquet"
    pq = runner.invoke(
        app, ["sql", query, "-c", str(messy_catalog), "--format", "parquet", "-o", str(target)]
    )
    assert pq.exit_code == 0 and pl.read_parquet(target).height == 6
    no_output = runner.invoke(app, ["sql", query, "-c", str(messy_catalog), "--format", "parquet"])
    assert no_output.exit_code == 2 and "--output" in no_output.output


def test_read_only_unless_asked(messy_catalog, tmp_path):
    import shutil

    copy = tmp_path / "cat"
    shutil.copytree(messy_catalog, copy)
    denied = runner.invoke(app, ["sql", "CREATE TABLE mine AS SELECT 1 AS x", "-c", str(copy)])
    assert denied.exit_code == 2 and "read-only" in denied.output
    allowed = runner.invoke(
        app, ["sql", "CREATE TABLE mine AS SELECT 1 AS x", "-c", str(copy), "--write"]
    )
    assert allowed.exit_code == 0, allowed.output
    kept = runner.invoke(app, ["sql", "SELECT x FROM mine", "-c", str(copy), "--format", "csv"])
    assert kept.output.splitlines() == ["x", "1"]


def test_user_mistakes_are_one_line_errors(messy_catalog, tmp_path):
    cases = [
        ["sql", "SELECT 1", "-c", str(tmp_path / "none")],
        ["sql", "SELEC oops", "-c", str(messy_catalog)],
        ["sql", "-f", "no_such_query", "-c", str(messy_catalog)],
        ["ingest", str(tmp_path / "absent"), "-c", str(tmp_path / "c")],
        ["synth", str(tmp_path / "s"), "--mess", "2"],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: ") and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_bug_keeps_its_traceback_and_says_it_is_one(monkeypatch, tmp_path):
    """Only a UserError is a user's mistake; any other exception inside a command is a bug:
    its traceback is shown, with a line saying so, and the exit status is 1, not 2."""
    import curation.synth

    def broken(*_args, **_kwargs):
        raise ValueError("an internal invariant broke")  # a bug, though a ValueError

    monkeypatch.setattr(curation.synth, "synthesize", broken)
    result = runner.invoke(app, ["synth", str(tmp_path / "s"), "--items", "10"])
    assert result.exit_code == 1, result.output
    assert "Traceback" in result.stderr and "an internal invariant broke" in result.stderr
    assert "this is a bug in Curate" in result.stderr
    mistake = runner.invoke(app, ["synth", str(tmp_path / "s"), "--mess", "2"])
    assert mistake.exit_code == 2 and "Traceback" not in mistake.stderr


def test_every_command_reports_user_errors_in_one_line():
    """Each registered command goes through the error handling (none was left out)."""
    def commands(typer_app):
        for info in typer_app.registered_commands:
            yield info.callback
        for group in typer_app.registered_groups:
            yield from commands(group.typer_instance)

    found = list(commands(app))
    assert len(found) >= 25
    unwrapped = [c.__name__ for c in found
                 if c.__code__.co_qualname != "user_facing.<locals>.wrapper"]
    assert not unwrapped, unwrapped


def test_query_from_stdin(messy_catalog):
    result = runner.invoke(
        app, ["sql", "-c", str(messy_catalog), "--format", "csv"], input="SELECT 41 + 1 AS answer"
    )
    assert result.output.splitlines() == ["answer", "42"]


def test_interactive_prompt_in_a_terminal(messy_catalog):
    import os
    import pty
    import select

    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate", "sql", "-c", str(messy_catalog)],
        stdin=child,
        stdout=child,
        stderr=child,
        close_fds=True,
    )
    os.close(child)

    def read_until(token: bytes, seconds: float = 60) -> bytes:
        seen = b""
        deadline = time.monotonic() + seconds
        while token not in seen:
            ready, _, _ = select.select([main], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {token!r} in {seen!r}")
            seen += os.read(main, 4096)
        return seen

    try:
        banner = read_until(b"curate> ")
        assert b"read-only" in banner and b"quarantine" in banner
        os.write(main, b"SELECT 40 +\n")
        read_until(b"...> ")
        os.write(main, b"2 AS answer;\n")
        assert b"42" in read_until(b"curate> ")
        os.write(main, b"SELEC oops;\n")
        assert b"error:" in read_until(b"curate> ")
        os.write(main, b".quit\n")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        os.close(main)
