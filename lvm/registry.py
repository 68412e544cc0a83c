"""Name-keyed registries (timm style) with lazily loaded entry-point plugins (fsspec style) and renamed names."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from lvm.deprecation import LVMDeprecationWarning

T = TypeVar("T")

__all__ = [
    "PluginError",
    "Registry",
    "Spec",
    "UnknownNameError",
    "require_plugins",
    "spec_label",
    "spec_name",
]

#: A part named in a config: a registry name, or ``{"name": ..., **kwargs}`` with the name's arguments.
Spec = str | dict[str, Any]


def spec_name(spec: Spec) -> str:
    """The registry name a spec refers to."""
    return spec if isinstance(spec, str) else str(spec.get("name"))


def spec_label(spec: Spec) -> str:
    """``"importance"`` for a name, ``"importance(proposal=prior)"`` for a spec with options (K left out)."""
    if isinstance(spec, str):
        return spec
    options = {k: v for k, v in spec.items() if k not in ("name", "num_samples")}
    inner = ",".join(f"{k}={v}" for k, v in options.items())
    return f"{spec.get('name')}({inner})" if inner else str(spec.get("name"))


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that is neither registered nor offered by an installed plugin.

    Attributes:
        name: The name that was looked up.
    """

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PluginError(ImportError):
    """Raised when a plugin's entry point cannot be loaded; names the plugin and its distribution."""


@dataclass(frozen=True)
class _Lazy:
    """An entry point not imported yet: ``value`` is ``"module:attr"``."""

    name: str
    value: str
    distribution: str

    def load(self, kind: str) -> Any:
        module_name, _, attr = self.value.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        except Exception as err:  # noqa: BLE001 - a broken plugin can fail in any way
            raise PluginError(
                f"{kind} plugin {self.name!r} (entry point {self.value!r} from distribution "
                f"{self.distribution!r}) failed to load: {type(err).__name__}: {err}. "
                f"Reinstall or fix {self.distribution!r}, or uninstall it."
            ) from err
        return obj


class Registry(Generic[T]):
    """A registry of factories (usually classes) keyed by name.

    Built-ins register with the ``register`` decorator; third-party packages declare an entry
    point in the group ``entry_point_group`` (``name = "pkg.module:Class"``). Entry points are
    read when a name is first looked up and imported only when that name is used, so a broken
    plugin never breaks ``import lvm``. A renamed part keeps its old name as a deprecated alias
    (:meth:`register_deprecations`), so configs and checkpoints that store it still load.

    Args:
        kind: What the registry holds, singular ("likelihood"); used in messages.
        entry_point_group: The entry-point group plugins register under.
    """

    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, _Lazy] = {}
        self._deprecated: dict[str, str] = {}
        self._scanned = False

    # -- registration ------------------------------------------------------------------
    def register(self, name: str | None = None, *, override: bool = False) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: ``obj.name`` or its ``__name__``).

        Raises:
            ValueError: if the name is taken and ``override`` is False.
        """

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "name", None) or obj.__name__  # type: ignore[attr-defined]
            self.add(key, obj, override=override)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, override: bool = False) -> None:
        """Register ``obj`` under ``name``; see :meth:`register`."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string; got {name!r}")
        if name in self._entries and not override:
            raise ValueError(
                f"{self.kind} {name!r} is already registered (by {self._entries[name]!r}); "
                f"pick another name or pass override=True"
            )
        self._entries[name] = obj
        self._lazy.pop(name, None)

    def remove(self, name: str) -> None:
        """Forget ``name`` (for tests and interactive use)."""
        self._entries.pop(name, None)
        self._lazy.pop(name, None)
        self._deprecated.pop(name, None)

    def register_deprecations(self, renamed: Mapping[str, str]) -> None:
        """Keep old names of renamed parts working, as timm's ``register_model_deprecations`` does.

        Each ``old`` in ``renamed`` resolves to its ``new`` name, with one
        :class:`~lvm.deprecation.LVMDeprecationWarning` naming the new name per lookup. Old names
        are not listed by :meth:`names` but are accepted wherever a name is (configs, specs,
        checkpoints' hyperparameters).

        Raises:
            ValueError: if an old name is registered as a part itself, or a name is not a non-empty string.
        """
        for old, new in renamed.items():
            if not (isinstance(old, str) and old and isinstance(new, str) and new):
                raise ValueError(f"{self.kind} renames must map names to names; got {old!r} -> {new!r}")
            if old in self._entries:
                raise ValueError(
                    f"{self.kind} {old!r} is registered by {self._entries[old]!r}; it cannot be an alias"
                )
            self._deprecated[old] = new

    def deprecations(self) -> dict[str, str]:
        """The deprecated old names and the names they resolve to."""
        return dict(self._deprecated)

    def _current(self, name: str, warn: bool) -> str:
        """``name``, or the new name of a renamed part (with a deprecation warning if ``warn``)."""
        new = self._deprecated.get(name) if name not in self._entries else None
        if new is None:
            return name
        if warn:
            warnings.warn(
                f"{self.kind} {name!r} was renamed {new!r}; the old name still loads for now but is "
                f"deprecated: write {new!r} in configs",
                LVMDeprecationWarning,
                stacklevel=4,
            )
        return new

    # -- plugins -----------------------------------------------------------------------
    def _entry_points(self) -> list[EntryPoint]:
        return list(entry_points(group=self.entry_point_group))

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in self._entry_points():
            if ep.name in self._entries:
                continue  # built-ins win; a plugin cannot shadow them silently
            dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown distribution"
            self._lazy[ep.name] = _Lazy(ep.name, ep.value, dist)

    def rescan(self) -> None:
        """Read the entry points again (after installing a plugin in a running process)."""
        self._scanned = False
        self._lazy.clear()
        self._scan()

    def plugin_distribution(self, name: str) -> str | None:
        """The distribution that provides plugin ``name``, or None for a built-in."""
        self._scan()
        name = self._current(name, warn=False)
        lazy = self._lazy.get(name)
        if lazy is not None:
            return lazy.distribution
        obj = self._entries.get(name)
        return getattr(obj, "__lvm_distribution__", None)

    # -- lookup ------------------------------------------------------------------------
    def names(self) -> list[str]:
        """All known names, built-in and plugin, sorted."""
        self._scan()
        return sorted({*self._entries, *self._lazy})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.names() or name in self._deprecated)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """The factory registered as ``name``, importing its plugin if needed.

        Raises:
            UnknownNameError: listing the known names and the closest match.
            PluginError: if the plugin providing ``name`` fails to import.
        """
        if name in self._entries:
            return self._entries[name]
        name = self._current(name, warn=True)
        if name in self._entries:
            return self._entries[name]
        self._scan()
        lazy = self._lazy.get(name)
        if lazy is not None:
            obj = lazy.load(self.kind)
            try:
                obj.__lvm_distribution__ = lazy.distribution
            except (AttributeError, TypeError):
                pass
            self._entries[name] = obj
            del self._lazy[name]
            return obj
        known = self.names()
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known) or 'none'}. "
            f"A plugin {self.kind} must be installed and declare an entry point in group "
            f"{self.entry_point_group!r}.",
            name,
        )

    def create(self, spec: Spec, /, **kwargs: Any) -> Any:
        """Instantiate ``spec``: a name, or ``{"name": ..., **kwargs}`` (``kwargs`` here win).

        Raises:
            ValueError: for a dict without a ``"name"`` key or a spec of another type.
            UnknownNameError: for an unknown name, listing the known ones.
        """
        if isinstance(spec, dict):
            if "name" not in spec:
                raise ValueError(f"{self.kind} spec needs a 'name' key; got {spec!r}")
            kwargs = {**{k: v for k, v in spec.items() if k != "name"}, **kwargs}
            name = spec["name"]
        elif isinstance(spec, str):
            name = spec
        else:
            raise ValueError(f"{self.kind} spec must be a name or a dict with a 'name' key; got {spec!r}")
        factory: Any = self.get(name)
        return factory(**kwargs)

    def distributions(self, spec: Spec) -> dict[str, str]:
        """The plugin names ``spec`` uses, nested ``parts`` included, and the distributions providing them."""
        found: dict[str, str] = {}
        for part in (spec.get("parts") or []) if isinstance(spec, dict) else []:
            found.update(self.distributions(part))
        name = spec_name(spec)
        dist = self.plugin_distribution(name) if name in self else None
        return {**found, name: dist} if dist else found

    def describe(self) -> str:
        """One line per name, plugins marked with their distribution (for ``lvm --help``)."""
        self._scan()
        lines = []
        for n in self.names():
            dist = (
                self._lazy[n].distribution
                if n in self._lazy
                else getattr(self._entries.get(n), "__lvm_distribution__", None)
            )
            lines.append(f"{n} (plugin: {dist})" if dist else n)
        return ", ".join(lines)


@contextlib.contextmanager
def require_plugins(plugins: Mapping[str, str]) -> Iterator[None]:
    """Turn an :class:`UnknownNameError` for a name in ``plugins`` into an install hint.

    ``plugins`` maps part names to the distributions that provided them when a model was saved
    (what :meth:`Registry.distributions` returned), so loading it elsewhere says what to install.
    """
    try:
        yield
    except UnknownNameError as err:
        dist = plugins.get(err.name) if err.name is not None else None
        if not dist:
            raise
        raise UnknownNameError(
            f"{err} This model was saved with plugin {err.name!r} from distribution {dist!r}; "
            f"install it (pip install {dist}).",
            err.name,
        ) from err
