"""``curate encode``: fill a slice's frozen-encoder embedding cache, and nothing else."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Annotated

import typer

from curate.common import (
    CatalogOption,
    EngineOption,
    RayAddressOption,
    command,
    workers_or_default,
    writes_to,
)
from curation.errors import UserError
from curation.paths import DEFAULT_CATALOG
from training.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, ENCODE_BATCH_SIZE

commands = typer.Typer()


@command(commands, "encode")
def encode_command(
    slice_name: Annotated[str, typer.Argument(help="Slice name (curate slices list).")],
    catalog: CatalogOption = DEFAULT_CATALOG,
    image_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of EfficientNet-B0 (none: text only).")
    ] = DEFAULT_IMAGE_ENCODER,
    text_encoder: Annotated[
        str, typer.Option(help="Hub id or local path of the MiniLM.")
    ] = DEFAULT_TEXT_ENCODER,
    batch_size: Annotated[int, typer.Option(
        help="Items encoded together (more on a GPU).")] = ENCODE_BATCH_SIZE,
    workers: Annotated[
        int | None, typer.Option(help="With --engine local: DataLoader worker processes "
                                 "(decode, tokenise).")
    ] = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = "auto",
) -> None:
    """Encode the slice's items with the frozen encoders into the embedding cache, which
    curate train --mode frozen, curate study run and the audits then read instead of encoding.

    Writes CATALOG/embeddings/<encoder key>/ (encoder.json, calibration.safetensors for a
    random image encoder, part-<hash>.parquet shards). Items already there are not encoded
    again. --engine ray encodes on Ray actors that hold the model (a GPU each when the cluster
    has GPUs); this process writes the same shards, byte for byte, as --engine local.
    CURATE_ENCODE_PRECISION=bfloat16 encodes under bfloat16 autocast: several times faster
    on GPUs and CPUs with AMX, slightly other features, a cache of its own (every command
    that reads the cache must then run with it too).
    """
    from curation.engine_ray import check_engine
    from curation.slices import Slice
    from training.embeddings import embed_slice, encode_precision, encoders_ran

    check_engine(engine)
    encode_precision()  # a wrong CURATE_ENCODE_PRECISION is one line before any encoder loads
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be at least 1")
    slice_ = Slice.open(catalog, slice_name)
    session: AbstractContextManager[None] = nullcontext()
    if engine == "ray":
        from training.encode_ray import ray_connection

        # connected first: no cluster at --ray-address is one line before any encoder loads
        session = ray_connection(ray_address)
    with writes_to(catalog, "encode"), session:
        _, embedded = embed_slice(slice_, image_encoder=image_encoder, text_encoder=text_encoder,
                                  columns=["main_image_url", "model_text"],
                                  workers=workers_or_default(workers), batch_size=batch_size,
                                  engine=engine, ray_address=ray_address)
    ran = encoders_ran(embedded)
    now = embedded.encoded_now
    rate = f", {now / embedded.seconds_encoding:,.1f} items/s" \
        if now and embedded.seconds_encoding > 0 else ""
    typer.echo(f"{ran['items']:,} items of {slice_name}: {now:,} encoded now ({engine} engine"
               f"{rate}), {ran['items'] - now:,} already in the cache; {ran['with_image']:,} with "
               "an image")
    typer.echo(f"image encoder: {ran['image']['label']}; text encoder: {ran['text']['label']}; "
               f"precision: {ran['precision']}")
    typer.echo(f"cache: {slice_.catalog.layout.embeddings / embedded.encoder_key}")
