"""Shared fixtures: one small messy corpus and its catalog per test session."""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from curation.ingest import ingest
from curation.synth import SynthConfig, synthesize


def _shared_data() -> Path:
    """``../shared/data/amazon2023`` beside the checkout; from mutmut's copy of the tests
    (``mutants/tests``) the nearest such folder further up."""
    here = Path(__file__).resolve()
    for folder in here.parents[1:]:
        candidate = folder.parent / "shared" / "data" / "amazon2023"
        if candidate.is_dir():
            return candidate
    return here.parents[1].parent / "shared" / "data" / "amazon2023"


SHARED_DATA = _shared_data()

# Under mutmut (scripts/mutation) a failing example is enough: no shrinking, which can take
# longer than mutmut's time limit, no deadline (a loaded machine is not a failure), and no
# example database written into mutants/.
settings.register_profile(
    "mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate], deadline=None,
    database=None,
)
if "MUTANT_UNDER_TEST" in os.environ:  # set by mutmut in all its runs (empty in some)
    settings.load_profile("mutation")


def shared_scope(fixture_name: str, config: pytest.Config) -> str:
    """Session, except while mutmut records which tests call which functions
    (MUTANT_UNDER_TEST=stats): a session fixture runs inside the first test that asks for it,
    so every other test using the shared catalog would never be run against a mutant of
    ingest, clean or split. Built per test there, each of them is recorded."""
    return "function" if os.environ.get("MUTANT_UNDER_TEST") == "stats" else "session"


@pytest.fixture(scope="session")
def messy_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("messy")
    synthesize(out, SynthConfig(n_items=600, seed=7, mess_rate=0.08, gzip=True))
    return out


@pytest.fixture(scope=shared_scope)
def messy_catalog(messy_corpus, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    ingest(str(messy_corpus / "raw"), root)
    return root


def synthetic_catalog(factory: pytest.TempPathFactory, label: str, n_items: int, seed: int,
                      slices: dict[float, str | None]) -> Path:
    """A synthetic corpus of ``n_items`` ingested into a fresh catalog, with a slice per
    fraction (named as given, or by build-slice's default name when None)."""
    from curation.slices import build_slice

    corpus = factory.mktemp(f"{label}-corpus")
    synthesize(corpus, SynthConfig(n_items=n_items, seed=seed))
    root = factory.mktemp(label) / "catalog"
    ingest(str(corpus / "raw"), root)
    for fraction, name in slices.items():
        build_slice(root, fraction, name=name)
    return root


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 running ``handler``; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def raw_bytes(path: Path) -> bytes:
    """A raw file's bytes, decompressed independently of ingest; a cut gzip gives what is
    readable. Gzip is known, as ingest knows it, by the suffix or by the magic bytes (a
    ``.jsonl`` that starts with them is read as gzip)."""
    data = path.read_bytes()
    if path.suffix == ".gz" or data[:2] == b"\x1f\x8b":
        try:
            data = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(data)
        except zlib.error:
            # Not gzip after all (gzip's magic, then other bytes): what inflates before zlib
            # gives up, nothing. (Ingest drops the 16 KiB piece around a spot damaged later
            # in a stream, which this does not model; no test here writes such a file.)
            inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            readable = []
            with suppress(zlib.error):
                for at in range(len(data)):
                    readable.append(inflate.decompress(data[at:at + 1]))
            data = b"".join(readable)
    return data


def count_lines(path: Path) -> int:
    """Lines in a raw file counted independently of ingest; a cut gzip counts what is readable."""
    data = raw_bytes(path)
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def read_lines(path: Path) -> list[bytes]:
    """A raw file's lines as ingest frames them: cut at LF only (a lone CR stays in its line,
    where ``bytes.splitlines`` would cut), with no empty line after a final LF."""
    data = raw_bytes(path)
    lines = data.split(b"\n")
    return lines[:-1] if data.endswith(b"\n") or not data else lines


def copy_catalog(source: Path, target: Path) -> Path:
    """A private copy of a shared (session) catalog, for a test that writes into it."""
    import shutil

    shutil.copytree(source, target)
    return target


ZSTD_FRAME = b"\x28\xb5\x2f\xfd"  # the magic number that opens every zstd frame (each page)


def break_a_page(path: Path) -> None:
    """A flipped bit in a page's zstd magic number: that page no longer decompresses (a flip
    elsewhere in compressed data may still decompress, to other values: only hashing sees it)."""
    data = bytearray(path.read_bytes())
    at = data.find(ZSTD_FRAME)
    assert at > 0, f"{path} has no zstd page"
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def alter_a_page_silently(path: Path) -> None:
    """Flip the first bit of the column data whose page still decompresses, to other values."""
    import duckdb

    data = path.read_bytes()
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall()
    for at in range(data.find(ZSTD_FRAME) + 16, len(data) // 2):
        changed = bytearray(data)
        changed[at] ^= 0x01
        path.write_bytes(bytes(changed))
        try:
            if duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall() != rows:
                return
        except duckdb.Error:
            pass
    raise AssertionError(f"no silent flip found in {path}")


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared fixture {path} is not present")
    return path


@pytest.fixture(scope=shared_scope)
def split_catalog(messy_catalog, tmp_path_factory) -> Path:
    """A copy of the messy catalog, cleaned (default profile) and split."""
    import shutil

    from curation.clean import clean
    from curation.split import build_split

    root = tmp_path_factory.mktemp("split") / "catalog"
    shutil.copytree(messy_catalog, root)
    clean(root, "default")
    build_split(root, seed=0)
    return root


def write_raw(
    root: Path,
    meta: dict[str, list[dict]] | None = None,
    reviews: dict[str, list[dict]] | None = None,
) -> Path:
    """A raw corpus folder from records given per category."""
    import json

    raw = root / "raw"
    (raw / "meta_categories").mkdir(parents=True, exist_ok=True)
    (raw / "review_categories").mkdir(parents=True, exist_ok=True)
    for category, records in (meta or {}).items():
        lines = "".join(json.dumps(r) + "\n" for r in records)
        (raw / "meta_categories" / f"meta_{category}.jsonl").write_text(lines)
    for category, records in (reviews or {}).items():
        lines = "".join(json.dumps(r) + "\n" for r in records)
        (raw / "review_categories" / f"{category}.jsonl").write_text(lines)
    return raw


def record_outputs(folder: Path, **changes: object) -> None:
    """Record a stage folder's files in its manifest as if the stage had written them (for a
    test that builds a control or a planted bug by hand, not one that tests a hand edit)."""
    import json

    from curation.manifest import output_stats, sha256_file

    path = folder / "manifest.json"
    manifest = {**json.loads(path.read_text()), **changes}
    for name in manifest["outputs"]:
        manifest["outputs"][name] = sha256_file(folder / name)
        manifest["output_stats"][name] = output_stats(folder / name)
    path.write_text(json.dumps(manifest))
