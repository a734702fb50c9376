"""Bronze -> silver ``items``: one row per parent_asin, cleaned, every rejection recorded.

Cleaning rules are named: each is a predicate ("reject when") and a reason, in the manner of
DataTrove's filters. Rules are applied in order, as a funnel: a rejected row carries the
first rule that caught it, and per rule rows in = rows kept + rows rejected. A *profile* is
an ordered list of rules:

- ``default``: one row per parent_asin with a title, an average_rating in [1, 5] and a
  non-negative rating_number. Items without an image are kept (``has_image`` is false; the
  trainer feeds a black image and zeroes the image features, as the paper does).
- ``effiminivlm``: exactly the EffiMiniVLM authors' rules (their 25 categories; main_category,
  title, features, description, average_rating and rating_number all present, i.e. not null
  and, for text, not blank and, for lists, holding a non-blank element; more than 30
  characters of title + features + description counted on the raw text, the features and the
  description paragraphs each joined with a space; at least one hi_res or large image URL),
  plus the one-row-per-item rule every silver table keeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.catalog import Catalog, sql_literal
from curation.errors import UserError
from curation.integrity import blame_damaged_inputs, check_sources
from curation.manifest import read_record
from curation.paths import MANIFEST, CatalogLayout
from curation.sorting import copy_sorted, insertion_order

SILVER_ITEMS = "silver_items"  # catalog view names
REJECTIONS = "rejections"
REVIEW_REJECTIONS = "review_rejections"

# The 9 categories the EffiMiniVLM authors left out (of 33 plus "Unknown").
EFFIMINIVLM_EXCLUDED = (
    "Beauty_and_Personal_Care",
    "CDs_and_Vinyl",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Gift_Cards",
    "Health_and_Household",
    "Magazine_Subscriptions",
    "Patio_Lawn_and_Garden",
    "Subscription_Boxes",
)
EFFIMINIVLM_MIN_TEXT_CHARS = 30  # kept when strictly more

# The silver columns that hold text or lists (the width of a row); stages that only count,
# weigh or split items leave them unread.
TEXT_COLUMNS = ("title", "features_text", "description_text", "model_text", "image_urls",
                "details", "store", "brand")

# Text as the model reads it (the paper's format), built once here.
# How list fields become text (the trainer's test-input reader uses the same expressions).
FEATURES_TEXT = (
    "array_to_string(list_filter(list_transform({column}, lambda f: curate_clean_text(f)), "
    "lambda f: f <> ''), ' | ')"
)
DESCRIPTION_TEXT = (
    "array_to_string(list_filter(list_transform({column}, lambda d: curate_clean_text(d)), "
    "lambda d: d <> ''), ' ')"
)
MODEL_TEXT = (
    "'Main category: ' || coalesce(main_category_clean, '') || chr(10) || "
    "'Title: ' || coalesce(title_clean, '') || chr(10) || "
    "'Features: ' || coalesce(features_text, '') || chr(10) || "
    "'Description: ' || coalesce(description_text, '')"
)


@dataclass(frozen=True)
class Rule:
    name: str
    reject_when: str  # SQL over the normalised row (see _NORMALISED)
    reason: str


def _present_text(column: str) -> str:
    return f"nullif(trim({column}), '') IS NOT NULL"


def _present_list(column: str) -> str:
    return f"len(list_filter({column}, lambda x: nullif(trim(x), '') IS NOT NULL)) > 0"


DUPLICATE = Rule(
    "duplicate_parent_asin",
    "_occurrence > 1",
    "a later line for a parent_asin already seen (the first one is kept)",
)

PROFILES: dict[str, list[Rule]] = {
    "default": [
        DUPLICATE,
        Rule("missing_title", "title_clean = '' OR title_clean IS NULL", "no title"),
        Rule("missing_average_rating", "average_rating IS NULL", "no average_rating"),
        Rule(
            "rating_out_of_range",
            "average_rating NOT BETWEEN 1 AND 5",
            "average_rating outside [1, 5]",
        ),
        Rule("missing_rating_number", "rating_number IS NULL", "no rating_number"),
        Rule("negative_rating_number", "rating_number < 0", "rating_number below 0"),
    ],
    "effiminivlm": [
        DUPLICATE,
        Rule(
            "category_not_selected",
            "category IN (" + ", ".join(f"'{c}'" for c in EFFIMINIVLM_EXCLUDED) + ")",
            "one of the 9 categories the EffiMiniVLM authors left out",
        ),
        Rule("missing_main_category", f"NOT {_present_text('main_category')}", "no main_category"),
        Rule("missing_title", f"NOT {_present_text('title')}", "no title"),
        Rule(
            "missing_features", f"NOT coalesce({_present_list('features')}, false)", "no features"
        ),
        Rule(
            "missing_description",
            f"NOT coalesce({_present_list('description')}, false)",
            "no description",
        ),
        Rule("missing_average_rating", "average_rating IS NULL", "no average_rating"),
        Rule("missing_rating_number", "rating_number IS NULL", "no rating_number"),
        Rule(
            "text_too_short",
            f"raw_text_chars <= {EFFIMINIVLM_MIN_TEXT_CHARS}",
            f"{EFFIMINIVLM_MIN_TEXT_CHARS} or fewer characters of title + features + description",
        ),
        Rule("no_image", "main_image_url IS NULL", "no hi_res or large image URL"),
    ],
}


def profile_rules(profile: str) -> list[Rule]:
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[profile]


TEXT_MACROS = r"""
CREATE OR REPLACE TEMP MACRO curate_clean_markup(s) AS
    trim(regexp_replace(
        replace(replace(replace(replace(replace(replace(
            regexp_replace(s, '<[^>]*>', ' ', 'g'),
            '&nbsp;', ' '), '&lt;', '<'), '&gt;', '>'), '&quot;', '"'),
            '&#39;', ''''), '&amp;', '&'),
        '\s+', ' ', 'g'));
CREATE OR REPLACE TEMP MACRO curate_clean_text(s) AS
    -- The regexes only run on text they could change (most real text has no markup).
    CASE WHEN contains(s, '<') OR contains(s, '&') OR regexp_matches(s, '\s\s|[\t\n\r\f\v]')
         THEN curate_clean_markup(s) ELSE trim(s) END;
CREATE OR REPLACE TEMP MACRO curate_first_url(urls) AS
    list_filter(urls, lambda u: nullif(trim(u), '') IS NOT NULL)[1];
"""

# One row per bronze item line, normalised; rules and the silver table read from it.
_NORMALISED = f"""
SELECT
    i.category, i.source_line, i.parent_asin,
    i.main_category, i.title, i.features, i.description, i.average_rating, i.rating_number,
    i.store, i.categories, i.details,
    curate_clean_text(i.main_category) AS main_category_clean,
    curate_clean_text(i.title) AS title_clean,
    {FEATURES_TEXT.format(column="i.features")} AS features_text,
    {DESCRIPTION_TEXT.format(column="i.description")} AS description_text,
    coalesce(length(i.title), 0)
        + coalesce(length(array_to_string(i.features, ' ')), 0)
        + coalesce(length(array_to_string(i.description, ' ')), 0) AS raw_text_chars,
    coalesce(curate_first_url(list_transform(i.images, lambda im: im.hi_res)),
             curate_first_url(list_transform(i.images, lambda im: im.large))) AS main_image_url,
    list_distinct(list_filter(flatten(list_transform(i.images, lambda im: [im.hi_res, im.large])),
                              lambda u: nullif(trim(u), '') IS NOT NULL)) AS image_urls,
    CASE WHEN regexp_full_match(trim(i.price), '\\$?[0-9][0-9,]*(\\.[0-9]+)?')
         THEN TRY_CAST(regexp_replace(trim(i.price), '[$,]', '', 'g') AS DOUBLE) END AS price,
    json_extract_string(TRY_CAST(i.details AS JSON), '$.Brand') AS brand,
    coalesce(o._occurrence, 1) AS _occurrence
FROM items AS i
LEFT JOIN (  -- ranked on narrow keys, and only the items with more than one line: a join
            -- on every line holds a hash table of all of them (more than a small memory limit)
    SELECT category, source_line,
           row_number() OVER (PARTITION BY parent_asin ORDER BY category, source_line)
               AS _occurrence
    FROM items
    WHERE parent_asin IN (SELECT parent_asin FROM items GROUP BY parent_asin HAVING count(*) > 1)
) AS o USING (category, source_line)
"""

_REVIEW_STATS = """
SELECT parent_asin,
       count(*) AS review_count,
       avg(rating) AS review_rating_mean,
       -- from exact sums (ratings in thousandths), not stddev_samp, whose running update
       -- rounds differently as the threads split the rows: same inputs, same bytes
       CASE WHEN count(*) > 1 THEN sqrt(greatest(0, (count(*) * sum(r1 * r1) - sum(r1) * sum(r1))
           ::DOUBLE / (count(*) * (count(*) - 1)))) / 1000 END AS review_rating_std,
       avg((rating >= 4)::INTEGER) AS review_positive_share,
       sum(helpful_vote) AS helpful_votes,
       avg(verified_purchase::INTEGER) AS verified_share,
       min(timestamp) AS first_review_ms,
       max(timestamp) AS last_review_ms
FROM (SELECT *, round(rating * 1000)::BIGINT AS r1 FROM reviews)
WHERE rating BETWEEN 1 AND 5
GROUP BY parent_asin
"""
# A review line counts in its item's aggregates when its rating is a star value; the others
# go to review_rejections with one of these rules.
_REVIEW_USED = "coalesce(rating BETWEEN 1 AND 5, false)"
_REVIEW_RULE = "CASE WHEN rating IS NULL THEN 'rating_missing' ELSE 'rating_out_of_range' END"


@dataclass
class CleanResult:
    profile: str
    rows_in: int
    kept: int
    funnel: list[dict[str, Any]]  # per rule: in, rejected, kept
    seconds: float
    out_dir: Path


def clean(catalog: Catalog | Path | str, profile: str = "default") -> CleanResult:
    """Write silver items and rejections for ``profile`` into silver/<profile>/ and point the
    views ``silver_items`` and ``rejections`` at them."""
    rules = profile_rules(profile)
    catalog = Catalog.of(catalog)
    if not any(e["kind"] == "items" for e in catalog.sources.values()):
        raise UserError(f"{catalog.layout.root}: the catalog holds no item metadata to clean")
    check_sources(catalog)  # bronze as ingest wrote it, or an error naming the part
    started = time.perf_counter()
    layout = catalog.layout
    first_rule = (
        "CASE "
        + " ".join(f"WHEN coalesce({r.reject_when}, false) THEN '{r.name}'" for r in rules)
        + " END"
    )
    reasons = (
        "CASE _rule "
        + " ".join(
            f"WHEN '{r.name}' THEN '{r.reason.replace(chr(39), chr(39) * 2)}'" for r in rules
        )
        + " END"
    )
    out_dir = layout.silver_dir(profile)
    with (blame_damaged_inputs(lambda: check_sources(catalog, hashes=True)),
          catalog.publish(out_dir, f"silver-{profile}") as staged):
        silver = staged.path / layout.silver_items(profile).name
        rejections = staged.path / layout.rejections(profile).name
        review_rejections = staged.path / layout.review_rejections(profile).name
        con = catalog.connect(read_only=True)
        try:
            con.execute(TEXT_MACROS)
            with insertion_order(con, False):  # every read of it below sorts or counts
                con.execute(f"""
                    CREATE TEMP TABLE judged AS
                    SELECT n.*, {first_rule} AS _rule FROM ({_NORMALISED}) AS n
                """)
            copy_sorted(
                con,
                f"""
                    SELECT j.parent_asin, j.category, j.source_line,
                           j.main_category_clean AS main_category,
                           j.title_clean AS title, j.features_text, j.description_text,
                           {MODEL_TEXT} AS model_text, j.average_rating, j.rating_number,
                           j.main_image_url, j.image_urls,
                           j.main_image_url IS NOT NULL AS has_image,
                           j.price, j.brand, j.store, j.details,
                           coalesce(r.review_count, 0) AS review_count, r.review_rating_mean,
                           r.review_rating_std, r.review_positive_share,
                           coalesce(r.helpful_votes, 0) AS helpful_votes,
                           r.verified_share, r.first_review_ms, r.last_review_ms
                    FROM judged AS j LEFT JOIN ({_REVIEW_STATS}) AS r USING (parent_asin)
                    WHERE j._rule IS NULL""",
                "parent_asin",
                silver,
                key="parent_asin",
                keys="SELECT parent_asin FROM judged WHERE _rule IS NULL",  # no review stats
            )
            con.execute(f"""
                COPY (
                    SELECT parent_asin, category, source_line, _rule AS rule,
                           {reasons} AS reason, title, average_rating, rating_number
                    FROM judged WHERE _rule IS NOT NULL
                    ORDER BY category, source_line
                ) TO {sql_literal(str(rejections))} (FORMAT parquet, COMPRESSION zstd)
            """)
            counts = dict(
                con.execute("SELECT coalesce(_rule, ''), count(*) FROM judged GROUP BY 1")
                .fetchall()
            )
            # reviews the aggregates leave out are kept beside, with the reason, and counted
            con.execute(f"""
                COPY (
                    SELECT parent_asin, category, source_line, {_REVIEW_RULE} AS rule,
                           CASE {_REVIEW_RULE} WHEN 'rating_missing' THEN 'no rating'
                                ELSE 'a rating outside [1, 5]' END AS reason, rating
                    FROM reviews WHERE NOT {_REVIEW_USED}
                    ORDER BY category, source_line
                ) TO {sql_literal(str(review_rejections))} (FORMAT parquet, COMPRESSION zstd)
            """)
            reviews_in, reviews_used = con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {_REVIEW_USED}) FROM reviews"
            ).fetchone()
            review_rules = dict(con.execute(
                f"SELECT {_REVIEW_RULE}, count(*) FROM reviews WHERE NOT {_REVIEW_USED} "
                "GROUP BY 1 ORDER BY 1").fetchall())
        finally:
            con.close()
        rows_in = sum(counts.values())
        funnel, remaining = [], rows_in
        for rule in rules:
            rejected = counts.get(rule.name, 0)
            funnel.append(
                {
                    "rule": rule.name,
                    "reason": rule.reason,
                    "in": remaining,
                    "rejected": rejected,
                    "kept": remaining - rejected,
                }
            )
            remaining -= rejected
        kept = counts.get("", 0)
        if remaining != kept:  # pragma: no cover - the funnel is a partition by construction
            raise RuntimeError(f"clean: {remaining} rows left by the funnel but {kept} kept")
        staged.manifest = {
            "stage": "clean",
            "profile": profile,
            "rules": [
                {"name": r.name, "reject_when": r.reject_when, "reason": r.reason} for r in rules
            ],
            "inputs": bronze_fingerprint(catalog),
            "rows_in": rows_in,
            "kept": kept,
            "funnel": funnel,
            # review lines in = used in the aggregates + left out (review_rejections.parquet)
            "reviews": {"rows_in": reviews_in, "used": reviews_used, "left_out": review_rules},
        }
        staged.views = silver_views(layout, profile)
    return CleanResult(profile, rows_in, kept, funnel, time.perf_counter() - started, out_dir)


def bronze_fingerprint(catalog: Catalog) -> dict[str, str]:
    """What a clean reads: every ingested file's bronze checksum (a clean whose manifest
    records the same is current)."""
    return {k: e["bronze_sha256"] for k, e in sorted(catalog.sources.items())}


def silver_views(layout: CatalogLayout, profile: str) -> dict[str, dict[str, Any]]:
    """The views ``silver_items`` and ``rejections`` on one profile's silver files."""
    return {
        SILVER_ITEMS: {"files": [layout.relative(layout.silver_items(profile))],
                       "profile": profile},
        REJECTIONS: {"files": [layout.relative(layout.rejections(profile))], "profile": profile},
        REVIEW_REJECTIONS: {"files": [layout.relative(layout.review_rejections(profile))],
                            "profile": profile},
    }


def silver_shown(catalog: Catalog) -> tuple[str, Path]:
    """(profile, items file) of the silver items that the view ``silver_items`` shows (the
    profile cleaned or sliced last)."""
    if SILVER_ITEMS not in catalog.tables:
        raise UserError("no silver items in the catalog: run `curate clean` (or "
                        "`curate build-slice`) first")
    profile = catalog.tables[SILVER_ITEMS]["profile"]
    return profile, catalog.layout.silver_items(profile)


def read_clean_manifest(layout: CatalogLayout, profile: str) -> dict[str, Any] | None:
    """The manifest of silver/<profile>/, or None if that profile was never cleaned."""

    path = layout.silver_dir(profile) / MANIFEST
    return read_record(path) if path.exists() else None
