"""The ``lvm`` command: LightningCLI's fit/validate/test plus ``lvm compare``."""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from lvm.checkpoint import with_atomic_checkpoints
from lvm.encoders import DECODERS, ENCODERS
from lvm.estimators import ESTIMATORS
from lvm.likelihoods import LIKELIHOODS
from lvm.vae import VAE

__all__ = ["LVMCLI", "main"]


def _description() -> str:
    parts = [
        "Train and evaluate latent variable models. Parts are chosen by registry name in the "
        "config (model.encoder / model.decoder / model.likelihood: a name or {name: ..., <kwargs>}).",
        "",
        f"likelihoods: {LIKELIHOODS.describe()}",
        f"encoders:    {ENCODERS.describe()}",
        f"decoders:    {DECODERS.describe()}",
        f"estimators:  {ESTIMATORS.describe()}",
        "",
        "Subcommands: fit, validate, test (Lightning), and compare (log p(x) estimators side by side: "
        "lvm compare --help).",
        "Example: lvm fit --config experiments/mnist/vae.yaml",
    ]
    return "\n".join(
        textwrap.fill(p, 100, subsequent_indent=" " * 13 if ":" in p[:13] else "") for p in parts
    )


class LogConfig(SaveConfigCallback):
    """Save ``config.yaml`` in the log folder and log the whole config to every logger (W&B), on rank 0."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class LVMCLI(LightningCLI):
    """LightningCLI whose model is :class:`~lvm.vae.VAE` and whose data is any LightningDataModule.

    ``model.data_shape`` is taken from the data module (``data.data_shape``), and
    ``--test_after_fit true`` runs the test set on the best checkpoint once ``fit`` ends. The
    trainer writes checkpoints with :class:`~lvm.checkpoint.AtomicCheckpointIO` unless the
    config names another CheckpointIO, and the config is logged to every logger.
    """

    def __init__(self, *args: Any, save_config_callback: type | None = LogConfig, **kwargs: Any) -> None:
        super().__init__(*args, save_config_callback=save_config_callback, **kwargs)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self._get(self.config_init, "trainer", default={})
        plugins = kwargs.pop("plugins", None) or config.get("plugins")
        return super().instantiate_trainer(plugins=with_atomic_checkpoints(plugins), **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.data_shape", "model.data_shape", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After fit, evaluate the best checkpoint (or the last weights) on the test set.",
        )

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        ckpt = getattr(self.trainer.checkpoint_callback, "best_model_path", "") or None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=True)
        if results and "test/elbo" in results[0]:
            r = results[0]
            rank_zero_info(
                f"[lvm] test ELBO: {r['test/elbo']:.3f} nats per datapoint "
                f"(+/- {r.get('test/elbo_stderr', float('nan')):.3f} s.e., n={int(r.get('test/count', 0))}); "
                f"checkpoint: {ckpt or 'last weights'}"
            )
            objective = self.model.hparams.get("objective", "elbo")
            if objective != "elbo" and "test/bound" in r:
                rank_zero_info(
                    f"[lvm] test {objective} bound (k={self.model.hparams.num_samples}): "
                    f"{r['test/bound']:.3f} nats per datapoint "
                    f"(+/- {r.get('test/bound_stderr', float('nan')):.3f} s.e.)"
                )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lvm`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "compare":
        from lvm.compare import main as compare_main

        return compare_main(args[1:])
    os.environ.setdefault("WANDB_MODE", "offline")
    LVMCLI(
        VAE,
        L.LightningDataModule,
        subclass_mode_data=True,
        args=argv,  # None: LightningCLI reads sys.argv itself
        parser_kwargs={"description": _description(), "formatter_class": _Formatter},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    return 0


def _formatter() -> type:
    from jsonargparse import DefaultHelpFormatter

    class Formatter(DefaultHelpFormatter):
        def _fill_text(self, text: str, width: int, indent: str) -> str:  # keep our line breaks
            return "".join(indent + line for line in text.splitlines(keepends=True))

    return Formatter


_Formatter = _formatter()

if __name__ == "__main__":
    raise SystemExit(main())
