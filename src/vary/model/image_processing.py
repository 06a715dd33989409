"""Image processors, one per vision branch, as the official Vary code prepares its inputs.

Both branches resize the whole page to a square (no crop: a crop would cut text) with bicubic
filtering and normalise with the OpenAI CLIP mean/std: 1024x1024 for the vocabulary network,
224x224 for CLIP. The released Vary-tiny and Vary-base fed their vocabulary network ImageNet
mean/std instead ("imagenet"; Vary-toy and GOT-OCR2 use CLIP's).

"ink" normalisation is for small models trained from scratch: dark text on a white page under
the usual normalisation gives large, nearly constant inputs everywhere and such models learned
to ignore the image (shared/FINDINGS.md). Inverting, removing the page background and scaling
makes pixels non-zero only where there is ink.

"pad" resizing keeps the aspect ratio: the image is centred on a square of its own border
colour first. Models trained on square crops of text (the built-in default model) read a wide
line or a tall column as it was drawn instead of squeezed; the official models stretch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MEAN_STD = {
    "clip": (CLIP_MEAN, CLIP_STD),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
INK_SCALE = 4.0  # ink fraction -> roughly unit-variance inputs on text pages


@dataclass(frozen=True)
class ImageProcessor:
    size: int
    normalization: Literal["clip", "imagenet", "ink"] = "clip"
    resize: Literal["stretch", "pad"] = "stretch"

    def __call__(self, images: Image.Image | list[Image.Image]) -> torch.Tensor:
        """PIL image(s) -> (batch, 3, size, size) float tensor."""
        return self.normalize(self.pixels(images))

    def pixels(self, images: Image.Image | list[Image.Image]) -> torch.Tensor:
        """PIL image(s) -> (batch, 3, size, size) uint8, resized but not normalised: a quarter of
        the bytes of the float tensor, for training batches that cross processes."""
        batch = images if isinstance(images, list) else [images]
        return torch.stack([self._pixels_one(image) for image in batch])

    def _pixels_one(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB")
        if self.resize == "pad":
            image = pad_to_square(image)
        image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(batch, 3, H, W) uint8 -> float model input, on whatever device `pixels` are."""
        if self.normalization == "ink":
            return ink_normalize(pixels)
        mean, std = (
            torch.tensor(v, device=pixels.device).view(3, 1, 1) for v in MEAN_STD[self.normalization]
        )
        return (pixels.float() / 255.0 - mean) / std


def pad_to_square(image: Image.Image) -> Image.Image:
    """Centre an RGB image on a square filled with the median colour of its border (the paper)."""
    width, height = image.size
    if width == height:
        return image
    pixels = np.asarray(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = tuple(int(v) for v in np.median(border, axis=0))
    side = max(width, height)
    square = Image.new("RGB", (side, side), colour)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def ink_normalize(pixels: torch.Tensor) -> torch.Tensor:
    """(batch, 3, H, W) uint8 -> ink intensity: 0 on the page background, positive on strokes."""
    ink = 1.0 - pixels.float() / 255.0
    # most pixels are paper: the median, taken on the uint8 ink values (3x faster than on floats)
    paper = 255 - (255 - pixels).flatten(2).median(dim=2).values
    background = 1.0 - paper[..., None, None].float() / 255.0
    return (ink - background).clamp(min=0.0) * INK_SCALE


@dataclass(frozen=True)
class VaryImageProcessor:
    """Pixels for every branch of a model: `pixel_values` (vocabulary), `clip_pixel_values`."""

    vocabulary: ImageProcessor
    clip: ImageProcessor | None = None

    @classmethod
    def from_config(cls, config) -> VaryImageProcessor:
        vocabulary = ImageProcessor(
            config.vision_config.image_size, config.image_normalization, config.image_resize
        )
        clip = ImageProcessor(config.clip_config.image_size) if config.clip_config is not None else None
        return cls(vocabulary, clip)

    def __call__(
        self, images: Image.Image | list[Image.Image], normalize: bool = True
    ) -> dict[str, torch.Tensor]:
        """The pixel tensors, float; or uint8 with `normalize=False`, for `normalize` to finish
        where the model runs (training: after the batch has crossed to the training process)."""
        inputs = {"pixel_values": self.vocabulary.pixels(images)}
        if self.clip is not None:
            inputs["clip_pixel_values"] = self.clip.pixels(images)
        return self.normalize(inputs) if normalize else inputs

    def normalize(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`inputs` with their uint8 pixel tensors normalised (other entries and float pixels kept)."""
        branches = {"pixel_values": self.vocabulary, "clip_pixel_values": self.clip}
        return {name: _normalized(branches.get(name), value) for name, value in inputs.items()}


def _normalized(processor: ImageProcessor | None, value: torch.Tensor) -> torch.Tensor:
    return processor.normalize(value) if processor is not None and value.dtype == torch.uint8 else value
