"""Training images seen as if scanned or rendered at a lower resolution.

The region crops are rendered from the PDFs' vectors, sharp at every size, while a page given
as an image is often coarse: a letter page 1,024 px tall has 5-6 px of x-height, which the line
reader enlarges into the model's range, blurred. A share of a source's images is therefore
shrunk by a random factor, JPEG-compressed and enlarged back to its size, the way such a page
reaches the model. What is drawn for a sample is a pure function of (seed, sample index), like
the source mix, so a resumed run sees the same images.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image

from vary.training.config import LowResConfig


@dataclass(frozen=True)
class LowRes:
    """One drawn degradation: shrink to `scale` of the size, JPEG at `quality`, enlarge back."""

    scale: float
    quality: int


def draw_low_res(config: LowResConfig, seed: int, sample: int) -> LowRes | None:
    """The degradation of global sample `sample`, or None for a sample kept as it is."""
    rng = random.Random(f"low-res:{seed}:{sample}")
    if rng.random() >= config.share:
        return None
    return LowRes(rng.uniform(*config.scale), rng.randint(*config.jpeg_quality))


def lower_resolution(image: Image.Image, low_res: LowRes) -> Image.Image:
    """`image` at its size, with only the detail it keeps at `low_res.scale` of it."""
    rgb = image.convert("RGB")
    small = (max(1, round(rgb.width * low_res.scale)), max(1, round(rgb.height * low_res.scale)))
    buffer = io.BytesIO()
    rgb.resize(small, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=low_res.quality)
    return Image.open(buffer).convert("RGB").resize(rgb.size, Image.Resampling.BICUBIC)
