"""Typed settings of the data engines (`vary.config` loads them from YAML; the CLI overrides fields).

Everything that changes what a shard contains lives here, because the engine fingerprints the
config: a re-run into the same output folder resumes only when nothing here changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vary.data.shards import Encoding, ImageFormat
from vary.data.splits import Split


@dataclass
class EngineConfig:
    """How a job runs: where to, how parallel, which slice of the inputs, how shards are cut."""

    out: str = "out/data"
    workers: int = 1
    shard: str = "0/1"  # "i/N": this run takes the i-th of N deterministic slices of the inputs
    shard_size: int = 1000  # samples per shard (a shard closes after the unit that reaches it)
    image_format: ImageFormat = "jpg"  # JPEG q90 encodes ~7x faster than PNG (BENCHMARKS.md)
    jpeg_quality: int = 90
    png_level: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1 or self.shard_size < 1:
            raise ValueError("workers and shard_size must be >= 1")
        self.partition()  # validate early

    def encoding(self) -> Encoding:
        return Encoding(self.image_format, self.jpeg_quality, self.png_level)

    def partition(self) -> tuple[int, int]:
        index, sep, count = self.shard.partition("/")
        if not (sep and index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
            raise ValueError(f"shard must be 'i/N' with 0 <= i < N, got {self.shard!r}")
        return int(index), int(count)


@dataclass
class PdfConfig:
    split: Split = "train"
    long_side: int = 1024  # rendered page size in pixels
    min_chars: int = 80  # fewer visible characters: the page is dropped (title pages, figures)
    max_bad_share: float = 0.02  # replacement / private-use characters tolerated
    min_letter_share: float = 0.3  # below: indexes, number tables, code dumps (TOCs are ~0.37)
    dedup: bool = True
    pages_per_unit: int = 128  # pages a worker renders per task from one open document (opening costs ~6 ms)


@dataclass
class GeneratorConfig:
    """What every synthetic source shares: how many items, in which languages, from which seed.

    Item i is in language `langs[i % len(langs)]` and drawn from its own generator seeded with
    `seed:i`, so any slice of a run can be regenerated alone.
    """

    n: int = 1000
    langs: list[str] = field(default_factory=lambda: ["en", "zh"])
    seed: int = 0
    long_side: int = 1024

    def __post_init__(self) -> None:
        if self.n < 0 or not self.langs or not set(self.langs) <= {"en", "zh"}:
            raise ValueError(f"need n >= 0 and languages among en, zh (got n={self.n}, langs={self.langs})")


@dataclass
class ChartConfig(GeneratorConfig):
    families: list[str] = field(default_factory=lambda: ["matplotlib", "echarts"])
    cjk_font: str = ""  # a font file or family; empty: the first CJK font found on the system
    charts_per_unit: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.families or not set(self.families) <= {"matplotlib", "echarts"}:
            raise ValueError(f"families must be among matplotlib, echarts (got {self.families})")


@dataclass
class LatexConfig(GeneratorConfig):
    n: int = 200
    timeout_s: float = 60.0
    extra_preamble: str = ""  # appended to every document's preamble (e.g. a package to try)


@dataclass
class NaturalConfig:
    long_side: int = 1024
    images_per_unit: int = 16
