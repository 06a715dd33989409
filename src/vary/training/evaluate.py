"""Held-out evaluation during training: loss, greedy decoding, and whether the image matters.

Besides the held-out loss and the edit distance of greedy transcriptions (the paper's
normalised edit distance, `vary.evaluation.metrics`), both are measured again with the images
swapped between samples. A model that reads scores far better on the true images; one that has
only learnt the language of the targets (the failure FINDINGS.md describes) scores the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from vary.data.sample import Sample
from vary.evaluation.metrics import edit_distance
from vary.evaluation.text import normalize_text
from vary.model import VaryProcessor
from vary.model.templates import IGNORE_INDEX
from vary.training.data import Conversation, target_conversation


@dataclass
class EvalResult:
    loss: float
    loss_swapped: float  # each sample with the next sample's image
    edit_distance: float | None = None  # greedy decoding, 0 = perfect (None: nothing decoded)
    edit_distance_swapped: float | None = None
    changed_by_swap: float | None = None  # share of transcriptions that change with the image
    examples: list[dict[str, str]] = field(default_factory=list)  # reference / prediction pairs

    def scalars(self) -> dict[str, float]:
        values = {
            "loss": self.loss,
            "loss_swapped": self.loss_swapped,
            "edit_distance": self.edit_distance,
            "edit_distance_swapped": self.edit_distance_swapped,
            "changed_by_swap": self.changed_by_swap,
        }
        return {f"heldout/{k}": v for k, v in values.items() if v is not None}


def swapped(images: Sequence[Image.Image]) -> list[Image.Image]:
    """Every image moved to the next sample (a permutation without fixed points for 2+ images)."""
    return [*images[1:], *images[:1]]


def split_answer(conversation: Conversation) -> tuple[Conversation, str]:
    """The prompt (everything before the last answer) and the last answer, the reference."""
    last = max(i for i, turn in enumerate(conversation) if turn["from"] in ("gpt", "assistant"))
    return conversation[:last], conversation[last]["value"]


def batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module,
    processor: VaryProcessor,
    images: Sequence[Image.Image],
    conversations: Sequence[Conversation],
    batch_size: int,
    device: torch.device,
) -> float:
    """Mean loss per target token over all samples (not a mean of batch means)."""
    total, tokens = 0.0, 0
    for index in batches(range(len(images)), batch_size):
        batch = processor([images[i] for i in index], [conversations[i] for i in index])
        count = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        batch = {k: v.to(device) for k, v in batch.items()}
        total += float(model(**batch, use_cache=False, num_items_in_batch=1).loss)  # the sum
        tokens += count
    return total / max(tokens, 1)


@torch.no_grad()
def greedy_decode(
    model: torch.nn.Module,
    processor: VaryProcessor,
    images: Sequence[Image.Image],
    prompts: Sequence[Conversation],
    batch_size: int,
    max_new_tokens: int,
    synced_gpus: bool = False,
) -> list[str]:
    texts = []
    for index in batches(range(len(images)), batch_size):
        batch = processor([images[i] for i in index], [prompts[i] for i in index], padding_side="left")
        batch.pop("labels")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        ids = model.generate(  # greedy even where the model's generation_config asks for beams
            **batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, synced_gpus=synced_gpus
        )
        new = ids[:, batch["input_ids"].shape[1] :]
        texts += processor.tokenizer.batch_decode(new, skip_special_tokens=True)
    return texts


def mean_edit_distance(predictions: Sequence[str], references: Sequence[str]) -> float:
    pairs = zip(predictions, references, strict=True)
    return sum(edit_distance(normalize_text(p), normalize_text(r)) for p, r in pairs) / len(references)


def evaluate(
    model: torch.nn.Module,
    generator: torch.nn.Module,
    processor: VaryProcessor,
    samples: Sequence[Sample],
    stage: str,
    batch_size: int,
    decode_samples: int,
    max_new_tokens: int,
    synced_gpus: bool = False,
) -> EvalResult:
    """Loss on every sample, greedy edit distance on the first `decode_samples`, true and swapped.

    `model` is what training runs (possibly wrapped for DDP/FSDP); `generator` its unwrapped
    module, whose `generate` is used. Callers put the model in eval mode.
    """
    images = [s.image for s in samples]
    conversations = [target_conversation(s, stage) for s in samples]
    device = generator.device
    result = EvalResult(
        loss=heldout_loss(model, processor, images, conversations, batch_size, device),
        loss_swapped=heldout_loss(model, processor, swapped(images), conversations, batch_size, device),
    )
    if decode_samples <= 0:
        return result
    prompts, references = zip(*(split_answer(c) for c in conversations[:decode_samples]), strict=True)
    decode_images = images[:decode_samples]
    args = (batch_size, max_new_tokens, synced_gpus)
    predictions = greedy_decode(generator, processor, decode_images, prompts, *args)
    predictions_swapped = greedy_decode(generator, processor, swapped(decode_images), prompts, *args)
    result.edit_distance = mean_edit_distance(predictions, references)
    result.edit_distance_swapped = mean_edit_distance(predictions_swapped, references)
    changed = [p != q for p, q in zip(predictions, predictions_swapped, strict=True)]
    result.changed_by_swap = sum(changed) / len(changed)
    result.examples = [
        {"reference": r, "prediction": p, "prediction_swapped_image": q}
        for r, p, q in zip(references, predictions, predictions_swapped, strict=True)
    ]
    return result
