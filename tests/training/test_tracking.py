"""MLflow tracking of training runs (training.tracking) against a real local store: what is
logged, that tracking changes none of the run's outputs, that a resumed run goes on in the same
MLflow run, and the errors before any training."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("mlflow")

import polars as pl  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from curate.cli import app  # noqa: E402
from curation.errors import UserError  # noqa: E402
from curation.slices import Slice  # noqa: E402
from tests.conftest import synthetic_catalog  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.embeddings import embed_slice  # noqa: E402
from training.tracking import TRACKING_FILE, Tracking, default_uri, final_metrics  # noqa: E402
from training.trainer import train  # noqa: E402

TINY = {"image_encoder": "tiny-efficientnet", "text_encoder": "tiny-minilm"}
SLICE = "default-frac0.4-seed0"
EPOCHS = 3


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 synthetic items, 40% in the slice, their tiny embeddings cached once."""
    root = synthetic_catalog(tmp_path_factory, "track", 200, 13, {0.4: SLICE})
    embed_slice(Slice.open(root, SLICE), workers=0, **TINY)
    return root


def config_for(catalog: Path) -> TrainConfig:
    return TrainConfig(catalog=str(catalog), slice=SLICE, weights="uniform", mode="frozen",
                       seed=7, epochs=EPOCHS, patience=EPOCHS, batch_size=32, **TINY)


def the_run(uri: str, experiment: str) -> Any:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def without_seconds(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json less its timings (which differ between any two runs)."""
    out = dict(metrics)
    out["history"] = [{k: v for k, v in e.items() if k != "seconds"} for e in out["history"]]
    out["encoding"] = {k: v for k, v in out["encoding"].items() if k != "seconds"}
    return out


def test_a_tracked_run_logs_everything_and_changes_nothing(catalog: Path, tmp_path: Path) -> None:
    config = config_for(catalog)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    plain = train(config, tmp_path / "plain", log=quiet)
    tracked = train(config, tmp_path / "tracked", log=quiet,
                    track=Tracking("mlflow", uri, "exp"))

    # the run's own outputs: the same bytes (metrics.json: the same but for its timings)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "plain" / name).read_bytes() == \
            (tmp_path / "tracked" / name).read_bytes(), name
    for name in ("predictions.parquet", "training_dynamics.parquet"):
        assert pl.read_parquet(tmp_path / "plain" / name).equals(
            pl.read_parquet(tmp_path / "tracked" / name)), name
    metrics = json.loads((tmp_path / "tracked" / "metrics.json").read_text())
    assert without_seconds(metrics) == \
        without_seconds(json.loads((tmp_path / "plain" / "metrics.json").read_text()))
    assert without_seconds(plain.metrics) == without_seconds(tracked.metrics)
    manifests = [json.loads((tmp_path / run / "manifest.json").read_text())
                 for run in ("plain", "tracked")]
    outputs = [{k: v for k, v in m["outputs"].items() if k != "metrics.json"} for m in manifests]
    assert outputs[0] == outputs[1]  # the same files and bytes: tracking.json is not an output
    assert set(manifests[0]["outputs"]) == set(manifests[1]["outputs"])
    assert (tmp_path / "tracked" / TRACKING_FILE).exists()

    client, run = the_run(uri, "exp")
    record = json.loads((tmp_path / "tracked" / TRACKING_FILE).read_text())
    assert record["run_id"] == run.info.run_id and record["uri"] == uri
    assert run.info.status == "FINISHED"
    params = run.data.params
    resolved = config.resolved()
    for key, value in vars(resolved).items():
        assert params[key] == str(value), key
    assert params["slice"] == SLICE and params["loss"] == resolved.loss
    assert params["encoders_ran.image.label"] == str(metrics["encoders_ran"]["image"]["label"])
    assert params["encoders_ran.text.label"] == str(metrics["encoders_ran"]["text"]["label"])
    history = metrics["history"]
    assert len(history) == metrics["epochs_run"] == EPOCHS
    for key, name in (("train_loss", "train_loss"), ("val_plcc", "val_plcc"), ("lr_end", "lr")):
        logged = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in logged] == [e["epoch"] for e in history]
        assert [m.value for m in logged] == pytest.approx([e[key] for e in history], rel=1e-12)
    final = final_metrics(metrics)
    assert final["final/test/plcc"] == metrics["test"]["plcc"]
    assert final["final/val/mae"] == metrics["val"]["mae"]
    for key, value in final.items():
        assert run.data.metrics[key] == pytest.approx(value, rel=1e-12), key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"metrics.json", "config.json", "manifest.json", "predictions.parquet"}
    assert (tmp_path / "store" / "artifacts").is_dir()  # beside the store, not in the cwd


def test_a_resumed_run_goes_on_in_the_same_mlflow_run(catalog: Path, tmp_path: Path) -> None:
    config = config_for(catalog)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    track = Tracking("mlflow", uri, "resume")

    def interrupt(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", on_epoch_end=interrupt, log=quiet, track=track)
    client, stopped = the_run(uri, "resume")
    assert stopped.info.status == "KILLED"
    assert len(client.get_metric_history(stopped.info.run_id, "train_loss")) == 1
    resumed = train(config, tmp_path / "cut", log=quiet, track=track)
    assert resumed.resumed_from_epoch == 1
    client, run = the_run(uri, "resume")  # still one run
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    logged = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in logged] == list(range(1, EPOCHS + 1))  # each epoch once
    assert [m.value for m in logged] == pytest.approx(
        [e["train_loss"] for e in resumed.metrics["history"]], rel=1e-12)
    assert run.data.metrics["final/test/rmse"] == pytest.approx(
        resumed.metrics["test"]["rmse"], rel=1e-12)


def test_the_command_tracks_into_the_catalog_by_default(catalog: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "-c", str(catalog), "--slice", SLICE, "--weights", "uniform",
            "--epochs", "1", "--out", str(run), "--workers", "0",
            "--image-encoder", TINY["image_encoder"], "--text-encoder", TINY["text_encoder"]]
    result = CliRunner().invoke(app, [*args, "--track", "mlflow"])
    assert result.exit_code == 0, result.output
    uri = default_uri(catalog)
    assert uri == f"sqlite:///{catalog.resolve() / 'mlruns' / 'mlflow.db'}"
    client, logged = the_run(uri, SLICE)  # the experiment is the slice's name
    assert logged.data.params["epochs"] == "1"
    assert {a.path for a in client.list_artifacts(logged.info.run_id)} >= {"metrics.json"}
    refused = CliRunner().invoke(app, [*args, "--experiment", "x"])
    assert refused.exit_code == 2 and "need --track mlflow" in refused.output
    unknown = CliRunner().invoke(app, [*args, "--track", "wandb"])
    assert unknown.exit_code == 2 and "unknown tracker 'wandb'" in unknown.output


def test_an_unusable_store_or_no_mlflow_is_an_error_before_training(
        catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_for(catalog)
    with pytest.raises(UserError, match=r"cannot use the MLflow store http://127\.0\.0\.1:9: "):
        train(config, tmp_path / "remote", log=quiet,
              track=Tracking("mlflow", "http://127.0.0.1:9"))
    assert not (tmp_path / "remote").exists()  # nothing was started
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"needs MLflow .*install curate\[track\]"):
        train(config, tmp_path / "none", log=quiet, track=Tracking())
    assert not (tmp_path / "none").exists()
