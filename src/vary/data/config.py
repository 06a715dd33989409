"""Typed settings of the data engines (`vary.config` loads them from YAML; the CLI overrides fields).

Everything that changes what a shard contains lives here, because the engine fingerprints the
config: a re-run into the same output folder resumes only when nothing here changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    # unit="region": small crops of real text lines instead of whole pages (vary.data.regions), the
    # input a small Vary-tiny reads. Lines and heights are drawn per region from [min, max].
    unit: Literal["page", "region"] = "page"
    region_size: int = 128  # output square, px
    region_lines: list[int] = field(default_factory=lambda: [1, 1])  # consecutive lines per region
    region_max_chars: int = 24  # characters per line: consecutive words of one line up to this
    region_text_height: list[int] = field(default_factory=lambda: [14, 28])  # px per line; min = readable
    regions_per_page: int = 8  # at most, drawn deterministically from the file key and page number
    region_min_chars: int = 4  # fewer visible characters: too_little_text

    def __post_init__(self) -> None:
        for name in ("region_lines", "region_text_height"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 1 <= lo_hi[0] <= lo_hi[1]:
                raise ValueError(f"{name} must be [min, max] with 1 <= min <= max, got {lo_hi}")
        if self.region_size < 8 or self.region_max_chars < 1 or self.regions_per_page < 1:
            raise ValueError("need region_size >= 8, region_max_chars >= 1, regions_per_page >= 1")
        if self.region_text_height[0] * self.region_lines[1] > self.region_size:
            raise ValueError("region_lines max * region_text_height min must fit in region_size")


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
