"""Synthetic rendered text: a few real words drawn large on a small square image.

Reading from scratch needs far more samples than a CPU gets through in minutes (FINDINGS.md:
after 20k pages a small model had learned layout, not letters). Short texts in large type on
small images are the fastest way to a model that visibly reads.

Texts are either runs of consecutive words from the prose of Python's own documentation
(`vary.data.words.english_sentences`, nothing downloaded; the "heldout" split draws from the last
tenth of the sentences only), or, with `vocabulary: N`, words drawn uniformly from the N most
frequent of that prose (held-out samples are then new drawings and word pairs, not new words),
or, with `alphabet`, random strings of letters (no word shapes to learn, only letters).
Uniform words leave a model nothing to predict from the language alone: only reading the image
lowers the loss. `curriculum` grows the number of words with the sample index. Every sample is a
pure function of the config and its index, so any slice can be regenerated, sharded or checked
without the others.

    from vary.data.lines import LinesConfig, line_sample, lines_job
    sample = line_sample(LinesConfig(image_size=64), 17)       # a Sample with image and text
    run_job(lines_job(cfg, engine), engine)                     # shards via the data engine
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from vary.data.config import EngineConfig
from vary.data.engine import Job, Unit, UnitResult
from vary.data.fonts import latin_font
from vary.data.sample import Sample
from vary.data.shards import Encoding, Record
from vary.data.words import english_sentences

HELDOUT_SHARE = 0.1  # the last tenth of the sentences is only ever used for held-out samples


@dataclass
class LinesConfig:
    n: int = 10000
    seed: int = 0
    split: Literal["train", "heldout"] = "train"
    image_size: int = 64
    min_words: int = 1
    max_words: int = 4
    # max_words is reached after this share of the samples (0: no curriculum, every sample
    # draws 1..max_words words); indexes are in generation order, so read shards unshuffled.
    curriculum: float = 0.0
    max_chars: int = 40
    # 0: runs of consecutive words (real text); N: words drawn uniformly from the N most frequent,
    # so no language prior predicts them and only reading the image lowers the loss.
    vocabulary: int = 0
    max_word_chars: int = 10  # longer words are left out of the corpus (they would not fit)
    # Non-empty: words are random strings of these characters, 1..max_word_chars long, so there
    # is no word shape to memorise either: only reading letter by letter lowers the loss.
    alphabet: str = ""
    font_sizes: list[int] = field(default_factory=lambda: [14, 24])  # pixels, before fitting
    font: str = ""  # a TrueType file; empty: DejaVu Sans (vary.data.fonts.latin_font)
    samples_per_unit: int = 500

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("need 1 <= min_words <= max_words")
        if len(self.font_sizes) != 2 or not 4 <= self.font_sizes[0] <= self.font_sizes[1]:
            raise ValueError("font_sizes must be [smallest, largest] pixels, smallest >= 4")
        if not 0.0 <= self.curriculum <= 1.0:
            raise ValueError("curriculum must be a share of the samples, in [0, 1]")
        if self.alphabet and self.vocabulary:
            raise ValueError("alphabet (random strings) and vocabulary (frequent words) exclude each other")
        if " " in self.alphabet:
            raise ValueError("alphabet must not contain a space (it separates the words)")


@functools.lru_cache(maxsize=8)
def corpus_words(split: str, max_word_chars: int) -> tuple[str, ...]:
    """The running words of the split's sentences, without words too long to fit a line."""
    sentences = english_sentences()
    cut = int(len(sentences) * (1 - HELDOUT_SHARE))
    text = " ".join(sentences[:cut] if split == "train" else sentences[cut:])
    return tuple(word for word in text.split() if len(word) <= max_word_chars)


@functools.lru_cache(maxsize=8)
def frequent_words(count: int, max_word_chars: int) -> tuple[str, ...]:
    """The `count` most frequent words of the training text (ties broken alphabetically)."""
    counts = Counter(corpus_words("train", max_word_chars))
    return tuple(sorted(counts, key=lambda w: (-counts[w], w))[:count])


def words_allowed(cfg: LinesConfig, index: int) -> int:
    """The curriculum: the most words sample `index` may have."""
    if cfg.curriculum == 0.0:
        return cfg.max_words
    progress = min(1.0, index / max(1.0, cfg.curriculum * cfg.n))
    return cfg.min_words + round(progress * (cfg.max_words - cfg.min_words))


def random_string(alphabet: str, max_chars: int, rng: random.Random) -> str:
    return "".join(rng.choices(alphabet, k=rng.randint(1, max_chars)))


def line_text(cfg: LinesConfig, index: int, rng: random.Random) -> str:
    """Consecutive or random corpus words, at most `max_chars` long (always at least one word)."""
    count = rng.randint(cfg.min_words, words_allowed(cfg, index))
    if cfg.alphabet:
        words = [random_string(cfg.alphabet, cfg.max_word_chars, rng) for _ in range(count)]
    elif cfg.vocabulary:
        words = rng.choices(frequent_words(cfg.vocabulary, cfg.max_word_chars), k=count)
    else:
        corpus = corpus_words(cfg.split, cfg.max_word_chars)
        start = rng.randrange(len(corpus) - count)
        words = list(corpus[start : start + count])
    text = words[0]
    for word in words[1:]:
        if len(text) + 1 + len(word) > cfg.max_chars:
            break
        text += " " + word
    return text


@functools.lru_cache(maxsize=64)
def load_font(font: str, size: int) -> ImageFont.FreeTypeFont:
    path = Path(font) if font else latin_font()
    if not path.is_file():
        raise FileNotFoundError(f"{font}: font file not found")
    return ImageFont.truetype(str(path), size)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str] | None:
    """Greedy word wrap to `width` pixels; None when a single word is wider than that."""
    lines: list[str] = []
    for word in text.split(" "):
        if font.getlength(word) > width:
            return None
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def fit(text: str, cfg: LinesConfig, largest: int) -> tuple[int, list[str]]:
    """The largest font size <= `largest` at which the wrapped text fits the square image."""
    room = cfg.image_size - 4
    for size in range(largest, 3, -1):
        font = load_font(cfg.font, size)
        lines = wrap(text, font, room)
        if lines is not None and len(lines) * line_height(font) <= room:
            return size, lines
    raise ValueError(f"{text!r} does not fit a {cfg.image_size} px image even at 4 px")


def line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def render(text: str, cfg: LinesConfig, rng: random.Random) -> Image.Image:
    """Dark text on a light page, as large as a random size allows, placed at a random offset."""
    size, lines = fit(text, cfg, rng.randint(*cfg.font_sizes))
    font = load_font(cfg.font, size)
    height = line_height(font)
    width = max(int(font.getlength(line)) for line in lines)
    paper, ink = rng.randint(200, 255), rng.randint(0, 70)
    image = Image.new("RGB", (cfg.image_size, cfg.image_size), (paper,) * 3)
    x = rng.randint(2, max(2, cfg.image_size - 2 - width))
    y = rng.randint(2, max(2, cfg.image_size - 2 - height * len(lines)))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((x, y + row * height), line, fill=(ink,) * 3, font=font)
    return image


def line_sample(cfg: LinesConfig, index: int) -> Sample:
    """Sample `index` of the configured set: the same config and index always give the same one."""
    rng = random.Random(f"lines:{cfg.seed}:{cfg.split}:{index}")
    text = line_text(cfg, index, rng)
    return Sample(
        id=f"lines-{cfg.split}-{cfg.seed}-{index:08d}",
        image=render(text, cfg, rng),
        text=text,
        lang="en",
        source="synthetic",
        meta={"generator": "lines", "index": index},
    )


def render_unit(cfg: LinesConfig, encoding: Encoding, indexes: Sequence[int]) -> UnitResult:
    """Engine worker: a range of sample indexes -> encoded shard records."""
    records = []
    for index in indexes:
        sample = line_sample(cfg, index)
        records.append(Record.from_sample(sample, encoding.encode(sample.image), encoding.format))
    return UnitResult(records=records)


def lines_job(cfg: LinesConfig, engine: EngineConfig) -> Job:
    """Plan a run of the data engine that writes samples 0..n-1 to shards, in index order."""
    units = [
        Unit(key=f"lines:{start}", payload=range(start, min(start + cfg.samples_per_unit, cfg.n)))
        for start in range(0, cfg.n, cfg.samples_per_unit)
    ]
    return Job(
        name=f"lines-{cfg.split}",
        units=units,
        process=functools.partial(render_unit, cfg, engine.encoding()),
        settings=asdict(cfg),
        unit_label="unit",
    )
