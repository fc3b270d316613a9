"""Sphinx configuration of hil's documentation (MyST markdown pages).

Build (strict: any warning fails), from the repository root, with hil installed (``pip install -e ".[docs]"``:
the configuration reference is generated from the installed package and its plug-ins)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import hil  # noqa: E402  (the installed package the reference is generated from)

project = "hil"
author = "the hil authors"
copyright = "the hil authors"  # noqa: A001
release = hil.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "hil_docs",  # docs/_ext/hil_docs.py: the configuration reference, benchmark plots, optional autodoc
]

source_suffix = {".md": "markdown"}
root_doc = "index"
# docs/results/ holds raw benchmark output (JSON, markdown tables written by `hil bench`): linked, not pages
exclude_patterns = ["_build", "_ext", "results", "notes/*.py", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links to headings up to ###

autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "furo"
html_title = f"hil {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
