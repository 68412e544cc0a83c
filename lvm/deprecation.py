"""Deprecations: a public name that goes warns with :class:`LVMDeprecationWarning` for one minor version first."""

from __future__ import annotations

import warnings

__all__ = ["LVMDeprecationWarning", "warn_deprecated"]


class LVMDeprecationWarning(FutureWarning):
    """A public name or argument of lvm that is going away; the message names what replaces it.

    A ``FutureWarning`` (shown by default, unlike ``DeprecationWarning``), so users of a script
    or of ``lvm fit`` see it too. Turn it into an error with
    ``warnings.simplefilter("error", LVMDeprecationWarning)`` or ``python -W error::FutureWarning``.
    """


def warn_deprecated(old: str, new: str, since: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated since version ``since`` and goes in a later minor version; use ``new``."""
    warnings.warn(
        f"{old} is deprecated since lvm {since} and will be removed in a later minor version; use {new}",
        LVMDeprecationWarning,
        stacklevel=stacklevel,
    )
