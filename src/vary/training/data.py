"""Training batches from shards and LLaVA JSON: mixed by weight, split across processes, resumable.

Every process walks the same global sample order and keeps its own micro-batches of each step:

- which source global sample `g` comes from is a pure function of (seed, g), so the mix needs no
  state to resume;
- each source reads its files in an order seeded by the epoch (or in the stored order when
  `shuffle` is off, for curricula), one record after another;
- the micro-batches of a step go round-robin to the processes, so N processes see exactly the
  micro-batches one process sees with N times the gradient accumulation.

The stream hands out positions in the shards (`ShardRef`: file and record number, counted from
`vary data`'s manifests), not records: only the process that trains on a sample reads it from
its shard and decodes it, in the collate step (optionally in worker processes, which then carry
the reading too). The position in the stream is a few integers (samples drawn; for each source
its epoch, file and record), saved with every checkpoint: resuming starts each source at its
file and record without reading anything before it.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import torch
from PIL import Image

from vary.cli import UserError
from vary.data.engine import MANIFEST
from vary.data.reader import ShardIndex, find_shards, index_shard, iter_samples, read_record
from vary.data.sample import Sample
from vary.model import VaryProcessor, ocr_conversation
from vary.model.templates import IGNORE_INDEX
from vary.reporting import ErrorLog
from vary.training.augment import LowRes, draw_low_res, lower_resolution
from vary.training.config import SourceConfig

T = TypeVar("T")
R = TypeVar("R")
Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class Cursor:
    """Where one source stands: epoch, index in that epoch's file order, records taken from that file."""

    epoch: int = 0
    file: int = 0
    record: int = 0


@dataclass(frozen=True)
class Position:
    """Where the whole stream stands: global samples drawn so far and every source's cursor."""

    samples: int = 0
    cursors: tuple[Cursor, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Position:
        return cls(data["samples"], tuple(Cursor(**c) for c in data["cursors"]))


@dataclass
class ShardRef:
    """Record `record` of a shard, not read yet: the training process hands out positions only and
    the collate workers read them (reading records took most of the training process's time per
    step on an H100, which then waited for it)."""

    path: Path
    record: int
    low_res: LowRes | None = None  # drawn for this sample of the stream (`vary.training.augment`)

    @property
    def where(self) -> str:
        return f"{self.path.name}#{self.record}"

    def load(self) -> Sample:
        """The sample with its image (raises, naming the damage, on a record that cannot be read)."""
        index = cached_index(self.path)
        if self.record >= len(index.records):
            damage = "; ".join(message for _, message, _ in index.problems) or "fewer than its manifest says"
            raise ValueError(f"only {len(index.records)} readable records in the shard: {damage}")
        with self.path.open("rb") as shard:
            raw = read_record(shard, self.path.name, index.records[self.record])
        return with_image(Sample.from_json(raw.record, None), raw.image, self.low_res)


@dataclass
class ParsedRef:
    """A sample the stream has parsed (a LLaVA JSON item), its image (file or bytes) not decoded yet."""

    sample: Sample  # image is None
    image: bytes | Path | None
    where: str
    low_res: LowRes | None = None

    def load(self) -> Sample:
        return with_image(self.sample, self.image, self.low_res)


Ref = ShardRef | ParsedRef


def with_image(sample: Sample, image: bytes | Path | None, low_res: LowRes | None) -> Sample:
    """`sample` with its image decoded (PIL raises on damaged data; the collator records it)."""
    if image is None:
        raise ValueError("sample has no image")
    decoded = Image.open(io.BytesIO(image) if isinstance(image, bytes) else image)
    decoded.load()
    if low_res is not None:
        decoded = lower_resolution(decoded, low_res)
    return replace(sample, image=decoded)


def cached_index(path: Path) -> ShardIndex:
    """`index_shard(path)`, scanned once per process for as long as the file stays the same."""
    stat = path.stat()
    return _index(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)
def _index(path: Path, mtime_ns: int, size: int) -> ShardIndex:
    return index_shard(path)


def manifest_counts(folder: Path) -> dict[str, int]:
    """Records per shard as `vary data` wrote them (`manifest.json`), {} where there is none."""
    try:
        return _manifest_counts(folder / MANIFEST, (folder / MANIFEST).stat().st_mtime_ns)
    except OSError:
        return {}


@functools.lru_cache(maxsize=256)
def _manifest_counts(path: Path, mtime_ns: int) -> dict[str, int]:
    try:
        return {shard["name"]: int(shard["count"]) for shard in json.loads(path.read_text("utf-8"))["shards"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def record_count(path: Path, errors: ErrorLog) -> int:
    """How many records `path` holds: its manifest's count, else its headers scanned (and their
    problems reported), so the training process reads no record itself."""
    count = manifest_counts(path.parent).get(path.name)
    if count is not None:
        return count
    index = cached_index(path)
    index.report(errors)
    return len(index.records)


def iter_file(path: Path, image_root: str | None, errors: ErrorLog, start: int) -> Iterator[Ref]:
    """The records of one shard or LLaVA JSON file from record `start`, in stored order, unread."""
    if path.suffix == ".json":
        root = Path(image_root) if image_root else path.parent
        samples = iter_samples([path], errors, root, decode_images=False)
        for n, sample in enumerate(itertools.islice(samples, start, None), start=start):
            image_file = sample.meta.get("image_file")
            yield ParsedRef(sample, root / image_file if image_file else None, f"{path.name}[{n}]")
        return
    for record in range(start, record_count(path, errors)):
        yield ShardRef(path, record)


def epoch_files(files: Sequence[Path], seed: int, source: int, epoch: int, shuffle: bool) -> list[Path]:
    order = list(files)
    if shuffle:
        random.Random(f"files:{seed}:{source}:{epoch}").shuffle(order)
    return order


def iter_source(
    config: SourceConfig, index: int, seed: int, start: Cursor, errors: ErrorLog
) -> Iterator[tuple[Ref, Cursor]]:
    """One source, epoch after epoch, from `start`; each record comes with the cursor after it."""
    files = find_shards([config.path])
    if not files:
        raise UserError(f"{config.path}: no .tar shards or LLaVA .json files found")
    epoch, file, record = start.epoch, start.file, start.record
    while True:
        produced = False
        order = epoch_files(files, seed, index, epoch, config.shuffle)
        for f in range(file, len(order)):
            for r, ref in enumerate(iter_file(order[f], config.image_root, errors, record), start=record):
                produced = True
                yield ref, Cursor(epoch, f, r + 1)
            record = 0
        if not produced and file == 0:
            raise UserError(f"{config.path}: a whole epoch without one readable sample")
        epoch, file = epoch + 1, 0


def choose_source(seed: int, sample: int, weights: Sequence[float]) -> int:
    """The source of global sample `sample`: weighted, and the same whenever it is asked again."""
    return random.Random(f"mix:{seed}:{sample}").choices(range(len(weights)), weights)[0]


def iter_stream(
    sources: Sequence[SourceConfig], seed: int, start: Position, errors: ErrorLog
) -> Iterator[tuple[Ref, Position]]:
    """All sources mixed by weight: the global sample order, each sample with the position after it."""
    cursors = list(start.cursors) or [Cursor()] * len(sources)
    if len(cursors) != len(sources):
        raise UserError(f"the checkpoint has {len(cursors)} data sources, the config {len(sources)}")
    streams = [iter_source(s, i, seed, cursors[i], errors) for i, s in enumerate(sources)]
    weights = [s.weight for s in sources]
    for sample in itertools.count(start.samples):
        i = choose_source(seed, sample, weights)
        ref, cursors[i] = next(streams[i])
        if sources[i].low_res is not None:
            ref = replace(ref, low_res=draw_low_res(sources[i].low_res, seed, sample))
        yield ref, Position(sample + 1, tuple(cursors))


def iter_steps(
    stream: Iterator[tuple[Ref, Position]],
    micro_batch_size: int,
    accumulation: int,
    rank: int,
    world: int,
) -> Iterator[tuple[list[list[Ref]], Position]]:
    """Per optimizer step: this process's `accumulation` micro-batches and the position after the step.

    Micro-batch k of a step belongs to process k % world, so the global batch of a step is the
    same whatever the number of processes.
    """
    while True:
        own, position = [], None
        for k in range(world * accumulation):
            chunk = list(itertools.islice(stream, micro_batch_size))
            position = chunk[-1][1]
            if k % world == rank:
                own.append([ref for ref, _ in chunk])
        yield own, position


def target_conversation(sample: Sample, stage: str) -> Conversation:
    """Vary-tiny learns to write out the text; Vary-base learns the conversations when there are any."""
    if sample.conversations and (stage != "tiny" or not sample.text):
        return sample.conversations
    return ocr_conversation(sample.text)


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]
    target_tokens: int  # tokens the loss is computed on
    tokens: int  # all tokens, image placeholders included, padding excluded
    problems: list[tuple[str, str]] = field(default_factory=list)  # (sample, what went wrong)


@dataclass
class Collator:
    """Refs -> one padded model batch. A sample that cannot be loaded keeps its slot (so every
    process runs the same number of samples) with a blank image and no target tokens."""

    processor: VaryProcessor
    stage: str

    def __call__(self, refs: Sequence[Ref]) -> Batch:
        images, conversations, problems = [], [], []
        for ref in refs:
            try:
                sample = ref.load()
            except Exception as err:
                problems.append((ref.where, f"{type(err).__name__}: {err}"))
                images.append(Image.new("RGB", (32, 32), "white"))
                conversations.append(ocr_conversation())
                continue
            images.append(sample.image)
            conversations.append(target_conversation(sample, self.stage))
        inputs = self.processor(images, conversations, normalize=False)
        return Batch(
            inputs=inputs,
            target_tokens=int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum()),
            tokens=int(inputs["attention_mask"].sum()),
            problems=problems,
        )


_worker_fn: Callable[[Any], Any] | None = None  # set once per pool worker by _init_worker


def _init_worker(fn: Callable[[Any], Any], parent: int) -> None:
    global _worker_fn
    _worker_fn = fn
    torch.set_num_threads(1)  # the workers share the cores with the training process
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A training process killed outright (SIGKILL, SIGTERM) must not leave its workers behind.

    `parent` is the pid the pool was started from, not `os.getppid()` read here: a worker still
    importing when its parent dies would read its new parent and wait for it forever.
    """
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _run_in_worker(item: Any) -> Any:
    return _worker_fn(item)


def prefetch_map(fn: Callable[[T], R], items: Iterator[T], workers: int, depth: int = 4) -> Iterator[R]:
    """`map(fn, items)` in order, with up to `workers * depth` results being computed ahead.

    `fn` is sent to each worker once (a tokenizer can be large), not with every item.
    """
    if workers == 0:
        yield from map(fn, items)
        return
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=(fn, os.getpid())) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(_run_in_worker, item))
            if len(pending) >= workers * depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def collate_step(collator: Collator, step: tuple[list[list[Ref]], Position]) -> tuple[list[Batch], Position]:
    """One step's micro-batches collated (a top-level function, so worker processes can run it)."""
    micro_batches, position = step
    return [collator(refs) for refs in micro_batches], position


def read_texts(sources: Sequence[SourceConfig], limit: int) -> Iterator[str]:
    """Target texts of the first samples of every source, to train a BPE tokenizer on."""
    per_source = max(1, limit // len(sources))
    for source in sources:
        samples = iter_samples([source.path], image_root=source.image_root, decode_images=False)
        for sample in itertools.islice(samples, per_source):
            yield sample.text
            yield from (turn["value"] for turn in sample.conversations)


def read_heldout(source: SourceConfig, limit: int) -> list[Sample]:
    """The first `limit` held-out samples, decoded (the same ones at every evaluation)."""
    return list(itertools.islice(iter_samples([source.path], image_root=source.image_root), limit))
