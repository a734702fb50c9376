from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from curation.catalog import Catalog
from curation.ingest import ingest
from curation.schema import REASON_TRUNCATED_GZIP, REASON_UNREADABLE
from curation.sources import SourceError, list_raw_files
from curation.synth import META_MESS, REVIEW_MESS
from tests.conftest import copy_catalog, count_lines, read_lines, shared_file, write_raw


def _query(catalog_root: Path, sql: str) -> pl.DataFrame:
    con = Catalog.open(catalog_root).connect()
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def _mess_outcomes(corpus: Path, catalog_root: Path) -> pl.DataFrame:
    """Every planted defect with where its line ended up (bronze row or quarantine reason)."""
    con = Catalog.open(catalog_root).connect()
    mess = corpus / "ground_truth" / "mess.parquet"
    try:
        return con.sql(f"""
            WITH m AS (
                SELECT *, regexp_extract(file, '(?:meta_)?([A-Za-z_]+)\\.jsonl', 1) AS category
                FROM read_parquet('{mess}')),
            b AS (SELECT 'reviews' AS kind, category, source_line FROM reviews
                  UNION ALL SELECT 'items', category, source_line FROM items)
            SELECT m.*, b.source_line IS NOT NULL AS in_bronze, q.reason AS got_reason
            FROM m
            LEFT JOIN b ON b.kind = m.kind AND b.category = m.category AND b.source_line = m.line
            LEFT JOIN quarantine q ON q.kind = m.kind AND q.category = m.category
                 AND q.source_line = m.line AND q.scope = 'line'
        """).pl()
    finally:
        con.close()


def test_counts_reconcile_per_file(messy_corpus, messy_catalog):
    sources = Catalog.open(messy_catalog).sources
    assert len(sources) == 12
    for entry in sources.values():
        independent = count_lines(Path(entry["source"]))
        assert entry["lines_read"] == independent
        assert entry["lines_read"] == entry["rows_ingested"] + entry["lines_quarantined"]
        rows = _query(
            messy_catalog, f"SELECT count(*) AS n FROM read_parquet('{entry['bronze']}/*.parquet')"
        )
        assert rows["n"][0] == entry["rows_ingested"]


@pytest.mark.parametrize(
    "kind,mess",
    [("items", m) for m in META_MESS]
    + [("reviews", m) for m in REVIEW_MESS]
    + [("reviews", "orphan_review")],
)
def test_each_kind_of_mess_is_typed_or_quarantined_with_its_reason(
    messy_corpus, messy_catalog, kind, mess
):
    outcomes = _mess_outcomes(messy_corpus, messy_catalog)
    truncated = json.loads((messy_corpus / "ground_truth/manifest.json").read_text())[
        "truncated_file"
    ]
    readable = count_lines(messy_corpus / truncated)
    # Lines past the cut of the deliberately truncated file cannot be read by anyone.
    outcomes = outcomes.filter(~((pl.col("file") == truncated) & (pl.col("line") > readable)))
    rows = outcomes.filter((pl.col("kind") == kind) & (pl.col("mess") == mess))
    assert rows.height > 0, f"the corpus has no planted {mess} in {kind}"
    typed = rows.filter(pl.col("expected") == "typed")
    assert typed["in_bronze"].all(), typed.filter(~pl.col("in_bronze"))
    assert typed["got_reason"].is_null().all(), typed.filter(pl.col("got_reason").is_not_null())
    quarantined = rows.filter(pl.col("expected") == "quarantine")
    # eq_missing: a line that lands in bronze has no reason (null), and `==` with a null
    # gives null, which `.all()` would skip.
    wrong = quarantined.filter(
        pl.col("in_bronze") | ~pl.col("got_reason").eq_missing(pl.col("expected_reason"))
    )
    assert wrong.is_empty(), wrong


def test_castable_values_are_typed_to_the_right_value(messy_corpus, messy_catalog):
    truth = pl.read_parquet(messy_corpus / "ground_truth/items.parquet")
    mess = pl.read_parquet(messy_corpus / "ground_truth/mess.parquet")
    nulled = mess.filter(
        (pl.col("kind") == "items")
        & (pl.col("mess") == "null_field")
        & (pl.col("field") == "average_rating")
    )["parent_asin"]
    got = _query(messy_catalog, "SELECT parent_asin, average_rating, rating_number FROM items")
    joined = got.join(truth, on="parent_asin", suffix="_truth")
    assert joined.height == got.height > 500  # every bronze row, duplicate lines included
    # eq_missing: a value typed as null where the truth has one must fail, not be skipped.
    assert joined["rating_number"].eq_missing(joined["rating_number_truth"]).all()
    expected = joined.select(
        pl.when(pl.col("parent_asin").is_in(nulled.implode()))
        .then(None)
        .otherwise(pl.col("average_rating_truth"))
    ).to_series()
    assert joined["average_rating"].eq_missing(expected).all()
    # Each planted numeric string ("4.5", "12", "1700000000000") is typed to its number.
    truncated = json.loads((messy_corpus / "ground_truth/manifest.json").read_text())[
        "truncated_file"
    ]
    castable = mess.filter(
        (pl.col("mess") == "castable_type")
        & ~(
            (pl.col("file") == truncated) & (pl.col("line") > count_lines(messy_corpus / truncated))
        )
    )
    assert set(castable["kind"]) == {"items", "reviews"}
    for (file, kind), group in castable.group_by("file", "kind"):
        raw_lines = read_lines(messy_corpus / file)
        category = _category(file)
        numbers = ", ".join(str(n) for n in group["line"])
        bronze = _query(
            messy_catalog,
            f"SELECT * FROM {kind} WHERE category = '{category}' AND source_line IN ({numbers})",
        )
        typed = {r["source_line"]: r for r in bronze.iter_rows(named=True)}
        for line, field in group.select("line", "field").iter_rows():
            text = json.loads(raw_lines[line - 1])[field]
            assert isinstance(text, str), (file, line, text)
            want = float(text) if field in ("rating", "average_rating") else int(text)
            row = typed.get(line)
            assert row is not None and row[field] == want, (file, line, text, row)


def _category(file: str) -> str:
    name = Path(file).name.split(".")[0]
    return name.removeprefix("meta_")


def test_alternative_forms_are_normalised(messy_corpus, messy_catalog):
    outcomes = _mess_outcomes(messy_corpus, messy_catalog)
    hub = outcomes.filter((pl.col("mess") == "hub_images") & (pl.col("kind") == "items"))
    asins = ", ".join(f"'{a}'" for a in hub["parent_asin"])
    images = _query(messy_catalog, f"SELECT images FROM items WHERE parent_asin IN ({asins})")
    for value in images["images"].to_list():  # zipped from a struct of lists
        assert isinstance(value, list) and all(
            set(im) == {"thumb", "large", "variant", "hi_res"} for im in value
        )
    details = outcomes.filter(pl.col("mess") == "details_string")["parent_asin"]
    asins = ", ".join(f"'{a}'" for a in details)
    got = _query(messy_catalog, f"SELECT details FROM items WHERE parent_asin IN ({asins})")
    assert all(json.loads(d)["Brand"] for d in got["details"])  # unwrapped to the object
    planted = outcomes.filter(pl.col("mess") == "price_text")["parent_asin"]
    asins = ", ".join(f"'{a}'" for a in planted)
    prices = _query(messy_catalog, f"SELECT price FROM items WHERE parent_asin IN ({asins})")
    assert prices.height == len(planted) > 0
    # Kept as the text it was ("$12.99", "None", ...) for silver to parse.
    assert set(prices["price"]) <= {"None", "$12.99", "from $5.00", "$1,299.00"}


def test_truncated_gzip_is_reported_and_its_readable_lines_kept(messy_corpus, messy_catalog):
    truncated = json.loads((messy_corpus / "ground_truth/manifest.json").read_text())[
        "truncated_file"
    ]
    entry = next(
        e
        for e in Catalog.open(messy_catalog).sources.values()
        if Path(e["source"]).name == Path(truncated).name
    )
    assert entry["file_errors"] and entry["file_errors"][0].startswith(REASON_TRUNCATED_GZIP)
    assert entry["lines_read"] == count_lines(messy_corpus / truncated) > 0
    q = _query(messy_catalog, "SELECT count(*) AS n FROM quarantine WHERE scope = 'file'")
    assert q["n"][0] == 1


def test_an_unreadable_stream_keeps_its_lines_and_is_quarantined_as_a_file(tmp_path):
    """A gzip stream that stops making sense (here a second member that is not gzip): the
    lines before it are kept, and the file gets a quarantine row and an error that say so."""
    import gzip

    raw = write_raw(tmp_path)
    lines = "".join(json.dumps({"parent_asin": f"P{i}", "title": "t"}) + "\n" for i in range(3))
    path = raw / "meta_categories" / "meta_All_Beauty.jsonl.gz"
    path.write_bytes(gzip.compress(lines.encode()) + b"\x1f\x8bnot a gzip member")
    (result,) = ingest(str(raw), tmp_path / "cat")
    assert result.file_errors and result.file_errors[0].startswith(REASON_UNREADABLE)
    assert (result.lines_read, result.rows_ingested) == (3, 3)
    q = _query(tmp_path / "cat", "SELECT scope, reason, source_line FROM quarantine")
    assert q.rows() == [("file", REASON_UNREADABLE, None)]


def test_a_gz_file_whose_header_is_damaged_is_an_unreadable_stream_not_lines_of_garbage(
        tmp_path):
    """The name says gzip though the first bytes are not gzip's magic (a damaged header): it is
    read as gzip, so the damage is named as one file-level row, instead of the compressed
    bytes being read as text and quarantined as lines of garbage."""
    import gzip

    raw = write_raw(tmp_path)
    lines = "".join(json.dumps({"parent_asin": f"P{i}", "title": "t"}) + "\n" for i in range(3))
    packed = bytearray(gzip.compress(lines.encode()))
    packed[0] = 0x00
    (raw / "meta_categories" / "meta_All_Beauty.jsonl.gz").write_bytes(bytes(packed))
    (result,) = ingest(str(raw), tmp_path / "cat")
    assert list(result.file_errors) == [f"{REASON_UNREADABLE}: Error -3 while decompressing "
                                        "data: incorrect header check"]
    assert (result.lines_read, result.rows_ingested) == (0, 0)
    q = _query(tmp_path / "cat", "SELECT scope, reason, source_line FROM quarantine")
    assert q.rows() == [("file", REASON_UNREADABLE, None)]


def test_lines_before_damage_inside_a_gzip_member_are_kept(tmp_path):
    """Damage in the middle of one member (here a stored block's length check broken): the
    lines wholly before the damaged block are ingested, exactly, the rest is the file's
    quarantine row."""
    import gzip

    raw = write_raw(tmp_path)
    text = "".join(json.dumps({"parent_asin": f"P{i:05d}", "title": "t" * 40}) + "\n"
                   for i in range(6000)).encode()
    packed = bytearray(gzip.compress(text, compresslevel=0, mtime=0))  # stored blocks
    start, kept_bytes = 10, 0  # after the gzip header: 1 header byte, LEN, NLEN, the bytes
    for _ in range(2):
        length = int.from_bytes(packed[start + 1:start + 3], "little")
        start, kept_bytes = start + 5 + length, kept_bytes + length
    assert start < len(packed) - 100  # a third block follows: break its length check
    packed[start + 3] ^= 0xFF
    (raw / "meta_categories" / "meta_All_Beauty.jsonl.gz").write_bytes(bytes(packed))
    (result,) = ingest(str(raw), tmp_path / "cat")
    assert result.file_errors and result.file_errors[0].startswith(REASON_UNREADABLE)
    whole_lines = text[:kept_bytes].count(b"\n")
    assert 0 < whole_lines < 6000
    assert (result.lines_read, result.rows_ingested) == (whole_lines, whole_lines)
    got = _query(tmp_path / "cat", "SELECT parent_asin FROM items ORDER BY source_line")
    assert got["parent_asin"].to_list() == [f"P{i:05d}" for i in range(whole_lines)]


def test_a_file_s_size_is_recorded_and_a_reingest_of_altered_bronze_says_why(tmp_path, capsys):
    """What ingest records of a raw file, and what it says when it ingests one again."""
    raw = write_raw(tmp_path, meta={"All_Beauty": [{"parent_asin": "A", "title": "t"}]})
    ingest(str(raw), tmp_path / "cat")
    entry = Catalog.open(tmp_path / "cat").sources["items/All_Beauty"]
    source = raw / "meta_categories" / "meta_All_Beauty.jsonl"
    assert entry["source_bytes"] == source.stat().st_size  # what was read, for the record
    for part in (tmp_path / "cat" / entry["bronze"]).glob("*.parquet"):
        part.unlink()  # the raw file is unchanged, what was made of it is not
    capsys.readouterr()
    (result,) = ingest(str(raw), tmp_path / "cat")
    assert not result.skipped and result.rows_ingested == 1
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: items/All_Beauty: ")
    assert notes[0].endswith("; ingesting it again")


def test_rerun_is_a_no_op_and_byte_identical(messy_corpus, messy_catalog, tmp_path):
    copy = copy_catalog(messy_catalog, tmp_path / "copy")  # the rerun writes, if anything
    before = (copy / "catalog.json").read_bytes()
    results = ingest(str(messy_corpus / "raw"), copy)
    assert all(r.skipped for r in results)
    assert (copy / "catalog.json").read_bytes() == before
    # A skipped file still reports its counts (the CLI prints and totals them).
    counted = ("lines_read", "rows_ingested", "lines_quarantined")
    assert {r.key: tuple(getattr(r, k) for k in counted) for r in results} == {
        key: tuple(e[k] for k in counted) for key, e in Catalog.open(copy).sources.items()}
    # A fresh ingest of the same input elsewhere writes the same Parquet bytes.
    other = tmp_path / "other"
    ingest(str(messy_corpus / "raw"), other)
    ours, theirs = Catalog.open(copy).sources, Catalog.open(other).sources
    for key, entry in ours.items():
        assert theirs[key]["bronze_sha256"] == entry["bronze_sha256"]
        assert theirs[key]["quarantine_sha256"] == entry["quarantine_sha256"]


def _small_corpus(tmp_path: Path) -> Path:
    from curation.synth import SynthConfig, synthesize

    synthesize(
        tmp_path / "corpus",
        SynthConfig(n_items=60, seed=5, images=False, categories=("All_Beauty", "Video_Games")),
    )
    return tmp_path / "corpus" / "raw"


def test_a_changed_category_is_reingested_alone(tmp_path):
    raw = _small_corpus(tmp_path)
    ingest(str(raw), tmp_path / "cat")
    target = raw / "review_categories" / "Video_Games.jsonl"
    target.write_bytes(target.read_bytes() + b'{"rating": 5.0, "parent_asin": "B0NEW"}\n')
    results = {r.key: r for r in ingest(str(raw), tmp_path / "cat")}
    assert [k for k, r in results.items() if not r.skipped] == ["reviews/Video_Games"]
    assert results["reviews/Video_Games"].lines_read == count_lines(target)
    # The old version's files are gone; only the catalog's current files remain.
    bronze = sorted((tmp_path / "cat" / "bronze").rglob("*.parquet"))
    assert len(bronze) == 4


def test_an_interrupted_ingest_leaves_the_previous_catalog_usable(tmp_path):
    raw = _small_corpus(tmp_path)
    catalog_root = tmp_path / "cat"
    ingest(str(raw), catalog_root)
    before = _query(catalog_root, "SELECT count(*) AS n FROM reviews")["n"][0]
    target = raw / "review_categories" / "All_Beauty.jsonl"
    target.write_bytes(target.read_bytes() * 2)

    def interrupt(raw_file, read_bytes):
        if raw_file.key == "reviews/All_Beauty":
            raise KeyboardInterrupt  # a user's Ctrl-C in the middle of the file

    with pytest.raises(KeyboardInterrupt):
        ingest(str(raw), catalog_root, progress=interrupt)
    assert _query(catalog_root, "SELECT count(*) AS n FROM reviews")["n"][0] == before
    assert not (catalog_root / ".staging").exists()
    results = {r.key: r for r in ingest(str(raw), catalog_root)}
    assert not results["reviews/All_Beauty"].skipped
    assert _query(catalog_root, "SELECT count(*) AS n FROM reviews")["n"][0] > before


def test_a_ctrl_c_while_a_lane_runs_a_long_query_stops_it_at_once(tmp_path, monkeypatch):
    """Ctrl-C while blocks are being typed: the queries running on the lanes are interrupted
    (not waited for), nothing is left in staging, and no lane thread goes on."""
    import threading
    import time

    import curation.framing
    import curation.ingest

    raw = _small_corpus(tmp_path)
    monkeypatch.setattr(curation.framing, "CHUNK_BYTES", 16 << 10)  # several blocks a file
    real_type_block = curation.ingest._FileIngest.type_block
    begun = []

    def a_long_query_first(job, lane, *args):  # fault injection: a query of minutes
        begun.append(1)
        if len(begun) >= 3:
            lane.con.execute("CREATE OR REPLACE TEMP TABLE slow AS "
                             "SELECT sum(i) FROM range(100000000000) t(i)")
        return real_type_block(job, lane, *args)

    monkeypatch.setattr(curation.ingest._FileIngest, "type_block", a_long_query_first)

    def interrupt(raw_file, read_bytes):
        time.sleep(0.3)  # the lanes are in their long queries now
        raise KeyboardInterrupt

    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        ingest(str(raw), tmp_path / "cat", progress=interrupt)
    assert time.perf_counter() - started < 5
    assert not any(t.name.startswith("ingest") for t in threading.enumerate())
    assert not (tmp_path / "cat" / ".staging").exists()


def test_a_file_that_cannot_be_started_leaves_no_staging(tmp_path, monkeypatch):
    """A file's quarantine writer that cannot be opened (no file handles left, say): the
    error is the user's to see, and neither that file's staging nor the others' is left."""
    import curation.ingest

    raw = _small_corpus(tmp_path)
    real_writer = curation.ingest.pq.ParquetWriter
    opened = []

    def the_third_fails(*args, **kwargs):  # fault injection
        opened.append(1)
        if len(opened) == 3:
            raise OSError(24, "Too many open files")
        return real_writer(*args, **kwargs)

    monkeypatch.setattr(curation.ingest.pq, "ParquetWriter", the_third_fails)
    with pytest.raises(OSError, match="Too many open files"):
        ingest(str(raw), tmp_path / "cat")
    assert not (tmp_path / "cat" / ".staging").exists()


@pytest.mark.parametrize("kind", ["reviews", "items"])
def test_line_by_line_typing_agrees_with_read_json(messy_corpus, tmp_path, kind):
    """The fallback for blocks that read_json refuses types every line the same way."""
    import pyarrow as pa

    from curation.framing import frame_block
    from curation.typing_sql import fields_from_file, fields_from_lines, typing_query

    folder = "review_categories" if kind == "reviews" else "meta_categories"
    cut = json.loads((messy_corpus / "ground_truth/manifest.json").read_text())["truncated_file"]
    lines = [
        ln
        for path in sorted((messy_corpus / "raw" / folder).glob("*.jsonl.gz"))
        if str(path.relative_to(messy_corpus)) != cut
        for ln in read_lines(path)
        if ln.strip().startswith(b"{") and _is_utf8(ln)
    ]  # what the line check lets by, from every category's file
    path = tmp_path / "block.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    con = duckdb.connect()
    con.register(
        "numbers",
        pa.table({"source_line": list(range(1, len(lines) + 1)), "_skip": [False] * len(lines)}),
    )
    con.register("clean_block", pa.table({"line": frame_block(path.read_bytes(), 1).as_binary()}))
    fast = con.sql(typing_query(kind, "All_Beauty", fields_from_file(kind, str(path)))).pl()
    slow = con.sql(typing_query(kind, "All_Beauty", fields_from_lines(kind, "clean_block"))).pl()
    assert fast.height == slow.height == len(lines)
    assert fast["_reason"].null_count() < fast.height  # the block has planted defects
    assert fast.equals(slow)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_a_file_url_takes_the_same_path_as_the_hub(tmp_path):
    raw = _small_corpus(tmp_path)
    files = list_raw_files(raw.as_uri(), ["Video_Games"])
    assert [f.key for f in files] == ["items/Video_Games", "reviews/Video_Games"]
    results = ingest(raw.as_uri(), tmp_path / "cat", ["Video_Games"])
    assert sum(r.rows_ingested for r in results) == sum(count_lines(Path(f.url)) for f in files)


def test_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="no such folder"):
        list_raw_files(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="found no"):
        list_raw_files(str(tmp_path / "empty"))
    raw = _small_corpus(tmp_path)
    with pytest.raises(SourceError, match=r"for categories \['Books'\]"):
        list_raw_files(str(raw), ["Books"])


def _raw_layout(
    tmp_path: Path,
    meta: Path | None = None,
    reviews: Path | None = None,
    category: str = "Health_and_Personal_Care",
) -> Path:
    raw = tmp_path / "raw"
    (raw / "meta_categories").mkdir(parents=True)
    (raw / "review_categories").mkdir(parents=True)
    if meta:
        shutil.copy(meta, raw / "meta_categories" / f"meta_{category}.jsonl")
    if reviews:
        shutil.copy(reviews, raw / "review_categories" / f"{category}.jsonl")
    return raw


def test_real_metadata_lines_reconcile(tmp_path):
    """The counts the README states in "What real files look like", exactly."""
    meta = shared_file("meta_Health_and_Personal_Care.head1001.jsonl")
    reviews = shared_file("All_Beauty.5core.reviews.partial.jsonl")
    raw = _raw_layout(tmp_path, meta=meta)
    shutil.copy(reviews, raw / "review_categories" / "All_Beauty.jsonl")
    results = ingest(str(raw), tmp_path / "cat")
    assert sorted(r.key for r in results) == [
        "items/Health_and_Personal_Care",
        "reviews/All_Beauty",
    ]
    read = sum(r.lines_read for r in results)
    rows = sum(r.rows_ingested for r in results)
    quarantined = sum(r.lines_quarantined for r in results)
    assert (read, rows, quarantined) == (3545, 3545, 0)
    [counts] = _query(
        tmp_path / "cat",
        """SELECT count(*) AS items,
                  count(*) FILTER (WHERE len(description) = 0) AS empty_description,
                  count(*) FILTER (WHERE len(features) = 0) AS empty_features,
                  count(*) FILTER (WHERE price IS NULL) AS null_price,
                  count(*) FILTER (WHERE list_bool_or(list_transform(images,
                      lambda i: coalesce(i.hi_res, i.large) IS NOT NULL))) AS with_image
           FROM items""",
    ).iter_rows(named=True)
    assert counts == {
        "items": 1001,
        "empty_description": 784,
        "empty_features": 679,
        "null_price": 791,
        "with_image": 1001,
    }
    items = _query(tmp_path / "cat", "SELECT * FROM items")
    first = json.loads(meta.read_text().splitlines()[0])
    row = items.filter(pl.col("source_line") == 1).row(0, named=True)
    assert row["parent_asin"] == first["parent_asin"]
    assert row["rating_number"] == first["rating_number"]
    assert row["title"] == first["title"]
    assert items["average_rating"].is_not_null().all()


def test_real_reviews_with_missing_keys_are_typed(tmp_path):
    real = shared_file("All_Beauty.5core.reviews.partial.jsonl")
    raw = _raw_layout(tmp_path, reviews=real, category="All_Beauty")
    [result] = ingest(str(raw), tmp_path / "cat")
    assert result.lines_read == 2544 == result.rows_ingested + result.lines_quarantined
    reviews = _query(tmp_path / "cat", "SELECT * FROM reviews")
    assert reviews["asin"].is_null().all() and reviews["rating"].is_not_null().all()


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
field_names = st.sampled_from(
    [
        "rating",
        "parent_asin",
        "title",
        "timestamp",
        "images",
        "verified_purchase",
        "helpful_vote",
        "zzz",
    ]
)
plausible = st.dictionaries(field_names, json_values, max_size=6).map(
    lambda d: json.dumps(d).encode()
)
garbage = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))
lines = st.lists(plausible | garbage | st.just(b"") | st.just(b"\xff{}"), min_size=1, max_size=30)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=lines, trailing_newline=st.booleans())
# A lone CR inside a line: ingest frames at LF only, so the object is line 2 (an oracle that
# cut at CR as well once read the wrong line here).
@example(lines=[b"\r\x80", b'{"parent_asin": []}'], trailing_newline=False)
@example(lines=[b"\r\x80", b'{"parent_asin": []}'], trailing_newline=True)
@example(lines=[b"\x1f\x8b"], trailing_newline=False)  # gzip's magic: read as (cut) gzip
@example(lines=[b"\x1f\x8b", b"{}"], trailing_newline=False)  # the magic, then not gzip: unreadable
def test_arbitrary_lines_never_crash_and_always_reconcile(
    tmp_path_factory, lines, trailing_newline
):
    base = tmp_path_factory.mktemp("prop")
    raw = base / "raw" / "review_categories"
    raw.mkdir(parents=True)
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    (raw / "All_Beauty.jsonl").write_bytes(data)
    [result] = ingest(str(base / "raw"), base / "cat")
    assert result.lines_read == count_lines(raw / "All_Beauty.jsonl")
    assert result.lines_read == result.rows_ingested + result.lines_quarantined
    con = duckdb.connect()
    quarantined = con.sql(  # the lines (a cut gzip adds a file-level row, of no line)
        f"SELECT source_line FROM read_parquet('{base / 'cat' / 'quarantine'}/*/*/*.parquet') "
        "WHERE scope = 'line'"
    ).fetchall()
    typed = con.sql(
        f"SELECT source_line FROM read_parquet('{base / 'cat' / 'bronze'}/*/*/*/*.parquet')"
    ).fetchall()
    numbers = sorted(n for (n,) in quarantined + typed)
    assert numbers == list(range(1, result.lines_read + 1))  # each line exactly once
    written = read_lines(raw / "All_Beauty.jsonl")
    assert len(written) == result.lines_read
    for (n,) in typed:  # whatever was typed really was a JSON object with a parent_asin
        value = json.loads(written[n - 1])
        assert isinstance(value, dict) and value.get("parent_asin") not in (None, "")


INTEGER_FIELDS = (("reviews", "timestamp"), ("reviews", "helpful_vote"), ("items", "rating_number"))
numbers = (
    st.integers(-(2**63), 2**63 - 1)
    | st.floats(-(2.0**53) + 1, 2.0**53 - 1)  # doubles that hold every integer exactly
    | st.integers(-1000, 1000).map(lambda k: k / 4)  # halves and quarters, and integers
)


def _expected_integer(value: int | float | str) -> int | None:
    """What an integer field must hold for a JSON number or numeric string; None: quarantine."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            value = float(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(numbers | numbers.map(str), min_size=1, max_size=12))
@example(values=[1.5e12 + 0.5, 1.5e12, "1700000000000", 12.0, -0.5, "2.5"])
def test_integer_fields_take_integral_numbers_and_quarantine_fractions(tmp_path_factory, values):
    """A timestamp of 1.5e12 + 0.5 is not an integer: typed, it would be silently rounded."""
    base = tmp_path_factory.mktemp("ints")
    records: dict[str, list[dict]] = {"reviews": [], "items": []}
    for kind, field in INTEGER_FIELDS:
        records[kind] += [{"parent_asin": f"P{i}", field: v} for i, v in enumerate(values)]
    raw = write_raw(
        base,
        meta={"Toys_and_Games": records["items"]},
        reviews={"Toys_and_Games": records["reviews"]},
    )
    ingest(str(raw), base / "cat")
    con = duckdb.connect()
    for kind, field in INTEGER_FIELDS:
        first = 1 + (len(values) if field == "helpful_vote" else 0)  # line of values[0]
        bronze = dict(
            con.sql(
                f"SELECT source_line, {field} "
                f"FROM read_parquet('{base / 'cat' / 'bronze' / kind}/*/*/*.parquet')"
            ).fetchall()
        )
        reasons = dict(
            con.sql(
                f"SELECT source_line, reason FROM read_parquet('{base / 'cat'}/quarantine/"
                f"*/*/*.parquet') WHERE kind = '{kind}'"
            ).fetchall()
        )
        for i, value in enumerate(values):
            line, want = first + i, _expected_integer(value)
            got = (bronze.get(line, "absent"), reasons.get(line))
            if want is None:
                assert got == ("absent", f"wrong_type:{field}"), (field, value, got)
            else:
                assert got == (want, None), (field, value, got)


# -- framing: raw bytes -> numbered lines, checked against bytes.split ------------------------


def _frame_all(data: bytes, name: str, chunk_bytes: int):
    import io

    from curation.framing import FrameStats, iter_line_blocks

    stats = FrameStats()
    blocks = list(iter_line_blocks(io.BytesIO(data), name, stats, chunk_bytes=chunk_bytes))
    return blocks, stats


PLAIN = (b'{"a": 1}\n\n{"b": "x\r"}\r\n' + b"y" * 50 + b"\n \n{}\n" + b"last without newline")


@pytest.mark.parametrize("chunk_bytes", [7, 16, 1 << 20])
def test_lines_are_numbered_exactly_across_blocks(chunk_bytes):
    blocks, stats = _frame_all(PLAIN, "x.jsonl", chunk_bytes)
    expected = [line + b"\n" for line in PLAIN.split(b"\n")[:-1]] + [b"last without newline"]
    got, numbers = [], []
    for block in blocks:
        assert block.count == len(block.offsets) - 1
        assert block.first_line == len(got) + 1
        got += [block.raw(i) for i in range(block.count)]
        numbers += block.line_numbers().tolist()
        assert block.as_binary().to_pylist() == [block.raw(i) for i in range(block.count)]
    assert got == expected  # the 50-byte line is longer than the smallest chunks
    # read a chunk at a time: small chunks give many blocks, not one for the whole file
    assert len(blocks) >= min(3, len(PLAIN) // chunk_bytes)
    assert numbers == list(range(1, len(expected) + 1))
    assert (stats.lines, stats.bytes_in, stats.truncated_gzip) == (len(expected), len(PLAIN),
                                                                   False)


def test_an_empty_file_has_no_lines():
    blocks, stats = _frame_all(b"", "x.jsonl", 16)
    assert blocks == [] and (stats.lines, stats.bytes_in) == (0, 0)


def test_gzip_members_and_a_cut_stream():
    import gzip

    first, second = b'{"a": 1}\n{"b": 2}\n', b'{"c": 3}\n' * 40
    data = gzip.compress(first) + gzip.compress(second)  # two members, as pigz writes
    for name in ("x.jsonl.gz", "x.jsonl"):  # the magic bytes tell it without the suffix
        blocks, stats = _frame_all(data, name, 16)
        lines = [b.raw(i) for b in blocks for i in range(b.count)]
        assert lines == (first + second).splitlines(keepends=True), name
        assert (stats.lines, stats.bytes_in, stats.truncated_gzip) == (42, len(data), False)
    cut = gzip.compress(second * 50)
    cut = cut[: len(cut) // 2]
    blocks, stats = _frame_all(cut, "x.jsonl.gz", 1 << 20)
    lines = [b.raw(i) for b in blocks for i in range(b.count)]
    assert stats.truncated_gzip and stats.bytes_in == len(cut)
    assert 0 < len(lines) < 2000 and all(line == b'{"c": 3}\n' for line in lines[:-1])
    assert lines[-1] == b'{"c": 3}\n'[: len(lines[-1])]  # what was readable of the last line


def test_replaced_lines_keep_the_block_aligned():
    from curation.framing import frame_block

    block = frame_block(b"a\nbb\nccc\ndd", 5)
    assert block.replaced([], b"{}") == [b"a\nbb\nccc\ndd"]
    assert b"".join(block.replaced([3, 1], b"{}")) == b"a\n{}\nccc\n{}"
    assert b"".join(block.replaced([0], b"{}")) == b"{}\nbb\nccc\ndd"
    assert block.line_numbers().tolist() == [5, 6, 7, 8]


def test_a_quarantined_lines_text_is_decoded_escaped_and_capped():
    from curation.framing import shown_text

    assert shown_text(b"caf\xc3\xa9 \xff\r\n") == "café \\xff"
    assert shown_text(b"tail \t\r\n") == "tail \t"  # only the line break goes
    assert shown_text(b"ends in X\n") == "ends in X"
    assert shown_text(b"x" * 1500 + b"\n") == "x" * 1000


def test_a_catalog_in_a_folder_whose_name_holds_a_quote(tmp_path):
    """Paths reach DuckDB as SQL string literals: a ' in them must be escaped, not end them."""
    from curation.clean import clean
    from curation.split import build_split

    root = tmp_path / "O'Brien's data"
    raw = write_raw(root, meta={"Toys_and_Games": [
        {"parent_asin": f"a{i}", "title": f"Thing {i}", "average_rating": 4.0,
         "rating_number": 3, "main_category": "Toys"} for i in range(5)]},
        reviews={"Toys_and_Games": [{"user_id": "u", "parent_asin": "a1", "rating": 5.0,
                                     "timestamp": 1}]})
    result = ingest(str(raw), root / "catalog")
    assert sum(r.rows_ingested for r in result) == 6
    clean(root / "catalog")
    assert sum(build_split(root / "catalog", seed=0).counts.values()) == 5
    assert _query(root / "catalog", "SELECT count(*) AS n FROM splits")["n"].item() == 5


@pytest.mark.parametrize("chunk_bytes", [512, 4096])
def test_gzip_is_read_in_pieces_and_framed_in_blocks_of_about_chunk_bytes(monkeypatch,
                                                                          chunk_bytes):
    """Memory stays flat: each block holds about chunk_bytes of lines, however the compressed
    stream is read (here 64 bytes at a time, to see many reads per block)."""
    import gzip

    import curation.framing as framing

    monkeypatch.setattr(framing, "READ_BYTES", 64)
    lines = [json.dumps({"i": i, "pad": "x" * (i % 17)}).encode() + b"\n" for i in range(2000)]
    data = gzip.compress(b"".join(lines))
    blocks, stats = _frame_all(data, "x.jsonl.gz", chunk_bytes)
    assert [b.raw(i) for b in blocks for i in range(b.count)] == lines
    assert (stats.lines, stats.bytes_in) == (2000, len(data))
    total = sum(len(line) for line in lines)
    assert len(blocks) >= total // (4 * chunk_bytes) >= 3  # not one block for the whole file
    assert max(len(b.data) for b in blocks) < 4 * chunk_bytes


def test_the_line_check_names_why_a_line_cannot_be_a_row():
    from curation.framing import frame_block
    from curation.ingest import unusable_lines

    lines = [b'{"a": 1}\n', b"  \t\r\n", b"not json\n", b"[1, 2]\n", b"\xff{}\n",
             b'{"caf\xc3\xa9": 2}\n', b"\xc3\n", b'"\xe2\x82\xac"\n', b' {"b": 2}\n',
             b'{"c": "\x80"}\n']  # the last: a lone continuation byte, the lowest high byte
    assert unusable_lines(frame_block(b"".join(lines), 1)) == [
        (1, "blank_line"), (2, "invalid_json"), (3, "not_an_object"), (4, "invalid_utf8"),
        (6, "invalid_utf8"), (7, "not_an_object"), (9, "invalid_utf8")]


def _one_line_check(line: bytes) -> str | None:
    """The line check's rule for one line, written plainly."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    text = text.strip(" \t\r\n")
    if not text:
        return "blank_line"
    if text.startswith("{"):
        return None
    try:
        json.loads(text, parse_constant=_refuse)  # NaN and Infinity are not JSON
    except ValueError:
        return "invalid_json"
    return "not_an_object"


def _refuse(constant: str) -> None:
    raise ValueError(constant)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=12).filter(lambda b: b"\n" not in b),
    st.sampled_from([b"{}", b' {"a": 1}', b"[1]", b"3", b"NaN", b"\xc3\xa9", b"\xed\xa0\x80",
                     b"\t", b"\xf0\x9f\x98\x80 x", b"\xc0\xaf", b"{\x80}"])),
    min_size=1, max_size=30))
def test_the_line_check_agrees_with_the_rule_line_by_line(lines):
    """Whether the block is all UTF-8 (Arrow's check of the whole block) or not (lines with
    high bytes decoded one by one), each line gets the reason the plain rule gives it."""
    from curation.framing import frame_block
    from curation.ingest import unusable_lines

    block = frame_block(b"\n".join(lines) + b"\n", 1)
    expected = [(i, r) for i, line in enumerate(lines) if (r := _one_line_check(line))]
    assert unusable_lines(block) == expected


def test_a_block_read_json_refuses_is_typed_line_by_line_with_the_same_outcomes(tmp_path):
    """A lone surrogate escape makes read_json refuse the block: the line-by-line fallback
    types the other lines, with their numbers, next to lines the line check quarantined (not
    JSON, not UTF-8, not an object), and the manifest counts the block."""
    raw = write_raw(tmp_path, meta={"All_Beauty": []})
    (raw / "meta_categories" / "meta_All_Beauty.jsonl").write_bytes(
        b'{"parent_asin": "A", "title": "a", "average_rating": 4.5}\n'
        b"not json\n"
        b'{"parent_asin": "\\ud800", "title": "s"}\n'
        b'{"parent_asin": "C", "rating_number": 7}\n'
        b'{"title": "caf\xff"}\n'
        b"[1, 2]\n"
    )
    [result] = ingest(str(raw), tmp_path / "cat")
    assert (result.lines_read, result.rows_ingested, result.lines_quarantined) == (6, 2, 4)
    assert Catalog.open(tmp_path / "cat").sources["items/All_Beauty"]["fallback_blocks"] == 1
    items = _query(tmp_path / "cat", "SELECT parent_asin, source_line, title, average_rating, "
                   "rating_number FROM items ORDER BY source_line")
    assert items.rows() == [("A", 1, "a", 4.5, None), ("C", 4, None, None, 7)]
    quarantined = _query(tmp_path / "cat", "SELECT source_line, reason FROM quarantine "
                         "ORDER BY source_line")
    # the lone surrogate cannot become text: its parent_asin reads as missing
    assert quarantined.rows() == [(2, "invalid_json"), (3, "missing_key:parent_asin"),
                                  (5, "invalid_utf8"), (6, "not_an_object")]


def test_every_block_read_json_refuses_is_counted(tmp_path):
    from curation.typing_sql import MAX_OBJECT_BYTES

    raw = write_raw(tmp_path, meta={"All_Beauty": []})
    long_text = "x" * (2 * MAX_OBJECT_BYTES + 1024)  # each line a block of its own
    (raw / "meta_categories" / "meta_All_Beauty.jsonl").write_text("".join(
        json.dumps({"parent_asin": f"A{i}", "description": [long_text]}) + "\n"
        for i in range(2)))
    [result] = ingest(str(raw), tmp_path / "cat")
    assert result.rows_ingested == 2
    assert Catalog.open(tmp_path / "cat").sources["items/All_Beauty"]["fallback_blocks"] == 2


def test_an_empty_file_gets_an_empty_typed_bronze_part(tmp_path):
    from curation.schema import bronze_columns

    raw = write_raw(tmp_path, meta={"All_Beauty": []}, reviews={"All_Beauty": []})
    results = ingest(str(raw), tmp_path / "cat")
    counts = [(r.lines_read, r.rows_ingested, r.lines_quarantined) for r in results]
    assert counts == [(0, 0, 0)] * 2
    sources = Catalog.open(tmp_path / "cat").sources
    for kind in ("items", "reviews"):
        entry = sources[f"{kind}/All_Beauty"]
        assert entry["bronze_parts"] == 1
        part = tmp_path / "cat" / entry["bronze"] / "part-00000.parquet"
        columns = duckdb.connect().execute(f"DESCRIBE FROM read_parquet('{part}')").fetchall()
        assert [(c[0], c[1].replace('"', "")) for c in columns] == list(bronze_columns(kind))
        assert len(_query(tmp_path / "cat", f"SELECT * FROM {kind}")) == 0


def test_a_line_longer_than_read_json_takes_is_typed_line_by_line(tmp_path):
    """read_json raises on an object over twice its maximum size: the block is typed line by
    line instead, nothing lost."""
    from curation.typing_sql import MAX_OBJECT_BYTES

    raw = write_raw(tmp_path, meta={"All_Beauty": []})
    long_text = "x" * (2 * MAX_OBJECT_BYTES + 1024)
    (raw / "meta_categories" / "meta_All_Beauty.jsonl").write_text(
        json.dumps({"parent_asin": "A", "title": "a"}) + "\n"
        + json.dumps({"parent_asin": "B", "description": [long_text]}) + "\n")
    [result] = ingest(str(raw), tmp_path / "cat")
    assert (result.rows_ingested, result.lines_quarantined) == (2, 0)
    assert Catalog.open(tmp_path / "cat").sources["items/All_Beauty"]["fallback_blocks"] == 1
    items = _query(tmp_path / "cat", "SELECT parent_asin, title, length(description[1]) AS n "
                   "FROM items ORDER BY source_line")
    assert items.rows() == [("A", "a", None), ("B", None, len(long_text))]


def test_only_json_whitespace_makes_a_blank_line(tmp_path):
    raw = write_raw(tmp_path, meta={"All_Beauty": []})
    (raw / "meta_categories" / "meta_All_Beauty.jsonl").write_bytes(
        b'{"parent_asin": "A"}\n \t\r\n\x0c\n\x0b{}\n')
    ingest(str(raw), tmp_path / "cat")
    reasons = _query(tmp_path / "cat", "SELECT source_line, reason FROM quarantine "
                     "ORDER BY source_line")
    # a form feed or vertical tab is not JSON whitespace: not blank, not JSON
    assert reasons.rows() == [(2, "blank_line"), (3, "invalid_json"), (4, "invalid_json")]


def test_a_cut_gzip_is_named_in_the_files_result(tmp_path):
    import gzip

    raw = write_raw(tmp_path, meta={"All_Beauty": []})
    whole = gzip.compress(b"".join(json.dumps({"parent_asin": f"A{i}"}).encode() + b"\n"
                                   for i in range(2000)))
    (raw / "meta_categories" / "meta_All_Beauty.jsonl").unlink()
    (raw / "meta_categories" / "meta_All_Beauty.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    [result] = ingest(str(raw), tmp_path / "cat")
    assert len(result.file_errors) == 1
    assert result.file_errors[0] == f"{REASON_TRUNCATED_GZIP} after line {result.lines_read}"


def test_a_gzip_of_many_members_is_read_in_pieces_too(monkeypatch):
    """As above with a member every few lines (as bgzip and pigz write): each read still
    stops at about a block's worth, not at the end of the file."""
    import gzip
    import random

    import curation.framing as framing

    monkeypatch.setattr(framing, "READ_BYTES", 256)
    draw = random.Random(0)
    lines = [json.dumps({"i": i, "hex": draw.randbytes(40).hex()}).encode() + b"\n"
             for i in range(3000)]
    data = b"".join(gzip.compress(b"".join(lines[i:i + 3])) for i in range(0, 3000, 3))
    blocks, stats = _frame_all(data, "x.jsonl.gz", 1024)
    assert [b.raw(i) for b in blocks for i in range(b.count)] == lines
    assert (stats.lines, stats.bytes_in) == (3000, len(data))
    assert len(blocks) > 100 and max(len(b.data) for b in blocks) < 4 * 1024


def test_each_file_is_reported_once_when_done_with_the_seconds_it_took(tmp_path):
    """What `curate ingest` prints per file comes from ``on_file_done``: each file once, in
    order, with its own time; skipped files too on a second run. Draw 1223 (2026-12-07):
    neither the calls nor the seconds were checked."""
    import time

    raw = _small_corpus(tmp_path)
    seen: list = []
    started = time.perf_counter()
    results = ingest(str(raw), tmp_path / "cat", on_file_done=seen.append)
    elapsed = time.perf_counter() - started
    assert seen == results and len(results) == 4
    assert all(0 < r.seconds <= elapsed for r in results)
    again: list = []
    assert ingest(str(raw), tmp_path / "cat", on_file_done=again.append) == again
    assert [r.skipped for r in again] == [True] * 4


def test_the_quarantine_is_written_zstd_compressed(tmp_path):
    """Quarantine files are compressed as bronze is (zstd), not pyarrow's default snappy
    (draw 1223, 2026-12-07)."""
    import pyarrow.parquet as pq

    raw = _small_corpus(tmp_path)
    target = raw / "review_categories" / "Video_Games.jsonl"
    target.write_bytes(target.read_bytes() + b"not json\n")
    ingest(str(raw), tmp_path / "cat")
    entry = Catalog.open(tmp_path / "cat").sources["reviews/Video_Games"]
    metadata = pq.ParquetFile(tmp_path / "cat" / entry["quarantine"]).metadata
    assert metadata.num_rows == 1
    assert {metadata.row_group(0).column(i).compression
            for i in range(metadata.num_columns)} == {"ZSTD"}


def test_the_ray_engine_looks_for_a_running_cluster_by_default(tmp_path, monkeypatch):
    """ingest(engine="ray") without an address connects to a running cluster ("auto"), and
    none running is the one line that says so (draw 1229, 2026-12-07: the default address
    changed went unseen, and showed that an address Ray cannot parse was a traceback; so did
    the Ray engine replaced by the local one, which writes the same bytes)."""
    ray = pytest.importorskip("ray")
    from ray._private.services import find_gcs_addresses

    from curation.errors import UserError

    if ray.is_initialized() or find_gcs_addresses():
        pytest.skip("a Ray cluster runs on this machine: the default address would find it")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    raw = write_raw(tmp_path, meta={"All_Beauty": [{"parent_asin": "A", "title": "a"}]})
    with pytest.raises(UserError, match=r"^--ray-address auto: no Ray cluster found"):
        ingest(str(raw), tmp_path / "cat", engine="ray")
    # an address Ray cannot parse is one line too, not Ray's ValueError
    with pytest.raises(UserError, match=r"^--ray-address nonsense: .*give auto, local or a "):
        ingest(str(raw), tmp_path / "cat", engine="ray", ray_address="nonsense")
    assert not ray.is_initialized()


def test_ingest_holds_the_writer_lock_as_the_ingest_job(tmp_path):
    """While a file is ingested the lock's record names the job, which another writer's
    refusal shows (test_lock.py checks that line in another process, which mutmut's map of
    which tests call ingest cannot see: draw 1228, 2026-12-07, a changed job name survived)."""
    import os

    from curation.catalog import CatalogLayout
    from curation.lock import read_holder

    raw = write_raw(tmp_path, meta={"All_Beauty": [{"parent_asin": "A", "title": "a"}]})
    layout = CatalogLayout(tmp_path / "cat")
    holders = []
    ingest(str(raw), layout.root, on_file_done=lambda _: holders.append(read_holder(layout)))
    [holder] = holders
    assert (holder["job"], holder["pid"]) == ("ingest", os.getpid())
    assert read_holder(layout) is None  # released


def test_ingest_reports_each_files_bytes_read_up_to_its_size(tmp_path):
    """Draw 1244 (2026-12-07): the bytes read were not handed to the progress callback, which
    `curate ingest`'s bar adds up (its test is outside mutmut's selection). For a gzip file they
    are the compressed bytes, as the bar's total is the files' sizes on disk."""
    import gzip

    raw = _small_corpus(tmp_path)
    plain = raw / "meta_categories" / "meta_All_Beauty.jsonl"
    (raw / "meta_categories" / "meta_All_Beauty.jsonl.gz").write_bytes(
        gzip.compress(plain.read_bytes() * 40, mtime=0))
    plain.unlink()
    seen: dict[str, list[int]] = {}
    ingest(str(raw), tmp_path / "cat",
           progress=lambda file, read: seen.setdefault(file.key, []).append(read))
    sizes = {f.key: f.size for f in list_raw_files(str(raw))}
    assert {key: reads[-1] for key, reads in seen.items()} == sizes
    assert all(reads == sorted(reads) and reads[0] > 0 for reads in seen.values())
