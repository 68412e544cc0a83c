"""Lightning callbacks: prior samples, reconstructions and interpolations during and after training."""

from __future__ import annotations

import os

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lvm.figures import image_shape, save_seed_figures, seed_figures

__all__ = ["SeedFigures"]


class SeedFigures(L.Callback):
    """Draw prior samples, reconstructions and latent interpolations as PNG (the pictures of Kingma & Welling 2014, appendix A).

    Written on rank 0 only, every ``every_n_epochs`` validation epochs (0: only at the end of
    ``fit``), into ``out_dir`` (default ``<trainer.default_root_dir>/figures``), and logged as
    images under ``figures/<name>`` to every logger that has ``log_image`` (W&B). Test images
    are the first of the data module's test loader.

    Args:
        out_dir: Folder for the PNG files.
        every_n_epochs: Period in epochs for figures during training (0: off).
        num_interpolations: Pairs of test images to interpolate between.
        steps: Points on each interpolation.
        seed: Seed of the prior samples and reconstructions; drawn with a forked RNG, so the
            pictures are the same for the same weights and training draws what it would without them.
    """

    def __init__(
        self,
        out_dir: str | None = None,
        every_n_epochs: int = 0,
        num_interpolations: int = 5,
        steps: int = 25,
        seed: int = 0,
    ) -> None:
        self.out_dir = out_dir
        self.every_n_epochs = every_n_epochs
        self.num_interpolations = num_interpolations
        self.steps = steps
        self.seed = seed
        self.paths: dict[str, str] = {}

    def _test_images(self, trainer: L.Trainer) -> torch.Tensor | None:
        dm = trainer.datamodule
        if dm is None:
            return None
        dm.setup("test")
        loader = dm.test_dataloader()
        need = max(10, 2 * self.num_interpolations)
        xs, n = [], 0
        for batch in loader:
            xs.append(batch["x"])
            n += len(batch["x"])
            if n >= need:
                break
        return torch.cat(xs)[:need] if xs else None

    @rank_zero_only
    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, tag: str) -> None:
        if image_shape(pl_module.model.event_shape) is None:
            return
        x = self._test_images(trainer)
        if x is None:
            return
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the pictures leave the training RNG untouched
            torch.manual_seed(self.seed)
            grids = seed_figures(pl_module, x, self.num_interpolations, self.steps)
        out = self.out_dir or os.path.join(trainer.default_root_dir, "figures")
        self.paths = save_seed_figures(grids, out)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                for name, grid in grids.items():  # one key each: the grids differ in size
                    logger.log_image(key=f"figures/{name}", images=[grid], step=trainer.global_step)
        rank_zero_info(f"[lvm] {tag}: figures written to {out}: {', '.join(sorted(self.paths))}")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.every_n_epochs <= 0:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._draw(trainer, pl_module, f"epoch {trainer.current_epoch}")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw(trainer, pl_module, "end of fit")
