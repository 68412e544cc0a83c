"""Sphinx configuration of lvm's documentation site (built offline: vendored MathJax and inventories).

Build from the repository root with ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS / "tutorials"))  # the tutorials' data helper, _digits.py
os.environ.setdefault("WANDB_MODE", "disabled")  # tutorials never reach the network
os.environ.setdefault("PYTHONWARNINGS", "ignore")  # tutorials' subprocesses: no library chatter in the pages
# One thread for the tutorials (run in this process) and their subprocesses: on a shared 2-core
# AMD EPYC under load, the quickstart took 12.6 s with one thread and 104 s with torch's default
# two, whose OpenMP threads wait on each other when the cores are busy. Same results either way.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch  # noqa: E402, F401  (sets its loggers' level on import; quieted below)
import torch  # noqa: E402

import lvm  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
# Library deprecation notices are not the tutorials' output (as in pytest's filterwarnings).
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"lightning\..*")
# torch's FutureWarning on Lightning's use of its pytree LeafSpec, raised from Lightning's code
# (lvm's own LVMDeprecationWarning, also a FutureWarning, is not attributed to Lightning: shown).
warnings.filterwarnings("ignore", category=FutureWarning, module=r"lightning\..*")
# Lightning's INFO lines ("GPU available: False", tips) would fill every tutorial's output.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)

project = "lvm"
author = "lvm developers"
copyright = "lvm developers, MIT licence"  # noqa: A001 - Sphinx's name
release = version = lvm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "lvm_docs",  # docs/_ext/lvm_docs.py: API pages, ``lvm ... --help`` rendered, references by object
]

#: The public modules of the API reference, one page each, in this order. Adding a module is one
#: line here; an object listed in several modules' ``__all__`` is documented on the first page
#: that lists it, and ``lvm`` (the top-level namespace) gets what no other page documents.
lvm_api_modules = [
    "lvm",
    "lvm.likelihoods",
    "lvm.encoders",
    "lvm.estimators",
    "lvm.objectives",
    "lvm.data",
    "lvm.semi_supervised",
    "lvm.registry",
    "lvm.evaluate",
    "lvm.testing",
    "lvm.diagnostics",
    "lvm.optim",
    "lvm.deprecation",
]

# tutorials/ is sphinx-gallery's source (its README.rst becomes auto_tutorials/index.rst)
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "tutorials",
    "auto_tutorials/*.ipynb",
    "auto_tutorials/*.py",
]
templates_path: list[str] = []
html_static_path = ["_static"]

# -- HTML: furo ------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"lvm {release}"
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}

# -- maths: MathJax 3 from docs/_static, so pages render without network -------------------
mathjax_path = "mathjax/tex-svg-full.js"

# -- autodoc + napoleon (Google style) --------------------------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # Lightning's and torch's own docstrings belong to their sites
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, so dataclass fields are not described twice
napoleon_use_rtype = False

# A broken reference fails the build (-W): every type in a signature must resolve.
nitpicky = True
#: External names without an inventory entry (typing internals, numpy's array alias).
nitpick_ignore = [
    ("py:class", "T"),
    ("py:class", "lvm.registry.T"),
    ("py:obj", "lvm.registry.T"),
    ("py:class", "np.ndarray"),
    ("py:class", "numpy.ndarray"),
    ("py:class", "argparse.ArgumentParser"),
]
nitpick_ignore_regex = [
    ("py:class", r"collections\.abc\..*"),
    ("py:class", r"typing\..*"),
    ("py:class", r"(builtins\.)?(ClassVar|Literal|Any|Callable|Iterator|Sequence|Mapping)"),
]

# -- intersphinx: inventories vendored in docs/inventories (see its README) --------------------
intersphinx_mapping = {
    "torch": ("https://docs.pytorch.org/docs/stable/", str(DOCS / "inventories" / "torch.inv")),
    "lightning": ("https://lightning.ai/docs/pytorch/stable/", str(DOCS / "inventories" / "lightning.inv")),
    "torchmetrics": (
        "https://lightning.ai/docs/torchmetrics/stable/",
        str(DOCS / "inventories" / "torchmetrics.inv"),
    ),
    "python": ("https://docs.python.org/3/", str(DOCS / "inventories" / "python.inv")),
}

# -- sphinx-gallery: the tutorials, executed at every build -----------------------------------
sphinx_gallery_conf = {
    "examples_dirs": ["tutorials"],
    "gallery_dirs": ["auto_tutorials"],
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(^|[/\\])_\w*\.py$",  # helpers such as _digits.py are not tutorials
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
    "show_memory": False,
    "min_reported_time": 0,
}
