"""Where raw files come from: a local folder, a file:// URL, or the Hugging Face hub.

Every source goes through fsspec, so the code path is the same for a local path (tested
here) and for ``hf://datasets/McAuley-Lab/Amazon-Reviews-2023/raw`` (huggingface_hub's
``HfFileSystem``, registered with fsspec under ``hf://``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import fsspec

from curation.errors import UserError
from curation.paths import HUB_RAW_ROOT, META_DIR, REVIEW_DIR, category_of

HUB_ALIASES = ("hub", "hf")
FINGERPRINT_SAMPLE = 1 << 16  # bytes hashed from each end of a local file


class SourceError(UserError):
    """A raw source that cannot be used; the message is meant for the user."""


@dataclass(frozen=True)
class RawFile:
    kind: str  # reviews | items
    category: str
    url: str  # as given to fsspec
    size: int
    fingerprint: str

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.category}"

    def open(self):
        return fsspec.open(self.url, "rb").open()


def resolve_root(root: str) -> str:
    return HUB_RAW_ROOT if root in HUB_ALIASES else root


def _filesystem(root: str) -> tuple[Any, str]:
    try:
        return fsspec.core.url_to_fs(root)
    except (ImportError, ValueError) as exc:
        if root.startswith("hf://"):
            raise SourceError(
                "reading from the hub needs huggingface_hub: pip install 'curate[hub]'"
            ) from exc
        raise SourceError(f"cannot open {root}: {exc}") from exc


def _fingerprint(fs: Any, path: str, info: dict[str, Any]) -> str:
    """Cheap identity of a file's content: size, modification, and for local files a hash of
    both ends. Hashing whole files of tens of GB on every run would cost a full read."""
    parts: dict[str, Any] = {"size": info.get("size")}
    for key in ("blob_id", "sha", "etag", "ETag", "last_commit"):
        if info.get(key):
            parts[key] = str(info[key])
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        parts["mtime"] = info.get("mtime")
        digest = hashlib.sha256()
        with fs.open(path, "rb") as fh:
            digest.update(fh.read(FINGERPRINT_SAMPLE))
            size = info.get("size") or 0
            if size > FINGERPRINT_SAMPLE:
                fh.seek(max(size - FINGERPRINT_SAMPLE, FINGERPRINT_SAMPLE))
                digest.update(fh.read())
        parts["ends_sha256"] = digest.hexdigest()
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def list_raw_files(root: str, categories: list[str] | None = None) -> list[RawFile]:
    """The corpus files under ``root`` (``review_categories/`` and ``meta_categories/``).

    When both ``X.jsonl`` and ``X.jsonl.gz`` exist, the uncompressed one is used.
    """
    root = resolve_root(root)
    fs, base = _filesystem(root)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    try:
        fs.info(base)  # not fs.exists, which answers False for any error (offline, say)
    except FileNotFoundError:
        raise SourceError(f"{root}: no such folder") from None
    except OSError as exc:
        raise SourceError(f"{root}: cannot be read: {exc}") from exc
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for sub in (REVIEW_DIR, META_DIR):
        folder = f"{base.rstrip('/')}/{sub}"
        if not fs.exists(folder):
            continue
        for info in fs.ls(folder, detail=True):
            name = info["name"].rsplit("/", 1)[-1]
            parsed = category_of(name)
            if parsed is None or info.get("type") == "directory":
                continue
            kind, category = parsed
            if categories and category not in categories:
                continue
            key = f"{kind}/{category}"
            if key in found and found[key][0].endswith(".jsonl"):
                continue
            found[key] = (info["name"], info)
    if not found:
        raise SourceError(
            f"{root}: found no {REVIEW_DIR}/<Category>.jsonl[.gz] or "
            f"{META_DIR}/meta_<Category>.jsonl[.gz] files"
            + (f" for categories {categories}" if categories else "")
        )
    if categories:
        missing = sorted(set(categories) - {k.split("/", 1)[1] for k in found})
        if missing:
            raise SourceError(f"{root}: no files for categories {missing}")
    files = []
    for key in sorted(found):
        path, info = found[key]
        kind, category = key.split("/", 1)
        url = path if protocol in ("file", "local") else fs.unstrip_protocol(path)
        files.append(
            RawFile(kind, category, url, int(info.get("size") or 0), _fingerprint(fs, path, info))
        )
    return files
