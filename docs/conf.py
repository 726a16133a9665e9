"""Sphinx configuration of the physgen documentation.

Why Sphinx with the PyData theme: physgen's users already read xarray, SciPy, NumPy and
PyTorch documentation, which are Sphinx sites (the first three on this theme). Sphinx
renders the ``.. math::`` blocks of the docstrings as they are written, autodoc/autosummary
build the API reference from those docstrings (so every module appears without editing a
page), and sphinx-gallery runs example scripts and renders their figures, as scikit-learn's
gallery does. The narrative pages are MyST Markdown, so their ``python`` blocks are checked
by the same test that runs the README's.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors).
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The checkout first, so the pages document the code beside them even without an install.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
# Headless figures and small CPU thread pools while the gallery executes.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import physgen  # noqa: E402

# Importing physgen.__main__ runs the command line (on sphinx-build's arguments); the
# reference has no page for it, and a stand-in keeps autosummary's module scan from running it.
sys.modules.setdefault("physgen.__main__", types.ModuleType("physgen.__main__"))


def _study_pages() -> None:
    """One page per study, ``studies/study-<name>.md``, including the study's own README.

    Written on every build, so a new study in ``studies/`` appears without editing the docs.
    """
    folder = DOCS / "studies"
    for old in folder.glob("study-*.md"):
        old.unlink()
    for readme in sorted((ROOT / "studies").glob("*/README.md")):
        name = readme.parent.name
        include = f"../../studies/{name}/README.md"
        text = f"```{{include}} {include}\n:relative-images:\n```\n"
        (folder / f"study-{name}.md").write_text(text)


_study_pages()

project = "physgen"
author = "the physgen developers"
copyright = "physgen developers"
release = physgen.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "cli_help",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md", "auto_examples/*.ipynb", "auto_examples/*.py"]

# MyST: $…$ math and ::: fences in the Markdown pages; headings get anchors for links.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# API reference: one page per module, generated from the docstrings on every build.
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
# The docstrings are Google style (Args:, Returns:, Example:, References:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# The gallery: scripts in examples/gallery/. Files named plot_*.py run during the build
# and their figures are rendered; the others are shown with their code only (they train
# for a few minutes on a CPU, too long for every build).
sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples" / "gallery")],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"physgen {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
