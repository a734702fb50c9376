"""Offline HTML pages: one jinja2 environment and the base template every page extends.

A page is one file that works without a network: its CSS, its script and its images are
inline (images as ``data:`` URIs). The base template (``curation/templates/base.html.j2``)
carries the shared style and a small script that makes every table sortable (click a header;
numbers sort as numbers, an interval cell ``0.249 [0.162, 0.336]`` by its first number, ``n/a``
and empty cells last) and marks, once the page has loaded, which images decoded
(``data-decoded`` on each ``img``, ``data-ready`` on ``body``). ``?sort=<header text>`` (and
``&order=desc``) in the page's URL clicks that header on load, so a browser test can drive it.

Templates are found in the named packages' ``templates/`` folders first, then here: an upper
layer hands in its own package name, this module never imports it.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jinja2 is imported when a page is rendered, not when the CLI starts
    import jinja2

TEMPLATES = "templates"


@cache
def environment(*packages: str) -> jinja2.Environment:
    """The jinja2 environment over ``packages``' templates and curation's own; everything it
    renders is HTML-escaped unless marked safe."""
    import jinja2

    loaders = [jinja2.PackageLoader(p, TEMPLATES) for p in (*packages, "curation")]
    return jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True)


def render_page(template: str, *, packages: tuple[str, ...] = (), **context: Any) -> str:
    """``template`` (a name under a ``templates/`` folder) rendered with ``context``."""
    return environment(*packages).get_template(template).render(**context)


def data_uri(path: Path, media_type: str = "image/png") -> str:
    """A file as a ``data:`` URI, for a page that must not refer to files beside it."""
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode()}"
