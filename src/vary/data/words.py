"""Offline text for synthetic pages and charts: English from Python's own docs, Chinese from jieba.

No downloads: the English prose is the standard library's `pydoc_data.topics` (the language
reference, ~0.5M characters), the Chinese vocabulary is jieba's dictionary (words with their
frequency and part of speech). Both ship with what is already installed.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

import jieba

from vary.data.text import is_cjk

_STOP = frozenset(
    re.findall(
        r"\w+",
        """that this with from have will must when then than they them their there which where what also
        been into only such each other some more most these those shall does should would could used""",
    )
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
ZH_PUNCT = "，，，、；"


@functools.lru_cache(maxsize=1)
def english_words() -> tuple[str, ...]:
    """Lower-case words (4-12 letters) of Python's reference manual, most frequent first."""
    counts: dict[str, int] = {}
    for word in re.findall(r"\b[a-z]{4,12}\b", _python_docs()):
        if word not in _STOP:
            counts[word] = counts.get(word, 0) + 1
    return tuple(sorted(counts, key=lambda w: (-counts[w], w)))


@functools.lru_cache(maxsize=1)
def english_sentences() -> tuple[str, ...]:
    """Plain prose sentences (no code, no markup characters) from Python's reference manual."""
    sentences = []
    for block in _python_docs().split("\n\n"):
        if block.startswith((" ", "*", "=", "-")):
            continue  # code samples, headings, lists
        for sentence in _SENTENCE.split(" ".join(block.split())):
            if (
                40 <= len(sentence) <= 220
                and sentence.endswith(".")
                and re.fullmatch(r"[A-Za-z0-9 ,.;:()'-]+", sentence)
            ):
                sentences.append(sentence)
    return tuple(sentences)


@functools.lru_cache(maxsize=1)
def chinese_words(min_freq: int = 300) -> tuple[str, ...]:
    """Common 2-4 character Chinese nouns from jieba's dictionary, most frequent first."""
    entries = []
    for line in (Path(jieba.__file__).parent / "dict.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[2] != "n" or not 2 <= len(parts[0]) <= 4:
            continue
        if int(parts[1]) >= min_freq and all(map(is_cjk, parts[0])):
            entries.append((int(parts[1]), parts[0]))
    return tuple(word for _, word in sorted(entries, key=lambda e: (-e[0], e[1])))


def chinese_sentence(rng: random.Random, min_words: int = 6, max_words: int = 16) -> str:
    """A run of dictionary words with commas, closed by a full stop (looks like text, means nothing)."""
    words = chinese_words()
    out = []
    for i in range(rng.randint(min_words, max_words)):
        if i and rng.random() < 0.2:
            out.append(rng.choice(ZH_PUNCT))
        out.append(rng.choice(words[:3000]))
    return "".join(out) + "。"


def english_title(rng: random.Random, words: int = 3) -> str:
    return " ".join(w.capitalize() for w in rng.sample(english_words()[:1500], words))


def chinese_title(rng: random.Random, words: int = 2) -> str:
    return "".join(rng.sample(chinese_words()[:1500], words))


def _python_docs() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))
