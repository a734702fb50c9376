"""One progress bar style for long loops (on stderr; gone when done). ``advance(n, note)``
moves it on and, with a note (counts by status, say), shows the note beside it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(
    label: str, total: int, unit: str = "items", lines_when_logged: bool = False
) -> Iterator[Callable[..., None]]:
    """Yields ``advance(n)``. Shows the count, the rate and the time left: a bar on a terminal;
    in a log (not a terminal), with ``lines_when_logged``, a line at every tenth."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _Rate(ProgressColumn):
        def render(self, task):  # type: ignore[no-untyped-def]
            return Text(f"{task.speed:,.1f}/s" if task.speed else "")

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit}"),
        TaskProgressColumn(),
        _Rate(),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True)
    if not console.is_terminal and lines_when_logged:
        yield _logged_lines(label, total, unit)
        return
    # Not a terminal (a log, CI): no bar, whose redraws would fill the log with blank lines.
    with Progress(*columns, console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=total)

        def advance(n: int, note: str | None = None) -> None:
            progress.update(task, advance=n, **({"description": f"{label} {note}"} if note
                                                 else {}))

        yield advance


def _logged_lines(label: str, total: int, unit: str) -> Callable[..., None]:
    import sys
    import time

    started = time.perf_counter()
    state = {"done": 0, "next": 0.1}

    def advance(n: int, note: str | None = None) -> None:
        state["done"] += n
        share = state["done"] / max(total, 1)
        if share + 1e-9 >= state["next"] or state["done"] >= total:
            elapsed = time.perf_counter() - started
            rate = state["done"] / elapsed if elapsed > 0 else 0.0
            left = (total - state["done"]) / rate if rate > 0 else 0.0
            print(f"{label}: {state['done']:,}/{total:,} {unit} ({rate:,.1f}/s, about "
                  f"{left:,.0f} s left){' ' + note if note else ''}", file=sys.stderr,
                  flush=True)
            while state["next"] <= share + 1e-9:
                state["next"] += 0.1

    return advance
