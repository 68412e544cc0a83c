"""The likelihood registry: ``register_likelihood``, ``create_likelihood``, ``list_likelihoods``."""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lvm.deprecation import LVMDeprecationWarning
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
        TypeError: for an option the likelihood does not take, naming the likelihood, the option
            and its value, before anything is built.
    """
    if isinstance(spec, (str, dict)) and (not isinstance(spec, dict) or "name" in spec):
        name = spec if isinstance(spec, str) else spec["name"]
        options = {**({} if isinstance(spec, str) else spec), **kwargs}
        options.pop("name", None)
        with warnings.catch_warnings():  # a renamed name warns once, in create() below
            warnings.simplefilter("ignore", LVMDeprecationWarning)
            cls = LIKELIHOODS.get(name)
        _check_options(str(name), cls, options)
    return LIKELIHOODS.create(spec, event_shape=event_shape, **kwargs)


def _check_options(name: str, cls: Any, options: dict[str, Any]) -> None:
    """Raise TypeError for a keyword ``cls`` does not take (unless it takes ``**kwargs``)."""
    try:
        accepted = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to read: let the call decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return
    known = [
        k
        for k, p in accepted.items()
        if k != "event_shape" and p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    for option, value in options.items():
        if option not in accepted:
            close = difflib.get_close_matches(option, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"{name} likelihood: unknown option {option}={value!r}.{hint} "
                f"Its options: {', '.join(known) or 'none'}"
            )


def list_likelihoods() -> list[str]:
    """Names of all likelihoods, built-in and installed plugins."""
    return LIKELIHOODS.names()
