"""``curate study run``: a grid of (fraction x weighting strategy x seed) training runs.

A study is a TOML file (see ``StudyConfig`` and the README); its folder holds ``study.toml``
(the config as run), ``runs/<run>/`` (one ``curate train`` run folder each) and, after
``curate study report``, ``report/``. A run's ``manifest.json`` is its completion marker:
a study that is stopped and started again skips every finished run and resumes an
unfinished one from its last epoch (see training/trainer.py).

The seed of a run is both the slice seed (which items a fraction draws; slices of one seed
are nested) and the trainer's seed (head initialisation, shuffles), so the spread over seeds
is the spread a user would see from drawing the data and training again.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_FRACTIONS = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
DEFAULT_STRATEGIES = ("uniform", "effiminivlm")
DEFAULT_SEEDS = (0, 1, 2)
MIN_SEEDS = 3  # a mean and an interval need a spread
TRAINER_KEYS = ("mode", "image_encoder", "text_encoder", "epochs", "batch_size", "lr",
                "patience", "huber_delta", "renormalise", "weight_decay", "warmup", "clip")
REPORT_KEYS = ("bootstrap", "extrapolate_from", "target_plcc", "target_rmse", "baseline")
RUNS_DIR = "runs"
CONFIG_COPY = "study.toml"


@dataclass(frozen=True)
class StudyConfig:
    """What a study runs. Paths are relative to the config file's folder."""

    name: str
    catalog: str
    corpus: str | None = None  # a raw corpus folder (or hf:// path) to ingest first
    out: str | None = None  # the study folder (default: studies/<name> beside the config)
    profile: str = "default"
    min_per_category: int = 0
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    trainer: dict[str, Any] = field(default_factory=lambda: {"mode": "frozen"})
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def baseline(self) -> str:
        return str(self.report.get("baseline", self.strategies[0]))


def load_study_config(path: Path | str) -> tuple[StudyConfig, Path]:
    """(config with paths made absolute, study folder). Errors name the file and the key."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such study config")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    known = {f.name for f in fields(StudyConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(sorted(known))}")
    for key in ("name", "catalog"):
        if key not in data:
            raise ValueError(f"{path}: missing key {key!r}")
    for key, valid in (("trainer", TRAINER_KEYS), ("report", REPORT_KEYS)):
        extra = sorted(set(data.get(key, {})) - set(valid))
        if extra:
            raise ValueError(f"{path}: unknown [{key}] key(s) {', '.join(extra)}; valid: "
                             f"{', '.join(valid)}")
    base = path.resolve().parent
    for key in ("catalog", "corpus", "out"):
        value = data.get(key)
        if value is not None and "://" not in str(value):
            data[key] = str((base / value).resolve())
    for key in ("fractions", "strategies", "seeds"):
        if key in data:
            data[key] = tuple(data[key])
    data.setdefault("trainer", {"mode": "frozen"})
    config = StudyConfig(**data)
    _check(config, path)
    folder = Path(config.out) if config.out else base / "studies" / config.name
    return config, folder


def _check(config: StudyConfig, path: Path) -> None:
    import weighting

    if not config.fractions or any(not 0 < f <= 1 for f in config.fractions):
        raise ValueError(f"{path}: fractions must lie in (0, 1], got {list(config.fractions)}")
    if len(set(config.fractions)) != len(config.fractions):
        raise ValueError(f"{path}: fractions repeat a value")
    if len(set(config.seeds)) < MIN_SEEDS:
        raise ValueError(f"{path}: give at least {MIN_SEEDS} distinct seeds (intervals need "
                         f"them), got {list(config.seeds)}")
    if not config.strategies:
        raise ValueError(f"{path}: give at least one strategy")
    for spec in config.strategies:
        try:
            for name, params in weighting.parse_spec(spec):
                weighting.get_strategy(name).resolve(params)
        except ValueError as exc:
            raise ValueError(f"{path}: strategy {spec!r}: {exc}") from None
    if config.baseline not in config.strategies:
        raise ValueError(f"{path}: baseline {config.baseline!r} is not one of the strategies")
    mode = config.trainer.get("mode", "frozen")
    if mode not in ("frozen", "finetune"):
        raise ValueError(f"{path}: [trainer] mode must be frozen or finetune, got {mode!r}")


@dataclass(frozen=True)
class PlannedRun:
    fraction: float
    strategy: str
    seed: int
    slice: str
    name: str


def slice_for(config: StudyConfig, fraction: float, seed: int) -> str:
    from curation.slices import slice_name

    name = slice_name(config.profile, fraction, seed)
    return f"{name}-min{config.min_per_category}" if config.min_per_category else name


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


def run_folder(study_dir: Path, run: PlannedRun) -> Path:
    return study_dir / RUNS_DIR / run.name


def is_complete(folder: Path) -> bool:
    return (folder / "manifest.json").exists()


def _ensure_slices(config: StudyConfig, log: Callable[[str], None]) -> None:
    from curation.slices import build_slice, list_slices

    existing = {m["name"]: m for m in list_slices(config.catalog)}
    for seed in config.seeds:
        for fraction in sorted(config.fractions):
            name = slice_for(config, fraction, seed)
            wanted = {"frac": fraction, "seed": seed, "min_per_category": config.min_per_category,
                      "profile": config.profile}
            have = existing.get(name, {}).get("parameters", {})
            if all(have.get(k) == v for k, v in wanted.items()):
                continue
            result = build_slice(config.catalog, fraction, seed=seed, profile=config.profile,
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
    from curation.catalog import Catalog, CatalogError
    from training.trainer import TrainConfig, train

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
        Catalog.open(config.catalog)
    except CatalogError as exc:
        raise ValueError(f"{config_path}: {exc}") from None
    _ensure_slices(config, log)
    runs = plan(config)
    _write_study_json(folder, config, runs)
    done = [r for r in runs if is_complete(run_folder(folder, r))]
    todo = [r for r in runs if not is_complete(run_folder(folder, r))]
    log(f"study {config.name}: {len(runs)} runs ({len(config.fractions)} fractions x "
        f"{len(config.strategies)} strategies x {len(config.seeds)} seeds), {len(done)} "
        f"already complete, {len(todo)} to run -> {folder}")
    trainer = {k: v for k, v in config.trainer.items() if k in TRAINER_KEYS}
    if todo and trainer.get("mode", "frozen") == "frozen":
        # Encode every item once, up front (the seeds' largest slices hold them all), so
        # that the runs only train heads and the time left can be told.
        from training.trainer import encode_slice

        largest = max(config.fractions)
        for seed in config.seeds:
            name = slice_for(config, largest, seed)
            encoded = encode_slice(TrainConfig(catalog=config.catalog, slice=name,
                                               weights="uniform", seed=seed, **trainer),
                                   workers=workers)
            if encoded:
                log(f"embedding cache: {encoded:,} items of {name} encoded")
    timings: list[float] = []
    seen: set[str] = set()
    for i, run in enumerate(todo, start=1):
        run_started = time.perf_counter()
        train_config = TrainConfig(catalog=config.catalog, slice=run.slice,
                                   weights=run.strategy, seed=run.seed, **trainer)
        result = train(train_config, run_folder(folder, run), workers=workers,
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
        "complete": all(is_complete(run_folder(folder, r)) for r in runs),
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
        raise ValueError(f"{folder} is not a study folder (no study.json): run "
                         "curate study run CONFIG first")
    # study.json holds the config with its paths as resolved when the study ran
    data = json.loads((folder / "study.json").read_text())["config"]
    for key in ("fractions", "strategies", "seeds"):
        data[key] = tuple(data[key])
    config = StudyConfig(**data)
    return config, plan(config)
