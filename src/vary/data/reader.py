"""Reading training data back: shards and LLaVA JSON in, `Sample`s out, bad files reported and skipped.

    from vary.data.reader import iter_samples, mix
    docs = iter_samples(["out/pdf"])                     # every shard in a folder
    charts = iter_samples(["out/charts/chart-000000.tar"])
    chat = iter_samples(["llava.json"], image_root="images/")
    for sample in mix([docs, charts, chat], weights=[0.5, 0.3, 0.2], seed=0): ...

A truncated or corrupt shard yields the samples it holds up to the damage, then one warning line
(and a line in the ErrorLog given), and reading goes on with the next file.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from PIL import Image

from vary.data.sample import Sample
from vary.data.shards import TMP_SUFFIX
from vary.reporting import ErrorLog

T = TypeVar("T")
IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")


@dataclass
class RawRecord:
    """One shard entry before decoding: for tools that copy images without re-encoding them."""

    key: str
    record: dict[str, Any]
    image: bytes | None
    ext: str | None
    shard: str


def find_shards(paths: Iterable[str | Path]) -> list[Path]:
    """Tar files and LLaVA JSON files named, and the tar files inside the folders named (sorted)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.tar") if not p.name.endswith(TMP_SUFFIX))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such shard, folder or JSON file")
    return found


def iter_samples(
    paths: Iterable[str | Path],
    errors: ErrorLog | None = None,
    image_root: str | Path | None = None,
    decode_images: bool = True,
) -> Iterator[Sample]:
    """Samples from shard folders, `.tar` shards and LLaVA JSON files, in order.

    `image_root` is where a LLaVA JSON's relative image paths start (default: the JSON's folder).
    With `decode_images=False` samples carry `image=None` (for counting, filtering on text).
    """
    errors = errors or ErrorLog()
    for path in find_shards(paths):
        if path.suffix == ".json":
            yield from _iter_llava(
                path, Path(image_root) if image_root else path.parent, errors, decode_images
            )
            continue
        for raw in iter_records(path, errors):
            image = None
            if decode_images and raw.image is not None:
                try:
                    image = Image.open(io.BytesIO(raw.image))
                    image.load()
                except Exception as err:
                    errors.record(f"{path.name}:{raw.key}", f"undecodable image: {err}", kind="bad_image")
                    continue
            yield Sample.from_json(raw.record, image)


@dataclass(frozen=True)
class RecordEntry:
    """Where one record's files lie in its shard: extension -> (data offset, size) in bytes."""

    key: str
    parts: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class ShardIndex:
    """A shard's records, located from the tar headers alone, so that any one can be read later.

    `problems` are (where, message, kind) for the ErrorLog: a group without its .json part, or
    the damage that ends the index early (the records before it are kept).
    """

    records: tuple[RecordEntry, ...]
    problems: tuple[tuple[str, str, str], ...] = ()

    def report(self, errors: ErrorLog) -> None:
        for where, message, kind in self.problems:
            errors.record(where, message, kind=kind)


def index_shard(path: Path) -> ShardIndex:
    """Scan the headers of a tar shard (its data is skipped, not read), grouping files by key."""
    records: list[RecordEntry] = []
    problems: list[tuple[str, str, str]] = []
    size = path.stat().st_size

    def close(key: str, parts: dict[str, tuple[int, int]]) -> None:
        if "json" in parts:
            records.append(RecordEntry(key, parts))
        else:
            problems.append((f"{path.name}:{key}", "sample has no .json part", "bad_sample"))

    key, parts = "", {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                if member.offset_data + member.size > size:
                    raise tarfile.ReadError(f"{member.name} cut short")
                name_key, _, ext = member.name.rpartition("/")[2].partition(".")
                if name_key != key and parts:
                    close(key, parts)
                    parts = {}
                key, parts[ext] = name_key, (member.offset_data, member.size)
    except (tarfile.TarError, EOFError, OSError) as err:
        message = f"truncated or corrupt shard after {len(records)} samples ({err})"
        return ShardIndex(tuple(records), (*problems, (str(path), message, "bad_shard")))
    if parts:
        close(key, parts)
    if not _ends_cleanly(path):
        message = f"truncated shard: no tar end marker after {len(records)} samples"
        problems.append((str(path), message, "bad_shard"))
    return ShardIndex(tuple(records), tuple(problems))


def read_record(shard: BinaryIO, name: str, entry: RecordEntry) -> RawRecord:
    """One indexed record of the open shard `shard` (named `name`), its JSON parsed."""

    def read(ext: str) -> bytes:
        offset, size = entry.parts[ext]
        shard.seek(offset)
        return shard.read(size)

    ext = next((e for e in IMAGE_EXTS if e in entry.parts), None)
    record = json.loads(read("json").decode("utf-8"))
    return RawRecord(entry.key, record, read(ext) if ext else None, ext, name)


def iter_records(path: Path, errors: ErrorLog) -> Iterator[RawRecord]:
    """Raw entries of one tar shard, grouped by key; damage is reported once and ends this file."""
    index = index_shard(path)
    with path.open("rb") as shard:
        for entry in index.records:
            yield read_record(shard, path.name, entry)
    index.report(errors)


def _ends_cleanly(path: Path) -> bool:
    """A tar cut at a member boundary reads without error: check the two zero blocks that end it."""
    size = path.stat().st_size
    if size % 512 or size < 1024:
        return False
    with path.open("rb") as f:
        f.seek(size - 1024)
        return not any(f.read(1024))


def mix(streams: Sequence[Iterable[T]], weights: Sequence[float], seed: int = 0) -> Iterator[T]:
    """Interleave streams, drawing each next item from stream i with probability ~ weights[i].

    A stream that runs out drops out (the others keep their relative weights); the mix ends when
    all are exhausted. Wrap a stream in `itertools.cycle`-like repetition to oversample it.
    """
    if len(streams) != len(weights) or not streams or any(w <= 0 for w in weights):
        raise ValueError("mix needs one positive weight per stream")
    rng = random.Random(seed)
    iterators = [iter(s) for s in streams]
    live = list(weights)
    while iterators:
        (i,) = rng.choices(range(len(iterators)), weights=live)
        try:
            yield next(iterators[i])
        except StopIteration:
            del iterators[i], live[i]


def _iter_llava(path: Path, image_root: Path, errors: ErrorLog, decode: bool) -> Iterator[Sample]:
    """LLaVA-style conversations: [{"id", "image", "conversations": [{"from", "value"}, ...]}]."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        errors.record(str(path), f"not a readable LLaVA JSON file ({err})", kind="bad_json")
        return
    if not isinstance(items, list):
        errors.record(str(path), "LLaVA JSON must be a list of samples", kind="bad_json")
        return
    for n, item in enumerate(items):
        try:
            sample = _llava_sample(item, image_root, decode)
        except Exception as err:
            errors.record(f"{path.name}[{n}]", err, kind="bad_sample")
            continue
        yield sample


def _llava_sample(item: dict[str, Any], image_root: Path, decode: bool) -> Sample:
    conversations = item["conversations"]
    if not conversations or not all({"from", "value"} <= set(turn) for turn in conversations):
        raise ValueError("conversations must be a non-empty list of {'from', 'value'} turns")
    image = None
    if item.get("image"):
        image_path = image_root / item["image"]
        if not image_path.is_file():
            raise FileNotFoundError(f"image {image_path} not found")
        if decode:
            image = Image.open(image_path)
            image.load()
    meta = {"image_file": item["image"]} if item.get("image") else {}
    return Sample(
        id=str(item.get("id", "")),
        image=image,
        lang=item.get("lang", "en"),
        source="llava",
        conversations=list(conversations),
        meta=meta,
    )
