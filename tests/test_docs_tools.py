"""The docs' own tools: the built site's link check, the offline inventories, the docstring escaping."""

from __future__ import annotations

import importlib.util
import sys
import zlib
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load(name: str, path: Path):  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check_site = _load("check_site", DOCS / "check_site.py")
make_inventories = _load("make_inventories", DOCS / "inventories" / "make_inventories.py")


def test_broken_links_finds_missing_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#here">ok</a> <a href="sub/page.html#gone">bad anchor</a>'
        '<a href="missing.html">bad file</a> <a href="https://example.org/x.html">external</a>'
        '<a href="#top" id="top">self</a> <img src="_static/logo.png"> <a href="mailto:a@b">m</a>'
    )
    (tmp_path / "sub" / "page.html").write_text('<h1 id="here">x</h1><a href="../index.html#top">back</a>')
    problems = check_site.broken_links(tmp_path)
    assert sorted(problems) == [
        "index.html: _static/logo.png (no file _static/logo.png)",
        "index.html: missing.html (no file missing.html)",
        "index.html: sub/page.html#gone (no anchor #gone)",
    ]


def test_inventory_format_round_trips() -> None:
    entries = [
        ("torch.Tensor", "py:class", "tensors.html#$"),
        ("torch.load", "py:function", "generated/$.html#$"),
    ]
    blob = make_inventories.inventory("PyTorch", "2", entries)
    lines = blob.split(b"\n", 4)
    header, body = lines[:4], lines[4]
    assert [line.decode() for line in header] == [
        "# Sphinx inventory version 2",
        "# Project: PyTorch",
        "# Version: 2",
        "# The remainder of this file is compressed using zlib.",
    ]
    assert zlib.decompress(body).decode().splitlines() == [
        "torch.Tensor py:class 1 tensors.html#torch.Tensor -",
        "torch.load py:function 1 generated/torch.load.html#torch.load -",
    ]


def test_vendored_inventories_are_current() -> None:
    """docs/inventories/*.inv are what make_inventories.py writes from its table (rerun it after an edit)."""
    for key, (project, version, entries) in make_inventories.TABLES.items():
        written = (DOCS / "inventories" / f"{key}.inv").read_bytes()
        assert written == make_inventories.inventory(project, version, entries), key


def test_docstring_maths_is_escaped_outside_literals() -> None:
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(DOCS / "_ext"))
    import lvm_docs

    assert lvm_docs._escape("(B, *event_shape)") == r"(B, \*event_shape)"
    assert lvm_docs._escape("**kwargs and |log p_n - log p_m|") == r"\*\*kwargs and \|log p_n - log p_m\|"
    kept = "``(*batch, *event)`` and *emphasis* and :class:`~lvm.VAE` and **strong**"
    assert lvm_docs._escape(kept) == kept


def test_methods_a_dependency_put_on_an_lvm_class_are_skipped() -> None:
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(DOCS / "_ext"))
    import lvm_docs
    import torch

    from lvm.likelihoods import Likelihood
    from lvm.optim import Adam

    Adam([torch.nn.Parameter(torch.zeros(2))])  # torch sets its wrapped ``step`` on the subclass
    assert "step" in vars(Adam)
    assert lvm_docs.skip_foreign_member(None, "class", "step", Adam.step, False, {}) is True
    assert lvm_docs.skip_foreign_member(None, "class", "check", Likelihood.check, False, {}) is None
    assert lvm_docs.skip_foreign_member(None, "module", "Adam", Adam, False, {}) is None
