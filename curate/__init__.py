"""The ``curate`` command: the face of Curate, one module per command group; and the Python
entry, ``from curate import open_catalog`` (see ``curate.api``).

Layers, from the top: ``curate`` (this package) -> ``audit`` -> ``training`` -> ``weighting``
-> ``curation``. A module imports only from its own layer or below (``lint-imports`` checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curate.api import CatalogHandle, SliceHandle, open_catalog

__all__ = ["CatalogHandle", "SliceHandle", "open_catalog"]


def __getattr__(name: str) -> Any:
    """The API's names, imported when first asked for (``import curate`` stays light)."""
    if name in __all__:
        from curate import api

        return getattr(api, name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
