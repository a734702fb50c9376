"""One writer at a time per catalog.

Every job that writes into a catalog holds its writer lock for as long as it writes:
``layout.writer_lock``, an OS lock taken through ``filelock`` (``flock`` on Unix, which the
kernel releases when the holder dies, however it dies), with ``layout.writer_holder`` beside it
saying who holds it (command line, job, PID, host, since). A second writer fails at once with
:class:`CatalogBusy`, one line naming the holder; it never waits and never half-writes.

Readers (``curate sql`` without ``--write``, ``slices list/show``) never take the lock: every
output is swapped in whole and catalog.json is replaced atomically, so a reader sees the
catalog before or after a job, never during.

The lock is re-entrant within one process (``build-slice`` cleans and splits first, each of
which takes it again), counted per catalog folder.

Stale locks: a holder record whose lock is free was left by a job that ended without releasing
it (killed, out of memory); the next writer takes it over and says so on stderr. Holding the
lock also means that no other job is writing, so what lies in ``.staging`` then is left by dead
jobs: the first take of the lock in a process removes it (a job otherwise removes only its own
staging folder).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curation.errors import UserError
from curation.manifest import write_json_atomic
from curation.paths import CatalogLayout


class CatalogBusy(UserError):
    """Another process is writing to this catalog."""


@dataclass
class _Held:
    lock: Any  # filelock.FileLock
    depth: int


_held: dict[Path, _Held] = {}  # lock file -> this process's hold on it
_guard = threading.Lock()


def command_line() -> str:
    """This process's command line as a user would type it (``curate ingest raw -c cat``)."""
    argv = list(sys.argv) or ["python"]
    program = Path(argv[0]).name
    if program == "__main__.py":  # python -m curate
        program = Path(argv[0]).parent.name
    return shlex.join([program, *argv[1:]])


def read_holder(layout: CatalogLayout) -> dict[str, Any] | None:
    """The recorded holder of the writer lock, or None when there is no (readable) record."""
    try:
        holder = json.loads(layout.writer_holder.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "another process (no holder recorded yet)"
    return (f"`{holder.get('command', '?')}` ({holder.get('job', '?')}, PID {holder.get('pid')} "
            f"on {holder.get('host')}, since {holder.get('since')})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextmanager
def writing(layout: CatalogLayout, job: str) -> Iterator[None]:
    """Hold the catalog's writer lock for the block; re-entrant within one process.

    Raises :class:`CatalogBusy` at once when another process holds it."""
    from filelock import FileLock, Timeout

    layout.root.mkdir(parents=True, exist_ok=True)
    key = layout.writer_lock.resolve()
    with _guard:
        held = _held.get(key)
        if held is not None:
            held.depth += 1
        else:
            lock = FileLock(str(key), timeout=0, thread_local=False)
            try:
                lock.acquire()
            except Timeout:
                holder = read_holder(layout)
                gone = (holder is not None and holder.get("host") == socket.gethostname()
                        and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]))
                raise CatalogBusy(
                    f"{layout.root} is being written by {describe_holder(holder)}"
                    + ("; that process is gone but a process it started still holds the lock"
                       if gone else "; wait for it to finish, or stop it")
                ) from None
            held = _Held(lock, 1)
            _held[key] = held
            try:
                _take_over(layout, job)
            except BaseException:
                del _held[key]
                lock.release()
                raise
    try:
        yield
    finally:
        with _guard:
            held.depth -= 1
            if held.depth == 0:
                del _held[key]
                layout.writer_holder.unlink(missing_ok=True)
                held.lock.release()


def _take_over(layout: CatalogLayout, job: str) -> None:
    """Just after the lock is taken: note a stale holder, clear dead jobs' staging, record us."""
    stale = read_holder(layout)
    if stale is not None and stale.get("pid") != os.getpid():
        print(f"note: took over the writer lock of {layout.root} from {describe_holder(stale)}, "
              "which ended without releasing it", file=sys.stderr)
    # Nobody else writes while we hold the lock: whatever is staged is a dead job's.
    shutil.rmtree(layout.staging, ignore_errors=True)
    write_json_atomic(layout.writer_holder, {
        "command": command_line(),
        "job": job,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })


def holding(layout: CatalogLayout) -> bool:
    """Whether this process holds the catalog's writer lock."""
    with _guard:
        return layout.writer_lock.resolve() in _held
