"""The raw record formats and the typed bronze schema, defined once.

Each raw field has a *kind* that says which JSON values are accepted and how they are typed.
A value of the wrong JSON type that cannot be converted without loss sends the whole line
to quarantine with the reason ``wrong_type:<field>``; nothing is coerced silently (DuckDB's
own ``json_transform`` turns ``"five"`` into NULL and ``1.5`` into 2 for a BIGINT, so ingest
extracts every field as a JSON fragment and converts it explicitly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldKind = Literal[
    "string",  # JSON string; a number or boolean is kept as its text
    "float",  # JSON number, or a string holding a finite number
    "integer",  # JSON number or numeric string with an integral value
    "boolean",  # true/false, or the strings "true"/"false"
    "string_list",  # JSON array; elements kept as text
    "json_text",  # any JSON value kept as JSON text; a string holding JSON is unwrapped
    "review_images",  # list of {small_image_url, medium_image_url, large_image_url}
    "item_images",  # list of {thumb, large, variant, hi_res}, or the hub's struct of lists
    "videos",  # list of {title, url, user_id}, or the hub's struct of lists
]


@dataclass(frozen=True)
class RawField:
    name: str
    kind: FieldKind
    required: bool = False


REVIEW_IMAGE_STRUCT = (
    "STRUCT(small_image_url VARCHAR, medium_image_url VARCHAR, large_image_url VARCHAR)"
)
ITEM_IMAGE_STRUCT = "STRUCT(thumb VARCHAR, large VARCHAR, variant VARCHAR, hi_res VARCHAR)"
VIDEO_STRUCT = "STRUCT(title VARCHAR, url VARCHAR, user_id VARCHAR)"

DUCKDB_TYPE: dict[FieldKind, str] = {
    "string": "VARCHAR",
    "float": "DOUBLE",
    "integer": "BIGINT",
    "boolean": "BOOLEAN",
    "string_list": "VARCHAR[]",
    "json_text": "VARCHAR",
    "review_images": f"{REVIEW_IMAGE_STRUCT}[]",
    "item_images": f"{ITEM_IMAGE_STRUCT}[]",
    "videos": f"{VIDEO_STRUCT}[]",
}

REVIEW_FIELDS: tuple[RawField, ...] = (
    RawField("rating", "float"),
    RawField("title", "string"),
    RawField("text", "string"),
    RawField("images", "review_images"),
    RawField("asin", "string"),
    RawField("parent_asin", "string", required=True),
    RawField("user_id", "string"),
    RawField("timestamp", "integer"),
    RawField("helpful_vote", "integer"),
    RawField("verified_purchase", "boolean"),
)

ITEM_FIELDS: tuple[RawField, ...] = (
    RawField("main_category", "string"),
    RawField("title", "string"),
    RawField("average_rating", "float"),
    RawField("rating_number", "integer"),
    RawField("features", "string_list"),
    RawField("description", "string_list"),
    # Kept as text in bronze: real files hold numbers, "None" and "$12.99"; silver parses it.
    RawField("price", "string"),
    RawField("images", "item_images"),
    RawField("videos", "videos"),
    RawField("store", "string"),
    RawField("categories", "string_list"),
    RawField("details", "json_text"),
    RawField("parent_asin", "string", required=True),
    RawField("bought_together", "string_list"),
    RawField("subtitle", "string"),
    RawField("author", "json_text"),
)

FIELDS_BY_KIND: dict[str, tuple[RawField, ...]] = {"reviews": REVIEW_FIELDS, "items": ITEM_FIELDS}
KINDS = tuple(FIELDS_BY_KIND)

# Columns every bronze table carries besides the raw fields.
CATEGORY_COLUMN = "category"  # the file's category name, e.g. "All_Beauty"
LINE_COLUMN = "source_line"  # 1-based line number in the source file


def bronze_columns(kind: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) of a bronze table, in order."""
    fields = FIELDS_BY_KIND[kind]
    return [(CATEGORY_COLUMN, "VARCHAR"), (LINE_COLUMN, "BIGINT")] + [
        (f.name, DUCKDB_TYPE[f.kind]) for f in fields
    ]


# Quarantine: one row per line that could not be parsed or typed, plus one row per file-level
# error (scope 'file'), such as a truncated gzip stream.
QUARANTINE_COLUMNS: list[tuple[str, str]] = [
    ("category", "VARCHAR"),
    ("kind", "VARCHAR"),
    ("source_file", "VARCHAR"),
    ("source_line", "BIGINT"),
    ("scope", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("raw_text", "VARCHAR"),
]
RAW_TEXT_LIMIT = 1000  # characters of the offending line kept in quarantine

REASON_INVALID_UTF8 = "invalid_utf8"
REASON_BLANK = "blank_line"
REASON_INVALID_JSON = "invalid_json"
REASON_NOT_OBJECT = "not_an_object"
REASON_TRUNCATED_GZIP = "truncated_gzip"
REASON_UNREADABLE = "unreadable_file"


def reason_missing(field: str) -> str:
    return f"missing_key:{field}"


def reason_wrong_type(field: str) -> str:
    return f"wrong_type:{field}"
