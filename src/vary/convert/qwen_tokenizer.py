"""Qwen's tiktoken vocabulary (`qwen.tiktoken`) as a fast Hugging Face tokenizer.

Vary-toy, Vary-base and GOT-OCR2 ship Qwen's tokenizer as remote code on top of the `tiktoken`
package. Converted model folders must load with plain `AutoTokenizer`, so the vocabulary
becomes a byte-level BPE (`tokenizer.json`): merges are recovered from the ranks by transformers'
own `TikTokenConverter`, the file is read here (no `tiktoken` needed), and the special tokens
follow the BPE ranks in Qwen-VL's order. That order is what the released weights were trained
with: their code hard-codes `<img>` = 151857, `</img>` = 151858, `<imgpad>` = 151859.
"""

from __future__ import annotations

import base64
from pathlib import Path

from tokenizers import normalizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

from vary.convert.keys import CheckpointError
from vary.model.tokenizer import IM_END

VOCAB_FILE = "qwen.tiktoken"
# Qwen's `PAT_STR` (digits one by one, unlike tiktoken's cl100k pattern).
PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
ENDOFTEXT = "<|endoftext|>"
SPECIAL_TOKENS = (
    ENDOFTEXT,
    "<|im_start|>",
    IM_END,
    *(f"<|extra_{i}|>" for i in range(205)),
    *("<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<img>", "</img>", "<imgpad>"),
)


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """`base64(token) rank` lines -> {token bytes: id}."""
    ranks = {}
    for line in Path(path).read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise CheckpointError(f"{path}: ranks are not 0..{len(ranks) - 1}; not a Qwen tiktoken file")
    return ranks


class _Converter(TikTokenConverter):
    load_tiktoken_bpe = staticmethod(read_ranks)


def qwen_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer of `qwen.tiktoken`; ids equal the original's, special tokens included."""
    backend = _Converter(str(path), pattern=PATTERN, extra_special_tokens=SPECIAL_TOKENS).converted()
    backend.normalizer = normalizers.NFC()  # as QWenTokenizer.tokenize
    # Qwen has no bos; chat turns end with <|im_end|>; Vary's training padded with <|endoftext|>.
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=IM_END, pad_token=ENDOFTEXT)
