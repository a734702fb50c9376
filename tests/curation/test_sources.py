"""Raw sources: a folder, a file:// URL, any fsspec URL, and the hub, on one code path.

No test here reaches the network. The hub itself cannot be listed offline; what can be shown
is that the alias goes to huggingface_hub's filesystem for the corpus' repository (the
offline error names it), what a user sees offline or without huggingface_hub, and that a
non-local fsspec filesystem (fsspec's in-memory one) takes the same path as the hub does
(URLs kept with their protocol, fingerprints without local mtimes) and ingests the same rows.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import fsspec
import pytest

from curation.catalog import Catalog
from curation.ingest import ingest
from curation.sources import SourceError, list_raw_files, resolve_root
from tests.conftest import write_raw

HUB_ROOT = "hf://datasets/McAuley-Lab/Amazon-Reviews-2023/raw"  # as the README gives it


def _corpus(tmp_path: Path) -> Path:
    review = {"rating": 4.0, "parent_asin": "B1", "timestamp": 1_700_000_000_000}
    item = {"title": "A kite", "average_rating": 4.0, "rating_number": 2, "parent_asin": "B1"}
    return write_raw(
        tmp_path,
        meta={"All_Beauty": [item], "Video_Games": [item, {"title": "no asin"}]},
        reviews={"All_Beauty": [review], "Video_Games": [review, review], "Books": [review]},
    )


def test_the_hub_alias_resolves_to_the_hub_root():
    assert resolve_root("hub") == resolve_root("hf") == HUB_ROOT
    assert resolve_root("hf://datasets/someone/else/raw") == "hf://datasets/someone/else/raw"
    assert resolve_root("raw") == "raw"


def test_the_hub_offline_is_a_clear_error_not_a_missing_folder(monkeypatch):
    from huggingface_hub import constants

    # huggingface_hub's own offline switch: every request it would make raises instead.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SourceError) as caught:
        list_raw_files("hub", ["All_Beauty"])
    message = str(caught.value)
    assert message.startswith(HUB_ROOT)
    assert "no such folder" not in message and "offline mode is enabled" in message
    # The request went to the corpus' repository on the hub, through huggingface_hub.
    assert "huggingface.co/api/datasets/McAuley-Lab/Amazon-Reviews-2023" in message


def test_hf_paths_without_huggingface_hub_say_what_to_install(monkeypatch):
    registry = sys.modules["fsspec.registry"]._registry  # the classes fsspec has imported
    monkeypatch.delitem(registry, "hf", raising=False)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails, as if absent
    with pytest.raises(SourceError, match=r"needs huggingface_hub: pip install 'curate\[hub\]'"):
        list_raw_files("hub")


def test_a_folder_and_its_file_url_are_the_same_source(tmp_path):
    raw = _corpus(tmp_path)
    by_path, by_url = list_raw_files(str(raw)), list_raw_files(raw.as_uri())
    assert by_path == by_url  # kind, category, local path, size and fingerprint alike
    assert all(Path(f.url).is_file() for f in by_path)
    ingest(str(raw), tmp_path / "cat")
    # Naming the same files the other way is not a change: nothing is ingested again.
    assert all(r.skipped for r in ingest(raw.as_uri(), tmp_path / "cat"))


def test_categories_are_filtered_and_plain_jsonl_wins_over_gzip(tmp_path):
    raw = _corpus(tmp_path)
    (raw / "review_categories" / "Video_Games.jsonl.gz").write_bytes(b"not read")
    (raw / "review_categories" / "Garden.jsonl.gz").write_bytes(b"only gzip: listed")
    (raw / "review_categories" / "README.md").write_text("not a corpus file")
    (raw / "meta_categories" / "meta_Toys.jsonl").mkdir()  # a folder, whatever its name
    files = list_raw_files(str(raw), ["Video_Games", "Garden"])
    assert [(f.key, Path(f.url).name) for f in files] == [
        ("items/Video_Games", "meta_Video_Games.jsonl"),
        ("reviews/Garden", "Garden.jsonl.gz"),
        ("reviews/Video_Games", "Video_Games.jsonl"),
    ]
    everything = [f.key for f in list_raw_files(str(raw))]
    assert everything == [
        "items/All_Beauty",
        "items/Video_Games",
        "reviews/All_Beauty",
        "reviews/Books",
        "reviews/Garden",
        "reviews/Video_Games",
    ]
    with pytest.raises(SourceError, match=r"no files for categories \['Pets'\]"):
        list_raw_files(str(raw), ["Books", "Pets"])


def _fingerprint(raw: Path, name: str) -> str:
    [found] = [f for f in list_raw_files(str(raw)) if Path(f.url).name == name]
    return found.fingerprint


def test_fingerprints_change_with_the_content_at_either_end(tmp_path):
    raw = _corpus(tmp_path)
    path = raw / "review_categories" / "Books.jsonl"
    line = b'{"rating": 4.0, "parent_asin": "B1", "title": "' + b"x" * 200 + b'"}\n'
    path.write_bytes(line * 2000)  # about 450 KB: more than the two 64 KiB ends hashed
    stat = path.stat()
    before = _fingerprint(raw, path.name)
    assert _fingerprint(raw, path.name) == before  # listing again changes nothing
    for offset in (100, stat.st_size - 100):  # one byte, same size, same modification time
        data = bytearray(line * 2000)
        data[offset] = ord("y")
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert _fingerprint(raw, path.name) != before, offset
    path.write_bytes(line * 2000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _fingerprint(raw, path.name) == before
    path.write_bytes(line * 2001)  # the size alone
    assert _fingerprint(raw, path.name) != before


@pytest.fixture
def memory_raw(tmp_path):
    """The corpus copied into fsspec's in-memory filesystem: not local, so it goes the way
    the hub's files go."""
    raw = _corpus(tmp_path)
    memory = fsspec.filesystem("memory")
    root = f"/curate-{uuid.uuid4().hex}/raw"
    for path in raw.rglob("*.jsonl"):
        memory.pipe(f"{root}/{path.relative_to(raw).as_posix()}", path.read_bytes())
    yield raw, f"memory://{root}"
    memory.rm(root.rsplit("/", 1)[0], recursive=True)


def test_a_non_local_filesystem_takes_the_hub_path_and_ingests_the_same_rows(tmp_path, memory_raw):
    local, remote = memory_raw
    files = list_raw_files(remote, ["Video_Games"])
    assert [f.key for f in files] == ["items/Video_Games", "reviews/Video_Games"]
    assert all(f.url.startswith("memory://") for f in files)  # opened again by URL
    local_files = list_raw_files(str(local), ["Video_Games"])
    assert [f.size for f in files] == [f.size for f in local_files]
    ingest(remote, tmp_path / "remote", ["Video_Games"])
    ingest(str(local), tmp_path / "local", ["Video_Games"])
    remote_sources = Catalog.open(tmp_path / "remote").sources
    local_sources = Catalog.open(tmp_path / "local").sources
    assert remote_sources.keys() == local_sources.keys() == {f.key for f in files}
    for key, entry in remote_sources.items():
        theirs = local_sources[key]
        assert entry["source"].startswith("memory://")
        counts = ("lines_read", "rows_ingested", "lines_quarantined", "bronze_sha256")
        assert {c: entry[c] for c in counts} == {c: theirs[c] for c in counts}
    assert remote_sources["items/Video_Games"]["lines_quarantined"] == 1  # the line with no asin
    assert all(r.skipped for r in ingest(remote, tmp_path / "remote", ["Video_Games"]))
