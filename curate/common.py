"""What every command shares: the catalog option, list parsing, worker defaults, and how an
error reaches the user (one line for a mistake, a traceback for a bug)."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer

from curation.errors import UserError

CatalogOption = Annotated[
    Path,
    typer.Option(
        "--catalog",
        "-c",
        envvar="CURATE_CATALOG",
        help="Catalog folder (catalog.json, catalog.duckdb, Parquet).",
        show_default=True,
    ),
]

# --engine and --ray-address, one definition for every command that can run on Ray
EngineOption = Annotated[
    str,
    typer.Option(help="Where the parallel work runs: 'local' (this process) or 'ray' (Ray "
                 "tasks; the same output bytes)."),
]
RayAddressOption = Annotated[
    str,
    typer.Option(help="With --engine ray: a cluster address, 'auto' (a running cluster) or "
                 "'local' (start one in this process)."),
]

F = TypeVar("F", bound=Callable[..., Any])

BUG_NOTE = ("curate: this is a bug in Curate, not a mistake of yours; please report it with "
            "the traceback above")


def user_facing(func: F) -> F:
    """A UserError becomes one line on stderr and exit status 2; any other exception keeps its
    traceback, says it is a bug, and exits with 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        # typer's Exit is not click's (typer 0.2x): both are a chosen exit status, not a bug
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception:
            traceback.print_exc()
            print(BUG_NOTE, file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def command(app: typer.Typer, name: str | None = None, **options: Any) -> Callable[[F], F]:
    """Register a function as a command of ``app``, with user_facing errors."""

    def register(func: F) -> F:
        app.command(name, **options)(user_facing(func))
        return func

    return register


@contextmanager
def writes_to(catalog: Path, job: str) -> Iterator[None]:
    """Hold the catalog's writer lock for a whole command (see curation.lock), so that a
    second writer fails at once, before any work, naming the holder. The catalog must exist."""
    from curation.catalog import Catalog

    with Catalog.open(catalog).writing(job):
        yield


def split_list(value: str | None) -> list[str]:
    """A comma-separated option as a list (empty items dropped)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def default_workers() -> int:
    """DataLoader workers: one per spare core, at most 4."""
    import os

    return max(0, min(4, (os.cpu_count() or 1) - 1))


def workers_or_default(workers: int | None) -> int:
    return default_workers() if workers is None else workers


QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing but errors; the exit status tells.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (the full detail) instead.")
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="The full detail, not the short summary.")
]


class Output:
    """Where a command's report goes: a short summary by default, the full detail with
    ``--verbose``, one JSON document with ``--json``, nothing with ``--quiet``."""

    def __init__(self, *, quiet: bool = False, json: bool = False, verbose: bool = False) -> None:
        if quiet and json:
            raise UserError("--quiet and --json: give one of them")
        self.quiet, self.json, self.verbose = quiet, json, verbose

    @property
    def text(self) -> bool:
        """Whether lines of text are printed (neither --quiet nor --json)."""
        return not (self.quiet or self.json)

    def line(self, text: str = "", *, err: bool = False) -> None:
        """A line of the summary (also printed under --verbose)."""
        if self.text:
            typer.echo(text, err=err)

    def detail(self, text: str = "") -> None:
        """A line printed only under --verbose."""
        if self.text and self.verbose:
            typer.echo(text)

    def document(self, data: Any) -> None:
        """The JSON document, under --json."""
        if self.json:
            import json

            typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
