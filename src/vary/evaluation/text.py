"""Text normalisation and tokenisation shared by every engine and every metric.

Engines disagree on things that are not reading errors: ligatures (`ﬁ`), full-width ASCII,
line breaks and runs of spaces, zero-width characters, and (Tesseract) spaces between Chinese
characters. Ground truth and every prediction go through the same `normalize_text` before any
metric sees them, so a table compares reading, not formatting. docs/evaluation.md lists the rules.
"""

from __future__ import annotations

import logging
import re
import unicodedata

import jieba

jieba.setLogLevel(logging.WARNING)  # jieba prints a banner on its first call otherwise

# Scripts written without spaces between words: CJK symbols and punctuation, kana, Han (BMP and
# extension planes). Hangul is left out on purpose: Korean separates words with spaces.
CJK_CHARS = (
    "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0002fa1f"
)
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{CJK_CHARS}])[^\S\n]+(?=[{CJK_CHARS}])")


def join_cjk(text: str) -> str:
    """Remove spaces and tabs between two CJK characters (Chinese has no spaces between words).

    Line breaks are kept, so a raw engine output keeps its layout; `normalize_text` collapses
    line breaks to spaces first, so there every gap between two CJK characters goes.
    """
    return _SPACE_BETWEEN_CJK.sub("", text)


def normalize_text(text: str) -> str:
    """The one normalisation applied to ground truth and predictions before scoring.

    1. Unicode NFKC: ligatures, full-width ASCII and compatibility forms become plain characters.
    2. Invisible format and control characters (zero-width space, soft hyphen, BOM) are dropped.
    3. All whitespace, line breaks included, collapses to one space; ends are stripped.
    4. Spaces between two CJK characters are removed.
    Case and punctuation are kept: getting them right is part of reading.
    """
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))
    return join_cjk(" ".join(text.split()))


def tokenize(text: str, lang: str) -> list[str]:
    """Words for token metrics: jieba words for Chinese, whitespace words otherwise.

    This is the GOT-OCR2 / Fox choice. Unlike their scripts, whitespace tokens that jieba emits
    for the spaces in mixed Chinese-English text are dropped: a space is not a word.
    """
    if lang == "zh":
        return [token for token in jieba.lcut(text) if not token.isspace()]
    return text.split()
