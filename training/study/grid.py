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
from typing import Any

import numpy as np

from curation.catalog import Catalog, CatalogError
from curation.errors import UserError
from training.config import TrainConfig
from training.loss_registry import DEFAULT_LOSS
from training.run_folder import RunFolder
from training.study.config import TRAINER_KEYS, StudyConfig, load_study_config

RUNS_DIR = "runs"
CONFIG_COPY = "study.toml"
STUDY_SPLIT_SEED = 0  # every slice of a study is cut from this split


@dataclass(frozen=True)
class PlannedRun:
    fraction: float
    strategy: str
    seed: int
    slice: str
    name: str
    loss: str = DEFAULT_LOSS
    arm: str = ""  # how the report names its (strategy, loss): see StudyConfig.arms


def slice_for(config: StudyConfig, fraction: float, seed: int) -> str:
    from curation.slices import slice_name

    return slice_name(config.profile, fraction, seed, min_per_category=config.min_per_category)


def plan(config: StudyConfig) -> list[PlannedRun]:
    """Every run of the grid, seed by seed, small fractions first."""
    from weighting.catalog_io import weights_id

    runs = []
    for seed in config.seeds:
        for fraction in sorted(config.fractions):
            for arm, (strategy, loss) in config.arm_parts().items():
                # the default loss keeps the names of studies made before losses were an axis
                with_loss = "" if loss == DEFAULT_LOSS else f"__{weights_id(loss)}"
                name = f"frac{fraction:g}__{weights_id(strategy)}{with_loss}__seed{seed}"
                runs.append(PlannedRun(fraction, strategy, seed,
                                       slice_for(config, fraction, seed), name, loss, arm))
    return runs


def run_folder(study_dir: Path, run: PlannedRun) -> RunFolder:
    return RunFolder(study_dir / RUNS_DIR / run.name)


def _ensure_slices(catalog: Catalog, config: StudyConfig, log: Callable[[str], None],
                   wanted_slices: list[tuple[float, int]] | None = None) -> None:
    """Build the study's slices that are missing. A slice of the same name made with other
    parameters (another split seed, strata, exclusion) is refused, naming what differs: the
    study would otherwise mix slices of different splits."""
    from curation.slices import DEFAULT_STRATA, build_slice, list_slices

    existing = {m["name"]: m for m in list_slices(catalog)}
    if wanted_slices is None:
        wanted_slices = [(f, s) for s in config.seeds for f in sorted(config.fractions)]
    for fraction, seed in wanted_slices:
        name = slice_for(config, fraction, seed)
        wanted = {"frac": fraction, "seed": seed, "strata": list(DEFAULT_STRATA),
                  "min_per_category": config.min_per_category, "exclude_label_issues": None,
                  "exclude_misaligned": None, "profile": config.profile,
                  "split_seed": STUDY_SPLIT_SEED}
        if name in existing:
            have = existing[name].get("parameters", {})
            differ = sorted(k for k in wanted if have.get(k) != wanted[k])
            if differ:
                shown = ", ".join(f"{k} {have.get(k)!r} (the study needs {wanted[k]!r})"
                                  for k in differ)
                raise UserError(f"slice {name} exists with other parameters: {shown}; delete "
                                "it or use another catalog")
            continue
        result = build_slice(catalog, fraction, seed=seed, profile=config.profile,
                             min_per_category=config.min_per_category, name=name,
                             split_seed=STUDY_SPLIT_SEED)
        rows = result.manifest["rows"]
        log(f"slice {name}: train {rows['train']:,}, val {rows['val']:,}, "
            f"test {rows['test']:,}")


def _check_reviews(catalog: Catalog, config: StudyConfig, config_path: Path | str,
                   log: Callable[[str], None]) -> list[str]:
    """Strategies that read review lines, on a catalog whose items have none, are refused
    before any work (they would be constant or all zeros), unless the config allows it; then
    the report says so. Returns the notes to report."""
    import weighting
    from curation.slices import Slice

    readers = sorted({spec for spec in config.strategies
                      for name, _ in weighting.parse_spec(spec)
                      if weighting.reads_reviews(weighting.get_strategy(name))})
    if not readers:
        return []
    items = Slice.open(catalog, slice_for(config, 1.0, config.seeds[0])).items(
        ["review_count"])
    with_reviews = int((items["review_count"].fill_null(0) > 0).sum())
    if with_reviews:
        return []
    shown = ", ".join(repr(s) for s in readers)
    if not config.evaluation.get("allow_without_reviews", False):
        raise UserError(f"{config_path}: strategies {shown} read review lines, and no item of "
                        f"the catalog has one (profile {config.profile}); remove them, ingest "
                        "the category's reviews, or set allow_without_reviews = true in "
                        "[evaluation]")
    note = (f"strategies {shown} read review lines, and no item has one: they ran anyway "
            "(allow_without_reviews = true), on review statistics that are 0 or pooled guesses")
    log(f"NOTE: {note}")
    return [note]


def _image_encoder_to_run(catalog: Catalog, config: StudyConfig,
                          log: Callable[[str], None]) -> tuple[str, list[str]]:
    """The image encoder the study runs: the configured one, or none (text only) when no item
    has an image file to read, said loudly once. (Items whose file does not decode are found
    when encoding: the report counts the images actually read.)"""
    from curation.images import resolve_image_paths
    from curation.slices import Slice
    from training.encoders import DEFAULT_IMAGE_ENCODER, NO_IMAGE_ENCODER

    asked = str(config.trainer.get("image_encoder", DEFAULT_IMAGE_ENCODER))
    if asked == NO_IMAGE_ENCODER:
        return asked, []
    items = Slice.open(catalog, slice_for(config, 1.0, config.seeds[0])).items(
        ["main_image_url"])
    paths = resolve_image_paths(items["main_image_url"].to_list(), catalog.layout)
    if any(p is not None for p in paths):
        return asked, []
    note = (f"no item of the study has an image file (0 of {items.height:,}; fetch them with "
            f"curate images fetch): text only, the image encoder {asked!r} is not run")
    log("")
    log(f"NOTE: {note}")
    log("")
    return NO_IMAGE_ENCODER, [note]


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
    if config.in_memory:  # one 100% slice holds every item the folds and fractions draw
        _ensure_slices(catalog, config, log, [(1.0, config.seeds[0])])
    else:
        _ensure_slices(catalog, config, log)
    notes = _check_reviews(catalog, config, config_path, log)
    image_encoder, image_notes = _image_encoder_to_run(catalog, config, log)
    notes += image_notes
    if config.in_memory:
        return _run_in_memory(catalog, config, folder, image_encoder, notes, workers, log,
                              started)
    runs = plan(config)
    _try_strategies(catalog, runs, config_path)
    _write_study_json(folder, config, runs)
    done = [r for r in runs if run_folder(folder, r).is_complete()]
    todo = [r for r in runs if not run_folder(folder, r).is_complete()]
    losses = f" x {len(config.losses)} losses" if len(config.losses) > 1 else ""
    log(f"study {config.name}: {len(runs)} runs ({len(config.fractions)} fractions x "
        f"{len(config.strategies)} strategies{losses} x {len(config.seeds)} seeds), {len(done)} "
        f"already complete, {len(todo)} to run -> {folder}")
    trainer = {k: v for k, v in config.trainer.items() if k in TRAINER_KEYS and k != "head"}
    trainer["image_encoder"] = image_encoder
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
                                   weights=run.strategy, seed=run.seed, loss=run.loss,
                                   **trainer)
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
    ran = _ran_from_runs(folder, runs)
    _write_study_json(folder, config, runs, ran={**ran, "notes": notes})
    return StudyRunResult(folder, len(runs), len(todo), len(done), time.perf_counter() - started)


def _ran_from_runs(folder: Path, runs: list[PlannedRun]) -> dict[str, Any]:
    """What the runs' manifests say ran: encoders and image counts, from a finished run of the
    largest fraction (its slice holds every item: the whole val and test splits too)."""
    for run in sorted(runs, key=lambda r: -r.fraction):
        run_dir = run_folder(folder, run)
        if run_dir.is_complete():
            manifest = run_dir.read_manifest()
            counts = manifest.get("counts", {})
            items = sum(counts.get(f"{s}_items", 0) for s in ("train", "val", "test"))
            return {"encoders": manifest.get("encoders_ran", manifest.get("encoders")),
                    "items": items,
                    "items_with_image": counts.get("items_with_image",
                                                   items - counts.get("items_without_image", 0)),
                    "design": "holdout", "head": "mlp"}
    return {}


def _run_in_memory(catalog: Catalog, config: StudyConfig, folder: Path, image_encoder: str,
                   notes: list[str], workers: int, log: Callable[[str], None],
                   started: float) -> StudyRunResult:
    """Encode every item once, then fit every unit's heads in memory (training.study.crossfit)."""
    import polars as pl

    from curation.manifest import sha256_file
    from curation.slices import Slice
    from training.embeddings import embed_slice
    from training.encoders import (
        DEFAULT_IMAGE_ENCODER,
        DEFAULT_TEXT_ENCODER,
        describe_encoders,
    )
    from training.study.crossfit import StudyData, run_units, units

    every = Slice.open(catalog, slice_for(config, 1.0, config.seeds[0]))
    text_encoder = str(config.trainer.get("text_encoder", DEFAULT_TEXT_ENCODER))
    plan_record = {"design": config.design, "folds": config.folds, "repeats": config.repeats,
                   "fractions": sorted(config.fractions), "strategies": list(config.strategies),
                   "losses": list(config.losses), "seeds": list(config.seeds),
                   "head": config.head,
                   "trainer": {k: v for k, v in sorted(config.trainer.items())
                               if k != "image_encoder"},
                   "image_encoder": image_encoder, "text_encoder": text_encoder,
                   "profile": config.profile, "min_per_category": config.min_per_category,
                   "items_sha256": sha256_file(every.path)}
    _check_plan(folder, plan_record)
    items, embedded = embed_slice(every, image_encoder=image_encoder, text_encoder=text_encoder,
                                  workers=workers)
    if embedded.encoded_now:
        log(f"embedding cache: {embedded.encoded_now:,} items of {every.name} encoded")
    groups = pl.read_parquet(catalog.layout.split_assignments(config.profile, STUDY_SPLIT_SEED),
                             columns=["parent_asin", "group_id"])
    items = items.join(groups, on="parent_asin", how="left", maintain_order="left")
    data = StudyData(items, embedded.features)
    planned = len(units(config.design, config.folds, config.repeats))
    per_unit = len(config.seeds) * len(config.fractions) * len(config.arms)
    losses = f" x {len(config.losses)} losses" if len(config.losses) > 1 else ""
    log(f"study {config.name}: {config.design} design, {planned} unit(s) x {per_unit} runs "
        f"({len(config.fractions)} fractions x {len(config.strategies)} strategies{losses} x "
        f"{len(config.seeds)} seeds), {config.head} head, on {items.height:,} items -> {folder}")
    trained, skipped = run_units(
        data, folder, design=config.design, folds=config.folds, repeats=config.repeats,
        fractions=config.fractions, arms=config.arm_parts(), seeds=config.seeds,
        head=config.head, trainer=config.trainer, min_per_category=config.min_per_category,
        log=log)
    with_image = int(np.asarray(embedded.has_image).sum())
    asked_image = str(config.trainer.get("image_encoder", DEFAULT_IMAGE_ENCODER))
    ran = {"encoders": describe_encoders(*_sources(image_encoder, text_encoder),
                                         image_encoder=asked_image, text_encoder=text_encoder),
           "items": items.height, "items_with_image": with_image, "design": config.design,
           "folds": config.folds if config.design == "kfold" else None,
           "repeats": config.repeats if config.design == "kfold" else None,
           "head": config.head, "notes": notes}
    _write_study_json(folder, config, plan(config), ran=ran)
    return StudyRunResult(folder, planned * per_unit, trained * per_unit, skipped * per_unit,
                          time.perf_counter() - started)


def _sources(image_encoder: str, text_encoder: str) -> tuple[str, str]:
    """The sources the encoders were loaded from (the offline stand-ins, say)."""
    from training.model import model_for_run

    loaded, _, _ = model_for_run(image_encoder, text_encoder, seed=0, shared_encoders=True)
    return loaded.image_source, loaded.text_source


def _check_plan(folder: Path, wanted: dict[str, Any]) -> None:
    """A study folder's cross-fitted units belong to one plan: another is refused."""
    from curation.manifest import write_json_atomic
    from training.study.crossfit import CROSSFIT_DIR

    path = folder / CROSSFIT_DIR / "plan.json"
    wanted = json.loads(json.dumps(wanted))  # as JSON stores it (tuples are lists)
    if path.exists():
        have = json.loads(path.read_text())
        if have != wanted:
            differ = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
            raise UserError(f"{folder} holds cross-fitted runs of another plan (differs in "
                            f"{', '.join(differ)}); choose another out or delete "
                            f"{folder / CROSSFIT_DIR}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, wanted)


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


def _write_study_json(folder: Path, config: StudyConfig, runs: list[PlannedRun],
                      ran: dict[str, Any] | None = None) -> None:
    """study.json: the config as asked, and (once runs exist) what actually ran."""
    from curation.manifest import versions, write_json_atomic

    if config.in_memory:
        from training.study.crossfit import read_units

        complete = not read_units(folder, config.design, config.folds, config.repeats)[2]
    else:
        complete = all(run_folder(folder, r).is_complete() for r in runs)
    previous = folder / "study.json"
    if ran is None and previous.exists():
        ran = json.loads(previous.read_text()).get("ran")
    write_json_atomic(previous, {
        "config": asdict(config),
        "ran": ran or {},
        "runs": [asdict(r) for r in runs],
        "complete": complete,
        "versions": versions(),
    })


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def load_study(folder: Path | str) -> tuple[StudyConfig, list[PlannedRun], dict[str, Any]]:
    """The config, plan and record of what ran of a study folder."""
    folder = Path(folder)
    if not (folder / "study.json").exists():
        raise UserError(f"{folder} is not a study folder (no study.json): run "
                        "curate study run CONFIG first")
    # study.json holds the config with its paths as resolved when the study ran
    record = json.loads((folder / "study.json").read_text())
    data = record["config"]
    for key in ("fractions", "strategies", "seeds", "losses"):
        if key in data:
            data[key] = tuple(data[key])
    config = StudyConfig(**data)
    return config, plan(config), record.get("ran", {})
