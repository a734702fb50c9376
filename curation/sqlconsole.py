"""``curate sql``: DuckDB over the catalog's views, one-shot, from a file, or at a prompt."""

from __future__ import annotations

import sys
from pathlib import Path

from curation.catalog import Catalog
from curation.paths import sql_dir

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
        raise ValueError("give either a query or --file, not both")
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
    raise FileNotFoundError(
        f"{file}: no such file, and no named query of that name "
        f"(named queries: {', '.join(named_queries())})"
    )


def run(
    text: str,
    catalog_root: Path,
    *,
    output_format: str = "table",
    output: Path | None = None,
    max_rows: int = 40,
    write: bool = False,
) -> None:
    catalog = Catalog.open(catalog_root)
    con = catalog.connect(read_only=not write)
    try:
        relation = con.sql(text)
        if relation is None:  # a statement without a result (CREATE, SET, ...)
            return
        _emit(relation, output_format, output, max_rows)
    finally:
        con.close()


def _emit(relation, output_format: str, output: Path | None, max_rows: int) -> None:
    if output_format == "parquet":
        if output is None:
            raise ValueError("--format parquet needs --output FILE")
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
