"""Sphinx configuration of the raftredis documentation.

Build with ``make docs`` (HTML in ``docs/_build/html``, warnings are errors).
The pages are Markdown (MyST); the API reference is autodoc. The local
extension ``docs/_ext/state_diagram.py`` regenerates ``docs/_generated/`` (the
state diagram of the election, and the table of timings) on every build.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))

import raftredis  # noqa: E402  (needs the path above when raftredis is not installed)

project = "raftredis"
author = "the raftredis authors"
copyright = "raftredis authors, MIT license"
release = raftredis.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "raftredis_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# -- MyST ------------------------------------------------------------------

myst_enable_extensions = ["deflist", "colon_fence"]
# GitHub-style anchors for headings, so links such as concepts.md#threads work
# both on GitHub and here.
myst_heading_anchors = 4

# -- autodoc ---------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True}

# -- nitpicky --------------------------------------------------------------
# Every cross-reference must resolve (make docs runs with -n). There is no
# network here, so no intersphinx: names of the standard library and of
# redis-py and blinker that appear in signatures are listed instead.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(threading|typing|collections\.abc|enum|random|subprocess|pathlib)\..*"),
    (r"py:.*", r"(redis|blinker)(\..*)?"),
    (r"py:.*", r"(Any|Callable|Iterator|Mapping|Sequence|Path|NamedSignal|TracebackType)"),
    (r"py:.*", r"(int|float|str|bool|bytes|object|dict|list|tuple|None|type)"),
    (r"py:exc", r"(ValueError|RuntimeError|TimeoutError|TypeError|KeyError|AssertionError)"),
    (r"py:exc", r"(Exception|BaseException|OSError)"),
    # Type variables in signatures (``on(event, receiver: F)``, ``wait_until() -> T``):
    # autodoc links them as classes, and a TypeVar has no page to link to.
    (r"py:class", r"raftredis\.[\w.]+\.(F|T)"),
    # MessageBatch(outbox: Callable[[], Outbox]): users never build a MessageBatch
    # themselves (Candidate.batch() does), so its internal argument type has no page.
    (r"py:class", r"raftredis\.outbox\.Outbox"),
    # Config's fields and Effect (in the architecture page's words) are internal
    # types: users read a Config, they never build its parts themselves.
    (r"py:class", r"raftredis\.(connection\.ConnectionSpec|signing\.Keyring|keys\.KeySpace)"),
    (r"py:class", r"raftredis\.election\.commands\.Effect"),
]

# -- HTML ------------------------------------------------------------------

html_theme = "furo"
html_title = f"raftredis {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
