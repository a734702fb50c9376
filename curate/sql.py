"""``curate sql``: DuckDB over the catalog's views, one-shot, from a file, or at a prompt."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from curate.common import CatalogOption, command
from curation.catalog import Catalog
from curation.errors import UserError
from curation.paths import DEFAULT_CATALOG, sql_dir

FORMATS = ("table", "csv", "json", "parquet")


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


def run_query(
    text: str,
    catalog_root: Path,
    *,
    output_format: str = "table",
    output: Path | None = None,
    max_rows: int = 40,
    write: bool = False,
) -> None:
    import duckdb

    catalog = Catalog.open(catalog_root)
    con = catalog.connect(read_only=not write)
    try:
        relation = con.sql(text)
        if relation is None:  # a statement without a result (CREATE, SET, ...)
            return
        _emit(relation, output_format, output, max_rows)
    except duckdb.Error as exc:  # the user's query, not Curate, is wrong
        raise UserError(str(exc).strip().splitlines()[0]) from None
    finally:
        con.close()


def _emit(relation, output_format: str, output: Path | None, max_rows: int) -> None:
    if output_format == "parquet":
        if output is None:
            raise UserError("--format parquet needs --output FILE")
        relation.write_parquet(str(output))
        return
    if output is not None:
        if output_format == "csv":
            relation.write_csv(str(output))
        elif output_format == "json":
            relation.pl().write_ndjson(output)
        else:
            output.write_text(relation.__str__())
        return
    if output_format == "table":
        sys.stdout.write(_render_table(relation, max_rows))
    elif output_format == "csv":
        sys.stdout.write(relation.pl().write_csv())
    else:
        sys.stdout.write(relation.pl().write_ndjson())


def _render_table(relation, max_rows: int) -> str:
    """DuckDB's own box rendering of at most max_rows rows; says so when rows were cut."""
    rows = relation.limit(max_rows + 1).fetchall()
    text = str(relation.limit(max_rows))
    if len(rows) > max_rows:
        text += f"(more than {max_rows} rows; use --max-rows, or --format csv)\n"
    return text


def interactive(catalog_root: Path, *, write: bool = False, max_rows: int = 40) -> None:
    """A small prompt: statements end with ';'. '.quit' or an end of input leaves."""
    import readline  # noqa: F401 - line editing and history for input()

    catalog = Catalog.open(catalog_root)
    con = catalog.connect(read_only=not write)
    views = ", ".join(catalog.view_definitions())
    print(
        f"curate sql on {catalog_root} ({'read-write' if write else 'read-only'}); "
        f"views: {views}. End statements with ';', leave with .quit"
    )
    buffer: list[str] = []
    try:
        while True:
            try:
                line = input("curate> " if not buffer else "   ...> ")
            except EOFError:
                print()
                break
            if not buffer and line.strip() in (".quit", ".exit", "\\q"):
                break
            buffer.append(line)
            if line.rstrip().endswith(";"):
                text = "\n".join(buffer)
                buffer = []
                try:
                    relation = con.sql(text)
                    if relation is not None:
                        sys.stdout.write(_render_table(relation, max_rows))
                except Exception as exc:  # keep the prompt alive on a bad statement
                    print(f"error: {str(exc).splitlines()[0]}")
    finally:
        con.close()


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
            "--write", help="Open catalog.duckdb read-write (to keep your own tables or views)."
        ),
    ] = False,
    list_queries: Annotated[bool, typer.Option("--list", help="List the named queries.")] = False,
) -> None:
    """Query the catalog with DuckDB (views: reviews, items, quarantine, ingest_files).

    Read-only unless --write is given. Examples: curate sql "SELECT count(*) FROM items";
    curate sql -f quarantine_reasons; curate sql (a prompt).
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
        interactive(catalog, write=write, max_rows=max_rows)
        return
    run_query(
        text, catalog, output_format=output_format, output=output, max_rows=max_rows, write=write
    )

