"""Natural photos -> negative samples: an image with no text to read and an empty target.

Vary-tiny is trained to write out the text of an image; the paper adds natural images as
negatives so the new vocabulary does not hallucinate text on photos. The target here is the
empty string (lang "none"): the model learns to end at once, which needs no special marker in
the tokenizer and makes "no text" cost a single end-of-sequence token at inference.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from PIL import Image

from vary.data.config import EngineConfig, NaturalConfig
from vary.data.engine import Job, Unit, UnitResult, find_inputs
from vary.data.sample import Sample
from vary.data.shards import Encoding, Record

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
NO_TEXT = ""  # the target text of a negative sample


def natural_job(sources: Sequence[str | Path], cfg: NaturalConfig, engine: EngineConfig) -> Job:
    files = find_inputs(sources, IMAGE_SUFFIXES)
    step = cfg.images_per_unit
    units = []
    for start in range(0, len(files), step):
        batch = files[start : start + step]
        units.append(Unit(batch[0][1], [(str(path), key) for path, key in batch]))
    process = functools.partial(
        process_unit,
        cfg=cfg,
        encoding=engine.encoding(),
    )
    return Job(
        "natural",
        units,
        process,
        settings={"natural": asdict(cfg)},
        unit_label="batch",
        extra={"files": len(files)},
    )


def process_unit(items: list[tuple[str, str]], cfg: NaturalConfig, encoding: Encoding) -> UnitResult:
    result = UnitResult()
    for path, key in items:
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except Exception as err:
            result.errors.append((key, "bad_image", f"cannot read image: {type(err).__name__}: {err}"))
            continue
        image.thumbnail((cfg.long_side, cfg.long_side))  # only ever shrinks
        sample_id = f"natural-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:12]}"
        sample = Sample(sample_id, None, NO_TEXT, "none", "natural", meta={"file": key})
        result.records.append(Record.from_sample(sample, encoding.encode(image), encoding.format))
    return result
