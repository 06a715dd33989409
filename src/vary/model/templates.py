"""Conversation templates and the one function that turns a conversation into model inputs.

- "plain" (Vary-tiny): no prompt at all, `[bos] <img> <imgpad> x N </img> text </s>`.
- "chatml" (Vary-base, Qwen): `<|im_start|>system\\n...<|im_end|><|im_start|>user\\n<img>...</img>`
  `question<|im_end|><|im_start|>assistant\\nanswer<|im_end|>`, as the official Vary/GOT code
  joins turns (system prompt included).

Conversations use the LLaVA form (`{"from": "human"|"gpt", "value": ...}`), with `<image>`
marking where the image goes. Loss is only on what the assistant writes (and its end token).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from vary.data.sample import IMAGE_TOKEN
from vary.model.tokenizer import IM_END, IM_START, image_token_ids

IGNORE_INDEX = -100
# The system turn of the official Vary-base / Vary-toy / GOT-OCR2 conversations ("mpt" style).
OFFICIAL_SYSTEM_PROMPT = "You should follow the instructions carefully and explain your answers in detail."


@dataclass(frozen=True)
class Template:
    name: str
    user_prefix: str = ""
    user_suffix: str = ""
    assistant_prefix: str = ""
    assistant_suffix: str | None = None  # None: the tokenizer's eos token
    system: str | None = None
    add_bos: bool = False


TEMPLATES = {
    "plain": Template("plain", add_bos=True),
    "chatml": Template(
        "chatml",
        user_prefix=f"{IM_START}user\n",
        user_suffix=IM_END,
        assistant_prefix=f"{IM_START}assistant\n",
        assistant_suffix=IM_END,
        system=OFFICIAL_SYSTEM_PROMPT,
    ),
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[name]


@dataclass
class Encoded:
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    truncated: bool = False

    def extend(self, ids: list[int], train: bool) -> None:
        self.input_ids += ids
        self.labels += ids if train else [IGNORE_INDEX] * len(ids)


def ocr_conversation(text: str | None = None, question: str = "") -> list[dict[str, str]]:
    """The conversation of a Vary-tiny sample: the image (and optional question), then its text."""
    turns = [{"from": "human", "value": f"{IMAGE_TOKEN}{question}"}]
    return turns if text is None else [*turns, {"from": "gpt", "value": text}]


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase,
    template: Template,
    conversations: list[dict[str, str]],
    num_image_tokens: int,
    max_length: int | None = None,
) -> Encoded:
    """Token ids and labels of a conversation; a trailing human turn gets the generation prompt.

    The image placeholder run is inserted as ids (never tokenised from text) where the first
    `<image>` is, or before the first human message if there is none.
    """
    image = image_token_ids(tokenizer)
    image_ids = [image.start] + [image.pad] * num_image_tokens + [image.end]
    encoded = Encoded()
    if template.add_bos and tokenizer.bos_token_id is not None:
        encoded.extend([tokenizer.bos_token_id], train=False)
    if template.system is not None:
        encoded.extend(_ids(tokenizer, f"{IM_START}system\n{template.system}{IM_END}"), train=False)
    eos = template.assistant_suffix if template.assistant_suffix is not None else tokenizer.eos_token
    image_placed = False
    for turn in conversations:
        value = turn["value"]
        if turn["from"] in ("human", "user"):
            if not image_placed:
                before, _, after = value.partition(IMAGE_TOKEN) if IMAGE_TOKEN in value else ("", "", value)
                encoded.extend(_ids(tokenizer, template.user_prefix + before), train=False)
                encoded.extend(image_ids, train=False)
                encoded.extend(_ids(tokenizer, after + template.user_suffix), train=False)
                image_placed = True
            else:
                text = template.user_prefix + value.replace(IMAGE_TOKEN, "") + template.user_suffix
                encoded.extend(_ids(tokenizer, text), train=False)
        elif turn["from"] in ("gpt", "assistant"):
            encoded.extend(_ids(tokenizer, template.assistant_prefix), train=False)
            encoded.extend(_ids(tokenizer, value + eos), train=True)
        else:
            raise ValueError(f"unknown conversation role {turn['from']!r} (expected human/gpt)")
    if conversations and conversations[-1]["from"] in ("human", "user"):
        encoded.extend(_ids(tokenizer, template.assistant_prefix), train=False)
    if max_length is not None and len(encoded.input_ids) > max_length:
        if max_length < len(image_ids) + 2:
            raise ValueError(f"max_length {max_length} cannot hold the {len(image_ids)} image tokens")
        encoded.input_ids = encoded.input_ids[:max_length]
        encoded.labels = encoded.labels[:max_length]
        encoded.truncated = True
    return encoded


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids if text else []
