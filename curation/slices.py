"""Nested, stratified, reproducible slices of the train split.

Within each stratum of the train split, items are ranked by a stable hash of
(slice seed, parent_asin); an item of rank r in a stratum of n items gets the threshold
f = (r - 0.5) / n, and the slice for a fraction F holds the items with f <= F. So:

- for one seed, every smaller slice lies inside every larger one (f does not depend on F);
- each stratum holds round(F x n) items, within half an item of its exact share;
- ``--min-per-category N`` tops a category up to N items (or all it has) in the order of
  (f, hash), which keeps the nesting (the paper's authors took max(F x n, 10,000) per
  category, drawn independently for each fraction).

The val and test splits are in every slice, whole and identical.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.catalog import Catalog, parquet_source
from curation.clean import (
    SILVER_ITEMS,
    TEXT_COLUMNS,
    bronze_fingerprint,
    clean,
    read_clean_manifest,
    silver_views,
)
from curation.errors import IntegrityError, UserError
from curation.integrity import (
    blame_damaged_inputs,
    check_folder,
    check_folders,
    check_output,
    full_checks,
)
from curation.manifest import read_record, sha256_file
from curation.paths import MANIFEST, view_name
from curation.sorting import copy_sorted
from curation.split import (
    COUNT_BIN_SQL,
    RATING_BIN_SQL,
    SPLIT_NAMES,
    SPLITS,
    build_split,
    read_split_manifest,
    split_views,
    stable_hash_sql,
)

if TYPE_CHECKING:
    import polars as pl

STRATA_SQL = {
    "main_category": "coalesce(nullif(main_category, ''), '(none)')",
    "category": "category",
    "rating_bin": RATING_BIN_SQL,
    "count_bin": COUNT_BIN_SQL,
}
DEFAULT_STRATA = ("main_category", "rating_bin", "count_bin")
SLICE_VIEW = "slice"  # views slice_<name>
# What an audit's flags leave out of train -> the default name's suffix. The manifest records
# each as the parameter exclude_<kind> (the audited slice), in this order in the name.
EXCLUSIONS = {"label_issues": "-nolabelissues", "misaligned": "-nomisaligned"}
EXCLUSION_SUFFIX = EXCLUSIONS["label_issues"]


@dataclass
class SliceResult:
    name: str
    path: Path
    manifest: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class Exclusion:
    """Train items to leave out of a slice, the audited slice whose audit flagged them, and
    which audit that was (``kind``, a key of EXCLUSIONS: ``label_issues`` for curate audit
    label-quality, ``misaligned`` for curate audit alignment). Recorded in the manifest as the
    parameter ``exclude_<kind>``."""

    parent_asins: Sequence[str]
    audited_slice: str
    kind: str = "label_issues"

    def __post_init__(self) -> None:
        if self.kind not in EXCLUSIONS:
            raise ValueError(f"unknown exclusion {self.kind!r}; one of {', '.join(EXCLUSIONS)}")

    @property
    def parameter(self) -> str:
        return f"exclude_{self.kind}"


def exclusion_parameters(parameters: dict[str, Any]) -> dict[str, str]:
    """A slice's exclusions from its manifest's parameters: exclude_<kind> -> audited slice
    (empty for a plain slice; its items then follow from the other parameters alone)."""
    return {f"exclude_{k}": parameters[f"exclude_{k}"] for k in EXCLUSIONS
            if parameters.get(f"exclude_{k}")}


def _exclusions(exclude: Exclusion | Sequence[Exclusion] | None) -> tuple[Exclusion, ...]:
    """One exclusion per kind, in the order of EXCLUSIONS."""
    given = () if exclude is None else (exclude,) if isinstance(exclude, Exclusion) \
        else tuple(exclude)
    kinds = [e.kind for e in given]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"one exclusion per kind, got {kinds}")
    return tuple(sorted(given, key=lambda e: list(EXCLUSIONS).index(e.kind)))


@dataclass(frozen=True)
class Slice:
    """A built slice, opened once: its name, its items file and its manifest."""

    catalog: Catalog
    name: str
    manifest: dict[str, Any]

    @classmethod
    def open(cls, catalog: Catalog | Path | str, name: str, *, check: bool = True) -> Slice:
        """The slice ``name``; an unknown name is a UserError listing the slices there are, and
        a file that differs from the manifest an IntegrityError (unless ``check`` is false:
        for validation, which reports it among its failures)."""
        catalog = Catalog.of(catalog)
        path = catalog.layout.slice_dir(name) / MANIFEST
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or not path.exists():
            names = ", ".join(m["name"] for m in list_slices(catalog)) or "none yet"
            raise UserError(f"no slice named {name!r} (slices: {names})")
        manifest = read_record(path)
        if check:
            check_output(path.parent, catalog.layout.slice_items(name).name, catalog.layout.root,
                         manifest)
        return cls(catalog, name, manifest)

    @property
    def path(self) -> Path:
        """The items file: every train item of the slice and the whole val and test splits."""
        return self.catalog.layout.slice_items(self.name)

    @property
    def parameters(self) -> dict[str, Any]:
        return self.manifest["parameters"]

    @property
    def profile(self) -> str:
        return self.parameters["profile"]

    @property
    def split_seed(self) -> int:
        return self.parameters["split_seed"]

    def items(self, columns: Sequence[str] | None = None, *, text: bool = True) -> pl.DataFrame:
        """The slice's items: ``columns``, or all of them (without the text and list columns
        when ``text`` is false: what counting and weighing read)."""
        import polars as pl

        if columns is None and not text:
            columns = [c for c in pl.read_parquet_schema(self.path) if c not in TEXT_COLUMNS]
        return pl.read_parquet(self.path, columns=list(columns) if columns else None)


def slice_name(profile: str, frac: float, seed: int, *, split_seed: int = 0,
               strata: Sequence[str] = DEFAULT_STRATA, min_per_category: int = 0,
               excluded: bool | Sequence[str] = False) -> str:
    """A slice's default name: every parameter that changes its content and is not the
    default is in it (so two different slices never share a default name). ``excluded``:
    the kinds of exclusion (True: label issues)."""
    name = f"{profile}-frac{frac:g}-seed{seed}"
    if split_seed:
        name += f"-split{split_seed}"
    if tuple(strata) != tuple(DEFAULT_STRATA):
        name += "-by-" + ".".join(strata)
    if min_per_category:
        name += f"-min{min_per_category}"
    kinds = (["label_issues"] if excluded else []) if isinstance(excluded, bool) else excluded
    return name + "".join(suffix for kind, suffix in EXCLUSIONS.items() if kind in kinds)


def _refuse_another_slice_of_that_name(catalog: Catalog, name: str,
                                       parameters: dict[str, Any]) -> None:
    """A name stands for one slice: building it again with the same parameters is a rebuild,
    with others it would silently replace a slice that studies and nesting checks rely on."""
    path = catalog.layout.slice_dir(name) / MANIFEST
    if not path.exists():
        return
    try:
        have = read_record(path)["parameters"]
    except IntegrityError as exc:  # a damaged slice is unusable: building it again repairs it
        print(f"note: {exc}; building it again", file=sys.stderr)
        return
    # every exclusion too: those only recorded when given (exclude_misaligned) still differ
    keys = {*parameters, *(f"exclude_{kind}" for kind in EXCLUSIONS)}
    differ = {k: (have.get(k), parameters.get(k)) for k in keys
              if have.get(k) != parameters.get(k)}
    if differ:
        shown = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in sorted(differ.items()))
        raise UserError(f"slice {name!r} exists with other parameters ({shown}); give another "
                        "--name, or delete slices/" + name + " first")


def _altered(folder: Path, root: Path) -> bool:
    """Whether a derived folder (silver, a split) differs from its manifest: then it is made
    again from its inputs, with a note, rather than read."""
    _, problems = check_folder(folder, root, hashes=full_checks())
    for problem in problems:
        print(f"note: {problem.path}: {problem.what}; making it again", file=sys.stderr)
    return bool(problems)


def _derived_record(read: Any, *args: Any) -> dict[str, Any] | None:
    """A derived folder's manifest, or None (made again) when it is damaged."""
    try:
        return read(*args)
    except IntegrityError as exc:
        print(f"note: {exc}; making it again", file=sys.stderr)
        return None


def prepare_split(catalog: Catalog, profile: str, split_seed: int) -> dict[str, dict[str, Any]]:
    """Clean and split only what is not on disk already, current: silver/<profile>/ is cleaned
    again only when the bronze it was cleaned from changed, splits/<profile>/seed<S>/ only
    when its silver items changed. Returns the views to point at this profile and split (the
    views ``silver_items``, ``rejections``, ``splits`` and ``leakage`` show the profile used
    last)."""
    layout = catalog.layout
    cleaned = _derived_record(read_clean_manifest, layout, profile)
    if (cleaned is None or cleaned["inputs"] != bronze_fingerprint(catalog)
            or _altered(layout.silver_dir(profile), layout.root)):
        clean(catalog, profile)
        cleaned = read_clean_manifest(layout, profile)
        assert cleaned is not None
    split = _derived_record(read_split_manifest, layout, profile, split_seed)
    silver_sha = cleaned["outputs"][layout.silver_items(profile).name]
    if (split is None or split["inputs"][SILVER_ITEMS] != silver_sha
            or _altered(layout.split_dir(profile, split_seed), layout.root)):
        build_split(catalog, profile=profile, seed=split_seed)
    wanted = {**silver_views(layout, profile), **split_views(layout, profile, split_seed)}
    return {k: v for k, v in wanted.items() if catalog.tables.get(k) != v}


def build_slice(
    catalog: Catalog | Path | str,
    frac: float,
    *,
    seed: int = 0,
    strata: tuple[str, ...] = DEFAULT_STRATA,
    min_per_category: int = 0,
    profile: str = "default",
    split_seed: int = 0,
    name: str | None = None,
    exclude: Exclusion | Sequence[Exclusion] | None = None,
) -> SliceResult:
    """Cut a slice of the train split (plus the whole val and test) into slices/<name>/.

    ``exclude`` lists train items to leave out, one Exclusion per audit (``curate build-slice
    --exclude-label-issues`` hands in those a label-quality audit flagged,
    ``--exclude-misaligned`` those an alignment audit flagged; given both, the union goes;
    val and test stay whole, so scores remain comparable). They are dropped after the
    thresholds are drawn, so such a slice lies inside the plain slice of the same fraction
    and seed, and inside every larger such slice. The manifest's ``excluded`` accounts for
    every flagged item of each: dropped from train, kept in val or test, or not in the
    slice's train anyway."""
    if not 0 < frac <= 1:
        raise UserError(f"--frac must lie in (0, 1], got {frac}")
    unknown = [s for s in strata if s not in STRATA_SQL]
    if unknown or not strata:
        raise UserError(f"unknown strata {unknown}; choose from {', '.join(STRATA_SQL)}")
    if min_per_category < 0:
        raise UserError("--min-per-category must be 0 or more")
    started = time.perf_counter()
    catalog = Catalog.of(catalog)
    layout = catalog.layout
    exclusions = _exclusions(exclude)
    name = name or slice_name(profile, frac, seed, split_seed=split_seed, strata=strata,
                              min_per_category=min_per_category,
                              excluded=[e.kind for e in exclusions])
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise UserError(f"slice name {name!r}: use letters, digits, '.', '_' and '-' only")
    parameters = {
        "frac": frac,
        "seed": seed,
        "strata": list(strata),
        "min_per_category": min_per_category,
        "exclude_label_issues": None,  # recorded even when None, as it always was
        "profile": profile,
        "split_seed": split_seed,
    }
    # the other exclusions only when given, so that earlier slices' manifests keep their bytes
    parameters.update({e.parameter: e.audited_slice for e in exclusions})
    _refuse_another_slice_of_that_name(catalog, name, parameters)
    views = prepare_split(catalog, profile, split_seed)
    silver = layout.silver_items(profile)
    assignments = layout.split_assignments(profile, split_seed)
    stratum = " || ' / ' || ".join(f"({STRATA_SQL[s]})" for s in strata)
    derived = [layout.silver_dir(profile), layout.split_dir(profile, split_seed)]
    with (blame_damaged_inputs(lambda: check_folders(derived, layout.root)),
          catalog.publish(layout.slice_dir(name), f"slice-{name}") as staged):
        output = staged.path / layout.slice_items(name).name
        con = catalog.connect(read_only=True)
        try:
            # Rank on narrow keys: sorting the wide rows (text) for the windows costs more.
            con.execute(f"""
                CREATE TEMP TABLE ranked AS
                WITH keys AS (
                    SELECT s.parent_asin, s.category, a.split, {stratum} AS stratum,
                           {stable_hash_sql(seed, "s.parent_asin")} AS h
                    FROM {parquet_source(silver)} AS s
                    JOIN {parquet_source(assignments)} AS a USING (parent_asin)
                ), train AS (
                    SELECT *,
                           (row_number() OVER (PARTITION BY stratum ORDER BY h, parent_asin)
                            - 0.5) / count(*) OVER (PARTITION BY stratum) AS slice_threshold
                    FROM keys WHERE split = 'train'
                ), per_category AS (  -- a GROUP BY: a FILTER window aggregate is far slower
                    SELECT category,
                           count(*) FILTER (WHERE slice_threshold <= {frac}) AS category_share,
                           count(*) AS category_items
                    FROM train GROUP BY category
                ), capped AS (
                    SELECT t.*, c.category_share, c.category_items,
                           row_number() OVER (
                               PARTITION BY t.category
                               ORDER BY t.slice_threshold, t.h, t.parent_asin
                           ) AS category_rank
                    FROM train AS t JOIN per_category AS c USING (category)
                )
                SELECT parent_asin, split, stratum, slice_threshold,
                       category_rank <= greatest(category_share,
                                                 least({min_per_category}, category_items))
                           AS selected
                FROM capped
                UNION ALL
                SELECT parent_asin, split, stratum, NULL::DOUBLE, true
                FROM keys WHERE split <> 'train'
            """)
            excluded = _exclude(con, exclusions) if exclusions else None
            copy_sorted(
                con,
                f"""
                    SELECT s.*, r.split, {RATING_BIN_SQL} AS rating_bin,
                           {COUNT_BIN_SQL} AS count_bin, r.stratum, r.slice_threshold
                    FROM {parquet_source(silver)} AS s JOIN ranked AS r USING (parent_asin)
                    WHERE r.selected""",
                "CASE split WHEN 'train' THEN 0 WHEN 'val' THEN 1 ELSE 2 END, parent_asin",
                output,
                key="parent_asin",
                keys="SELECT parent_asin, split FROM ranked WHERE selected",
            )
            per_stratum = con.execute(f"""
                SELECT stratum, count(*) AS train_items,
                       count(*) FILTER (WHERE selected) AS selected,
                       round({frac} * count(*), 3)::DOUBLE AS exact_share
                FROM ranked WHERE split = 'train' GROUP BY stratum ORDER BY stratum
            """).fetchall()
            per_split = dict(
                con.execute(
                    "SELECT split, count(*) FROM ranked WHERE selected GROUP BY split"
                ).fetchall()
            )
        finally:
            con.close()
        staged.manifest = {
            "stage": "slice",
            "name": name,
            "parameters": parameters,
            "inputs": {SILVER_ITEMS: sha256_file(silver), SPLITS: sha256_file(assignments)},
            "rows": {s: per_split.get(s, 0) for s in SPLIT_NAMES},
            "strata": [
                {"stratum": s, "train_items": n, "selected": k, "exact_share": e}
                for s, n, k, e in per_stratum
            ],
        }
        if excluded is not None:  # only then: earlier slices' manifests keep their bytes
            staged.manifest["excluded"] = excluded
        staged.views = {**views, view_name(SLICE_VIEW, name): {
            "files": [layout.relative(layout.slice_items(name))], "slice": name}}
    manifest = read_record(layout.slice_dir(name) / MANIFEST)
    return SliceResult(name, layout.slice_dir(name), manifest, time.perf_counter() - started)


def _exclude(con: Any, exclusions: Sequence[Exclusion]) -> dict[str, Any]:
    """Unselect the flagged train items in the table ``ranked``; return where each flagged
    item went, per audit (flagged = dropped_from_train + kept_in_val_test +
    not_in_slice_train), and how many train items left in all (an item two audits flagged
    leaves once: the union)."""
    import pyarrow as pa

    kinds, asins = [], []
    for e in exclusions:
        unique = sorted(set(e.parent_asins))
        kinds += [e.kind] * len(unique)
        asins += unique
    con.register("_excluded", pa.table({"kind": pa.array(kinds, pa.string()),
                                        "parent_asin": pa.array(asins, pa.string())}))
    counts = {kind: (flagged, dropped, kept, outside) for kind, flagged, dropped, kept, outside
              in con.execute("""
        SELECT e.kind, count(*),
               count(*) FILTER (WHERE r.split = 'train' AND r.selected),
               count(*) FILTER (WHERE r.split IN ('val', 'test')),
               count(*) FILTER (WHERE r.split IS NULL OR (r.split = 'train' AND NOT r.selected))
        FROM _excluded AS e LEFT JOIN ranked AS r ON r.parent_asin = e.parent_asin
        GROUP BY e.kind""").fetchall()}
    dropped = con.execute("""
        SELECT count(*) FROM ranked WHERE split = 'train' AND selected
        AND parent_asin IN (SELECT parent_asin FROM _excluded)""").fetchone()[0]
    con.execute("UPDATE ranked SET selected = false WHERE split = 'train' AND "
                "parent_asin IN (SELECT parent_asin FROM _excluded)")
    report: dict[str, Any] = {}
    for e in exclusions:
        flagged, gone, kept, outside = counts.get(e.kind, (0, 0, 0, 0))
        report[e.kind] = {"audited_slice": e.audited_slice, "flagged": flagged,
                          "dropped_from_train": gone, "kept_in_val_test": kept,
                          "not_in_slice_train": outside}
    report["dropped_from_train"] = dropped
    return report


def list_slices(catalog: Catalog | Path | str) -> list[dict[str, Any]]:
    """Every slice's manifest, by name."""
    catalog = Catalog.of(catalog)
    return [read_record(p)
            for p in sorted(catalog.layout.slices_root.glob(f"*/{MANIFEST}"))]


def diff_slices(catalog: Catalog | Path | str, a: str, b: str) -> dict[str, Any]:
    """Per split: items only in a, only in b, in both; and whether one lies inside the other."""
    import duckdb

    catalog = Catalog.of(catalog)
    fa, fb = Slice.open(catalog, a).path, Slice.open(catalog, b).path
    con = duckdb.connect()
    rows = con.execute(f"""
        SELECT coalesce(x.split, y.split) AS split,
               count(*) FILTER (WHERE y.parent_asin IS NULL) AS only_a,
               count(*) FILTER (WHERE x.parent_asin IS NULL) AS only_b,
               count(*) FILTER (WHERE x.parent_asin IS NOT NULL AND y.parent_asin IS NOT NULL)
                   AS both_
        FROM (SELECT parent_asin, split FROM {parquet_source(fa)}) AS x
        FULL JOIN (SELECT parent_asin, split FROM {parquet_source(fb)}) AS y
          ON x.parent_asin = y.parent_asin AND x.split = y.split
        GROUP BY 1 ORDER BY 1
    """).fetchall()
    per_split = {s: {"only_a": oa, "only_b": ob, "both": bo} for s, oa, ob, bo in rows}
    return {
        "per_split": per_split,
        "a_inside_b": all(v["only_a"] == 0 for v in per_split.values()),
        "b_inside_a": all(v["only_b"] == 0 for v in per_split.values()),
    }


# A slice's split names -> the Hugging Face convention's.
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}
HF_IMAGE = "image"  # the Image feature, when any item's image is on this machine
HF_LICENCE = (
    "The Amazon Reviews 2023 data are released for research use only; see "
    "https://amazon-reviews-2023.github.io/ and cite Hou et al. 2024, \"Bridging Language and "
    "Items for Retrieval and Recommendation\" (arXiv:2403.03952)."
)


def export_hf(slice_: Slice, out_dir: Path | str, *,
              weights: dict[str, pl.DataFrame] | None = None, images: bool = True) -> Path:
    """Save a slice as a ``datasets.DatasetDict`` (train, validation, test) in ``out_dir``
    (``datasets.load_from_disk``), with a dataset card, README.md, holding the manifest's facts.

    ``weights`` maps a column name to a table (parent_asin, weight) covering the slice's items
    (the caller computes them: weights live in the layer above); each becomes a column. With
    ``images``, an ``image`` column of the Image feature holds each item's main image when it
    is on this machine (a ``file://`` URL, or the catalog's image cache) and opens as an
    image, its bytes embedded; null otherwise. Written beside ``out_dir`` and renamed when
    complete; an existing export there is replaced, any other folder and a link refused."""
    import shutil

    import polars as pl

    try:
        import datasets
    except ImportError as exc:
        raise UserError(
            "--export-hf needs the datasets package: pip install 'curate[hub]'"
        ) from exc
    from curation.images import resolve_image_paths

    out = Path(out_dir)
    if out.is_symlink():  # rmtree refuses a link, and replacing it would not reach its target
        raise UserError(f"{out} is a link; give the folder it points to or a new one")
    earlier_export = (out / "dataset_dict.json").exists() or (out / "dataset_info.json").exists()
    if out.exists() and not earlier_export and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not a dataset export; choose another folder")
    items = slice_.items()
    for column, table in (weights or {}).items():
        if column in items.columns:
            raise UserError(f"weight column {column!r} clashes with a column of the slice")
        joined = table.select("parent_asin", pl.col("weight").alias(column))
        items = items.join(joined, on="parent_asin", how="left")
        if items[column].null_count():
            raise UserError(f"weights {column!r} do not cover every item of the slice")
    with_image = 0
    if images:
        paths = [p if p is not None and _decodes(p) else None for p in
                 resolve_image_paths(items["main_image_url"].to_list(), slice_.catalog.layout)]
        with_image = sum(p is not None for p in paths)
        if with_image:
            items = items.with_columns(pl.Series(HF_IMAGE, paths, dtype=pl.String))
    splits = {}
    for split, hf_split in HF_SPLITS.items():
        part = datasets.Dataset.from_polars(items.filter(pl.col("split") == split))
        if with_image:
            part = part.cast_column(HF_IMAGE, datasets.Image())
        splits[hf_split] = part
    dataset = datasets.DatasetDict(splits)
    staging = out.with_name(f".{out.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per split on stderr says nothing worth its lines
    try:
        dataset.save_to_disk(str(staging))
        counts = {hf: splits[hf].num_rows for hf in splits}
        (staging / "README.md").write_text(dataset_card(slice_, counts, list(weights or {}),
                                                         with_image))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if bars:
            datasets.enable_progress_bars()
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _decodes(path: str) -> bool:
    """Whether an image file opens as an image: a corrupt one would fail every reader of the
    export at decoding, so its item gets no image (as the trainer gives it a black one)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return False
    return True


def dataset_card(slice_: Slice, counts: dict[str, int], weight_columns: list[str],
                 with_image: int) -> str:
    """The README.md of an export: the slice manifest's facts and the data's licence."""
    p = slice_.parameters
    items_sha = slice_.manifest["outputs"][slice_.path.name]  # Slice.open checked the file
    rows = "\n".join(f"| {hf} | {counts[hf]:,} |" for hf in HF_SPLITS.values())
    total = sum(counts.values())
    lines = [
        "---",
        "license: other",
        "pretty_name: " + slice_.name,
        "---",
        "",
        f"# {slice_.name}",
        "",
        "A slice of the Amazon Reviews 2023 corpus cut by Curate (`curate export hf`): every "
        "train item whose stratum threshold lies at or below the fraction, and the whole "
        "validation and test splits.",
        "",
        f"- profile: `{p['profile']}`",
        f"- fraction: {p['frac']:g}",
        f"- seed: {p['seed']} (split seed {p['split_seed']})",
        f"- strata: {', '.join(p['strata'])}",
        f"- minimum per category: {p['min_per_category']}",
        f"- items file SHA-256: `{items_sha}`",
        f"- weight columns: {', '.join(f'`{c}`' for c in weight_columns) or 'none'}",
        f"- images: {with_image:,} of {total:,} items carry an `image` (Image feature)"
        if with_image else "- images: none on this machine (no `image` column)",
        "",
        "| split | rows |",
        "|---|---|",
        rows,
        "",
        "## Licence",
        "",
        HF_LICENCE,
        "",
    ]
    return "\n".join(lines)
