"""Write the intersphinx inventories (objects.inv format 2) that lvm's docs link through, offline.

The docs build runs without network, so it cannot download the inventories of PyTorch, Lightning,
torchmetrics and Python. These are written from the table below: each entry is an object lvm's
pages or signatures name, and the page and anchor where that project's documentation describes
it (the projects' Sphinx layouts: PyTorch documents ``torch.distributions`` classes under their
defining modules on ``distributions.html``, Lightning and torchmetrics give each API object a page of
its own). Names that Python's ``__module__`` spells differently from the documented name
(``torch.nn.modules.module.Module``) link to the same place. Run after editing the table:

    python docs/inventories/make_inventories.py
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

_DIST = "distributions.html#torch.distributions."
#: project -> (title, version, [(name, role, uri)]); ``$`` in a uri stands for the name.
TABLES: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
    "torch": (
        "PyTorch",
        "2",
        [
            ("torch.Tensor", "py:class", "tensors.html#$"),
            ("torch.Size", "py:class", "size.html#$"),
            ("torch.dtype", "py:class", "tensor_attributes.html#$"),
            ("torch.device", "py:class", "tensor_attributes.html#$"),
            ("torch.Generator", "py:class", "generated/torch.Generator.html#$"),
            ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#$"),
            ("torch.nn.modules.module.Module", "py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
            ("torch.nn.Module.forward", "py:method", "generated/torch.nn.Module.html#$"),
            ("torch.nn.parameter.Parameter", "py:class", "generated/$.html#$"),
            (
                "torch.nn.Parameter",
                "py:class",
                "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter",
            ),
            ("torch.optim.Optimizer", "py:class", "optim.html#$"),
            ("torch.optim.optimizer.Optimizer", "py:class", "optim.html#torch.optim.Optimizer"),
            ("torch.optim.Adam", "py:class", "generated/torch.optim.Adam.html#$"),
            ("torch.optim.adam.Adam", "py:class", "generated/torch.optim.Adam.html#torch.optim.Adam"),
            ("torch.optim.lr_scheduler.LambdaLR", "py:class", "generated/$.html#$"),
            ("torch.utils.data.DataLoader", "py:class", "data.html#$"),
            ("torch.utils.data.dataloader.DataLoader", "py:class", "data.html#torch.utils.data.DataLoader"),
            (
                "torch.distributions.distribution.Distribution",
                "py:class",
                _DIST + "distribution.Distribution",
            ),
            ("torch.distributions.Distribution", "py:class", _DIST + "distribution.Distribution"),
            ("torch.distributions.independent.Independent", "py:class", _DIST + "independent.Independent"),
            ("torch.distributions.Independent", "py:class", _DIST + "independent.Independent"),
            ("torch.distributions.categorical.Categorical", "py:class", _DIST + "categorical.Categorical"),
            ("torch.distributions.Categorical", "py:class", _DIST + "categorical.Categorical"),
            ("torch.distributions.normal.Normal", "py:class", _DIST + "normal.Normal"),
            ("torch.distributions.Normal", "py:class", _DIST + "normal.Normal"),
            ("torch.distributions.bernoulli.Bernoulli", "py:class", _DIST + "bernoulli.Bernoulli"),
            ("torch.distributions.Bernoulli", "py:class", _DIST + "bernoulli.Bernoulli"),
            ("torch.distributions.gamma.Gamma", "py:class", _DIST + "gamma.Gamma"),
            ("torch.distributions.Gamma", "py:class", _DIST + "gamma.Gamma"),
            ("torch.distributions.laplace.Laplace", "py:class", _DIST + "laplace.Laplace"),
            ("torch.distributions.Laplace", "py:class", _DIST + "laplace.Laplace"),
            ("torch.distributions.kl.kl_divergence", "py:function", _DIST + "kl.kl_divergence"),
            ("torch.distributions.kl_divergence", "py:function", _DIST + "kl.kl_divergence"),
            ("torch.distributed.init_process_group", "py:function", "distributed.html#$"),
            ("torch.logsumexp", "py:function", "generated/torch.logsumexp.html#$"),
            ("torch.load", "py:function", "generated/torch.load.html#$"),
            ("torch.manual_seed", "py:function", "generated/torch.manual_seed.html#$"),
        ],
    ),
    "lightning": (
        "Lightning",
        "2.6",
        [
            ("lightning.pytorch.core.LightningModule", "py:class", "api/$.html#$"),
            (
                "lightning.pytorch.LightningModule",
                "py:class",
                "api/lightning.pytorch.core.LightningModule.html#lightning.pytorch.core.LightningModule",
            ),
            (
                "lightning.pytorch.core.module.LightningModule",
                "py:class",
                "api/lightning.pytorch.core.LightningModule.html#lightning.pytorch.core.LightningModule",
            ),
            ("lightning.pytorch.core.LightningDataModule", "py:class", "api/$.html#$"),
            (
                "lightning.pytorch.LightningDataModule",
                "py:class",
                "api/lightning.pytorch.core.LightningDataModule.html#lightning.pytorch.core.LightningDataModule",
            ),
            (
                "lightning.pytorch.core.datamodule.LightningDataModule",
                "py:class",
                "api/lightning.pytorch.core.LightningDataModule.html#lightning.pytorch.core.LightningDataModule",
            ),
            ("lightning.pytorch.trainer.trainer.Trainer", "py:class", "api/$.html#$"),
            (
                "lightning.pytorch.Trainer",
                "py:class",
                "api/lightning.pytorch.trainer.trainer.Trainer.html#lightning.pytorch.trainer.trainer.Trainer",
            ),
            (
                "lightning.pytorch.trainer.trainer.Trainer.fit",
                "py:method",
                "api/lightning.pytorch.trainer.trainer.Trainer.html#$",
            ),
            (
                "lightning.pytorch.trainer.trainer.Trainer.test",
                "py:method",
                "api/lightning.pytorch.trainer.trainer.Trainer.html#$",
            ),
            (
                "lightning.pytorch.trainer.trainer.Trainer.validate",
                "py:method",
                "api/lightning.pytorch.trainer.trainer.Trainer.html#$",
            ),
            ("lightning.pytorch.callbacks.Callback", "py:class", "api/$.html#$"),
            (
                "lightning.pytorch.callbacks.callback.Callback",
                "py:class",
                "api/lightning.pytorch.callbacks.Callback.html#lightning.pytorch.callbacks.Callback",
            ),
            ("lightning.pytorch.callbacks.ModelCheckpoint", "py:class", "api/$.html#$"),
            ("lightning.pytorch.cli.LightningCLI", "py:class", "api/$.html#$"),
            ("lightning.pytorch.strategies.DDPStrategy", "py:class", "api/$.html#$"),
        ],
    ),
    "torchmetrics": (
        "torchmetrics",
        "1",
        [
            ("torchmetrics.Metric", "py:class", "references/metric.html#$"),
            ("torchmetrics.metric.Metric", "py:class", "references/metric.html#torchmetrics.Metric"),
        ],
    ),
    "python": (
        "Python",
        "3",
        [
            ("pathlib.Path", "py:class", "library/pathlib.html#$"),
            ("os.PathLike", "py:class", "library/os.html#$"),
            ("argparse.ArgumentParser", "py:class", "library/argparse.html#$"),
            ("dataclasses.dataclass", "py:function", "library/dataclasses.html#$"),
            ("importlib.metadata.EntryPoint", "py:class", "library/importlib.metadata.html#$"),
            ("AssertionError", "py:exception", "library/exceptions.html#$"),
            ("KeyError", "py:exception", "library/exceptions.html#$"),
            ("ValueError", "py:exception", "library/exceptions.html#$"),
            ("TypeError", "py:exception", "library/exceptions.html#$"),
            ("ImportError", "py:exception", "library/exceptions.html#$"),
            ("FileNotFoundError", "py:exception", "library/exceptions.html#$"),
            ("OSError", "py:exception", "library/exceptions.html#$"),
            ("FloatingPointError", "py:exception", "library/exceptions.html#$"),
        ],
    ),
}


def inventory(project: str, version: str, entries: list[tuple[str, str, str]]) -> bytes:
    """objects.inv format 2: four header lines, then zlib-compressed ``name role prio uri dispname`` lines."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} {role} 1 {uri.replace('$', name)} -\n" for name, role, uri in sorted(entries))
    return header.encode() + zlib.compress(body.encode(), 9)


def main() -> None:
    for key, (project, version, entries) in TABLES.items():
        names = [name for name, _, _ in entries]
        if len(set(names)) != len(names):
            raise SystemExit(f"{key}: duplicate names in the table")
        path = HERE / f"{key}.inv"
        path.write_bytes(inventory(project, version, entries))
        print(f"{path.name}: {len(entries)} objects")


if __name__ == "__main__":
    main()
