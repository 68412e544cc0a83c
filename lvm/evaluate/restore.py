"""A trained model back from its checkpoint, with the data module it was trained on."""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lvm.checkpoint import read_checkpoint
from lvm.evaluation import DATAMODULE_KEY, check_data_provenance, init_arguments

if TYPE_CHECKING:
    from lvm.registry import Registry
    from lvm.vae import VAE

__all__ = ["data_module_class", "load_datamodule", "load_vae"]


def load_vae(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, trust: bool = False
) -> tuple[VAE, dict[str, Any]]:
    """The ``VAE`` of a checkpoint on ``device`` and the checkpoint dict, read once.

    Args:
        path: The ``.ckpt`` file.
        device: Where the model goes.
        trust: Unpickle in full a file that ``torch.load(weights_only=True)`` refuses; only for
            files you made (:func:`~lvm.checkpoint.read_checkpoint`, ``--trust-checkpoint``).

    Raises:
        FileNotFoundError, IsADirectoryError, CorruptFileError, UnsafeFileError: as
            :func:`~lvm.checkpoint.read_checkpoint`.
    """
    from lvm.vae import VAE  # Lightning: imported on use

    ckpt = read_checkpoint(path, trust=trust)
    vae = VAE(**init_arguments(ckpt["hyper_parameters"]))
    vae.load_state_dict(ckpt["state_dict"])
    return vae.to(device), ckpt


def load_datamodule(
    ckpt: dict[str, Any],
    data_config: Path | None = None,
    data_class: str | None = None,
    *,
    source: str = "the checkpoint",
) -> tuple[Any, dict[str, Any]]:
    """The data module a checkpoint was trained with, and the spec it was built from.

    In order: ``data_config`` (a LightningCLI-style ``data:`` section); the record that ``lvm
    fit`` keeps in the checkpoint (:func:`~lvm.evaluation.record_datamodule`); ``data_class``
    with the data-module hyperparameters Lightning saves in the checkpoint (for checkpoints
    written before the record). The class is looked up in ``lvm.data.DATAMODULES`` before
    anything is imported (:func:`data_module_class`). A data module rebuilt from the record
    must read the files it was trained on: one whose size or content changed is refused
    (:func:`~lvm.evaluation.check_data_provenance`); ``data_config`` takes the files as they are.

    Args:
        ckpt: The checkpoint dict.
        data_config: A YAML file with a ``data:`` section (``class_path``, ``init_args``).
        data_class: A registered name or class path, for checkpoints without the record.
        source: The checkpoint, for messages (e.g. ``"checkpoint runs/x/best.ckpt"``).

    Returns:
        The data module (not set up) and ``{"class_path", "init_args"}`` (and the record's
        ``"files"``), for the report.

    Raises:
        ValueError: when none of these applies, the class is not registered, it cannot be
            built from the arguments, or a recorded data file has changed.
    """
    record = ckpt.get(DATAMODULE_KEY)
    if data_config is not None:
        spec, origin = _read_data_spec(data_config), f"data config {data_config}"
    elif record:
        spec, origin = record, source
    elif data_class is not None:
        init = dict(ckpt.get("datamodule_hyper_parameters") or {})
        spec, origin = {"class_path": data_class, "init_args": init}, "--data-class"
    else:
        raise ValueError(
            "the checkpoint does not record its data module (it was saved before lvm recorded it, or "
            "without a data module): pass --data-config PATH (a YAML with 'data: {class_path: "
            "lvm.data.MNISTDataModule, init_args: {...}}') or --data-class NAME to build NAME from the "
            f"data hyperparameters saved in the checkpoint ({ckpt.get('datamodule_hyper_parameters')!r})"
        )
    cls = data_module_class(str(spec["class_path"]), origin)
    init_args = init_arguments(spec.get("init_args") or {})  # also for records that kept LightningCLI's keys
    try:
        dm = cls(**init_args)
    except TypeError as err:
        raise ValueError(
            f"cannot build {cls.__name__} from {init_args!r}: {err}; pass --data-config with its arguments"
        ) from err
    if spec is record:
        check_data_provenance(record, dm, source)
    built = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
    return dm, {**built, **({"files": spec["files"]} if "files" in spec else {})}


def data_module_class(class_path: str, source: str) -> type:
    """The registered data module class that ``class_path`` names, found without importing it.

    A checkpoint or a config file names its data module, and importing a module runs its code,
    so only what ``lvm.data.DATAMODULES`` holds is accepted: a registered name (``"tabular"``),
    or the dotted path of a registered class, where it is defined
    (``lvm.data.tabular.TabularDataModule``, what ``lvm fit`` records) or from a package that
    re-exports it (``lvm.data.TabularDataModule``). Plugin data modules (entry-point group
    ``lvm.datamodules``) are registered classes too; they are imported, as the registry loads
    them, only when no built-in matches.

    Raises:
        ValueError: naming ``source`` and ``class_path``, with the registered names and paths.
    """
    from lvm.data import DATAMODULES

    if class_path in DATAMODULES:
        return DATAMODULES.get(class_path)
    known = _class_paths(DATAMODULES, plugins=False)
    if class_path not in known:
        known = _class_paths(DATAMODULES, plugins=True)
    if class_path in known:
        return DATAMODULES.get(known[class_path])
    close = difflib.get_close_matches(class_path, [*known, *DATAMODULES.names()], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shortest: dict[str, str] = {}
    for path, name in known.items():
        if len(path) < len(shortest.get(name, path + " ")):
            shortest[name] = path
    listed = ", ".join(f"{n} ({p})" for n, p in sorted(shortest.items()))
    raise ValueError(
        f"{source}: data module {class_path!r} is not registered in lvm.data.DATAMODULES, so lvm does "
        f"not import it.{hint} Registered: {listed or ', '.join(DATAMODULES.names())}; a plugin data "
        f"module must declare an entry point in group {DATAMODULES.entry_point_group!r}"
    )


def _class_paths(registry: Registry[Any], plugins: bool) -> dict[str, str]:
    """Dotted paths of the registered classes -> their names: built-ins, and plugins if asked.

    A class's paths are ``module.QualName`` and ``package.Name`` for each enclosing package
    that re-exports it (read from ``sys.modules``: nothing is imported). With ``plugins``, the
    registry loads each plugin's entry point (installed code, not a name from a file); a
    plugin that fails to load is left out.
    """
    paths: dict[str, str] = {}
    for name in registry.names():
        if registry.plugin_distribution(name) is not None and not plugins:
            continue
        try:
            cls = registry.get(name)
        except ImportError:  # a broken plugin names itself when it is used by name
            continue
        module, qualname = getattr(cls, "__module__", ""), getattr(cls, "__qualname__", "")
        paths.setdefault(f"{module}.{qualname}", name)
        parts = module.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if getattr(sys.modules.get(parent), qualname, None) is cls:
                paths.setdefault(f"{parent}.{qualname}", name)
    return paths


def _read_data_spec(path: Path) -> dict[str, Any]:
    """The ``data:`` section of a LightningCLI-style YAML file (or the whole file, if it has none)."""
    import yaml

    if not Path(path).is_file():
        raise FileNotFoundError(f"data config {path} does not exist")
    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())
        raise ValueError(f"data config {path} is not valid YAML: {first}") from None
    spec = cfg.get("data", cfg) if isinstance(cfg, dict) else None
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(
            f"{path}: expected a 'data:' section with 'class_path' (and 'init_args'); got {spec!r}"
        )
    return spec
