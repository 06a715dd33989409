"""Image processors: square resizing (stretch / pad) and the ink normalisation, on real pixels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from vary.model.image_processing import ImageProcessor, ink_normalize, pad_to_square


def wide_line(paper: int = 230) -> Image.Image:
    """A 200x40 grey page with one black bar standing in for a line of text."""
    image = Image.new("RGB", (200, 40), (paper,) * 3)
    ImageDraw.Draw(image).rectangle((20, 15, 180, 25), fill=(0, 0, 0))
    return image


def test_pad_to_square_centres_on_the_border_colour() -> None:
    square = pad_to_square(wide_line(paper=230))
    assert square.size == (200, 200)
    pixels = np.asarray(square)
    assert (pixels[:80] == 230).all() and (pixels[120:] == 230).all()  # padding: the paper's grey
    assert (pixels[80 + 15 : 80 + 26, 20:181] == 0).all()  # the bar, moved down by (200 - 40) / 2


def test_pad_keeps_the_aspect_ratio_stretch_does_not() -> None:
    def ink_rows(resize: str) -> int:
        ink = ImageProcessor(64, "ink", resize)(wide_line())[0, 0]
        return int((ink.amax(dim=1) > 0.5).sum())

    # The 10 px bar of a 40 px tall image: 64 * 11/40 ~ 17 rows stretched, 64 * 11/200 ~ 3.5 padded.
    assert ink_rows("stretch") >= 14
    assert ink_rows("pad") <= 6


def test_square_images_are_the_same_either_way() -> None:
    image = wide_line().resize((64, 64))
    stretched, padded = (ImageProcessor(32, "clip", resize)(image) for resize in ("stretch", "pad"))
    assert torch.equal(stretched, padded)


def test_ink_is_zero_on_paper_and_positive_on_strokes() -> None:
    pixels = torch.from_numpy(np.asarray(wide_line(), dtype=np.float32) / 255).permute(2, 0, 1)
    ink = ink_normalize(pixels)
    assert ink[:, 0, 0].abs().max() == 0  # paper, whatever its grey
    assert ink[:, 20, 100].min() > 3.0  # black stroke on grey paper: (1 - 0.1) * 4 - background
