"""The Jinja2 templates shared by the evaluation report and the web page.

Both extend ``base.html`` (in this package's ``templates`` folder) and use the same
style sheet, ``style.css``, embedded in the report (a self-contained file) and
served to the page.
"""

from __future__ import annotations

from functools import cache

import jinja2

__all__ = ["environment"]


@cache
def environment(*packages: str) -> jinja2.Environment:
    """A Jinja2 environment that finds templates in each of ``packages``' ``templates``
    folder first, then in :mod:`salmap.report`'s; HTML is escaped automatically."""
    loaders = [jinja2.PackageLoader(package, "templates") for package in packages]
    loaders.append(jinja2.PackageLoader("salmap.report", "templates"))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
