"""`VaryProcessor`: images + conversations -> one padded batch of model inputs.

Training and inference build their batches here, so both see exactly the same token layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from vary.model.configuration import VaryConfig
from vary.model.image_processing import VaryImageProcessor
from vary.model.templates import IGNORE_INDEX, Encoded, Template, encode_conversation, get_template


@dataclass
class VaryProcessor:
    tokenizer: PreTrainedTokenizerBase
    image_processor: VaryImageProcessor
    template: Template
    num_image_tokens: int
    max_length: int | None = None

    @classmethod
    def from_config(
        cls, config: VaryConfig, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None
    ) -> VaryProcessor:
        return cls(
            tokenizer,
            VaryImageProcessor.from_config(config),
            get_template(config.template),
            config.num_image_tokens,
            max_length,
        )

    def encode(self, conversations: list[dict[str, str]]) -> Encoded:
        return encode_conversation(
            self.tokenizer, self.template, conversations, self.num_image_tokens, self.max_length
        )

    def __call__(
        self,
        images: list[Image.Image],
        conversations: list[list[dict[str, str]]],
        padding_side: Literal["left", "right"] = "right",
        normalize: bool = True,
    ) -> dict[str, torch.Tensor]:
        """A batch: `input_ids`, `attention_mask`, `labels` and the pixel tensors.

        Right padding for training; left padding for generation, so every prompt ends where
        decoding starts. `normalize=False` leaves the pixels uint8 (`VaryImageProcessor`).
        """
        if len(images) != len(conversations):
            raise ValueError(f"{len(images)} images for {len(conversations)} conversations")
        batch = pad_batch([self.encode(c) for c in conversations], self.tokenizer.pad_token_id, padding_side)
        return batch | self.image_processor(images, normalize)


def pad_batch(
    encoded: list[Encoded], pad_token_id: int, padding_side: Literal["left", "right"] = "right"
) -> dict[str, torch.Tensor]:
    length = max(len(e.input_ids) for e in encoded)
    input_ids = torch.full((len(encoded), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
    for row, sample in enumerate(encoded):
        n = len(sample.input_ids)
        span = slice(length - n, length) if padding_side == "left" else slice(0, n)
        input_ids[row, span] = torch.tensor(sample.input_ids)
        labels[row, span] = torch.tensor(sample.labels)
        attention_mask[row, span] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
