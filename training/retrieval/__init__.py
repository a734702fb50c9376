"""Text-to-image retrieval over a catalog, from the frozen-encoder embedding cache.

- ``align``: a symmetric InfoNCE projection of the cached image and text features into one
  space, trained on a slice's train split (``curate align train``); the encoders never run
  again for it;
- ``index``: the aligned image vectors of a slice, searched exactly (NumPy) or by an HNSW
  graph (faiss), built once and brought up to date when the slice's items change;
- ``search``: one-stage (the whole text) and two-stage search (entities, then a re-ranking by
  a summary and the whole text), after Text2Pic Swift (``curate search``).
"""
