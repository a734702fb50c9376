"""Several training processes (``torchrun``): who this process is, its part of each batch, and
the loss scale and gradient sum that make the processes' step one process's step.

A global batch of the seed's order is split into contiguous shards, one per rank, so that the
union over the ranks of a step is exactly one process's batch. Each rank computes its loss on
its shard; ``shard_loss_scale`` rescales it so that the ranks' losses add up to the global
batch's loss (the paper's mean(w x huber) over the global batch, or sum(w x huber) / sum(w)
with renormalise, whose denominator is the global sum of weights), and ``sum_gradients`` adds
the ranks' gradients (all_reduce SUM), which is then the gradient of the global batch's loss:
every rank clips and steps on the same gradient, so the weights stay equal on every rank.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

ENV_RANK, ENV_WORLD, ENV_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Ranks(0, 1, 0)


def from_env(env: dict[str, str] | None = None) -> Ranks:
    """This process's place as ``torchrun`` sets it in the environment (one process without)."""
    env = dict(os.environ) if env is None else env
    world = int(env.get(ENV_WORLD, "1"))
    if world <= 1:
        return SINGLE
    return Ranks(int(env[ENV_RANK]), world, int(env.get(ENV_LOCAL_RANK, env[ENV_RANK])))


def init(ranks: Ranks) -> None:
    """Join the process group (gloo on CPU, nccl on CUDA), and leave it when the process exits;
    nothing for one process."""
    import torch
    import torch.distributed as dist

    if ranks.world > 1 and not dist.is_initialized():
        # Imported before the group exists: importing it afterwards (as the first optimizer
        # does) keeps references to the group that outlive destroy_process_group, so its
        # threads would live on into the interpreter's shutdown, where a gloo thread that drops
        # a tensor of Python's aborts the process ("terminate called without an active
        # exception"): 8 of 55 finished 2-process runs on a loaded machine failed so.
        import torch._dynamo

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(leave)


def leave() -> None:
    """Leave the process group, joining its threads while the interpreter can still run them
    (``init`` calls it at exit; nothing if no group is joined)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def shard(rows: np.ndarray, ranks: Ranks) -> np.ndarray:
    """Rank r's contiguous part of a global batch (array_split: the first ranks take one more
    when the batch does not divide; a rank may get none of a batch smaller than the world)."""
    return np.array_split(rows, ranks.world)[ranks.rank]


def shard_loss_scale(shard_items: int, global_items: int, shard_weight: float,
                     global_weight: float, renormalise: bool) -> float:
    """The factor that turns a shard's loss (its own mean, or its own weighted mean) into its
    share of the global batch's loss: n_shard / N, or sum_shard(w) / sum_global(w)."""
    if renormalise:
        return shard_weight / global_weight if global_weight > 0 else 0.0
    return shard_items / global_items if global_items > 0 else 0.0


def all_sum(value: float, ranks: Ranks) -> float:
    """The sum of a number over the ranks (the number itself for one process)."""
    if ranks.world == 1:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item())


def gather_objects(value: Any, ranks: Ranks) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` for one process)."""
    if ranks.world == 1:
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * ranks.world
    dist.all_gather_object(gathered, value)
    return gathered


def from_main(value: Any, ranks: Ranks) -> Any:
    """Rank 0's ``value`` on every rank: what the ranks must decide alike (rank 0's own
    validation score decides early stopping; another rank's, from batch-norm statistics of its
    shards alone, could differ and leave one rank waiting for the others)."""
    return gather_objects(value, ranks)[0]


def sum_gradients(parameters: list[Any], ranks: Ranks) -> None:
    """Add the ranks' gradients in place (a parameter without one counts as zeros, so a rank
    whose shard was empty still takes part)."""
    if ranks.world == 1:
        return
    import torch
    import torch.distributed as dist

    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
