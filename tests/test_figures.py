"""Figures: grids saved large enough to read, pixel values kept exactly (no blur)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lvm.figures import image_shape, save_seed_figures, upscale


def test_upscale_repeats_each_pixel_exactly() -> None:
    g = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)
    up = upscale(g, 2)
    assert up.shape == (1, 4, 6)
    assert up[0, :, :].tolist()[0] == [0, 0, 1, 1, 2, 2]
    assert torch.equal(up[:, ::2, ::2], g) and torch.equal(up[:, 1::2, 1::2], g)
    with pytest.raises(ValueError, match="positive integer; got 0"):
        upscale(g, 0)


def test_saved_sample_grid_is_at_least_600_pixels_wide(tmp_path) -> None:
    # 5 x 5 grid of 28 x 28 images with torchvision's 2-pixel padding: 152 x 152 before upscaling
    grid = torch.rand(3, 152, 152)
    path = save_seed_figures({"samples": grid}, str(tmp_path))["samples"]
    with Image.open(path) as im:
        assert im.size == (608, 608)
        top_left = im.getpixel((0, 0))
    expected = tuple(int(v * 255 + 0.5) for v in grid[:, 0, 0].clamp(0, 1).tolist())
    assert all(abs(a - b) <= 1 for a, b in zip(top_left, expected, strict=True))


def test_image_shape() -> None:
    assert image_shape([784]) == (1, 28, 28)
    assert image_shape([1, 28, 28]) == (1, 28, 28)
    assert image_shape([10]) is None
