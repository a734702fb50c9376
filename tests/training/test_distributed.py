"""Two processes (``torchrun``, gloo on CPU) take the same steps as one process with the same
global batch: each rank's contiguous shard of the seed's order, its loss scaled to its share of
the global batch's loss, the gradients summed over the ranks.

Run as a script (``python -m torch.distributed.run --nproc_per_node 2 THIS OUT RENORMALISE``)
this file is the training loop; the tests launch it and compare the weights with one process's.
The model has no dropout, so the two must agree to float rounding (the summed gradient adds
the same terms in another order)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.distributed import SINGLE, Ranks, from_env, shard, shard_loss_scale

ITEMS, BATCH, EPOCHS, SEED = 37, 8, 3, 5  # 37 items: the last global batch does not divide


def _train(out: Path, renormalise: bool) -> None:
    import torch

    from training import distributed
    from training.loss import weighted_huber

    ranks = distributed.from_env()
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
        torch.distributed.destroy_process_group()


def _run(out: Path, renormalise: bool, processes: int) -> np.ndarray:
    launch = [sys.executable] if processes == 1 else [
        # --standalone: a free port of its own, beside other runs on the machine
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
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


if __name__ == "__main__":
    _train(Path(sys.argv[1]), bool(int(sys.argv[2])))
