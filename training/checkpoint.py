"""Checkpoints of a run's last finished epoch: weights, optimizer moments, the torch RNG and
the early-stopping state, as safetensors and JSON, swapped in whole (a kill never leaves half
a checkpoint). What the loss trains or fits beside the model (``training.loss.TrainingLoss``:
a classifier, the rating bins' edges) is saved with it in ``loss.safetensors``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from curation.errors import UserError
from curation.manifest import write_json_atomic

LOSS_STATE = "loss.safetensors"
RANK_RNG = "rng-rank"  # + the rank: another process's RNG state


def save_checkpoint(
    folder: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
    state: dict[str, Any], *, loss: torch.nn.Module | None = None,
    rank_rngs: list[torch.Tensor] | None = None,
) -> None:
    """Save ``module``'s weights, the optimizer, the RNG and ``state`` (and ``loss``'s state
    when it has any) as the checkpoint in ``folder``. With several processes, ``rank_rngs``
    holds every rank's RNG state in rank order (each rank draws its own dropout), saved as
    ``rng`` (rank 0) and ``rng-rank<r>``."""
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()},
              str(tmp / "weights.safetensors"))
    opt = optimizer.state_dict()
    # contiguous: a channels-last convolution's moments are strided, which safetensors refuses
    tensors = {f"{i}.{k}": v.contiguous() for i, s in opt["state"].items() for k, v in s.items()}
    rngs = rank_rngs or [torch.get_rng_state()]
    tensors["rng"] = rngs[0]
    tensors.update({f"{RANK_RNG}{r}": rng for r, rng in enumerate(rngs) if r > 0})
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    if loss is not None and (loss_state := loss.state_dict()):
        save_file({k: v.contiguous() for k, v in loss_state.items()}, str(tmp / LOSS_STATE))
    write_json_atomic(tmp / "state.json", {**state, "param_groups": opt["param_groups"]})
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def has_checkpoint(folder: Path) -> bool:
    return (folder / "state.json").exists()


def load_checkpoint(
    folder: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
    loss: torch.nn.Module | None = None, rank: int = 0,
) -> dict[str, Any]:
    """Restore what ``save_checkpoint`` saved into ``module``, ``optimizer``, the RNG (rank
    ``rank``'s) and ``loss``; returns the state. A checkpoint saved by fewer processes than
    resume it has no RNG state for the new ranks: refused, since the run would not end as an
    uninterrupted one."""
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(folder / "weights.safetensors")))
    if loss is not None and loss.state_dict():
        loss.load_state_dict(load_file(str(folder / LOSS_STATE)))
    tensors = load_file(str(folder / "optimizer.safetensors"))
    rngs = {key: tensors.pop(key) for key in [k for k in tensors if k.startswith("rng")]}
    key = "rng" if rank == 0 else f"{RANK_RNG}{rank}"
    if key not in rngs:
        raise UserError(f"{folder}: this checkpoint was saved by {len(rngs)} process(es); "
                        "resume it with as many (torchrun --nproc_per_node), or start afresh "
                        "in another --out")
    torch.set_rng_state(rngs[key])
    state = json.loads((folder / "state.json").read_text())
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": state.pop("param_groups")})
    return state
