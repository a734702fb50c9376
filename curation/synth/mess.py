"""Planted mess: the defects a corpus line can carry, and what ingest must do with each.

Kinds are planted in turn (``META_MESS``, ``REVIEW_MESS``), so a corpus with as many messy
lines as kinds holds every kind; each is recorded in ``ground_truth/mess.parquet``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from curation.schema import (
    REASON_BLANK,
    REASON_INVALID_JSON,
    REASON_INVALID_UTF8,
    reason_missing,
    reason_wrong_type,
)
from curation.synth.writers import LineWriter

META_MESS = (
    "null_field",
    "empty_string",
    "empty_list",
    "html",
    "duplicate_line",
    "price_text",
    "details_string",
    "castable_type",
    "hub_images",
    "wrong_type",
    "invalid_json",
    "non_utf8",
    "missing_key",
    "blank_line",
)
REVIEW_MESS = (
    "null_field",
    "empty_string",
    "duplicate_line",
    "castable_type",
    "wrong_type",
    "invalid_json",
    "non_utf8",
    "missing_key",
    "blank_line",
)


def plant_meta_mess(
    rng: np.random.Generator, rec: dict[str, Any], mess: str
) -> tuple[str | None, str, str | None]:
    """Plant one defect of kind ``mess`` in a metadata record (in place); returns
    (field, expected outcome, expected quarantine reason)."""
    fld: str | None = None
    expected, reason = "typed", None
    if mess == "null_field":
        fld = str(
            rng.choice(
                [
                    "title",
                    "main_category",
                    "features",
                    "description",
                    "store",
                    "price",
                    "details",
                    "average_rating",
                ]
            )
        )
        rec[fld] = None
    elif mess == "empty_string":
        fld = str(rng.choice(["title", "main_category", "store"]))
        rec[fld] = ""
    elif mess == "empty_list":
        fld = str(rng.choice(["features", "description", "images"]))
        rec[fld] = []
    elif mess == "html":
        fld = "description"
        rec[fld] = [
            f"<p>{d}</p><br/>Made &amp; tested <b>carefully</b>." for d in rec[fld] or ["Nice"]
        ]
    elif mess == "price_text":
        fld = "price"
        rec[fld] = str(rng.choice(["None", "$12.99", "from $5.00", "$1,299.00"]))
    elif mess == "details_string":
        fld = "details"
        rec[fld] = json.dumps(rec[fld])
    elif mess == "castable_type":
        fld = str(rng.choice(["average_rating", "rating_number"]))
        rec[fld] = None if rec[fld] is None else str(rec[fld])
    elif mess == "hub_images":
        fld = "images"
        imgs = rec[fld]
        rec[fld] = {
            key: [im[key] for im in imgs] for key in ("hi_res", "large", "thumb", "variant")
        }
    elif mess == "wrong_type":
        fld = str(rng.choice(["rating_number", "average_rating", "features"]))
        rec[fld] = {
            "rating_number": "many",
            "average_rating": [4.5],
            "features": "one feature",
        }[fld]
        expected, reason = "quarantine", reason_wrong_type(fld)
    elif mess == "missing_key":
        fld = "parent_asin"
        del rec[fld]
        expected, reason = "quarantine", reason_missing(fld)
    return fld, expected, reason


def plant_review_mess(
    rng: np.random.Generator, rec: dict[str, Any], mess: str
) -> tuple[str | None, str, str | None]:
    """Plant one defect of kind ``mess`` in a review record (in place); returns
    (field, expected outcome, expected quarantine reason)."""
    fld: str | None = None
    expected, reason = "typed", None
    if mess == "null_field":
        fld = str(rng.choice(["title", "text", "user_id", "helpful_vote"]))
        rec[fld] = None
    elif mess == "empty_string":
        fld = str(rng.choice(["title", "text"]))
        rec[fld] = ""
    elif mess == "castable_type":
        fld = str(rng.choice(["rating", "timestamp", "helpful_vote"]))
        rec[fld] = str(rec[fld])
    elif mess == "wrong_type":
        fld = str(rng.choice(["rating", "verified_purchase", "timestamp"]))
        rec[fld] = {"rating": "five", "verified_purchase": "yes", "timestamp": 1.5e12 + 0.5}[
            fld
        ]
        expected, reason = "quarantine", reason_wrong_type(fld)
    elif mess == "missing_key":
        fld = "parent_asin"
        rec[fld] = None
        expected, reason = "quarantine", reason_missing(fld)
    return fld, expected, reason


def write_messy(
    rng,
    rec,
    asin: str,
    mess: str,
    fld: str | None,
    expected: str,
    reason: str | None,
    out: LineWriter,
    rel: str,
    kind: str,
    record,
) -> None:
    """Write a record that carries a planted defect, and record what ingest must do with it."""
    line = dumps(rec)
    if mess in ("invalid_json", "non_utf8", "blank_line"):
        line, reason = break_line(rng, line, mess)
        expected = "quarantine"
    number = out.write(line)
    record(rel, kind, number, mess, fld, asin, expected, reason)
    if mess == "duplicate_line":
        number = out.write(line)
        record(rel, kind, number, mess, None, asin, "typed", None)


def dumps(rec: dict[str, Any]) -> bytes:
    # The real files are written with Python's default separators and raw UTF-8.
    return json.dumps(rec, ensure_ascii=False).encode("utf-8")


def break_line(rng: np.random.Generator, line: bytes, mess: str) -> tuple[bytes, str]:
    if mess == "invalid_json":
        cut = int(rng.integers(5, max(6, len(line) - 2)))
        return line[:cut], REASON_INVALID_JSON
    if mess == "non_utf8":
        at = line.find(b'"title": "') + len(b'"title": "')
        return line[:at] + b"Caf\xe9 \xff" + line[at:], REASON_INVALID_UTF8
    return b"", REASON_BLANK
