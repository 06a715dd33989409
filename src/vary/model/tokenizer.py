"""Tokenizers: Vary's special tokens, and byte-level BPE training for from-scratch models.

Real checkpoints bring their own tokenizer (OPT, Qwen); Vary adds the image tokens to it and
resizes the embeddings. Small models trained here from scratch get a byte-level BPE tokenizer
trained offline with `tokenizers` on the project's own text, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

IMAGE_START = "<img>"
IMAGE_END = "</img>"
IMAGE_PAD = "<imgpad>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VARY_SPECIAL_TOKENS = (IMAGE_START, IMAGE_END, IMAGE_PAD, IM_START, IM_END)
PAD = "<pad>"
EOS = "</s>"


@dataclass(frozen=True)
class ImageTokenIds:
    start: int
    pad: int
    end: int


def add_vary_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add Vary's special tokens (and a pad token if missing); returns how many were new."""
    vocab = tokenizer.get_vocab()
    missing = [token for token in VARY_SPECIAL_TOKENS if token not in vocab]
    added = tokenizer.add_special_tokens({"additional_special_tokens": missing}) if missing else 0
    if tokenizer.pad_token is None:
        added += tokenizer.add_special_tokens({"pad_token": PAD})
    return added


def image_token_ids(tokenizer: PreTrainedTokenizerBase) -> ImageTokenIds:
    """Looked up token by token: building the whole vocabulary (`get_vocab`) for every encoded
    sample was a tenth of a collate worker's time."""
    tokens = (IMAGE_START, IMAGE_PAD, IMAGE_END)
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    missing = [
        t for t, i in zip(tokens, ids, strict=True) if i is None or tokenizer.convert_ids_to_tokens(i) != t
    ]
    if missing:
        raise ValueError(f"tokenizer lacks Vary's image tokens {missing}: call add_vary_tokens first")
    return ImageTokenIds(*ids)


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (any script, no unknown tokens) with Vary's tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD, EOS, *VARY_SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, pad_token=PAD)
    add_vary_tokens(wrapped)  # registers them as special (never split, skipped on decode)
    return wrapped
