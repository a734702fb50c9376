"""The ``curate`` command: the face of Curate, one module per command group.

Layers, from the top: ``curate`` (this package) -> ``audit`` -> ``training`` -> ``weighting``
-> ``curation``. A module imports only from its own layer or below (``lint-imports`` checks).
"""
