"""The validation results as one page that works offline: ``CATALOG/validation/report.html``.

great-expectations' Data Docs load their styles and scripts from CDNs, so without a network
their index is blank. This page is rendered from the JSON results ``curation.validate``
writes (``validation/<target>.json``: the target, its rows, its expectations, the failures
with a few offending rows, and great-expectations' own results): a summary of every target,
then one table per target (the items and every slice) with each expectation, its arguments,
whether it was met, the rows it found unexpected or missing, the observed value where there
is one, and a few failing examples. The CSS and the sort script are inline
(``curation.html_pages``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from curation.html_pages import render_page
from curation.manifest import atomic_file

PAGE = "report.html"
EXAMPLES = 3  # failing values shown per expectation when no offending rows were recorded
OUTSIDE_GX = "other checks (made outside great-expectations)"


def page_path(validation: Path) -> Path:
    """Where the page of the results in the folder ``validation`` is written."""
    return validation / PAGE


def write_validation_page(validation: Path) -> Path:
    """Render every result in ``validation`` (the folder ``CatalogLayout.validation``) into
    :func:`page_path` and return that path. A file that is not a result is left out and named
    on the page."""
    targets, skipped = [], []
    for path in sorted(validation.glob("*.json")):
        if path.name.startswith("."):  # a result being written
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            skipped.append(path.name)
            continue
        if not isinstance(record, dict) or "target" not in record:
            skipped.append(path.name)
            continue
        targets.append(_target(record, path.name))
    targets.sort(key=lambda t: (t["target"] != "items", t["target"]))
    out = page_path(validation)
    page = render_page("validation.html.j2", title=f"Validation: {validation.parent.name}",
                       catalog=str(validation.parent), targets=targets, skipped=skipped,
                       data_docs="gx/uncommitted/data_docs/local_site/index.html")
    with atomic_file(out) as tmp:
        tmp.write_text(page)
    return out


def _target(record: dict[str, Any], name: str) -> dict[str, Any]:
    """One target's summary and its rows: each great-expectations result, then any failure
    recorded outside them, then the count of other checks that were met."""
    failures = list(record.get("failures") or [])
    met = int(record.get("expectations") or 0) - len(failures)  # as the summary line counts
    checks, suites, times = [], [], []
    for run in record.get("results") or []:
        suites.append(run.get("suite_name") or "")
        times.append((run.get("meta") or {}).get("run_id", {}).get("run_time"))
        for result in run.get("results") or []:
            checks.append(_check(result, run.get("suite_name") or "", failures))
    for failure in failures:  # not one of great-expectations' (the file against its manifest)
        checks.append({"suite": "", "expectation": failure.get("expectation", "?"),
                       "column": failure.get("column") or "", "arguments": "",
                       "success": False,
                       "observed": _count(failure.get("unexpected"), record.get("rows")),
                       "examples": [_row(e) for e in failure.get("examples") or []]})
    expectations = int(record.get("expectations") or len(checks))
    if expectations > len(checks):
        checks.append({"suite": "", "expectation": OUTSIDE_GX, "column": "",
                       "arguments": f"{expectations - len(checks)} more", "success": True,
                       "observed": "", "examples": []})
    return {"target": str(record["target"]), "id": _anchor(str(record["target"])),
            "success": bool(record.get("success")), "rows": _number(record.get("rows")),
            "expectations": expectations, "met": max(met, 0), "file": name,
            "validated": _when(next((t for t in times if t), None)),
            "suite": suites[0] if suites else "", "checks": checks}


def _check(result: dict[str, Any], suite: str, failures: list[dict[str, Any]]) -> dict[str, Any]:
    config = result.get("expectation_config") or {}
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k != "batch_id"}
    column = kwargs.pop("column", None)
    details = result.get("result") or {}
    kind = config.get("type", "?")
    success = bool(result.get("success"))
    examples: list[str] = []
    # the offending rows curation.validate recorded for this failure, taken so that a second
    # failure of the same kind on the same column gets its own
    match = next((f for f in failures if f.get("expectation") == kind
                  and f.get("column") == column), None)
    if match is not None:
        failures.remove(match)
        examples = [_row(e) for e in match.get("examples") or []]
    if not success and not examples:
        examples = [_value(v) for v in (details.get("partial_unexpected_list") or [])[:EXAMPLES]]
    return {"suite": suite, "expectation": kind, "column": column or "",
            "arguments": ", ".join(f"{k}={_value(v)}" for k, v in sorted(kwargs.items())),
            "success": success,
            "observed": _observed(details), "examples": examples}


def _observed(details: dict[str, Any]) -> str:
    """What great-expectations saw: the unexpected (and missing) rows of a row-wise
    expectation, or the value of one that looks at the column as a whole."""
    if "observed_value" in details:
        return _value(details["observed_value"])
    shown = _count(details.get("unexpected_count"), details.get("element_count"),
                   details.get("unexpected_percent"))
    if details.get("missing_count"):
        shown += f", {_number(details['missing_count'])} missing"
    return shown


def _count(count: Any, rows: Any, percent: Any = None) -> str:
    """``count`` unexpected of ``rows``, with the share when there are any."""
    if count is None:
        return ""
    if percent is None and isinstance(rows, int) and rows:
        percent = 100 * count / rows
    shown = f"{_number(count)} of {_number(rows)}" if isinstance(rows, int) else _number(count)
    return shown + " unexpected" + (f" ({percent:.3g}%)" if count and percent is not None
                                    else "")


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "" if value is None else str(value)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "{" + ", ".join(_value(v) for v in value) + "}"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def _row(example: Any) -> str:
    if isinstance(example, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in example.items())
    return _value(example)


def _when(stamp: Any) -> str:
    try:
        return datetime.fromisoformat(str(stamp)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return "" if stamp is None else str(stamp)


def _anchor(target: str) -> str:
    return "target-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in target)
