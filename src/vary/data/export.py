"""Shards -> an evaluation set: `SET.jsonl` of {"id", "image", "text", "lang"} + image files.

The evaluation harness reads plain JSONL with image paths relative to the JSONL file, so a set
can be copied or versioned as a folder. Images are copied byte for byte (no re-encoding, so the
model is scored on exactly the pixels the engine produced), into `<SET>_images/` beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from vary.data.reader import RawRecord, find_shards, iter_records
from vary.reporting import ErrorLog, get_logger


def export_eval(
    sources: Sequence[str | Path],
    out: Path,
    limit: int | None = None,
    lang: str | None = None,
    every: int = 1,
) -> int:
    """Write the set; returns how many samples it holds. Samples without an image are left out.

    `every` keeps one sample in that many, so that a small set spreads over all the documents
    of shards written in document order instead of taking the first ones.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1 (got {every})")
    image_dir = out.with_name(f"{out.stem}_images")
    image_dir.mkdir(parents=True, exist_ok=True)
    errors = ErrorLog(out.with_name(f"{out.stem}_errors.jsonl"))
    tmp = out.with_name(out.name + ".tmp")
    count = seen = 0
    with tmp.open("w", encoding="utf-8") as f:
        for raw in _records(sources, errors):
            if limit is not None and count >= limit:
                break
            if raw.image is None or (lang and raw.record.get("lang") != lang):
                continue
            seen += 1
            if (seen - 1) % every:
                continue
            (image_dir / f"{raw.key}.{raw.ext}").write_bytes(raw.image)
            row = {
                "id": raw.record["id"],
                "image": f"{image_dir.name}/{raw.key}.{raw.ext}",
                "text": raw.record.get("text", ""),
                "lang": raw.record.get("lang", "en"),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, out)
    get_logger("data").info("exported %d samples to %s (%d problems)", count, out, errors.count)
    return count


def _records(sources: Sequence[str | Path], errors: ErrorLog) -> Iterator[RawRecord]:
    for path in find_shards(sources):
        yield from iter_records(path, errors)
