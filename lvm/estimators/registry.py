"""The estimator registry: ``register_estimator``, ``create_estimator``, ``list_estimators``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lvm.registry import Registry, Spec

__all__ = ["ESTIMATORS", "create_estimator", "list_estimators", "register_estimator"]

#: log p(x) estimators, built in and from the entry-point group ``lvm.estimators``.
ESTIMATORS: Registry[type] = Registry("estimator", "lvm.estimators")


def register_estimator(name: str | None = None, *, override: bool = False) -> Callable:
    """Class decorator registering a log p(x) estimator under ``name``."""
    return ESTIMATORS.register(name, override=override)


def create_estimator(spec: Spec, **kwargs: Any) -> Any:
    """Build an estimator from a name or ``{"name": ..., **kwargs}``."""
    return ESTIMATORS.create(spec, **kwargs)


def list_estimators() -> list[str]:
    """Names of all log p(x) estimators."""
    return ESTIMATORS.names()
