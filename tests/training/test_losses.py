"""The losses of ``training.loss_registry`` and ``training.loss``: CLCE's contrastive term
against a hand computation, weight 0 meaning no gradient, hard negatives weighing more, specs
and their errors, and runs with ``--loss`` (finite, resumable, the default unchanged). Tiny
encoders, a 300-item corpus."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from curate.cli import app  # noqa: E402
from curation.errors import UserError  # noqa: E402
from tests.conftest import synthetic_catalog  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.heads import MlpSettings, fit_mlp_head  # noqa: E402
from training.loss import (  # noqa: E402
    TrainingLoss,
    contrastive_term,
    hardness_weights,
    rating_bins,
    weighted_huber,
)
from training.loss_registry import LOSSES, fit_bin_edges, parse_loss  # noqa: E402
from training.trainer import train  # noqa: E402

TINY = {"image_encoder": "tiny-efficientnet", "text_encoder": "tiny-minilm"}
SLICE = "default-frac1-seed0"
SMALL = "default-frac0.2-seed0"  # finetuning steps on every item: the fewer the better
CLCE = "clce:lambda=0.5,tau=0.1,bins=8"

# Six items in three bins. Item 3 has weight 0; item 5 is alone in its bin (no positive).
LABELS = [0, 0, 1, 1, 1, 2]
WEIGHTS = [1.0, 2.0, 0.5, 0.0, 1.5, 1.0]


def _embeddings(seed: int = 0, n: int = 6, d: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def hand_contrastive(embedding: np.ndarray, labels: list[int], weight: list[float], tau: float,
                     hardness: float, renormalise: bool = False) -> float:
    """The term written out with loops, as the issue defines it."""
    n = len(labels)
    z = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in embedding.tolist()]
    s = [[sum(a * b for a, b in zip(z[i], z[j], strict=True)) / tau for j in range(n)]
         for i in range(n)]
    total, anchors, weight_sum = 0.0, 0, 0.0
    for i in range(n):
        pos = [j for j in range(n) if j != i and labels[j] == labels[i] and weight[j] > 0]
        neg = [k for k in range(n) if labels[k] != labels[i] and weight[k] > 0]
        if not pos or not neg:
            continue
        soft = {k: math.exp(hardness * s[i][k]) for k in neg}
        h = {k: len(neg) * soft[k] / sum(soft.values()) for k in neg}
        pushed = sum(weight[k] * h[k] * math.exp(s[i][k]) for k in neg)
        loss = -sum(weight[p] * math.log(math.exp(s[i][p]) / (math.exp(s[i][p]) + pushed))
                    for p in pos) / sum(weight[p] for p in pos)
        total += weight[i] * loss
        anchors += 1
        weight_sum += weight[i]
    return total / (weight_sum if renormalise else anchors)


@pytest.mark.parametrize(("tau", "hardness"), [(0.5, 1.5), (0.1, 0.0), (1.0, 4.0)])
@pytest.mark.parametrize("renormalise", [False, True])
def test_the_contrastive_term_equals_a_hand_computation(tau, hardness, renormalise):
    embedding = _embeddings()
    expected = hand_contrastive(embedding, LABELS, WEIGHTS, tau, hardness, renormalise)
    got = contrastive_term(torch.tensor(embedding), torch.tensor(LABELS),
                           torch.tensor(WEIGHTS, dtype=torch.float64), tau=tau,
                           hardness=hardness, renormalise=renormalise)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    # the anchors: 0 and 1 (bin 0), 2, 3 and 4 (bin 1; 3 adds 0); 5 has no positive
    mean_without_item_5 = hand_contrastive(embedding[:5], LABELS[:5], WEIGHTS[:5], tau,
                                           hardness, renormalise)
    assert mean_without_item_5 != pytest.approx(expected)  # 5 is a negative of the others


def test_a_small_tau_does_not_overflow():
    embedding = torch.tensor(_embeddings(), dtype=torch.float32, requires_grad=True)
    term = contrastive_term(embedding, torch.tensor(LABELS), torch.tensor(WEIGHTS),
                            tau=1e-4, hardness=1.0)
    term.backward()
    assert torch.isfinite(term) and torch.isfinite(embedding.grad).all()


def test_a_batch_without_an_anchor_gives_zero():
    embedding = torch.tensor(_embeddings(n=3), requires_grad=True)
    for labels in ([0, 1, 2], [1, 1, 1]):  # no positives; no negatives
        term = contrastive_term(embedding, torch.tensor(labels), torch.ones(3), tau=0.1,
                                hardness=1.0)
        term.backward()
        assert term.item() == 0.0 and torch.isfinite(embedding.grad).all()


def _torch_hand_term(embedding: torch.Tensor, tau: float, hardness: float,
                     detach_h: bool) -> torch.Tensor:
    """The hand computation in torch, so that autograd can differentiate it, with h computed
    from detached similarities or not."""
    z = torch.nn.functional.normalize(embedding, dim=1)
    s = z @ z.T / tau
    n, total, anchors = len(LABELS), embedding.sum() * 0.0, 0
    for i in range(n):
        pos = [j for j in range(n) if j != i and LABELS[j] == LABELS[i] and WEIGHTS[j] > 0]
        neg = [k for k in range(n) if LABELS[k] != LABELS[i] and WEIGHTS[k] > 0]
        if not pos or not neg:
            continue
        source = s.detach() if detach_h else s
        h = len(neg) * torch.softmax(hardness * source[i, neg], dim=0)
        pushed = (torch.tensor([WEIGHTS[k] for k in neg], dtype=s.dtype) * h
                  * torch.exp(s[i, neg])).sum()
        loss = -sum(WEIGHTS[p] * torch.log(torch.exp(s[i, p]) / (torch.exp(s[i, p]) + pushed))
                    for p in pos) / sum(WEIGHTS[p] for p in pos)
        total = total + WEIGHTS[i] * loss
        anchors += 1
    return total / anchors


def test_no_gradient_flows_through_the_hardness_weights():
    """h is a weighting, not optimised: the term's gradient is that of the hand computation
    with h held constant, and not that with a gradient through h."""
    def gradient(function) -> torch.Tensor:
        embedding = torch.tensor(_embeddings(seed=3), requires_grad=True)
        function(embedding).backward()
        return embedding.grad

    ours = gradient(lambda e: contrastive_term(
        e, torch.tensor(LABELS), torch.tensor(WEIGHTS, dtype=torch.float64), tau=0.5,
        hardness=2.0))
    held = gradient(lambda e: _torch_hand_term(e, 0.5, 2.0, detach_h=True))
    through = gradient(lambda e: _torch_hand_term(e, 0.5, 2.0, detach_h=False))
    assert torch.allclose(ours, held, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(ours, through, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("ce", [0.0, 0.7])
def test_an_item_of_weight_zero_gets_exactly_zero_gradient(ce):
    """Through every term (Huber, contrastive, cross-entropy), the embedding and the
    prediction of an item of weight 0 get a gradient of exactly 0, and what that item is
    changes nobody else's gradient: it takes part neither as anchor, positive nor negative."""
    plan = parse_loss(f"clce:lambda=0.8,tau=0.2,bins=3,binning=width,hardness=1.5,ce={ce}")
    torch.manual_seed(0)
    loss = TrainingLoss(plan, edges=fit_bin_edges(plan, []), width=4)
    regressor = torch.nn.Linear(4, 1)
    target = torch.tensor([1.2, 1.5, 3.0, 3.1, 2.9, 4.8])  # bins 0, 0, 1, 1, 1, 2
    weight = torch.tensor(WEIGHTS)
    assert rating_bins(target, loss.edges).tolist() == LABELS

    def gradients(embedding_values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = torch.tensor(embedding_values, dtype=torch.float32, requires_grad=True)
        regressor.zero_grad()
        total, _ = loss(regressor(embedding).squeeze(-1), embedding, target, weight)
        total.backward()
        return embedding.grad.clone(), regressor.weight.grad.clone()

    values = _embeddings(seed=1)
    grad, regressor_grad = gradients(values)
    assert torch.equal(grad[3], torch.zeros(4))
    assert all(grad[i].abs().sum() > 0 for i in (0, 1, 2, 4, 5))
    moved = values.copy()
    moved[3] = [5.0, -3.0, 0.5, 2.0]  # the weight-0 item somewhere else entirely
    moved_grad, moved_regressor_grad = gradients(moved)
    assert torch.equal(moved_grad, grad) and torch.equal(moved_regressor_grad, regressor_grad)


def test_harder_negatives_weigh_more():
    """h grows with a negative's similarity to the anchor, is 1 on average, is flat at
    hardness 0, and a larger hardness moves weight to the most similar negative."""
    similarity = torch.tensor([[0.0, 0.9, 0.1, -0.5, 0.4]])
    negatives = torch.tensor([[False, True, True, True, True]])
    flat = hardness_weights(similarity, negatives, 0.0)
    assert flat.tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0]]
    previous = None
    for hardness in (0.5, 1.0, 2.0, 4.0):
        h = hardness_weights(similarity, negatives, hardness)[0]
        assert h[0] == 0.0 and h[1:].mean().item() == pytest.approx(1.0)
        order = torch.argsort(similarity[0, 1:])
        assert torch.all(torch.diff(h[1:][order]) > 0)  # more similar, more weight
        if previous is not None:
            assert h[1] > previous[1]  # the hardest negative gains with the hardness
            assert h[3] < previous[3]  # the easiest loses
        previous = h
    # in the loss: with hardness, a hard negative pushes harder than an easy one
    embedding = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.8, 0.6], [-1.0, 0.05]],
                             requires_grad=True)
    labels, weight = torch.tensor([0, 0, 1, 2]), torch.ones(4)  # 2 and 3: negatives only
    pushes = []
    for hardness in (0.0, 3.0):
        embedding.grad = None
        contrastive_term(embedding, labels, weight, tau=0.5, hardness=hardness).backward()
        pushes.append(embedding.grad[2].norm() / embedding.grad[3].norm())
    assert pushes[1] > pushes[0]  # item 2 (near the anchors) against item 3 (far)


def test_the_huber_loss_is_weighted_huber_to_the_bit():
    prediction = torch.tensor([3.0, 4.5, 1.0, 2.0], requires_grad=True)
    target = torch.tensor([3.5, 2.0, 1.0, 4.0])
    weight = torch.tensor([2.0, 1.0, 0.5, 0.0])
    for spec, delta, renormalise in (("huber", 0.5, False), ("huber", 1.0, True),
                                     ("huber:delta=0.5", 3.0, False)):
        loss = TrainingLoss(parse_loss(spec), huber_delta=delta, renormalise=renormalise)
        assert not list(loss.parameters()) and not loss.state_dict()
        expected, _ = weighted_huber(prediction, target, weight, 0.5 if ":" in spec else delta,
                                     renormalise)
        got, _ = loss(prediction, None, target, weight)
        assert torch.equal(got, expected)


def test_specs_are_canonical_and_checked():
    assert parse_loss("huber").spec == "huber"
    assert parse_loss(" huber:delta=2 ").spec == "huber:delta=2.0"
    a = parse_loss("clce:tau=0.1,lambda=0.5")
    b = parse_loss("clce")
    assert a == b and a.spec == ("clce:lambda=0.5,tau=0.1,bins=8,binning=quantile,"
                                 "hardness=1.0,ce=0.0")
    assert parse_loss(a.spec) == a
    assert TrainConfig(catalog="c", slice="s", weights="w",
                       loss="clce:bins=4").resolved().loss == parse_loss("clce:bins=4").spec
    assert set(LOSSES) == {"huber", "clce"}
    errors = {
        "clce:temp=1": "loss 'clce' has no parameter 'temp'; valid: lambda=0.5, tau=0.1, "
                       "bins=8, binning='quantile', hardness=1.0, ce=0.0",
        "clce:tau=0": "loss 'clce': tau must be > 0, got 0",
        "clce:bins=1": "loss 'clce': bins must be >= 2, got 1",
        "clce:bins=2.5": "loss 'clce': bins must be an integer, got 2.5",
        "clce:lambda=-1": "loss 'clce': lambda must be >= 0, got -1",
        "clce:binning=log": "loss 'clce': binning must be one of quantile, width, got 'log'",
        "clce:ce=nan": "loss 'clce': ce must be a finite number, got nan",
        "huber:delta=0": "loss 'huber': delta must be > 0, got 0",
        "mse": "unknown loss 'mse'; valid losses: clce, huber",
        "huber*clce": "a loss spec names one loss, 'huber*clce' names 2",
        "": "empty loss name",
    }
    for spec, message in errors.items():
        with pytest.raises(UserError) as caught:
            parse_loss(spec)
        assert message in str(caught.value), spec


def test_bin_edges():
    targets = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 4.5, 4.2, 3.3])
    quantile = fit_bin_edges(parse_loss("clce:bins=4"), targets)
    assert quantile == pytest.approx(np.quantile(targets, [0.25, 0.5, 0.75]).tolist())
    assert fit_bin_edges(parse_loss("clce:bins=4,binning=width"), targets) == [2.0, 3.0, 4.0]
    assert fit_bin_edges(parse_loss("huber"), targets) == []
    edges = torch.tensor([2.0, 3.0, 4.0])
    assert rating_bins(torch.tensor([1.0, 2.0, 2.5, 4.0, 5.0]), edges).tolist() == [0, 1, 1, 3, 3]


# --- runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_catalog(tmp_path_factory, "losses", 300, 7, {1.0: None, 0.2: None})


def _args(catalog: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "-c", str(catalog), "--slice", SLICE, "--weights", "effiminivlm",
            "--image-encoder", TINY["image_encoder"], "--text-encoder", TINY["text_encoder"],
            "--workers", "0", "--out", str(out), *extra]


@pytest.mark.parametrize("batch_size", [8, 32])
def test_clce_trains_without_nan(catalog, tmp_path, batch_size):
    config = TrainConfig(catalog=str(catalog), slice=SLICE, weights="effiminivlm",
                         mode="frozen", seed=2, epochs=3, patience=5, batch_size=batch_size,
                         loss="clce:lambda=1.0,tau=0.05,bins=8,hardness=2.0,ce=0.5", **TINY)
    result = train(config, tmp_path / "run", log=lambda _: None)
    losses = [e["train_loss"] for e in result.metrics["history"]]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    predictions = pl.read_parquet(tmp_path / "run" / "predictions.parquet")["prediction"]
    assert predictions.is_finite().all() and predictions.std() > 0
    dynamics = pl.read_parquet(tmp_path / "run" / "training_dynamics.parquet")
    assert dynamics["loss"].is_finite().all()  # the per-item Huber, as for every loss


def test_the_default_loss_is_unchanged(catalog, tmp_path):
    """No --loss, --loss huber and --loss huber:delta=1.0 (the default delta) train the same
    model to the bit; --loss huber:delta=0.25 is --huber-delta 0.25; a run folder from before
    losses had names (no loss in its config) is the huber run."""
    runner = CliRunner()
    outs = {}
    for name, extra in {"none": [], "huber": ["--loss", "huber"],
                        "delta": ["--loss", "huber:delta=1.0"],
                        "quarter": ["--loss", "huber:delta=0.25"],
                        "option": ["--huber-delta", "0.25"]}.items():
        outs[name] = tmp_path / name
        result = runner.invoke(app, _args(catalog, outs[name], "--epochs", "2", *extra))
        assert result.exit_code == 0, result.output

    def model(name: str) -> bytes:
        return (outs[name] / "model.safetensors").read_bytes()

    def metrics(name: str) -> dict:
        m = json.loads((outs[name] / "metrics.json").read_text())
        return {k: m[k] for k in ("val", "test", "best_epoch")} | {
            "losses": [e["train_loss"] for e in m["history"]]}

    assert model("none") == model("huber") == model("delta")
    assert metrics("none") == metrics("huber") == metrics("delta")
    assert model("quarter") == model("option") != model("none")
    manifest = json.loads((outs["none"] / "manifest.json").read_text())
    assert manifest["loss"] == {"spec": "huber", "name": "huber", "params": {"delta": None},
                                "bin_edges": []}
    assert not (outs["none"] / "checkpoint").exists()

    config = json.loads((outs["none"] / "config.json").read_text())
    assert config["loss"] == "huber"
    del config["loss"]
    (outs["none"] / "config.json").write_text(json.dumps(config))
    again = runner.invoke(app, _args(catalog, outs["none"], "--epochs", "2"))
    assert again.exit_code == 0 and "already complete" in again.output
    other = runner.invoke(app, _args(catalog, outs["none"], "--epochs", "2", "--loss", CLCE))
    assert other.exit_code == 2 and "another config (differs in loss)" in other.output


@pytest.mark.parametrize("spec", ["mse", "clce:temp=1", "clce:tau=-1", "clce:bins=x",
                                  "huber*clce", "clce:tau"])
def test_a_bad_spec_is_one_clear_line(catalog, tmp_path, spec):
    result = CliRunner().invoke(app, _args(catalog, tmp_path / "run", "--loss", spec))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "loss" in lines[0] or "key=value" in lines[0], lines[0]
    assert not (tmp_path / "run").exists()  # refused before any work


# `python -m curate` with a progress hook that SIGKILLs the process half way through epoch 2
# (as tests/training/test_trainer.py does).
KILL_IN_EPOCH_2 = """
import os, runpy, signal, sys
from contextlib import contextmanager
import training.trainer as trainer

original = trainer.progress_bar

@contextmanager
def progress_bar(label, total, **options):
    with original(label, total, **options) as advance:
        seen = [0]

        def counted(n, note=None):
            advance(n, note)
            seen[0] += n
            if label.startswith("epoch 2/") and seen[0] >= total // 2:
                os.kill(os.getpid(), signal.SIGKILL)

        yield counted

trainer.progress_bar = progress_bar
sys.argv = ["curate", *sys.argv[1:]]
runpy.run_module("curate", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("spec", [CLCE, "clce:lambda=0.5,tau=0.1,bins=4,ce=0.5"])
def test_a_clce_run_killed_mid_epoch_resumes_to_the_same_model(catalog, tmp_path, spec):
    """`curate train --loss clce...` killed half way through epoch 2 resumes after epoch 1 and
    ends as a run never stopped: the same model bytes, metrics, predictions and dynamics (the
    bins' edges and, with ce, the classifier and its optimizer moments come back from the
    checkpoint). The run folder records the canonical spec and the fitted edges."""
    args = ["--loss", spec, "--seed", "4", "--epochs", "3", "--patience", "3",
            "--batch-size", "16"]
    runner = CliRunner()
    whole = runner.invoke(app, _args(catalog, tmp_path / "whole", *args))  # fills the cache
    assert whole.exit_code == 0, whole.output
    cut = tmp_path / "cut"
    killed = subprocess.run([sys.executable, "-c", KILL_IN_EPOCH_2, *_args(catalog, cut, *args)],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "epoch 1: train loss" in killed.stderr and "epoch 2:" not in killed.stderr
    saved = load_file(str(cut / "checkpoint" / "last" / "loss.safetensors"))
    assert ("classifier.weight" in saved) == ("ce=0.5" in spec)
    resumed = runner.invoke(app, _args(catalog, cut, *args))
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {cut} after epoch 1" in resumed.output
    assert (tmp_path / "whole" / "model.safetensors").read_bytes() == \
        (cut / "model.safetensors").read_bytes()
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (tmp_path / "whole", cut))
    for key in ("val", "test", "best_epoch", "epochs_run"):
        assert a[key] == b[key], key
    assert [e["train_loss"] for e in a["history"]] == [e["train_loss"] for e in b["history"]]
    for name in ("predictions.parquet", "training_dynamics.parquet"):
        assert pl.read_parquet(tmp_path / "whole" / name).equals(pl.read_parquet(cut / name))

    plan = parse_loss(spec)
    assert json.loads((cut / "config.json").read_text())["loss"] == plan.spec
    manifest = json.loads((cut / "manifest.json").read_text())
    predictions = pl.read_parquet(cut / "predictions.parquet")
    train_targets = predictions.filter(pl.col("split") == "train")["target"].to_numpy()
    expected = np.quantile(train_targets, np.arange(1, plan.bins) / plan.bins)
    assert manifest["loss"]["spec"] == plan.spec and manifest["loss"]["params"] == plan.params
    assert manifest["loss"]["bin_edges"] == pytest.approx(expected.tolist(), rel=1e-6)
    # the model is the model: no classifier in it
    assert not any(k.startswith("classifier") for k in load_file(str(cut / "model.safetensors")))


def test_a_finetuned_clce_run_resumes_as_an_uninterrupted_one(catalog, tmp_path):
    config = TrainConfig(catalog=str(catalog), slice=SMALL, weights="effiminivlm",
                         mode="finetune", seed=3, epochs=2, patience=5, lr=1e-3,
                         loss="clce:lambda=0.5,tau=0.1,bins=4,ce=0.3", **TINY)
    whole = train(config, tmp_path / "whole", workers=0, log=lambda _: None)

    def interrupt(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", workers=0, on_epoch_end=interrupt, log=lambda _: None)
    resumed = train(config, tmp_path / "cut", workers=0, log=lambda _: None)
    assert resumed.resumed_from_epoch == 1
    for key in ("val", "test", "best_epoch", "epochs_run"):
        assert resumed.metrics[key] == whole.metrics[key]
    assert all(math.isfinite(e["train_loss"]) for e in whole.metrics["history"])
    assert pl.read_parquet(tmp_path / "whole" / "predictions.parquet").equals(
        pl.read_parquet(tmp_path / "cut" / "predictions.parquet"))


def test_fit_mlp_head_takes_a_loss():
    """The study's in-memory MLP head: the default is the huber loss (the same predictions as
    asking for it), and clce trains to finite predictions that differ from huber's."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(160, 12)).astype(np.float32)
    target = np.clip(3.5 + features[:, 0] + 0.3 * rng.normal(size=160), 1, 5)
    weight = rng.uniform(0.0, 2.0, size=160)
    weight[:10] = 0.0
    train_rows, val_rows = np.arange(0, 120), np.arange(120, 160)
    settings = MlpSettings(epochs=4, batch_size=16, patience=4)

    def predictions(**loss: str) -> np.ndarray:
        predictor, _ = fit_mlp_head(features, target, weight, train_rows, val_rows, 1, settings,
                                    **loss)
        return predictor(features)

    default = predictions()
    assert np.array_equal(default, predictions(loss="huber"))
    clce = predictions(loss="clce:lambda=0.5,bins=4,ce=0.5")
    assert np.isfinite(clce).all() and not np.array_equal(clce, default)
    with pytest.raises(UserError, match="unknown loss 'nope'"):
        predictions(loss="nope")
