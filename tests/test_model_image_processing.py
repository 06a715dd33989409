"""Image processors: square resizing (stretch / pad) and the ink normalisation, on real pixels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from vary.model.image_processing import MEAN_STD, ImageProcessor, ink_normalize, pad_to_square


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
    pixels = torch.from_numpy(np.array(wide_line())).permute(2, 0, 1)[None]
    ink = ink_normalize(pixels)[0]
    assert ink[:, 0, 0].abs().max() == 0  # paper, whatever its grey
    assert ink[:, 20, 100].min() > 3.0  # black stroke on grey paper: (1 - 0.1) * 4 - background


def test_uint8_pixels_normalised_later_equal_the_float_path() -> None:
    """Training batches cross processes as uint8 and are normalised where the model runs: the
    model must see what `vary ocr` gives it, for every normalisation."""
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)  # no one paper grey
    images = [wide_line(paper=230), wide_line(paper=255).rotate(90, expand=True), Image.fromarray(noise)]
    for normalization in ("ink", "clip", "imagenet"):
        processor = ImageProcessor(48, normalization, "pad")
        pixels = processor.pixels(images)
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 3, 48, 48)
        assert torch.equal(processor.normalize(pixels), processor(images))
        # against the normalisation written out in float, image by image
        scaled = pixels.float() / 255
        for k in range(3):
            if normalization == "ink":
                ink = 1 - scaled[k]
                expected = (ink - ink.flatten(1).median(dim=1).values.view(3, 1, 1)).clamp(min=0) * 4
            else:
                mean, std = (torch.tensor(v).view(3, 1, 1) for v in MEAN_STD[normalization])
                expected = (scaled[k] - mean) / std
            assert torch.equal(processor(images)[k], expected)
