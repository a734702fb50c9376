"""``curate study run``: a grid of (fraction x weighting strategy x seed) training runs.

A study is a TOML file (see ``StudyConfig`` and the README); its folder holds ``study.toml``
(the config as run), ``runs/<run>/`` (one ``curate train`` run folder each) and, after
``curate study report``, ``report/``. A run's ``manifest.json`` is its completion marker:
a study that is stopped and started again skips every finished run and resumes an
unfinished one from its last epoch (see training/trainer.py, training/run_folder.py).

The seed of a run is both the slice seed (which items a fraction draws; slices of one seed
are nested) and the trainer's seed (head initialisation, shuffles), so the spread over seeds
is the spread a user would see from drawing the data and training again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from curation.catalog import Catalog, CatalogError
from curation.errors import UserError
from training.config import TrainConfig
from training.run_folder import RunFolder
from training.study.config import TRAINER_KEYS, StudyConfig, load_study_config

RUNS_DIR = "runs"
CONFIG_COPY = "study.toml"


@dataclass(frozen=True)
class PlannedRun:
    fraction: float
    strategy: str
    seed: int
    slice: str
    name: str


def slice_for(config: StudyConfig, fraction: float, seed: int) -> str:
    from curation.slices import slice_name

    return slice_name(config.profile, fraction, seed, min_per_category=config.min_per_category)


def plan(config: StudyConfig) -> list[PlannedRun]:
    """Every run of the grid, seed by seed, small fractions first."""
    from weighting.catalog_io import weights_id

    runs = []
    for seed in config.seeds:
        for fraction in sorted(config.fractions):
            for strategy in config.strategies:
                name = f"frac{fraction:g}__{weights_id(strategy)}__seed{seed}"
                runs.append(PlannedRun(fraction, strategy, seed,
                                       slice_for(config, fraction, seed), name))
    return runs


def run_folder(study_dir: Path, run: PlannedRun) -> RunFolder:
    return RunFolder(study_dir / RUNS_DIR / run.name)


def _ensure_slices(catalog: Catalog, config: StudyConfig, log: Callable[[str], None]) -> None:
    from curation.slices import build_slice, list_slices

    existing = {m["name"]: m for m in list_slices(catalog)}
    for seed in config.seeds:
        for fraction in sorted(config.fractions):
            name = slice_for(config, fraction, seed)
            wanted = {"frac": fraction, "seed": seed, "min_per_category": config.min_per_category,
                      "profile": config.profile}
            have = existing.get(name, {}).get("parameters", {})
            if all(have.get(k) == v for k, v in wanted.items()):
                continue
            result = build_slice(catalog, fraction, seed=seed, profile=config.profile,
                                 min_per_category=config.min_per_category, name=name)
            rows = result.manifest["rows"]
            log(f"slice {name}: train {rows['train']:,}, val {rows['val']:,}, "
                f"test {rows['test']:,}")


@dataclass
class StudyRunResult:
    folder: Path
    planned: int
    trained: int  # runs trained (or resumed) now
    skipped: int  # runs already complete
    seconds: float


def run_study(
    config_path: Path | str,
    *,
    out: Path | str | None = None,
    workers: int = 1,
    log: Callable[[str], None] = print,
    after_run: Callable[[PlannedRun], None] | None = None,
) -> StudyRunResult:
    """Build what is missing (catalog, slices, weights) and run every unfinished run."""
    from curation.slices import Slice
    from training.trainer import train

    started = time.perf_counter()
    config, folder = load_study_config(config_path)
    folder = Path(out) if out is not None else folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_COPY).write_text(Path(config_path).read_text())
    if config.corpus is not None:
        from curation.ingest import ingest

        results = ingest(config.corpus, config.catalog)
        log(f"ingest {config.corpus}: {sum(r.rows_ingested for r in results):,} rows")
    try:
        catalog = Catalog.open(config.catalog)
    except CatalogError as exc:
        raise UserError(f"{config_path}: {exc}") from None
    _ensure_slices(catalog, config, log)
    runs = plan(config)
    _try_strategies(catalog, runs, config_path)
    _write_study_json(folder, config, runs)
    done = [r for r in runs if run_folder(folder, r).is_complete()]
    todo = [r for r in runs if not run_folder(folder, r).is_complete()]
    log(f"study {config.name}: {len(runs)} runs ({len(config.fractions)} fractions x "
        f"{len(config.strategies)} strategies x {len(config.seeds)} seeds), {len(done)} "
        f"already complete, {len(todo)} to run -> {folder}")
    trainer = {k: v for k, v in config.trainer.items() if k in TRAINER_KEYS}
    if todo and trainer.get("mode", "frozen") == "frozen":
        # Encode every item once, up front (the seeds' largest slices hold them all), so
        # that the runs only train heads and the time left can be told.
        from training.embeddings import embed_slice

        encoders = {k: trainer[k] for k in ("image_encoder", "text_encoder") if k in trainer}
        largest = max(config.fractions)
        for seed in config.seeds:
            name = slice_for(config, largest, seed)
            _, embedded = embed_slice(Slice.open(catalog, name), **encoders,
                                      columns=["model_text", "main_image_url"], workers=workers)
            encoded = embedded.encoded_now
            if encoded:
                log(f"embedding cache: {encoded:,} items of {name} encoded")
    timings: list[float] = []
    seen: set[str] = set()
    for i, run in enumerate(todo, start=1):
        run_started = time.perf_counter()
        train_config = TrainConfig(catalog=config.catalog, slice=run.slice,
                                   weights=run.strategy, seed=run.seed, **trainer)
        result = train(train_config, run_folder(folder, run).path, workers=workers,
                       log=lambda line: _relay(line, seen, log))
        timings.append(time.perf_counter() - run_started)
        left = (len(todo) - i) * sorted(timings)[len(timings) // 2]
        test = result.metrics["test"]
        plcc = "n/a" if test["plcc"] is None else f"{test['plcc']:.3f}"
        log(f"[{len(done) + i}/{len(runs)}] {run.name}: test PLCC {plcc}, RMSE "
            f"{test['rmse']:.3f} ({timings[-1]:.1f} s; about {_duration(left)} left)")
        if after_run is not None:
            after_run(run)
    _write_study_json(folder, config, runs)
    return StudyRunResult(folder, len(runs), len(todo), len(done), time.perf_counter() - started)


def _try_strategies(catalog: Catalog, runs: list[PlannedRun], config_path: Path | str) -> None:
    """Every strategy on every slice it will weigh, before anything is encoded or trained: one
    that cannot run there (an audit not made yet, say) fails now, not after the encoding."""
    from curation.slices import Slice
    from weighting.catalog_io import try_weights

    for slice_name, spec in sorted({(r.slice, r.strategy) for r in runs}):
        try:
            try_weights(Slice.open(catalog, slice_name), spec)
        except UserError as exc:
            raise UserError(f"{config_path}: strategy {spec!r} on slice {slice_name}: "
                            f"{exc}") from None


def _relay(line: str, seen: set[str], log: Callable[[str], None]) -> None:
    """A run's log lines worth showing in a study: not its epochs, not cache hits, each kind
    of note once."""
    if line.startswith("epoch ") or line.startswith("embeddings: 0 encoded"):
        return
    kind = re.sub(r"[\d,.]+", "#", line)  # the same note about another slice's counts
    if kind in seen:
        return
    seen.add(kind)
    log("    " + line)


def _write_study_json(folder: Path, config: StudyConfig, runs: list[PlannedRun]) -> None:
    from curation.manifest import versions, write_json_atomic

    write_json_atomic(folder / "study.json", {
        "config": asdict(config),
        "runs": [asdict(r) for r in runs],
        "complete": all(run_folder(folder, r).is_complete() for r in runs),
        "versions": versions(),
    })


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def load_study(folder: Path | str) -> tuple[StudyConfig, list[PlannedRun]]:
    """The config and plan of a study folder (from its copy of the config)."""
    folder = Path(folder)
    if not (folder / "study.json").exists():
        raise UserError(f"{folder} is not a study folder (no study.json): run "
                        "curate study run CONFIG first")
    # study.json holds the config with its paths as resolved when the study ran
    data = json.loads((folder / "study.json").read_text())["config"]
    for key in ("fractions", "strategies", "seeds"):
        data[key] = tuple(data[key])
    config = StudyConfig(**data)
    return config, plan(config)
