"""Where things live: the raw corpus layout and the catalog layout, defined once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HUB_DATASET = "McAuley-Lab/Amazon-Reviews-2023"
HUB_RAW_ROOT = f"hf://datasets/{HUB_DATASET}/raw"

REVIEW_DIR = "review_categories"
META_DIR = "meta_categories"
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")

DEFAULT_CATALOG = Path(os.environ.get("CURATE_CATALOG", "catalog"))


def review_file_name(category: str, gz: bool = False) -> str:
    return f"{category}.jsonl" + (".gz" if gz else "")


def meta_file_name(category: str, gz: bool = False) -> str:
    return f"meta_{category}.jsonl" + (".gz" if gz else "")


def category_of(file_name: str) -> tuple[str, str] | None:
    """(kind, category) of a raw file name, kind 'reviews' or 'items'; None if not a corpus file."""
    for suffix in JSONL_SUFFIXES:
        if file_name.endswith(suffix):
            stem = file_name[: -len(suffix)]
            if stem.startswith("meta_"):
                return "items", stem[len("meta_") :]
            return "reviews", stem
    return None


def sql_dir() -> Path:
    """The named queries: inside the installed package, or sql/ beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sql/ folder of named queries is missing from this installation")


@dataclass(frozen=True)
class CatalogLayout:
    """A catalog directory. catalog.json is the source of truth; catalog.duckdb holds views."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "catalog.json"

    @property
    def database(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def staging(self) -> Path:
        return self.root / ".staging"

    @property
    def spill(self) -> Path:
        """Where DuckDB spills what does not fit in its memory limit."""
        return self.root / ".spill"

    @property
    def embeddings(self) -> Path:
        """The trainer's embedding cache: one folder per encoder configuration."""
        return self.root / "embeddings"

    @property
    def images(self) -> Path:
        """Fetched product images (content-addressed) and their status table."""
        return self.root / "images"

    @property
    def image_status(self) -> Path:
        return self.images / "status.parquet"

    def silver_dir(self, profile: str) -> Path:
        """Cleaned items of one profile: items.parquet, rejections.parquet, manifest.json."""
        return self.root / "silver" / profile

    def bronze_dir(self, kind: str, category: str, version: str) -> Path:
        """One folder of Parquet parts per ingested raw file."""
        return self.root / "bronze" / kind / f"category={category}" / version

    def quarantine_file(self, kind: str, category: str, version: str) -> Path:
        return self.root / "quarantine" / kind / f"category={category}" / f"{version}.parquet"
