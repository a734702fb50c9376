"""Optional MLflow tracking of a training run (``curate train --track mlflow``).

The run folder stays the record of a run; tracking mirrors it into an MLflow store and never
changes it: the model, predictions, dynamics and metrics are the same bytes with and without
tracking. What is logged:

- params: every field of the run's (resolved) ``TrainConfig``, its weights id, and what ran
  (``encoders_ran.image.*``, ``encoders_ran.text.*``, as in metrics.json);
- per epoch, with step = epoch: ``train_loss``, ``val_plcc`` and ``lr`` (at the epoch's end);
- once complete: the best epoch's val and test scores (``final/val/plcc``, ``final/test/mae``,
  ..., every number of metrics.json's ``val`` and ``test``), ``best_epoch``, ``epochs_run``,
  and the artefacts metrics.json, config.json, manifest.json and predictions.parquet.

The store is ``sqlite:///<catalog>/mlruns/mlflow.db`` unless told (``--track-uri``), with the
artefacts beside it in ``<catalog>/mlruns/artifacts``: MLflow 3 refuses its plain-file store
(``file:``) unless ``MLFLOW_ALLOW_FILE_STORE=true``. The experiment is the slice's name unless
told. The MLflow run's id is kept in the run folder's ``tracking.json`` (not one of the run's
outputs: the manifest leaves it out), so a resumed run goes on logging into the same MLflow run.

mlflow is imported here only inside functions: ``curate`` starts without it, and without it
``--track mlflow`` is one error line before anything is trained.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.errors import UserError
from curation.manifest import write_json_atomic

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from training.config import TrainConfig

TRACKERS = ("mlflow",)
TRACKING_FILE = "tracking.json"  # in the run folder; not a run output (see the module's doc)
STORE_FOLDER = "mlruns"  # in the catalog: the default store and its artefacts
ARTIFACTS = ("metrics.json", "config.json", "manifest.json", "predictions.parquet")
EPOCH_METRICS = {"train_loss": "train_loss", "val_plcc": "val_plcc", "lr_end": "lr"}


@dataclass(frozen=True)
class Tracking:
    """Where to track a run: the tracker (``mlflow``), the store's URI (None: the catalog's
    ``mlruns/mlflow.db``) and the experiment (None: the slice's name)."""

    tracker: str = "mlflow"
    uri: str | None = None
    experiment: str | None = None

    def __post_init__(self) -> None:
        if self.tracker not in TRACKERS:
            raise UserError(f"unknown tracker {self.tracker!r}; choose from {', '.join(TRACKERS)}")


def default_uri(catalog: Path | str) -> str:
    """The store a run is tracked in when not told: an SQLite file in the catalog."""
    return f"sqlite:///{(Path(catalog).resolve() / STORE_FOLDER / 'mlflow.db').as_posix()}"


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


@contextmanager
def _quick_requests() -> Iterator[None]:
    """No retries and a short timeout while checking a remote store (MLflow otherwise retries
    an unreachable server for minutes)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                                            "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _flatten(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(_flatten(f"{prefix}.{key}", inner))
        return out
    return {prefix: str(value)}


class Tracker:
    """A connection to an MLflow store and experiment, made before a run opens (so a missing
    package or an unreachable store is an error before any training); ``start`` then begins or
    resumes the MLflow run of one run folder."""

    def __init__(self, tracking: Tracking, config: TrainConfig,
                 log: Callable[[str], None] = print) -> None:
        self.log = log
        self.uri = tracking.uri or default_uri(config.catalog)
        self.experiment_name = tracking.experiment or config.slice
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as error:
            raise UserError(f"--track mlflow needs MLflow ({_first_line(error)}): install "
                            "curate[track]") from None
        db = _sqlite_file(self.uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        try:
            with _quick_requests():
                self.client: MlflowClient = MlflowClient(tracking_uri=self.uri)
                found = self.client.get_experiment_by_name(self.experiment_name)
                if found is None:
                    artifacts = None if db is None else (db.parent / "artifacts").as_uri()
                    self.experiment_id = self.client.create_experiment(
                        self.experiment_name, artifact_location=artifacts)
                else:
                    self.experiment_id = found.experiment_id
        except Exception as error:
            raise UserError(f"cannot use the MLflow store {self.uri}: "
                            f"{_first_line(error)}") from None

    def start(self, folder: Path, config: TrainConfig, weights_id: str,
              encoders_ran: dict[str, Any], history: list[dict[str, Any]]) -> TrackedRun:
        """The MLflow run of ``folder``: the one its tracking.json names in this store (a
        resumed run), or a new one; params logged, and any finished epoch not yet logged."""
        record = folder / TRACKING_FILE
        run_id = None
        if record.exists():
            saved = json.loads(record.read_text())
            if saved.get("uri") == self.uri:
                try:
                    self.client.update_run(saved["run_id"], status="RUNNING")
                    run_id = saved["run_id"]
                    self.log(f"tracking: resuming MLflow run {run_id} in {self.uri}")
                except Exception as error:  # deleted from the store since
                    self.log(f"tracking: MLflow run {saved['run_id']} of {record} cannot be "
                             f"resumed ({_first_line(error)}); a new one is started")
            else:
                self.log(f"tracking: {record} names another store ({saved.get('uri')}); a new "
                         "MLflow run is started in this one")
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id, run_name=folder.name,
                tags={"curate.run_folder": str(folder.resolve())})
            run_id = run.info.run_id
            write_json_atomic(record, {"tracker": "mlflow", "uri": self.uri,
                                       "experiment_id": self.experiment_id, "run_id": run_id})
            self.log(f"tracking: MLflow run {run_id} in {self.uri} (experiment "
                     f"{self.experiment_name!r})")
        tracked = TrackedRun(self.client, run_id, folder, self.log)
        tracked.log_params(config, weights_id, encoders_ran)
        logged = {m.step for m in self.client.get_metric_history(run_id, "train_loss")}
        for entry in history:
            if entry["epoch"] not in logged:
                tracked.log_epoch(entry)
        return tracked


@dataclass
class TrackedRun:
    """One MLflow run mirroring one run folder. A failure to log after the run has started is
    reported and stops the tracking, never the training."""

    client: MlflowClient
    run_id: str
    folder: Path
    log: Callable[[str], None]
    broken: bool = False

    def _safely(self, what: str, action: Callable[[], None]) -> None:
        if self.broken:
            return
        try:
            action()
        except Exception as error:
            self.broken = True
            self.log(f"tracking: {what} failed ({_first_line(error)}); training goes on "
                     "without tracking")

    def log_params(self, config: TrainConfig, weights_id: str,
                   encoders_ran: dict[str, Any]) -> None:
        from mlflow.entities import Param

        values = {k: str(v) for k, v in asdict(config).items()}
        values["weights_id"] = weights_id
        values.update(_flatten("encoders_ran", encoders_ran))
        params = [Param(k, v) for k, v in sorted(values.items())]

        def action() -> None:
            for start in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[start:start + 100])

        self._safely("logging the params", action)

    def log_epoch(self, entry: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(entry[key]), now, int(entry["epoch"]))
                   for key, name in EPOCH_METRICS.items() if entry.get(key) is not None]
        self._safely(f"logging epoch {entry['epoch']}",
                     lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def finish(self, metrics: dict[str, Any]) -> None:
        """The final scores, the artefacts, and the MLflow run marked finished."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        final = final_metrics(metrics)
        batch = [Metric(k, v, now, 0) for k, v in sorted(final.items())]

        def action() -> None:
            for start in range(0, len(batch), 1000):
                self.client.log_batch(self.run_id, metrics=batch[start:start + 1000])
            for name in ARTIFACTS:
                path = self.folder / name
                if path.exists():
                    self.client.log_artifact(self.run_id, str(path))
            self.client.set_terminated(self.run_id, "FINISHED")

        self._safely("logging the final scores and artefacts", action)

    def interrupted(self, error: BaseException) -> None:
        """The run stopped before completing: KILLED (interrupted) or FAILED (an error)."""
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self._safely("marking the run stopped",
                     lambda: self.client.set_terminated(self.run_id, status))


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of metrics.json logged once a run completes: ``final/<split>/<score>`` for
    every finite number of its val and test scores, and the run's epochs and cost."""
    out: dict[str, float] = {}
    for split in ("val", "test"):
        for key, value in metrics[split].items():
            if isinstance(value, int | float) and not isinstance(value, bool) \
                    and math.isfinite(value):
                out[f"final/{split}/{key}"] = float(value)
    for key in ("best_epoch", "epochs_run", "params", "flops", "cost_c", "efficiency_e"):
        if isinstance(metrics.get(key), int | float):
            out[key] = float(metrics[key])
    return out
