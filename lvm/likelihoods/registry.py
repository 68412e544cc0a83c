"""The likelihood registry: ``register_likelihood``, ``create_likelihood``, ``list_likelihoods``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lvm.registry import Registry

if TYPE_CHECKING:
    from lvm.likelihoods.base import Likelihood

__all__ = ["LIKELIHOODS", "create_likelihood", "list_likelihoods", "register_likelihood"]

#: Built-in likelihoods and plugins from the entry-point group ``lvm.likelihoods``.
LIKELIHOODS: Registry[type[Likelihood]] = Registry("likelihood", "lvm.likelihoods")


def register_likelihood(name: str | None = None, *, override: bool = False) -> Callable:
    """Class decorator registering a :class:`~lvm.likelihoods.base.Likelihood` under ``name``."""
    return LIKELIHOODS.register(name, override=override)


def create_likelihood(
    name: str | dict[str, Any], event_shape: Sequence[int] | int, **kwargs: Any
) -> Likelihood:
    """Build likelihood ``name`` for data of shape ``event_shape``.

    ``name`` may also be a dict ``{"name": ..., **kwargs}``, the form configs use.

    Raises:
        UnknownNameError: for an unknown name, listing the known ones.
    """
    if isinstance(name, dict):
        kwargs = {**{k: v for k, v in name.items() if k != "name"}, **kwargs}
        if "name" not in name:
            raise ValueError(f"likelihood spec needs a 'name' key; got {name!r}")
        name = name["name"]
    return LIKELIHOODS.create(name, event_shape=event_shape, **kwargs)


def list_likelihoods() -> list[str]:
    """Names of all likelihoods, built-in and installed plugins."""
    return LIKELIHOODS.names()
