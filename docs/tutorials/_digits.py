"""Made-up digits for the tutorials: matplotlib's glyphs 0-9, randomly rotated, scaled, shifted, thickened."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def glyphs(size: int = 64) -> torch.Tensor:
    """The ten digits as (10, size, size) ink in [0, 1], drawn by matplotlib's default font."""
    out = []
    for d in range(10):
        fig = Figure(figsize=(1, 1), dpi=size)
        FigureCanvasAgg(fig)
        fig.text(0.5, 0.5, str(d), fontsize=size * 0.8, ha="center", va="center", weight="bold")
        fig.canvas.draw()
        red = np.asarray(fig.canvas.buffer_rgba())[..., 0]
        out.append(torch.from_numpy(1.0 - red / 255.0).float())
    return torch.stack(out)


_GLYPHS = glyphs()


def digits(n: int, seed: int, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (n, side * side), grey values in [0, 1], and their labels (n,), from ``seed``.

    One batch of random affine maps (rotation within ±15°, scale, shift) samples the glyphs
    with ``grid_sample``; a random factor varies the stroke's darkness.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    angle = (torch.rand(n, generator=g) - 0.5) * math.radians(30)
    scale = 1.1 + 0.25 * torch.rand(n, generator=g)
    shift = (torch.rand(n, 2, generator=g) - 0.5) * 0.25
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, [n, 1, side, side], align_corners=False)
    x = F.grid_sample(_GLYPHS[labels][:, None], grid, align_corners=False).clamp(0, 1)
    ink = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=g)
    return (x * ink * 1.6).clamp(0, 1).reshape(n, side * side), labels
