"""Sphinx configuration of the API reference (``make docs``).

The reference is built from the installed package's docstrings
(``pip install -e '.[test]'`` puts ``src/`` on the path), with the theme that
ships with Sphinx and no extension that reaches the network.

The public names are documented where users import them from, as
``nucleus_trio.X``; autodoc gives each class its home path
(``nucleus_trio.supervisor.Supervisor``) as a ``:canonical:`` alias, and
:func:`_resolve_home_path` does the same for functions. :func:`_check_exports`
fails the build when a name of ``nucleus_trio.__all__`` is not documented.
"""

from __future__ import annotations

from importlib.metadata import version as _version
from typing import Any

import nucleus_trio

project = "nucleus-trio"
author = "nucleus-trio developers"
copyright = "nucleus-trio developers"
release = _version("nucleus-trio")
version = release

extensions = ["sphinx.ext.autodoc"]

root_doc = "index"
html_theme = "alabaster"
html_static_path: list[str] = []

autodoc_member_order = "bysource"

# Standard-library and third-party types in signatures: without intersphinx
# (no network) they have no target. Never add nucleus_trio names here.
nitpick_ignore_regex = [
    ("py:class", r"(collections\.abc|contextlib|typing|os|posix|subprocess|types)\.\w+"),
    ("py:class", r"(trio|anyio|attrs|pytest)(\.\w+)+"),
]

#: Home path (``nucleus_trio.supervisor.open_supervisor``) of every exported
#: name, mapped to the public one (``nucleus_trio.open_supervisor``).
_PUBLIC: dict[str, str] = {}
for _name in nucleus_trio.__all__:
    _obj = getattr(nucleus_trio, _name)
    _PUBLIC[f"{_obj.__module__}.{_obj.__qualname__}"] = f"nucleus_trio.{_name}"


def _resolve_home_path(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference to an exported name by its home path (or to one of
    its members) as the same reference by its public path."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    for home, public in _PUBLIC.items():
        if target == home or target.startswith(home + "."):
            return env.get_domain("py").resolve_xref(
                env,
                node["refdoc"],
                app.builder,
                node["reftype"],
                public + target[len(home) :],
                node,
                contnode,
            )
    return None


def _check_exports(app: Any, env: Any) -> None:
    """Warn about each name of ``nucleus_trio.__all__`` the reference leaves out."""
    from sphinx.util import logging

    documented = env.get_domain("py").objects
    for name in nucleus_trio.__all__:
        if f"nucleus_trio.{name}" not in documented:
            logging.getLogger(__name__).warning(
                "nucleus_trio.%s is exported but not documented", name
            )


def setup(app: Any) -> None:
    app.connect("missing-reference", _resolve_home_path)
    app.connect("env-check-consistency", _check_exports)
