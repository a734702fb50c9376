"""Data-quality audits: label issues (cleanlab), duplicates and leakage, data maps.

Each audit writes ``CATALOG/audit/<audit>/<subject>/`` with a Parquet table, a short
``summary.md`` and a ``manifest.json``, and registers the table as a view in ``curate sql``
(``audit_<audit>__<subject>``). The label-quality and data-map tables feed the weighting
strategies ``label_quality`` and ``data_map``.
"""
