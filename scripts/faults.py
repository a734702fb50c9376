"""Fault injection: damage a small real catalog in every way we can think of, one fault at a
time, and count what `curate verify` detects and what a rerun recovers.

    .venv/bin/python scripts/faults.py              # every file x (flip, truncate, delete), kills
    .venv/bin/python scripts/faults.py --kills 20   # more kill -9 points per command

Faults:
- **damage**: for every file of the catalog (bronze parts, quarantines, silver, rejections,
  splits, slices, weights, every manifest, catalog.json, catalog.duckdb): one byte flipped in
  the middle, the file cut to half its size, or the file deleted;
- **kill**: `kill -9` of `curate ingest`, `build-slice` and `weights compute` at a point drawn
  uniformly over the command's measured duration (a fresh copy of the catalog each time).

Detected: `curate verify` (every byte) names a problem, or opening the catalog fails with one
line. Recovered: after `curate verify --repair` and a rerun of the commands that built the
catalog, `curate verify` passes and every file is byte for byte the baseline's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.verify import repair_catalog  # noqa: E402
from curation.catalog import Catalog  # noqa: E402
from curation.errors import UserError  # noqa: E402
from curation.ingest import ingest  # noqa: E402
from curation.integrity import restore_catalog_json, verify_catalog  # noqa: E402
from curation.paths import CatalogLayout  # noqa: E402
from curation.slices import Slice, build_slice  # noqa: E402
from curation.synth import SynthConfig, synthesize  # noqa: E402
from weighting.catalog_io import compute_weights  # noqa: E402

FRAC, SPEC = 0.5, "effiminivlm"
DAMAGES = ("flip", "truncate", "delete")
# The commands that build the catalog, as a user runs them (the kill faults' targets).
COMMANDS = {
    "ingest": ["ingest", "{raw}"],
    "build-slice": ["build-slice", "--frac", str(FRAC), "--no-validate"],
    "weights compute": ["weights", "compute", "--slice", f"default-frac{FRAC:g}-seed0",
                        "--strategy", SPEC],
}


@dataclass
class Outcome:
    fault: str  # "flip silver/default/items.parquet", "kill build-slice at 1.2 s"
    kind: str  # the fault's family: flip, truncate, delete, kill
    detected: bool
    recovered: bool
    note: str = ""


def build(raw: Path, catalog: Path) -> None:
    """What the user ran: ingest, a slice, its weights."""
    ingest(str(raw), catalog)
    build_slice(catalog, FRAC)
    compute_weights(Slice.open(catalog, f"default-frac{FRAC:g}-seed0"), SPEC)


def fingerprint(catalog: Path) -> dict[str, str]:
    """SHA-256 of every recorded file (not the views' database, the lock, scratch)."""
    skip = {"catalog.duckdb", "catalog.duckdb.wal", ".writer.lock", ".writer.json"}
    return {str(p.relative_to(catalog)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(catalog.rglob("*")) if p.is_file() and p.name not in skip
            and not p.relative_to(catalog).parts[0].startswith((".staging", ".spill"))}


def detect(catalog: Path) -> tuple[bool, str]:
    try:
        report = verify_catalog(catalog)
    except UserError as exc:  # catalog.json itself damaged: one line, not a traceback
        return True, str(exc).splitlines()[0][:100]
    return (not report.ok,
            "; ".join(f"{p.path}: {p.what}" for p in report.problems)[:100])


def recover(raw: Path, catalog: Path, baseline: dict[str, str]) -> tuple[bool, str]:
    """`curate verify --repair`, the user's commands again, then verify and compare bytes."""
    try:
        layout = CatalogLayout(catalog)
        if layout.manifest.exists() or layout.catalog_backup.exists():
            try:
                Catalog.open(catalog)
            except UserError:  # what `curate verify --repair` does first
                restore_catalog_json(layout)
            report = verify_catalog(catalog)
            if report.problems:
                repair_catalog(Catalog.open(catalog), report.problems)
        # else: killed before its first catalog.json: the rerun starts it afresh
        build(raw, catalog)
        final = verify_catalog(catalog)
    except UserError as exc:
        return False, f"rerun: {str(exc).splitlines()[0][:90]}"
    if not final.ok:
        return False, f"still: {final.problems[0].path}: {final.problems[0].what}"
    now = fingerprint(catalog)
    differ = sorted(k for k in baseline if now.get(k) != baseline[k])
    return (not differ, f"bytes differ: {differ[:2]}" if differ else "")


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()


def damage_faults(raw: Path, base: Path, work: Path, baseline: dict[str, str],
                  files: list[str], log: Callable[[Outcome], None],
                  damages: tuple[str, ...] = DAMAGES) -> list[Outcome]:
    outcomes = []
    for rel in files:
        for how in damages:
            copy = work / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(base, copy)
            if not (copy / rel).stat().st_size and how != "delete":
                continue  # an empty file has no byte to flip
            if rel == "catalog.duckdb" and how == "delete":
                continue  # views only, made by the next command: deleting it is no damage
            damage(copy / rel, how)
            detected, seen = detect(copy)
            recovered, note = recover(raw, copy, baseline)
            outcomes.append(Outcome(f"{how} {rel}", how, detected, recovered,
                                    note or seen))
            log(outcomes[-1])
    return outcomes


def kill_faults(raw: Path, starts: dict[str, Path | None], work: Path,
                baseline: dict[str, str], kills: int, rng: random.Random,
                log: Callable[[Outcome], None]) -> list[Outcome]:
    """kill -9 each command at points drawn over its measured run, each time on a fresh copy
    of the catalog as it was before that command."""
    outcomes = []
    for name, args in COMMANDS.items():
        copy = work / "copy"

        def fresh(start: Path | None = starts[name], copy: Path = copy) -> None:
            shutil.rmtree(copy, ignore_errors=True)
            if start is not None:
                shutil.copytree(start, copy)

        fresh()
        started = time.perf_counter()
        subprocess.run(_command(args, raw, copy), capture_output=True, timeout=600, check=True)
        duration = time.perf_counter() - started
        for _ in range(kills):
            fresh()
            at = rng.uniform(0, duration)
            _run_killed(args, raw, copy, at)
            if (copy / "catalog.json").exists():
                damaged, seen = detect(copy)
            else:
                damaged, seen = False, "no catalog.json yet"
            recovered, note = recover(raw, copy, baseline)
            # an interrupted job must leave nothing recorded damaged: "detected" here means
            # verify found the catalog consistent right after the kill
            outcomes.append(Outcome(f"kill {name} at {at:.2f} of {duration:.2f} s", "kill",
                                    detected=not damaged, recovered=recovered,
                                    note=note or seen))
            log(outcomes[-1])
    return outcomes


def _command(args: list[str], raw: Path, catalog: Path) -> list[str]:
    return [sys.executable, "-m", "curate", *(a.format(raw=raw) for a in args),
            "--catalog", str(catalog)]


def _run_killed(args: list[str], raw: Path, catalog: Path, at: float) -> None:
    process = subprocess.Popen(_command(args, raw, catalog), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    try:
        process.wait(timeout=at)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _without_weights(base: Path, target: Path) -> Path:
    """The catalog as it was before `weights compute`: its slice, not its weights."""
    shutil.copytree(base, target)
    shutil.rmtree(target / "weights")
    catalog = Catalog.open(target)
    catalog.tables = {k: v for k, v in catalog.tables.items() if not k.startswith("weights_")}
    catalog.manifests = {k: v for k, v in catalog.manifests.items()
                         if not k.startswith("weights/")}
    catalog.save()
    return target


def run(items: int, kills: int, seed: int, files_limit: int | None,
        log: Callable[[Outcome], None]) -> list[Outcome]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="curate-faults-") as tmp:
        work = Path(tmp)
        synthesize(work / "corpus", SynthConfig(n_items=items, seed=seed, images=False))
        raw = work / "corpus" / "raw"
        ingested = work / "ingested"
        ingest(str(raw), ingested)
        base = work / "base"
        build(raw, base)
        baseline = fingerprint(base)
        files = [*sorted(baseline), "catalog.duckdb"]
        if files_limit is not None:
            files = rng.sample(files, min(files_limit, len(files)))
        starts = {"ingest": None, "build-slice": ingested,
                  "weights compute": _without_weights(base, work / "no-weights")}
        return (damage_faults(raw, base, work, baseline, files, log)
                + kill_faults(raw, starts, work, baseline, kills, rng, log))


def summary(outcomes: list[Outcome]) -> str:
    by_kind: dict[str, Counter[str]] = {}
    for o in outcomes:
        counts = by_kind.setdefault(o.kind, Counter())
        counts["injected"] += 1
        counts["detected"] += o.detected
        counts["recovered"] += o.recovered
    lines = ["| fault | injected | detected (kill: catalog consistent) | recovered |",
             "|---|---:|---:|---:|"]
    for kind, c in by_kind.items():
        lines.append(f"| {kind} | {c['injected']} | {c['detected']} | {c['recovered']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--kills", type=int, default=5, help="kill points per command")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    def log(o: Outcome) -> None:
        flag = ("detected" if o.detected else "NOT DETECTED") + ", " + (
            "recovered" if o.recovered else "NOT RECOVERED")
        print(f"{o.fault}: {flag}" + (f" ({o.note})" if o.note else ""), flush=True)

    outcomes = run(args.items, args.kills, args.seed, None, log)
    print()
    print(summary(outcomes))


if __name__ == "__main__":
    main()
