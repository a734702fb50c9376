"""What the benchmarks share: running code in a fresh process, timed, with its peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_measured(code: str, *args: str, tree: Path = ROOT) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a fresh Python process running ``code`` with the
    code of the checkout ``tree`` (another one: a worktree of an earlier commit)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=tree)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"benchmark process failed with status {status}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024
