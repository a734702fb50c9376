"""Two processes (``torchrun``, gloo on CPU) take the same steps as one process with the same
global batch: each rank's contiguous shard of the seed's order, its loss scaled to its share of
the global batch's loss, the gradients summed over the ranks.

Run as a script (``python -m torch.distributed.run --nproc_per_node 2 THIS OUT RENORMALISE``)
this file is the training loop; the tests launch it and compare the weights with one process's.
The model has no dropout, so the two must agree to float rounding (the summed gradient adds
the same terms in another order)."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import synthetic_catalog
from training.distributed import SINGLE, Ranks, from_env, shard, shard_loss_scale

ITEMS, BATCH, EPOCHS, SEED = 37, 8, 3, 5  # 37 items: the last global batch does not divide


def _train(out: Path, renormalise: bool) -> None:
    import torch

    from training import distributed
    from training.loss import weighted_huber

    ranks = distributed.from_env()
    if ranks.is_main and ranks.world > 1:  # registered first, so it runs after init's leave
        atexit.register(_record_threads, out.with_suffix(".threads"), _threads())
    distributed.init(ranks)
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(1)
    x = torch.randn(ITEMS, 6, generator=data)
    target = x @ torch.randn(6, generator=data) + 3.0
    weight = torch.rand(ITEMS, generator=data) * 2
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    parameters = list(model.parameters())
    for epoch in range(1, EPOCHS + 1):
        order = torch.randperm(ITEMS, generator=torch.Generator().manual_seed(SEED + epoch))
        for start in range(0, ITEMS, BATCH):
            batch = order[start : start + BATCH].numpy()
            mine = torch.from_numpy(shard(batch, ranks))
            optimizer.zero_grad(set_to_none=True)
            if len(mine):
                loss, _ = weighted_huber(model(x[mine]).squeeze(-1), target[mine], weight[mine],
                                         renormalise=renormalise)
                scale = shard_loss_scale(len(mine), len(batch), float(weight[mine].sum()),
                                         float(weight[batch].sum()), renormalise)
                (loss * scale).backward()
            distributed.sum_gradients(parameters, ranks)
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
    if ranks.is_main:
        np.save(out, torch.cat([p.detach().flatten() for p in parameters]).numpy())
    if ranks.world > 1:
        torch.distributed.barrier()  # rank 0 has written its file before the group goes


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))  # the OS's threads of this process


def _record_threads(path: Path, before: int) -> None:
    path.write_text(f"{before} {_threads()}")


def _run(out: Path, renormalise: bool, processes: int) -> np.ndarray:
    if processes == 1:  # one process is this one (no torchrun environment: a single rank)
        _train(out, renormalise)
        return np.load(out)
    # --standalone: a free port of its own, beside other runs on the machine
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
              str(processes)]
    done = subprocess.run([*launch, __file__, str(out), str(int(renormalise))],
                          capture_output=True, text=True, timeout=120,
                          env={"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(Path.cwd())})
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out)


def test_the_environment_says_which_rank():
    assert from_env({}) == SINGLE
    assert from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Ranks(1, 2, 1)


def test_the_shards_of_a_batch_are_the_batch_in_order():
    rows = np.arange(11) * 3
    for world in (1, 2, 3, 4, 12):
        parts = [shard(rows, Ranks(r, world, r)) for r in range(world)]
        assert np.array_equal(np.concatenate(parts), rows)


@pytest.mark.slow
@pytest.mark.parametrize("renormalise", [False, True])
def test_two_processes_take_one_processs_steps(tmp_path, renormalise):
    one = _run(tmp_path / "one.npy", renormalise, 1)
    two = _run(tmp_path / "two.npy", renormalise, 2)
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5)
    assert not np.allclose(one, _run(tmp_path / "other.npy", not renormalise, 1))
    # the ranks left the group before the interpreter's shutdown: no gloo thread outlived it
    # (one that does can abort a finished run at exit, now and then)
    before, at_exit = map(int, (tmp_path / "two.threads").read_text().split())
    assert at_exit == before


# --- the trainer: `torchrun -m curate train --mode finetune` against one process ---------------

SLICE = "default-frac0.5-seed0"


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory):
    return synthetic_catalog(tmp_path_factory, "ddp", 300, 12, {0.5: SLICE})


def _curate_train(catalog: Path, out: Path, processes: int, image: str = "tiny-efficientnet",
                  no_dropout: bool = False, epochs: int = 2,
                  program: list[str] | None = None) -> subprocess.CompletedProcess:
    launch = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
        str(processes)]
    # without dropout: this file as the script, which turns dropout off and runs `curate`
    # (or another script that runs `curate`, given as ``program``)
    program = program or ([__file__, "curate-without-dropout"] if no_dropout else
                          ["-m", "curate"])
    return subprocess.run(
        [*launch, *program, "train", "--slice", SLICE, "--weights", "effiminivlm",
         "--mode", "finetune", "--catalog", str(catalog), "--image-encoder", image,
         "--text-encoder", "tiny-minilm", "--epochs", str(epochs), "--patience", "5",
         "--lr", "1e-3",
         # no DataLoader workers: the ranks' logic is under test, and a worker forked in a rank
         # (beside its threads) hung once on 2026-12-05, which would cost the 300 s timeout
         "--workers", "0",
         "--batch-size", "16", "--seed", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_torchrun_finetune_equals_one_process_without_dropout_or_batch_norm(tiny_catalog,
                                                                           tmp_path):
    """A text-only model (no batch norm, whose statistics are per shard, and no stochastic
    depth) with dropout off (its draws are per rank): the 2-process run is one process's to
    float32 rounding (the gradient sums the same terms in another order; measured: predictions
    within 7e-6). The tiny text model's predictions are nearly constant (spread ~1e-3, some
    val items 2e-7 apart), so rank statistics (Spearman) can flip on that rounding and PLCC
    moves by ~1e-4: the test holds the predictions, losses and errors to 1e-4 and PLCC to 1e-3.
    """
    import json

    import polars as pl

    runs, predictions = {}, {}
    for processes in (1, 2):
        done = _curate_train(tiny_catalog, tmp_path / str(processes), processes, image="none",
                             no_dropout=True)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[processes] = json.loads((tmp_path / str(processes) / "metrics.json").read_text())
        predictions[processes] = pl.read_parquet(
            tmp_path / str(processes) / "predictions.parquet")["prediction"].to_numpy()
    one, two = runs[1], runs[2]
    np.testing.assert_allclose(predictions[2], predictions[1], rtol=0, atol=1e-4)
    assert two["best_epoch"] == one["best_epoch"]
    for split in ("val", "test"):
        for key in ("mae", "rmse"):
            assert two[split][key] == pytest.approx(one[split][key], abs=1e-4), (split, key)
        assert two[split]["plcc"] == pytest.approx(one[split]["plcc"], abs=1e-3)
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)


def test_a_checkpoint_keeps_each_ranks_rng_and_more_ranks_than_saved_it_are_refused(tmp_path):
    import torch

    from curation.errors import UserError
    from training.checkpoint import load_checkpoint, save_checkpoint

    module = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(module.parameters())
    states = [torch.manual_seed(seed).get_state() for seed in (1, 2)]
    save_checkpoint(tmp_path / "two", module, optimizer, {"epoch": 1}, rank_rngs=states)
    for rank, expected in enumerate(states):
        load_checkpoint(tmp_path / "two", module, optimizer, rank=rank)
        assert torch.equal(torch.get_rng_state(), expected)
    save_checkpoint(tmp_path / "one", module, optimizer, {"epoch": 1})
    with pytest.raises(UserError, match="saved by 1 process"):
        load_checkpoint(tmp_path / "one", module, optimizer, rank=1)


@pytest.mark.slow
def test_a_killed_torchrun_finetune_resumes_to_the_uninterrupted_runs_model(tiny_catalog,
                                                                              tmp_path):
    """2 processes, killed (SIGKILL) half way through epoch 2 of 2, after epoch 1's checkpoint:
    `torchrun ... curate train` again resumes after epoch 1 and ends with the same model bytes,
    predictions and dynamics as a 2-process run never stopped (dropout on: each rank's
    generator must come back as it was)."""
    import json

    import polars as pl

    from tests.training.test_trainer import KILL_IN_EPOCH_2

    hook = tmp_path / "kill_in_epoch_2.py"
    hook.write_text(KILL_IN_EPOCH_2)
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    killed = _curate_train(tiny_catalog, cut, 2, epochs=2, program=[str(hook)])
    assert killed.returncode != 0
    dynamics = cut / "checkpoint" / "dynamics"
    assert (dynamics / "epoch-001.parquet").exists(), killed.stderr[-3000:]
    assert not (dynamics / "epoch-002.parquet").exists()  # killed inside epoch 2
    assert not (cut / "manifest.json").exists()
    resumed = _curate_train(tiny_catalog, cut, 2, epochs=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {cut} after epoch 1" in resumed.stderr + resumed.stdout
    done = _curate_train(tiny_catalog, whole, 2, epochs=2)
    assert done.returncode == 0, done.stderr[-3000:]
    # the uninterrupted 2-process run is one complete run folder: every train item trained
    # once an epoch, on one rank or the other, and no checkpoint left behind
    metrics = json.loads((whole / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and not (whole / "checkpoint").exists()
    train_items = json.loads((whole / "manifest.json").read_text())["counts"]["train_items"]
    dynamics = pl.read_parquet(whole / "training_dynamics.parquet")
    assert dynamics.group_by("epoch").len().sort("epoch")["len"].to_list() == [train_items] * 2
    assert dynamics["parent_asin"].n_unique() == train_items

    assert (cut / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    b = json.loads((cut / "metrics.json").read_text())
    for key in ("val", "test", "best_epoch", "epochs_run"):
        assert metrics[key] == b[key], key
    for name in ("predictions.parquet", "training_dynamics.parquet"):
        assert pl.read_parquet(whole / name).equals(pl.read_parquet(cut / name)), name


if __name__ == "__main__":
    if sys.argv[1] == "curate-without-dropout":
        import torch

        from curate.cli import app

        dropout_init = torch.nn.Dropout.__init__

        def without_dropout(self, p=0.5, inplace=False):  # type: ignore[no-untyped-def]
            dropout_init(self, 0.0, inplace)

        torch.nn.Dropout.__init__ = without_dropout  # type: ignore[method-assign]
        app(sys.argv[2:], prog_name="curate")
    else:
        _train(Path(sys.argv[1]), bool(int(sys.argv[2])))
