"""Shared fixtures: one small messy corpus and its catalog per test session."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest

from curation.ingest import ingest
from curation.synth import SynthConfig, synthesize

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon2023"


@pytest.fixture(scope="session")
def messy_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("messy")
    synthesize(out, SynthConfig(n_items=600, seed=7, mess_rate=0.08, gzip=True))
    return out


@pytest.fixture(scope="session")
def messy_catalog(messy_corpus, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    ingest(str(messy_corpus / "raw"), root)
    return root


def count_lines(path: Path) -> int:
    """Lines in a raw file counted independently of ingest; a cut gzip counts what is readable."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        data = inflate.decompress(data)
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def read_lines(path: Path) -> list[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return fh.read().splitlines()


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared fixture {path} is not present")
    return path
