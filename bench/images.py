"""Image fetching against a local HTTP server: images per second at 1, 4 and 16 concurrent
fetches, and the speed-up over one at a time.

    .venv/bin/python bench/images.py          # 400 images, 20 ms server latency, median of 3

The server (curation/image_server.py, on 127.0.0.1) adds a fixed latency to every response,
as a remote server would; each run fetches into a fresh catalog (check, resize, store).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from curation.catalog import Catalog
from curation.images import FetchSettings, fetch_images
from curation.synth.image_server import ImageServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per response")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.images):  # 500 x 500 photos-like JPEGs, ~30-60 KB
            base = rng.integers(0, 255, (25, 25, 3), dtype=np.uint8)
            pixels = np.kron(base, np.ones((20, 20, 1), dtype=np.uint8))
            out = io.BytesIO()
            Image.fromarray(pixels).save(out, format="JPEG", quality=85)
            (site / f"{i}.jpg").write_bytes(out.getvalue())
        rates: dict[int, list[float]] = {1: [], 4: [], 16: []}
        with ImageServer(site, delay=args.latency) as server:
            urls = [f"{server.url}{i}.jpg" for i in range(args.images)]
            for run in range(args.runs):
                for concurrency in rates:
                    catalog = Path(tmp) / f"catalog-{run}-{concurrency}"
                    Catalog.open(catalog, create=True).save()
                    started = time.perf_counter()
                    settings = FetchSettings(concurrency=concurrency,
                                             allow_networks=("127.0.0.1",))  # the local server
                    result = fetch_images(catalog, urls, settings)
                    seconds = time.perf_counter() - started
                    assert result.counts["ok"] == args.images, result.counts
                    rates[concurrency].append(args.images / seconds)
    base = statistics.median(rates[1])
    print(f"| concurrent fetches ({args.images} images, {args.latency * 1000:.0f} ms latency) "
          f"| images/s (median of {args.runs}) | vs 1 |")
    print("|---:|---:|---:|")
    for concurrency, values in rates.items():
        rate = statistics.median(values)
        print(f"| {concurrency} | {rate:,.1f} | {rate / base:.1f}x |")


if __name__ == "__main__":
    main()
