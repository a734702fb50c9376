"""great-expectations suites for silver items and for every slice.

Validation runs in a file-backed GX project under ``CATALOG/validation/gx`` so that each run
updates its HTML Data Docs (``validation/gx/uncommitted/data_docs/local_site/index.html``);
each target's result is also saved as JSON (``validation/<target>.json``), and ``validate_all``
renders those into ``validation/report.html``, a page that needs no network (GX's Data Docs load
their styles from CDNs; see ``curation.validation_page``). Only the columns
the expectations read are loaded, as a pandas frame: a few numbers and short strings per
item, not the text.

Suites:
- items: parent_asin present and unique; average_rating in [1, 5] and a float;
  rating_number >= 0 and an integer; a non-empty title and model text; the main image URL
  well formed (http, https or file).
- slice: the same, plus: split in {train, val, test}; each item in one split only (unique
  parent_asin); each train item inside the next larger slice of the same seed and settings;
  each item's split equal to the split table's.
- slice holdout: every val and test item of the split table is in the slice.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.catalog import Catalog, parquet_source
from curation.clean import silver_shown
from curation.integrity import check_folder
from curation.manifest import write_json_atomic
from curation.paths import CatalogLayout
from curation.validation_page import write_validation_page

IMAGE_URL_REGEX = r"^(?:https?|file)://\S+$"
EXAMPLES = 3  # offending rows shown per failed expectation


@dataclass
class Failure:
    expectation: str
    column: str | None
    unexpected: int | None  # None for a check of the column as a whole (its type)
    examples: list[dict[str, Any]]
    observed: Any = None  # what such a check saw: the column's type

    def line(self, rows: int) -> str:
        where = f"({self.column})" if self.column else ""
        if self.unexpected is None:
            return f"FAILED {self.expectation}{where}: observed {self.observed}"
        shown = "; ".join(", ".join(f"{k}={v}" for k, v in e.items()) for e in self.examples)
        return f"FAILED {self.expectation}{where}: {self.unexpected:,} of {rows:,} rows" + (
            f", e.g. {shown}" if shown else ""
        )


@dataclass
class ValidationReport:
    target: str
    rows: int
    expectations: int
    failures: list[Failure] = field(default_factory=list)
    json_path: Path | None = None
    docs_path: Path | None = None

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        head = (
            f"{self.target}: {self.expectations - len(self.failures)}/{self.expectations} "
            f"expectations met on {self.rows:,} rows"
        )
        return "\n".join([head, *(f"  {f.line(self.rows)}" for f in self.failures)])


def _expectations(gx, *, slice_suite: bool) -> list[Any]:
    e = gx.expectations
    out = [
        e.ExpectColumnValuesToNotBeNull(column="parent_asin"),
        e.ExpectColumnValuesToBeUnique(column="parent_asin"),
        e.ExpectColumnValuesToNotBeNull(column="average_rating"),
        e.ExpectColumnValuesToBeBetween(column="average_rating", min_value=1, max_value=5),
        e.ExpectColumnValuesToBeInTypeList(
            # DuckDB hands a NULL float to pandas as NaN, never as pandas' nullable Float64
            column="average_rating", type_list=["float64", "float32"]
        ),
        e.ExpectColumnValuesToNotBeNull(column="rating_number"),
        e.ExpectColumnValuesToBeBetween(column="rating_number", min_value=0),
        e.ExpectColumnValuesToBeInTypeList(
            # pandas' nullable Int64 (DuckDB's for an integer column holding a NULL) is
            # "Int64Dtype" to great-expectations: "Int64" names no type there
            column="rating_number", type_list=["int64", "int32", "Int64Dtype", "Int32Dtype"]
        ),
        e.ExpectColumnValuesToBeBetween(column="title_chars", min_value=1),
        e.ExpectColumnValuesToBeBetween(column="model_text_chars", min_value=1),
        e.ExpectColumnValuesToMatchRegex(column="main_image_url", regex=IMAGE_URL_REGEX),
    ]
    if slice_suite:
        out += [
            e.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"]),
            e.ExpectColumnValuesToBeInSet(column="inside_next_larger", value_set=[True]),
            e.ExpectColumnValuesToBeInSet(column="split_matches", value_set=[True]),
        ]
    return out


ITEM_COLUMNS = """parent_asin, average_rating, rating_number, length(title) AS title_chars,
    length(model_text) AS model_text_chars, main_image_url"""


class _Project:
    """A file-backed GX project; checkpoints update its Data Docs."""

    def __init__(self, layout: CatalogLayout) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network from here
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="file", project_root_dir=str(layout.validation))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.source = self.context.data_sources.add_or_update_pandas("curate")
        self.docs = layout.data_docs

    def run(self, name: str, frame, expectations: list[Any]):
        from great_expectations.checkpoint import UpdateDataDocsAction

        gx, ctx = self.gx, self.context
        # add_or_update_pandas above gave this project a data source of no assets yet
        batch = self.source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = gx.ExpectationSuite(name=name, expectations=expectations)
        suite = ctx.suites.add_or_update(suite)
        definition = ctx.validation_definitions.add_or_update(
            gx.ValidationDefinition(data=batch, suite=suite, name=name)
        )
        checkpoint = ctx.checkpoints.add_or_update(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="data_docs")],
                result_format="COMPLETE",
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        return next(iter(result.run_results.values()))


def _failures(result, frame, show: list[str]) -> list[Failure]:
    failures = []
    for r in result.results:
        if r.success:
            continue
        config = r.expectation_config
        details = r.result or {}
        indices = (details.get("unexpected_index_list") or [])[:EXAMPLES]
        examples = []
        for index in indices:
            row = frame.iloc[index] if isinstance(index, int) else None
            if row is not None:
                examples.append({c: row[c] for c in show if c in frame.columns})
        # a type check has no count of rows: "0 of n rows" would read as nothing wrong
        count = details.get("unexpected_count")
        failures.append(
            Failure(
                config.type,
                config.kwargs.get("column"),
                None if count is None else int(count),
                examples,
                details.get("observed_value"),
            )
        )
    return failures


def _save(catalog: Catalog, target: str, report: ValidationReport, raw: list[Any]) -> None:
    out = catalog.layout.validation_result(target)
    write_json_atomic(
        out,
        {
            "target": report.target,
            "success": report.success,
            "rows": report.rows,
            "expectations": report.expectations,
            "failures": [f.__dict__ for f in report.failures],
            "results": [r.to_json_dict() for r in raw],
        },
    )
    report.json_path = out


def validate_items(catalog: Catalog | Path | str) -> ValidationReport:
    """The items suite on the silver items the view ``silver_items`` shows."""
    catalog = Catalog.of(catalog)
    _, silver = silver_shown(catalog)
    con = catalog.connect()
    try:
        frame = con.sql(f"SELECT {ITEM_COLUMNS} FROM {parquet_source(silver)} "
                        "ORDER BY parent_asin").df()
    finally:
        con.close()
    project = _Project(catalog.layout)
    result = project.run("items", frame, _expectations(project.gx, slice_suite=False))
    report = ValidationReport(
        "items",
        len(frame),
        len(result.results),
        _failures(
            result, frame, ["parent_asin", "average_rating", "rating_number", "main_image_url"]
        ),
        docs_path=project.docs,
    )
    _save(catalog, "items", report, [result])
    return report


def validate_slice(catalog: Catalog | Path | str, name: str) -> ValidationReport:
    """The slice suite: the items suite, splits as the split table says, each train item
    inside the next larger slice of the same settings, every val and test item present."""
    from curation.slices import Slice, list_slices

    catalog = Catalog.of(catalog)
    slice_ = Slice.open(catalog, name, check=False)  # the check is one of the expectations
    params = slice_.parameters
    same = [
        m
        for m in list_slices(catalog)
        if {k: v for k, v in m["parameters"].items() if k != "frac"}
        == {k: v for k, v in params.items() if k != "frac"}
        and m["parameters"]["frac"] > params["frac"]
    ]
    larger = min(same, key=lambda m: m["parameters"]["frac"]) if same else None
    path = parquet_source(slice_.path)
    larger_sql = (
        f"(SELECT parent_asin FROM "
        f"{parquet_source(catalog.layout.slice_items(larger['name']))} WHERE split = 'train')"
        if larger
        else "(SELECT NULL::VARCHAR AS parent_asin)"
    )
    split_file = parquet_source(catalog.layout.split_assignments(slice_.profile,
                                                                 slice_.split_seed))
    con = catalog.connect()
    try:
        frame = con.sql(f"""
            SELECT {ITEM_COLUMNS}, s.split,
                   s.split <> 'train' OR {"l.parent_asin IS NOT NULL" if larger else "true"}
                       AS inside_next_larger,
                   coalesce(s.split = a.split, false) AS split_matches
            FROM {path} AS s
            LEFT JOIN {larger_sql} AS l USING (parent_asin)
            LEFT JOIN {split_file} AS a USING (parent_asin)
            ORDER BY s.parent_asin
        """).df()
        holdout = con.sql(f"""
            SELECT a.parent_asin, a.split, s.parent_asin IS NOT NULL AS in_slice
            FROM {split_file} AS a LEFT JOIN {path} AS s USING (parent_asin)
            WHERE a.split <> 'train' ORDER BY a.parent_asin
        """).df()
    finally:
        con.close()
    project = _Project(catalog.layout)
    gx = project.gx
    rows_result = project.run(f"slice-{name}", frame, _expectations(gx, slice_suite=True))
    holdout_result = project.run(
        f"slice-{name}-holdout",
        holdout,
        [gx.expectations.ExpectColumnValuesToBeInSet(column="in_slice", value_set=[True])],
    )
    failures = _failures(
        rows_result,
        frame,
        ["parent_asin", "split", "average_rating", "rating_number", "main_image_url"],
    )
    failures += _failures(holdout_result, holdout, ["parent_asin", "split"])
    # the file itself, against what build-slice recorded (a hand edit can keep every value valid)
    _, altered = check_folder(slice_.path.parent, catalog.layout.root, hashes=True,
                              names=[slice_.path.name])
    failures += [Failure("file_matches_its_manifest", None, len(frame),
                         [{"file": p.path, "differs": p.what}]) for p in altered]
    report = ValidationReport(
        f"slice:{name}",
        len(frame),
        len(rows_result.results) + len(holdout_result.results) + 1,
        failures,
        docs_path=project.docs,
    )
    _save(catalog, f"slice:{name}", report, [rows_result, holdout_result])
    return report


def validate_all(
    catalog: Catalog | Path | str, slice_names: list[str] | None = None
) -> list[ValidationReport]:
    from curation.slices import list_slices

    catalog = Catalog.of(catalog)
    names = (
        slice_names if slice_names is not None else [m["name"] for m in list_slices(catalog)]
    )
    with catalog.writing("validate"):  # results and data docs go under validation/
        reports = [validate_items(catalog)] + [validate_slice(catalog, n) for n in names]
        write_validation_page(catalog.layout.validation)  # validation/report.html, offline
    return reports
