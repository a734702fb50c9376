"""The one exception type for mistakes a user can fix.

A ``UserError`` (a missing catalog, an unknown slice, a parameter out of range) reaches the
user as one line and exit status 2. Any other exception is a bug in Curate and keeps its
traceback. It subclasses ``ValueError`` because every such mistake is a bad value.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix; the message says what and how, in one line."""


class IntegrityError(UserError):
    """An input differs from what the catalog recorded when it was written."""
