"""Frozen encoding with ``--engine ray``: Ray Data ``map_batches`` on a pool of actors that
each load the encoders once (a GPU each when the cluster has GPUs).

Same bytes as the local engine: the driver forms the local engine's batches (consecutive
items in the cache's order, ``batch_size`` each, the last one short) and hands each to an
actor as one row; the actor collates and encodes it as the local DataLoader does
(``training.data.Collate``, ``training.embeddings.encode_batch``), with the driver's
calibration of a random image encoder handed in. The driver takes the batches back in order
and writes every shard itself (``EmbeddingCache._store``), at the same boundaries, atomically:
an actor never writes, so a retried batch cannot be written twice. An actor that dies (killed,
out of memory, node lost) is restarted and its batch run again: Ray Data's default for actor
pools (max_restarts and max_task_retries -1), which the tests check by killing one.
The torch thread count does not change the features on CPU (checked: 1, 2, 4 and 8 threads give
bitwise-equal features for the tiny and the default encoders), so it is left as Ray sets it.

Ray is imported only here, and this module only with ``--engine ray``. On a cluster of several
machines the image files must be at the same paths on every node (shared storage): an actor
that cannot find one fails rather than encode the item as imageless.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from curation.engine_ray import connect
from training.embeddings import EmbeddingCache, EncodedBatch, batch_norm_state
from training.model import is_random_image_encoder


@contextmanager
def ray_connection(address: str) -> Iterator[None]:
    """Connected to Ray for the block (``curation.engine_ray.connect``: a UserError at once when
    there is no cluster at ``address``); Ray shut down after it if this started it."""
    started = connect(address)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def batch_bounds(items: int, batch_size: int) -> list[tuple[int, int]]:
    """The local engine's batches of ``items`` consecutive rows: [start, end) each."""
    return [(start, min(start + batch_size, items)) for start in range(0, items, batch_size)]


class BatchEncoder:
    """A Ray Data actor: loads the encoders once, then encodes one pre-formed batch a row."""

    def __init__(self, image_encoder: str, text_encoder: str, sources: tuple[str, str],
                 calibration: dict[str, np.ndarray] | None, use_gpu: bool,
                 threads: int, precision: str = "float32") -> None:
        import torch

        # The driver's thread count: on a CPU the floats of a convolution depend on it (Ray
        # gives an actor 1 thread; with the driver's 2 one shard differed), and the cache must
        # be the local engine's bytes.
        torch.set_num_threads(threads)

        from training.data import Collate
        from training.model import MAX_TOKENS, model_for_run

        loaded, _, _ = model_for_run(image_encoder, text_encoder, seed=0, shared_encoders=True)
        if (loaded.image_source, loaded.text_source) != sources:
            # e.g. a node without the hub's weights fell back to random ones: other features
            raise RuntimeError(f"this Ray node loaded the encoders from "
                               f"{(loaded.image_source, loaded.text_source)}, the driver from "
                               f"{sources}")
        model = loaded.model
        if calibration is not None:
            model.image_encoder.load_state_dict(
                {k: torch.tensor(v) for k, v in calibration.items()}, strict=False)
        model.eval()
        self.model = model.to("cuda") if use_gpu else model
        self.collate = Collate(loaded.tokenizer, MAX_TOKENS)
        self.precision = precision

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from training.data import ItemDataset
        from training.embeddings import encode_batch

        out: dict[str, list[Any]] = {"batch": [], "features": [], "has_image": []}
        for index, payload in zip(rows["batch"], rows["items"], strict=True):
            batch = json.loads(payload)
            for path in batch["paths"]:
                if path is not None and not os.path.exists(path):
                    raise FileNotFoundError(f"image {path} is not on this Ray node (every node "
                                            "must see the catalog's images at the same paths)")
            dataset = ItemDataset(batch["texts"], batch["paths"], self.model.image_size)
            features, has_image = encode_batch(
                self.model, self.collate([dataset[i] for i in range(len(dataset))]),
                self.precision)
            out["batch"].append(int(index))
            out["features"].append(features.tobytes())
            out["has_image"].append(has_image.tobytes())
        return {"batch": np.array(out["batch"], dtype=np.int64),
                "features": np.array(out["features"], dtype=object),
                "has_image": np.array(out["has_image"], dtype=object)}


def encode_on_ray(
    cache: EmbeddingCache,
    texts: Sequence[str],
    image_paths: Sequence[str | None],
    batch_size: int,
    address: str,
) -> Iterator[EncodedBatch]:
    """The encoded batches of these items (already the ones to encode, in the cache's order),
    in order, for ``cache._store``. ``cache.prepare_encoders()`` must have run (its
    calibration is what the actors get)."""
    loaded = cache.loaded
    if loaded.image_encoder is None or loaded.text_encoder is None:
        raise ValueError("--engine ray needs the encoders' names (a model from model_for_run)")
    with ray_connection(address):
        import ray
        import torch

        model = loaded.model
        calibration = None
        if model.image_encoder is not None and is_random_image_encoder(loaded.image_source):
            calibration = {k: v.numpy() for k, v in batch_norm_state(model.image_encoder).items()}
        bounds = batch_bounds(len(texts), batch_size)
        # A dataset keeps a copy of the context it was made in: no Ray Data progress of its
        # own (the driver shows one bar, EmbeddingCache._store's), this process's left as it was.
        context = ray.data.DataContext.get_current()
        saved = context.enable_progress_bars, context.print_on_execution_start
        context.enable_progress_bars = context.print_on_execution_start = False
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "disabled"
        try:
            dataset = ray.data.from_items([
                {"batch": i, "items": json.dumps({"texts": list(texts[a:b]),
                                                  "paths": list(image_paths[a:b])})}
                for i, (a, b) in enumerate(bounds)])
        finally:
            context.enable_progress_bars, context.print_on_execution_start = saved
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        actors = max(1, min(len(bounds), gpus or int(resources.get("CPU", 1))))
        encoded = dataset.map_batches(
            BatchEncoder,
            fn_constructor_kwargs={
                "image_encoder": loaded.image_encoder, "text_encoder": loaded.text_encoder,
                "sources": (loaded.image_source, loaded.text_source),
                "calibration": calibration, "use_gpu": gpus > 0,
                "threads": torch.get_num_threads(), "precision": cache.precision},
            batch_size=1,  # one row is one whole batch of the local engine
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=1 if gpus else 0,
            # retries: Ray Data restarts a dead actor and reruns its batch (its actor pools'
            # default; bounding them here is deprecated Ray API)
        )
        # Rows come back as actors finish; hand the batches on in their order.
        waiting: dict[int, EncodedBatch] = {}
        wanted = 0
        for row in encoded.iter_rows():
            a, b = bounds[row["batch"]]
            features = np.frombuffer(row["features"], dtype=np.float32).reshape(b - a, -1)
            waiting[row["batch"]] = (features, np.frombuffer(row["has_image"], dtype=bool))
            while wanted in waiting:
                yield waiting.pop(wanted)
                wanted += 1
        if wanted != len(bounds):
            raise RuntimeError(f"Ray returned {wanted} of {len(bounds)} batches")
