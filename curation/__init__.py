"""Curate: curation of the Amazon Reviews 2023 corpus (ingest, clean, slice)."""

__version__ = "0.1.0"
