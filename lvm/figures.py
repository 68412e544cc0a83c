"""Three pictures of a trained VAE: prior samples, reconstructions, latent interpolations."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["image_shape", "save_seed_figures", "seed_figures", "upscale"]


def image_shape(data_shape: Sequence[int]) -> tuple[int, int, int] | None:
    """(C, H, W) to draw a datapoint as, or None when it is not an image."""
    shape = tuple(int(s) for s in data_shape)
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0] and shape[0] >= 16:
        s = math.isqrt(shape[0])
        return (1, s, s)
    return None


@torch.no_grad()
def seed_figures(
    vae: torch.nn.Module, test_x: Tensor, num_interpolations: int = 5, steps: int = 25
) -> dict[str, Tensor]:
    """Image grids (3, H, W) in [0, 1], pixel = activation probability (E[x | z]), never binarised.

    - ``samples``: 25 draws z ~ p(z), 5 x 5;
    - ``reconstructions``: the first 10 test images above their reconstructions;
    - ``interpolations``: test images (1, 2), (3, 4), ... one row of ``steps`` each.
    """
    from torchvision.utils import make_grid

    shape = image_shape(vae.model.event_shape)
    if shape is None:
        raise ValueError(f"data of shape {tuple(vae.model.event_shape)} cannot be drawn as images")
    was_training = vae.training
    vae.eval()
    try:
        x = test_x.to(vae.device)
        n = min(10, len(x))
        pairs = min(num_interpolations, len(x) // 2)
        samples = vae.model.sample(25)
        recon = vae.model.reconstruct(x[:n])
        interp = vae.model.interpolate(x[0 : 2 * pairs : 2], x[1 : 2 * pairs : 2], steps)  # (P, steps, ...)
    finally:
        vae.train(was_training)

    def grid(t: Tensor, nrow: int) -> Tensor:
        return make_grid(t.reshape(-1, *shape).float().clamp(0, 1).cpu(), nrow=nrow, pad_value=1.0)

    return {
        "samples": grid(samples, 5),
        "reconstructions": grid(torch.cat([x[:n], recon]), n),
        "interpolations": grid(interp, steps),
    }


def upscale(grid: Tensor, scale: int) -> Tensor:
    """Each pixel of a (C, H, W) grid repeated ``scale`` x ``scale`` times (nearest neighbour), no blur."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer; got {scale!r}")
    return grid.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def save_seed_figures(grids: dict[str, Tensor], out_dir: str, scale: int = 4) -> dict[str, str]:
    """Write each grid as ``<out_dir>/<name>.png``, ``scale`` x upscaled so 28-pixel digits can be read.

    A 5 x 5 grid of 28 x 28 images is 152 pixels wide; at the default scale 4 it is 608.
    Returns the paths.
    """
    from torchvision.utils import save_image

    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, g in grids.items():
        paths[name] = os.path.join(out_dir, f"{name}.png")
        save_image(upscale(g, scale), paths[name])
    return paths
