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


class ShardWriter:
    """Streams records into a shard under a temporary name; `close()` syncs it and renames it into place.

    Records go to disk as they come instead of piling up until the shard is full: holding a
    shard's worth of encoded pages in memory made every page ~10% slower (fresh heap pages).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.tmp = path, path.with_name(path.name + TMP_SUFFIX)
        self._raw = self.tmp.open("wb")
        self._sink = _HashingWriter(self._raw)
        # Stream mode ("w|") only ever calls write(), so the bytes are hashed on their way out;
        # the writer owns the handles until close().
        self._tar = tarfile.open(fileobj=self._sink, mode="w|", format=tarfile.GNU_FORMAT)  # noqa: SIM115
        self.count, self._sources, self._langs = 0, Counter(), Counter()

    def add(self, rec: Record) -> None:
        if rec.image is not None:
            _add(self._tar, f"{rec.key}.{rec.ext}", rec.image)
        _add(self._tar, f"{rec.key}.json", json.dumps(rec.record, ensure_ascii=False).encode("utf-8"))
        self.count += 1
        self._sources[rec.record.get("source", "?")] += 1
        self._langs[rec.record.get("lang", "?")] += 1

    def close(self) -> ShardInfo:
        self._tar.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self.tmp, self.path)
        return ShardInfo(
            self.path.name,
            self.count,
            self._sink.size,
            self._sink.digest.hexdigest(),
            dict(self._sources),
            dict(self._langs),
        )


def write_shard(path: Path, records: Sequence[Record]) -> ShardInfo:
    """Write `records` to `path` atomically (temp file, fsync, rename) and describe the result."""
    writer = ShardWriter(path)
    for rec in records:
        writer.add(rec)
    return writer.close()


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
