"""Writing WebDataset shards: encoded records in, deterministic tar files out, never half-written.

A shard is a plain tar of `<key>.<png|jpg>` + `<key>.json` pairs (`Sample.to_json()`), readable
by `vary.data.reader` and by the `webdataset` package alike. Tar headers carry fixed times and
owners, so the same records always give byte-identical shards: a resumed run can be checked
against an uninterrupted one by sha256. Each shard is written under a temporary name, synced, and
renamed into place, so a killed run never leaves a file that looks like a finished shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from PIL import Image

from vary.data.sample import Sample

ImageFormat = Literal["png", "jpg"]
TMP_SUFFIX = ".tmp"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class Record:
    """One sample, encoded and ready for a shard; what engine workers send back to the writer."""

    key: str
    record: dict[str, Any]  # Sample.to_json()
    image: bytes | None = None
    ext: ImageFormat = "png"
    dedup_key: str | None = None  # records with an already-seen key are dropped

    @classmethod
    def from_sample(
        cls, sample: Sample, image: bytes | None, ext: ImageFormat, dedup_key: str | None = None
    ) -> Record:
        """The record of `sample` with its already encoded image (the sample's image field is unused)."""
        return cls(safe_key(sample.id), sample.to_json(), image, ext, dedup_key)


@dataclass
class ShardInfo:
    name: str
    count: int
    bytes: int
    sha256: str
    by_source: dict[str, int] = field(default_factory=dict)
    by_lang: dict[str, int] = field(default_factory=dict)


def safe_key(sample_id: str) -> str:
    """A tar key WebDataset can group on: no dots (they start the extension), no slashes."""
    return _KEY_UNSAFE.sub("_", sample_id).strip("_") or "sample"


@dataclass(frozen=True)
class Encoding:
    """How images are stored: JPEG (default; PIL encodes a 1024 px page in ~3 ms) or PNG (lossless;
    level 1 is ~4x faster than 6 and only ~10% larger on pages, still ~19 ms a page)."""

    format: ImageFormat = "jpg"
    jpeg_quality: int = 90
    png_level: int = 1

    def encode(self, image: Image.Image) -> bytes:
        buf = io.BytesIO()
        if self.format == "jpg":
            rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
            rgb.save(buf, format="JPEG", quality=self.jpeg_quality)
        else:
            image.save(buf, format="PNG", compress_level=self.png_level)
        return buf.getvalue()


def encode_image(image: Image.Image, fmt: ImageFormat, jpeg_quality: int = 90, png_level: int = 1) -> bytes:
    """One image as shard bytes (see `Encoding`)."""
    return Encoding(fmt, jpeg_quality, png_level).encode(image)


def write_shard(path: Path, records: Sequence[Record]) -> ShardInfo:
    """Write `records` to `path` atomically (temp file, fsync, rename) and describe the result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with tmp.open("wb") as raw:
        sink = _HashingWriter(raw)
        # Stream mode ("w|") only ever calls write(), so the bytes are hashed on their way out.
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            for rec in records:
                if rec.image is not None:
                    _add(tar, f"{rec.key}.{rec.ext}", rec.image)
                _add(tar, f"{rec.key}.json", json.dumps(rec.record, ensure_ascii=False).encode("utf-8"))
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)
    return ShardInfo(
        name=path.name,
        count=len(records),
        bytes=sink.size,
        sha256=sink.digest.hexdigest(),
        by_source=dict(Counter(r.record.get("source", "?") for r in records)),
        by_lang=dict(Counter(r.record.get("lang", "?") for r in records)),
    )


class _HashingWriter:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.digest, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))
