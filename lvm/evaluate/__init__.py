"""Evaluating a trained model: restore it, run estimators and BDMC over data, report the rows.

``restore`` (checkpoint -> model and its data module), ``runner`` (estimators x K over a data set,
and the BDMC sandwich, in the shared ``loop``), ``rows`` and ``report`` (results, tables, files,
plots) and ``commands`` (``lvm compare``, ``lvm bdmc``).
"""

from __future__ import annotations

from typing import Any

from lvm.evaluate.rows import BoundsRow, ComparisonRow, Datapoints, SandwichRow
from lvm.evaluate.runner import compare_estimators, run_bdmc

__all__ = [
    "BoundsRow",
    "ComparisonRow",
    "Datapoints",
    "SandwichRow",
    "compare_estimators",
    "load_datamodule",
    "load_vae",
    "run_bdmc",
]


def __getattr__(name: str) -> Any:
    """``load_vae`` and ``load_datamodule`` on first use: they import Lightning (PEP 562)."""
    if name in ("load_vae", "load_datamodule"):
        from lvm.evaluate import restore

        return getattr(restore, name)
    raise AttributeError(f"module 'lvm.evaluate' has no attribute {name!r}")
