"""Sphinx configuration: MyST markdown pages, an executed sphinx-gallery of examples, and an API
reference with one page per public name (autosummary), themed with furo.

Build (warnings are errors, examples executed): ``bash .ci/docs``, or
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.  Add
``-D plot_gallery=0`` to build without running the examples (for editing prose only, not for CI).
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))

import semisep  # noqa: E402

project = "semisep"
author = "the semisep authors"
copyright = "the semisep authors"
release = semisep.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "_templates"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autosummary_generate = True
autosummary_imported_members = False
napoleon_numpy_docstring = True
napoleon_google_docstring = False

html_theme = "furo"
html_title = f"semisep {release}"
html_theme_options = {"navigation_with_keys": True}

# ------------------------------------------------------------------------------------------------
# the gallery: every script in ../examples runs at build time; its figures go into the HTML.
# Backreferences: each API page lists the examples that use that name (``.. minigallery::`` in
# the autosummary templates, _templates/autosummary/).
# ------------------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "doc_module": ("semisep",),
    "backreferences_dir": "gen_modules/backreferences",
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "min_reported_time": 0,
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "plot_gallery": "True",
}


_UNDERLINE = re.compile(r"^(-{3,}|={3,}|~{3,})$")


def _indent(line):
    return len(line) - len(line.lstrip())


def _plain_text_docstrings(app, what, name, obj, options, lines):
    """Let docstrings written as plain text render as reStructuredText.

    * Underlined headings beyond numpydoc's section names (e.g. "Kernel contract" in
      semisep.backends): inside an autodoc directive a section title is an error, so every
      heading napoleon left alone becomes a ``.. rubric::``.
    * A list nested in a list item without a blank line before it (natural in plain text) gets
      the blank line reStructuredText requires.
    """
    i = 0
    while i + 1 < len(lines):
        title, under = lines[i].rstrip(), lines[i + 1].strip()
        if title.strip() and _UNDERLINE.match(under) and len(under) >= len(title.strip()):
            lines[i : i + 2] = [f".. rubric:: {title.strip()}", ""]
        i += 1
    i = 1
    while i < len(lines):
        line, prev = lines[i], lines[i - 1]
        item = line.lstrip().startswith(("- ", "* "))
        if item and prev.strip() and _indent(line) > _indent(prev):
            prev_item = prev.lstrip().startswith(("- ", "* "))
            # a continuation line of an item at the same depth is not a parent
            if not prev_item or _indent(line) > _indent(prev) + 1:
                lines.insert(i, "")
                i += 1
        i += 1


def setup(app):
    app.connect("autodoc-process-docstring", _plain_text_docstrings, priority=600)
