"""``curate recsys eval``: recommenders trained and ranked on an exported benchmark.

- ``config``: the model names and defaults (no torch, for the command line);
- ``data``: a benchmark folder (``curate recsys export`` or ``curation.synth.tastes``) as
  integer-indexed interaction matrices, with the items' text and image paths;
- ``metrics``: full-ranking Recall@K and NDCG@K per user;
- ``models``: most popular, ItemKNN, BPR matrix factorisation, and the content-aware models
  (frozen content, two-tower, VBPR) on the embedding cache's item features;
- ``evaluate``: seeds x models, intervals over users and seeds, paired comparisons against
  the best ID-only model, the report and the Parquet results.
"""
