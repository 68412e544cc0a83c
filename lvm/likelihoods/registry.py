"""The likelihood registry: ``register_likelihood``, ``create_likelihood``, ``list_likelihoods``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lvm.registry import Registry, Spec

if TYPE_CHECKING:
    from lvm.likelihoods.base import Likelihood

__all__ = ["LIKELIHOODS", "create_likelihood", "list_likelihoods", "register_likelihood"]

#: Built-in likelihoods and plugins from the entry-point group ``lvm.likelihoods``.
LIKELIHOODS: Registry[type[Likelihood]] = Registry("likelihood", "lvm.likelihoods")


def register_likelihood(name: str | None = None, *, override: bool = False) -> Callable:
    """Class decorator registering a :class:`~lvm.likelihoods.base.Likelihood` under ``name``."""
    return LIKELIHOODS.register(name, override=override)


def create_likelihood(spec: Spec, event_shape: Sequence[int] | int, **kwargs: Any) -> Likelihood:
    """Build likelihood ``spec`` (a name or ``{"name": ..., **kwargs}``) for data of ``event_shape``.

    Raises:
        UnknownNameError: for an unknown name, listing the known ones.
    """
    return LIKELIHOODS.create(spec, event_shape=event_shape, **kwargs)


def list_likelihoods() -> list[str]:
    """Names of all likelihoods, built-in and installed plugins."""
    return LIKELIHOODS.names()
