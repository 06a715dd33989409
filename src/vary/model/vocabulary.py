"""The new vision vocabulary network of Vary (Section 3.2 of the paper).

A SAM ViT-B ViTDet image encoder (windowed attention with a few global blocks and decomposed
relative positions, then a 1x1 + 3x3 conv neck to 256 channels) taken from transformers, followed
by two stride-2 convolutions (`net_2`, `net_3`) that turn the 64x64x256 neck map of a 1024x1024
page into 16x16 = 256 tokens of width 1024.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import SamVisionConfig
from transformers.models.sam.modeling_sam import SamVisionEncoder


class VisionVocabulary(nn.Module):
    def __init__(self, config: SamVisionConfig, channels: tuple[int, ...] | list[int] = (512, 1024)):
        super().__init__()
        if len(channels) != 2:
            raise ValueError(f"vocabulary_channels must have two entries (net_2, net_3), got {channels}")
        self.encoder = SamVisionEncoder(config)
        self.net_2 = nn.Conv2d(
            config.output_channels, channels[0], kernel_size=3, stride=2, padding=1, bias=False
        )
        self.net_3 = nn.Conv2d(channels[0], channels[1], kernel_size=3, stride=2, padding=1, bias=False)

    @property
    def hidden_size(self) -> int:
        return self.net_3.out_channels

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, 3, H, W) pixels -> (batch, tokens, width) vocabulary features."""
        neck = self.encoder(pixel_values).last_hidden_state  # (batch, 256, H/16, W/16)
        features = self.net_3(self.net_2(neck))
        return features.flatten(2).transpose(1, 2)
