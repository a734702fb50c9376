"""The SQL of ingest, generated from the field specs in :mod:`curation.schema`.

Two steps per block of lines:

1. ``curation.ingest.unusable_lines`` (numpy and Python, no SQL): which lines are not valid
   UTF-8, blank, not JSON, or not an object. Those are quarantined and replaced by ``{}`` so
   that the block stays aligned line by line.
2. ``typing_query``: DuckDB's fast ``read_json`` reads the cleaned block, string fields as
   VARCHAR (a non-string value is kept as its JSON text, nothing is lost) and every other
   field as a JSON fragment, which is then converted explicitly: a fragment of the wrong JSON
   type gives the reason ``wrong_type:<field>``, never a silent coercion (``json_transform``
   turns ``"five"`` into NULL and ``1.5`` into 2 for a BIGINT). The first character of a
   fragment tells its JSON type without another parse: '"' string, '[' array, '{' object,
   't'/'f' boolean, anything else a number (JSON null arrives as SQL NULL). Rows are matched
   to their line numbers with a POSITIONAL JOIN: ``read_json`` keeps file order.
"""

from __future__ import annotations

import json

from curation.schema import (
    CATEGORY_COLUMN,
    DUCKDB_TYPE,
    FIELDS_BY_KIND,
    ITEM_IMAGE_STRUCT,
    LINE_COLUMN,
    REVIEW_IMAGE_STRUCT,
    VIDEO_STRUCT,
    RawField,
    reason_missing,
    reason_wrong_type,
)

LINE = "line"  # column of the raw line (BLOB) in the block handed to DuckDB
REASON = "_reason"
ALL_NULL = "_all_null"  # every field NULL: an empty object, or a malformed line
SKIP = "_skip"  # the line was quarantined by the line check; its row is a placeholder
MAX_OBJECT_BYTES = 16 << 20  # read_json buffers twice this; longer lines take the fallback

_STRUCT_KEYS = {
    "item_images": ("thumb", "large", "variant", "hi_res"),
    "videos": ("title", "url", "user_id"),
    "review_images": ("small_image_url", "medium_image_url", "large_image_url"),
}
_STRUCT_TYPE = {
    "item_images": ITEM_IMAGE_STRUCT,
    "videos": VIDEO_STRUCT,
    "review_images": REVIEW_IMAGE_STRUCT,
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _typed_value(f: RawField) -> str:
    """The typed value of one field, NULL where the fragment has the wrong JSON type.

    So a field is of the wrong type exactly when its fragment is present and its value NULL.
    """
    frag = f"CAST({_q(f.name)} AS VARCHAR)"
    first = f"left({frag}, 1)"
    unquoted = f"json_extract_string({frag}, '$')"
    text = f"(CASE WHEN {first} = '\"' THEN {unquoted} ELSE {frag} END)"
    scalar = f"({first} NOT IN ('[', '{{', 't', 'f'))"  # a number, or a string
    kind = f.kind
    if kind == "string":
        value = _q(f.name)  # read as VARCHAR: any JSON value is kept as text
    elif kind == "float":
        number = f"TRY_CAST({text} AS DOUBLE)"
        value = f"CASE WHEN {scalar} AND isfinite({number}) THEN {number} END"
    elif kind == "integer":
        # Through DOUBLE, whose integral check is cheap; exact BIGINT parse past 2^53.
        number = f"TRY_CAST({text} AS DOUBLE)"
        value = (
            f"CASE WHEN {scalar} AND {number} = trunc({number}) THEN "
            f"CASE WHEN abs({number}) < 9007199254740992 THEN CAST({number} AS BIGINT) "
            f"ELSE TRY_CAST({text} AS BIGINT) END END"
        )
    elif kind == "boolean":
        value = (
            f"CASE WHEN {frag} IN ('true', 'false') THEN {frag} = 'true' "
            f"WHEN {first} = '\"' AND lower({unquoted}) IN ('true', 'false') "
            f"THEN lower({unquoted}) = 'true' END"
        )
    elif kind == "string_list":
        value = f"CASE WHEN {first} = '[' THEN from_json({frag}, '[\"VARCHAR\"]') END"
    elif kind == "json_text":
        # A string that holds JSON (the hub's copy stores `details` so) is unwrapped.
        value = (
            f"CASE WHEN {first} = '\"' AND json_valid({unquoted}) THEN {unquoted} ELSE {frag} END"
        )
    elif kind in _STRUCT_KEYS:
        keys = _STRUCT_KEYS[kind]
        element = json.dumps({k: "VARCHAR" for k in keys})
        as_list = f"from_json({frag}, '[{element}]')"
        if kind == "review_images":
            value = f"CASE WHEN {first} = '[' THEN {as_list} END"
        else:
            # The hub's converted copy stores a struct of lists: zip it into a list of structs.
            columns = json.dumps({k: ["VARCHAR"] for k in keys})
            lists = f"from_json({frag}, '{columns}')"
            longest = "greatest(" + ", ".join(f"coalesce(len(x.{k}), 0)" for k in keys) + ")"
            zipped = (
                f"(SELECT list_transform(range(1, {longest} + 1), "
                f"lambda i: struct_pack({', '.join(f'{k} := x.{k}[i]' for k in keys)})) "
                f"FROM (SELECT {lists} AS x))"
            )
            value = f"CASE WHEN {first} = '[' THEN {as_list} WHEN {first} = '{{' THEN {zipped} END"
    else:  # pragma: no cover - guarded by FieldKind
        raise ValueError(f"unknown field kind {kind!r}")
    return f"CAST({value} AS {DUCKDB_TYPE[kind]})"


def _json_columns(kind: str) -> dict[str, str]:
    return {f.name: "VARCHAR" if f.kind == "string" else "JSON" for f in FIELDS_BY_KIND[kind]}


def fields_from_file(kind: str, path: str) -> str:
    """The raw fields of a cleaned JSONL file, in file order."""
    columns = (
        "{"
        + ", ".join(f"{_sql_str(n)}: {_sql_str(t)}" for n, t in _json_columns(kind).items())
        + "}"
    )
    # ignore_errors: a malformed line gives an all-NULL row in its place (checked afterwards).
    return (
        f"read_json({_sql_str(path)}, format = 'newline_delimited', records = true, "
        f"columns = {columns}, ignore_errors = true, maximum_object_size = {MAX_OBJECT_BYTES})"
    )


def fields_from_lines(kind: str, source: str) -> str:
    """The same columns parsed line by line with json_transform: slower, used only when
    read_json refuses a block that the line check passed."""
    structure = json.dumps(_json_columns(kind))
    return (
        f"(SELECT s.* FROM (SELECT TRY(json_transform(decode({LINE}), {_sql_str(structure)})) "
        f"AS s FROM {source}))"
    )


def typing_query(kind: str, category: str, fields_source: str, numbers: str = "numbers") -> str:
    """Bronze columns + _reason + _skip for each line; ``numbers`` has source_line, _skip."""
    fields = FIELDS_BY_KIND[kind]
    values, reasons = [], []
    for f in fields:
        values.append(f"{_typed_value(f)} AS {_q('v_' + f.name)}")
        if f.required:
            reasons.append(
                f"WHEN nullif({_q('v_' + f.name)}, '') IS NULL "
                f"THEN {_sql_str(reason_missing(f.name))}"
            )
        if f.kind != "string":
            reasons.append(
                f"WHEN {_q(f.name)} IS NOT NULL AND {_q('v_' + f.name)} IS NULL "
                f"THEN {_sql_str(reason_wrong_type(f.name))}"
            )
    raw_names = ", ".join(_q(f.name) for f in fields)
    typed_names = ", ".join(f"{_q('v_' + f.name)} AS {_q(f.name)}" for f in fields)
    return f"""
WITH raw AS (
    SELECT * FROM {fields_source} POSITIONAL JOIN {numbers}
), typed AS (
    SELECT {LINE_COLUMN}, {SKIP}, {raw_names}, {", ".join(values)}
    FROM raw
)
SELECT {_sql_str(category)} AS {CATEGORY_COLUMN}, {LINE_COLUMN}, {typed_names},
       CASE WHEN {SKIP} THEN NULL {" ".join(reasons)} END AS {REASON},
       {SKIP}, ({" AND ".join(f"{_q(f.name)} IS NULL" for f in fields)}) AS {ALL_NULL}
FROM typed
"""
