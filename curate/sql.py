"""``curate sql``: DuckDB over the catalog's views, one-shot, from a file, or at a prompt.

Without ``--write`` a session is read-only, and DuckDB enforces it:

- reads: ``enable_external_access = false`` with ``allowed_directories`` = the catalog folder
  (plus each ``--allow-read`` folder; an ``--allow-read`` file goes to ``allowed_paths``), so
  ``read_csv('/etc/passwd')``, ``read_text`` and ``glob`` outside them are refused. DuckDB checks
  a relative path against the working directory, so the session runs inside the catalog folder,
  where the views' relative paths point;
- the catalog: ``catalog.duckdb`` is opened read-only (no CREATE on it);
- extensions: no INSTALL or LOAD (external access off; auto-install and auto-load off);
- settings: ``lock_configuration = true`` once the above is set, so no SET or RESET undoes it
  (nor any other SET, PRAGMA or CALL that changes a setting);
- statements that write files: ``allowed_directories`` does not tell reads from writes, so a
  COPY ... TO inside the catalog folder would still be allowed. DuckDB's own parser gives each
  statement's type, and the types that can write a file are refused before anything runs:
  COPY, EXPORT, ATTACH (an existing database could be attached read-write), PREPARE/EXECUTE
  (a prepared COPY), and EXPLAIN of any of those (EXPLAIN ANALYZE runs its statement).
  Statement types not known to be harmless are refused too.

``--output FILE`` is written by Curate (through Arrow), not by DuckDB's COPY.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from curate.common import CatalogOption, command
from curation.catalog import Catalog
from curation.errors import UserError
from curation.manifest import atomic_file
from curation.paths import DEFAULT_CATALOG, sql_dir

FORMATS = ("table", "csv", "json", "parquet")

# Statement types (by DuckDB's parser) a read-only session runs: none writes a file. The
# catalog is attached read-only and nothing else can be attached, so CREATE, INSERT and the
# like reach only temporary objects; SET, PRAGMA and CALL meet the locked configuration.
READ_ONLY_STATEMENTS = frozenset({
    "SELECT", "EXPLAIN", "PRAGMA", "CALL", "SET", "VARIABLE_SET", "CREATE", "CREATE_FUNC",
    "DROP", "INSERT", "UPDATE", "DELETE", "MERGE_INTO", "ALTER", "TRANSACTION", "DETACH",
    "MULTI", "ANALYZE", "VACUUM",
    "LOAD",  # INSTALL and LOAD: refused by the settings (external access and autoload off)
})
WHY_REFUSED = {
    "COPY": "it reads or writes files; use --output FILE to save a result",
    "EXPORT": "it writes files",
    "ATTACH": "an attached database could be written",
    "PREPARE": "a prepared statement could be a COPY",
    "EXECUTE": "a prepared statement could be a COPY",
}
# EXPLAIN [(options)] [ANALYZE] <statement>, after any leading comments: the statement is
# checked in turn, since EXPLAIN ANALYZE runs it.
EXPLAINED = re.compile(
    r"^(?:\s|--[^\n]*\n|/\*.*?\*/)*EXPLAIN\s*(?:\([^)]*\)\s*)?(?:ANALY[SZ]E\s+)?(?P<inner>.*)$",
    re.IGNORECASE | re.DOTALL,
)
READ_HINT = ("a read-only session reads only inside the catalog folder: add --allow-read PATH, "
             "or --write")


def named_queries() -> dict[str, str]:
    """Name -> first comment line of every query in sql/."""
    out = {}
    for path in sorted(sql_dir().glob("*.sql")):
        first = next((ln for ln in path.read_text().splitlines() if ln.startswith("--")), "-- ")
        out[path.stem] = first.lstrip("- ").strip()
    return out


def resolve_query(query: str | None, file: str | None) -> str | None:
    if query and file:
        raise UserError("give either a query or --file, not both")
    if query:
        return query
    if not file:
        return None
    path = Path(file)
    if path.is_file():
        return path.read_text()
    named = sql_dir() / f"{path.stem}.sql"
    if named.is_file():
        return named.read_text()
    raise UserError(
        f"{file}: no such file, and no named query of that name "
        f"(named queries: {', '.join(named_queries())})"
    )


def check_read_only(text: str) -> None:
    """Refuse, before anything runs, a statement that could write a file (see the module
    docstring); the types come from DuckDB's own parser."""
    import duckdb

    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise UserError(str(exc).strip().splitlines()[0]) from None
    for statement in statements:
        kind = statement.type.name
        if kind not in READ_ONLY_STATEMENTS:
            why = WHY_REFUSED.get(kind, "it is not known to be read-only")
            raise UserError(f"{kind} is not allowed in a read-only session ({why}); --write "
                            "lifts this")
        if kind == "EXPLAIN":
            explained = EXPLAINED.match(statement.query.strip().rstrip(";"))
            if explained is None or not explained["inner"].strip():
                raise UserError("this EXPLAIN is not allowed in a read-only session: write "
                                "EXPLAIN [ANALYZE] <statement>, or use --write")
            check_read_only(explained["inner"])


@contextmanager
def session(catalog_root: Path, *, write: bool = False,
            allow_read: Sequence[Path] = ()) -> Iterator[object]:
    """A DuckDB connection to the catalog: read-write as today with ``write``, otherwise
    locked down as the module docstring says (and run inside the catalog folder)."""
    # An absolute root: DuckDB's spill folder and search path stay right after the chdir below.
    catalog = Catalog.open(Path(catalog_root).absolute())
    con = catalog.connect(read_only=not write)
    if write:
        try:
            yield con
        finally:
            con.close()
        return
    root = catalog.layout.root.absolute()
    readable = [root, *(Path(p).absolute() for p in allow_read)]
    missing = [str(p) for p in readable if not p.exists()]
    if missing:
        con.close()
        raise UserError(f"--allow-read {missing[0]}: no such file or folder")
    folders = sorted({str(q) + os.sep for p in readable if p.is_dir() for q in (p, p.resolve())})
    files = sorted({str(q) for p in readable if not p.is_dir() for q in (p, p.resolve())})
    before = Path.cwd()
    try:
        con.execute("SET allowed_directories = ?", [folders])
        con.execute("SET allowed_paths = ?", [files])
        for setting in ("enable_external_access", "autoinstall_known_extensions",
                        "autoload_known_extensions", "allow_community_extensions",
                        "allow_persistent_secrets"):
            con.execute(f"SET {setting} = false")
        con.execute("SET lock_configuration = true")
        os.chdir(root)  # DuckDB checks a relative path against the working directory
        yield con
    finally:
        os.chdir(before)
        con.close()


def run_query(
    text: str,
    catalog_root: Path,
    *,
    output_format: str = "table",
    output: Path | None = None,
    max_rows: int = 40,
    write: bool = False,
    allow_read: Sequence[Path] = (),
) -> None:
    import duckdb

    if output_format == "parquet" and output is None:
        raise UserError("--format parquet needs --output FILE")
    if not write:
        check_read_only(text)
    output = output.absolute() if output is not None else None  # before the session's chdir
    with session(catalog_root, write=write, allow_read=allow_read) as con:
        try:
            relation = con.sql(text)
            if relation is None:  # a statement without a result (CREATE, SET, ...)
                return
            _emit(relation, output_format, output, max_rows)
        except duckdb.Error as exc:  # the user's query, not Curate, is wrong
            raise UserError(_one_line(exc)) from None


def _one_line(exc: Exception) -> str:
    import duckdb

    line = str(exc).strip().splitlines()[0]
    denied_read = isinstance(exc, duckdb.PermissionException) and "Cannot access file" in line
    return f"{line} ({READ_HINT})" if denied_read else line


def _emit(relation, output_format: str, output: Path | None, max_rows: int) -> None:
    if output is not None:
        # Written here from Arrow batches, not by DuckDB (a read-only session writes nothing).
        with atomic_file(output) as tmp:
            _write(relation, output_format, tmp)
        return
    if output_format == "table":
        sys.stdout.write(_render_table(relation, max_rows))
    elif output_format == "csv":
        sys.stdout.write(relation.pl().write_csv())
    else:
        sys.stdout.write(relation.pl().write_ndjson())


def _write(relation, output_format: str, path: Path) -> None:
    if output_format == "parquet":
        import pyarrow.parquet as pq

        batches = relation.to_arrow_reader()
        with pq.ParquetWriter(path, batches.schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
    elif output_format == "csv":
        relation.pl().write_csv(path)
    elif output_format == "json":
        relation.pl().write_ndjson(path)
    else:
        path.write_text(str(relation))


def _render_table(relation, max_rows: int) -> str:
    """DuckDB's own box rendering of at most max_rows rows, every one of them (``str`` of a
    relation elides all but about 20 rows, whatever --max-rows says); says so when rows were
    cut."""
    import contextlib
    import io

    if max_rows < 1:
        raise UserError(f"--max-rows must be 1 or more, got {max_rows}")
    rows = relation.limit(max_rows + 1).fetchall()
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):  # show() prints through Python's sys.stdout
        relation.limit(max_rows).show(max_rows=max_rows + 1)
    text = shown.getvalue()
    if len(rows) > max_rows:
        text += f"(more than {max_rows} rows; use --max-rows, or --format csv)\n"
    return text


BASE_VIEWS = {
    "reviews": "review lines (bronze)", "items": "item metadata lines (bronze)",
    "quarantine": "lines ingest could not type, with the reason",
    "ingest_files": "one row per raw file: lines read = rows + quarantined",
}


def view_lines(catalog: Catalog) -> list[str]:
    """One line per view of the catalog: its name, what it holds, and, where the view's name
    is not the slice's (characters other than letters, digits and _ become _), the slice's."""
    lines = []
    for name in catalog.view_definitions():
        entry = catalog.tables.get(name, {})
        what = BASE_VIEWS.get(name) or ", ".join(
            f"{k} {v}" for k, v in entry.items() if k != "files") or "a catalog table"
        if "slice" in entry:
            kind = name.split("_", 1)[0]
            parts = [entry["slice"], *([entry["weights"]] if "weights" in entry else [])]
            literal = f"{kind}_" + "__".join(parts)
            if literal != name:
                what += f" (renamed from {literal}: characters other than letters, digits and _ " \
                        "become _)"
        lines.append(f"{name:<36} {what}")
    return lines


def interactive(catalog_root: Path, *, write: bool = False, max_rows: int = 40,
                allow_read: Sequence[Path] = ()) -> None:
    """A small prompt: statements end with ';'. '.quit' or an end of input leaves."""
    import readline  # noqa: F401 - line editing and history for input()

    opened = Catalog.open(catalog_root)
    views = list(opened.view_definitions())
    base = [v for v in views if v in BASE_VIEWS]
    more = f" and {len(views) - len(base)} more" if len(views) > len(base) else ""
    print(f"curate sql on {catalog_root} ({'read-write' if write else 'read-only'}): views "
          f"{', '.join(base)}{more}\n.views lists them; end statements with ';'; .quit leaves")
    buffer: list[str] = []
    with session(catalog_root, write=write, allow_read=allow_read) as con:
        while True:
            try:
                line = input("curate> " if not buffer else "   ...> ")
            except EOFError:
                print()
                break
            if not buffer and line.strip() in (".quit", ".exit", "\\q"):
                break
            if not buffer and line.strip() == ".views":
                print("\n".join(view_lines(opened)))
                continue
            buffer.append(line)
            if line.rstrip().endswith(";"):
                text = "\n".join(buffer)
                buffer = []
                try:
                    if not write:
                        check_read_only(text)
                    relation = con.sql(text)
                    if relation is not None:
                        sys.stdout.write(_render_table(relation, max_rows))
                except Exception as exc:  # keep the prompt alive on a bad statement
                    print(f"error: {_one_line(exc)}")


commands = typer.Typer()

@command(commands)
def sql(
    query: Annotated[
        str | None, typer.Argument(help="SQL to run; omit for --file, stdin or a prompt.")
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file", "-f", help="A .sql file, or the name of a query in sql/ (see --list)."
        ),
    ] = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    output_format: Annotated[
        str, typer.Option("--format", help="table, csv, json (one object a line) or parquet.")
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the result to this file instead of stdout."),
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Rows shown in table format.")] = 40,
    write: Annotated[
        bool,
        typer.Option(
            "--write", help="Open catalog.duckdb read-write (to keep your own tables or views); "
            "lifts every limit of a read-only session."
        ),
    ] = False,
    allow_read: Annotated[
        list[Path] | None,
        typer.Option("--allow-read", help="A file or folder outside the catalog that a "
                     "read-only session may read (repeatable)."),
    ] = None,
    list_queries: Annotated[bool, typer.Option("--list", help="List the named queries.")] = False,
) -> None:
    """Query the catalog with DuckDB (views: reviews, items, quarantine, ingest_files).

    Read-only unless --write is given: no file is written, no database attached, no
    extension loaded, no setting changed, and only the catalog folder (and --allow-read
    paths) can be read; relative paths in a query are taken from the catalog folder.
    Examples: curate sql "SELECT count(*) FROM items"; curate sql -f quarantine_reasons;
    curate sql (a prompt).
    """
    if list_queries:
        for name, summary in named_queries().items():
            typer.echo(f"{name:<28} {summary}")
        return
    if output_format not in FORMATS:
        raise UserError(
            f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}"
        )
    text = resolve_query(query, file)
    if text is None and not sys.stdin.isatty():
        text = sys.stdin.read()
    if text is None:
        interactive(catalog, write=write, max_rows=max_rows, allow_read=allow_read or ())
        return
    run_query(
        text, catalog, output_format=output_format, output=output, max_rows=max_rows, write=write,
        allow_read=allow_read or (),
    )

