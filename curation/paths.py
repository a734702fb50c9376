"""Where things live: the raw corpus layout and the catalog layout, defined once.

Every location inside a catalog folder is spelled here and nowhere else: a stage asks its
``CatalogLayout`` for a path (``layout.slice_items(name)``), never joins folder names itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

HUB_DATASET = "McAuley-Lab/Amazon-Reviews-2023"
HUB_RAW_ROOT = f"hf://datasets/{HUB_DATASET}/raw"

REVIEW_DIR = "review_categories"
META_DIR = "meta_categories"
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")

DEFAULT_CATALOG = Path(os.environ.get("CURATE_CATALOG", "catalog"))
MANIFEST = "manifest.json"  # beside every stage's outputs: its provenance and completion marker


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


def view_name(kind: str, *parts: str) -> str:
    """The DuckDB view of a catalog table: ``slice_<name>``, ``weights_<slice>__<id>``,
    ``audit_<audit>__<subject>`` (anything but letters, digits and _ becomes _)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{kind}_" + "__".join(parts))


@dataclass(frozen=True)
class CatalogLayout:
    """A catalog directory. catalog.json is the source of truth; catalog.duckdb holds views.

    ::

        catalog.json, catalog.duckdb, .catalog.backup.json (a copy of catalog.json)
        bronze/<kind>/category=<C>/<version>/part-*.parquet   quarantine/<kind>/category=<C>/
        silver/<profile>/{items,rejections,review_rejections}.parquet   (clean)
        splits/<profile>/seed<S>/{assignments,leakage}.parquet, splits/<profile>/regroup.parquet
        slices/<name>/items.parquet                           (build-slice)
        weights/<slice>/<id>/weights.parquet                  (weights compute)
        audit/<audit>/<subject>/                              (audit ...)
        images/, embeddings/<encoder key>/, validation/       (images, train, validate)
        .staging/, .spill/                                    (work in progress, DuckDB spill)
        .writer.lock, .writer.json                            (the writer lock and its holder)
    """

    root: Path

    @property
    def own_names(self) -> frozenset[str]:
        """What a catalog folder may hold before its catalog.json exists (an interrupted
        first ingest): anything else means the folder is someone else's."""
        return frozenset({self.manifest.name, self.database.name, f"{self.database.name}.wal",
                          self.staging.name, self.spill.name, self.writer_lock.name,
                          self.catalog_backup.name,
                          self.writer_holder.name, *(p.name for p in self.ingested_tops)})

    def relative(self, path: Path) -> str:
        """A path inside the catalog as catalog.json records it (relative to the root)."""
        return str(path.relative_to(self.root))

    # -- the catalog itself ------------------------------------------------------------------
    @property
    def manifest(self) -> Path:
        return self.root / "catalog.json"

    @property
    def catalog_backup(self) -> Path:
        """catalog.json's copy, with the SHA-256 of catalog.json's bytes."""
        return self.root / ".catalog.backup.json"

    @property
    def database(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def staging(self) -> Path:
        """Outputs being written; each job stages in a folder of its own under it."""
        return self.root / ".staging"

    @property
    def writer_lock(self) -> Path:
        """Held by the one job writing to the catalog (see curation.lock)."""
        return self.root / ".writer.lock"

    @property
    def writer_holder(self) -> Path:
        """Who holds the writer lock: command line, job, PID, host, since (JSON)."""
        return self.root / ".writer.json"

    @property
    def spill(self) -> Path:
        """Where DuckDB spills what does not fit in its memory limit."""
        return self.root / ".spill"

    # -- ingest ------------------------------------------------------------------------------
    def bronze_dir(self, kind: str, category: str, version: str) -> Path:
        """One folder of Parquet parts per ingested raw file."""
        return self.root / "bronze" / kind / f"category={category}" / version

    def quarantine_file(self, kind: str, category: str, version: str) -> Path:
        return self.root / "quarantine" / kind / f"category={category}" / f"{version}.parquet"

    @property
    def ingested_tops(self) -> tuple[Path, Path]:
        """The folders ingest owns (their unreferenced files are garbage after a re-ingest)."""
        return self.root / "bronze", self.root / "quarantine"

    # -- clean -------------------------------------------------------------------------------
    def silver_dir(self, profile: str) -> Path:
        """Cleaned items of one profile: items.parquet, rejections.parquet, manifest.json."""
        return self.root / "silver" / profile

    def silver_items(self, profile: str) -> Path:
        return self.silver_dir(profile) / "items.parquet"

    def rejections(self, profile: str) -> Path:
        return self.silver_dir(profile) / "rejections.parquet"

    def review_rejections(self, profile: str) -> Path:
        """Review lines left out of the items' review aggregates, with the reason."""
        return self.silver_dir(profile) / "review_rejections.parquet"

    # -- split -------------------------------------------------------------------------------
    def split_dir(self, profile: str, seed: int) -> Path:
        return self.root / "splits" / profile / f"seed{seed}"

    def split_assignments(self, profile: str, seed: int) -> Path:
        return self.split_dir(profile, seed) / "assignments.parquet"

    def split_leakage(self, profile: str, seed: int) -> Path:
        return self.split_dir(profile, seed) / "leakage.parquet"

    def regroup_file(self, profile: str) -> Path:
        """Pairs (a, b) that ``curate audit duplicates --regroup`` asked to keep in one split
        (for every split seed of the profile; delete the file to undo)."""
        return self.root / "splits" / profile / "regroup.parquet"

    # -- slices ------------------------------------------------------------------------------
    @property
    def slices_root(self) -> Path:
        return self.root / "slices"

    def slice_dir(self, name: str) -> Path:
        return self.slices_root / name

    def slice_items(self, name: str) -> Path:
        return self.slice_dir(name) / "items.parquet"

    # -- weights -----------------------------------------------------------------------------
    def weights_root(self, slice_name: str) -> Path:
        return self.root / "weights" / slice_name

    def weights_dir(self, slice_name: str, weights_id: str) -> Path:
        return self.weights_root(slice_name) / weights_id

    def weights_file(self, slice_name: str, weights_id: str) -> Path:
        return self.weights_dir(slice_name, weights_id) / "weights.parquet"

    def weights_plots(self, slice_name: str) -> Path:
        """Where ``curate weights compare`` draws by default."""
        return self.weights_root(slice_name) / "compare"

    # -- audits ------------------------------------------------------------------------------
    def audit_root(self, audit: str) -> Path:
        return self.root / "audit" / audit

    def audit_dir(self, audit: str, subject: str) -> Path:
        """One audit of one subject (a slice, a profile): its table, summary and manifest."""
        return self.audit_root(audit) / subject

    def audit_table(self, audit: str, subject: str) -> Path:
        """The per-item table of an audit (what weightings and slices read from it)."""
        return self.audit_dir(audit, subject) / "items.parquet"

    def audit_tables(self, audit: str) -> list[Path]:
        """The per-item tables of every subject one audit has covered."""
        return sorted(self.audit_root(audit).glob(f"*/{self.audit_table(audit, '*').name}"))

    # -- images, embeddings, validation ------------------------------------------------------
    @property
    def images(self) -> Path:
        """Fetched product images (content-addressed) and their status table."""
        return self.root / "images"

    @property
    def image_status(self) -> Path:
        return self.images / "status.parquet"

    @property
    def image_journal(self) -> Path:
        """Status rows of a fetch in progress, folded into status.parquet at its end."""
        return self.images / ".journal"

    @property
    def embeddings(self) -> Path:
        """The trainer's embedding cache: one folder per encoder configuration."""
        return self.root / "embeddings"

    def alignment_dir(self, slice_name: str) -> Path:
        """An image-text alignment trained on a slice's train split (curate align train)."""
        return self.root / "alignment" / slice_name / "model"

    def search_index_dir(self, slice_name: str) -> Path:
        """The index of a slice's aligned image vectors (curate search)."""
        return self.root / "alignment" / slice_name / "index"

    @property
    def validation(self) -> Path:
        """great-expectations results (JSON per target) and its project with Data Docs."""
        return self.root / "validation"

    def validation_result(self, target: str) -> Path:
        return self.validation / f"{target.replace(':', '-')}.json"

    @property
    def data_docs(self) -> Path:
        return self.validation / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
