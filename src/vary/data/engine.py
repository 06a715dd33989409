"""The engine every source runs on: units of work in, parallel workers, ordered shards out, resumable.

A job is a list of units (a chunk of PDF pages, a batch of chart seeds, ...) and a picklable
function turning one unit into encoded records. Workers run units in parallel; the parent takes
their results *in unit order*, drops duplicates, and cuts shards. Because the order is fixed and
the shard writer is deterministic, the output depends only on the inputs and the config, not on
the number of workers or on interruptions:

- `--shard i/N` keeps the units whose key hashes to slice i (stable when files are added);
- after each shard, a small state file records how many units are done, the shards written and
  the de-duplication keys seen; a re-run with the same inputs and config resumes from there and
  produces the same bytes, while one with different inputs refuses to mix them into the folder;
- per-item problems are counted in the state and logged with the shard that covers them, so a
  resumed run neither loses nor repeats them.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vary.cli import UserError
from vary.data.config import EngineConfig
from vary.data.shards import Record, ShardWriter
from vary.reporting import ErrorLog, Stopwatch, get_logger, progress, write_summary

STATE_DIR = ".state"
MANIFEST = "manifest.json"
log = get_logger("data")


@dataclass
class Unit:
    key: str  # stable identity (file path, seed range): partitions the job and fingerprints it
    payload: Any  # what the worker function receives; must pickle


@dataclass
class UnitResult:
    records: list[Record] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)  # dropped by design (reason -> count)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (item, kind, message)


@dataclass
class Job:
    name: str  # shard prefix, e.g. "pdf"
    units: Sequence[Unit]
    process: Callable[[Any], UnitResult]  # top-level function or functools.partial: must pickle
    settings: dict[str, Any]  # everything that decides the content; part of the fingerprint
    unit_label: str = "unit"
    extra: dict[str, Any] = field(default_factory=dict)  # job facts for the summary


@dataclass
class State:
    fingerprint: str
    units_done: int = 0
    shards: list[dict[str, Any]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class _Pending:
    """What has been produced since the last committed shard (records stream into `shard`)."""

    shard: Path
    writer: ShardWriter | None = None
    seen: list[str] = field(default_factory=list)
    filtered: Counter = field(default_factory=Counter)
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    units: int = 0

    @property
    def count(self) -> int:
        return self.writer.count if self.writer else 0

    def add(self, record: Record) -> None:
        if self.writer is None:
            self.writer = ShardWriter(self.shard)
        self.writer.add(record)


def find_inputs(sources: Iterable[str | Path], suffixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """(path, key) for every file with one of `suffixes` in the given files and folders, by key.

    The key is the path relative to the folder given, under that folder's name: it names the item
    in sample ids and partitions the work, and is the same wherever the corpus is mounted.
    """
    found: dict[str, Path] = {}
    for source in map(Path, sources):
        if source.is_dir():
            for path in source.rglob("*"):
                if path.suffix.lower() in suffixes and path.is_file():
                    found[f"{source.absolute().name}/{path.relative_to(source).as_posix()}"] = path
        elif source.is_file():
            found[source.name] = source
        else:
            raise FileNotFoundError(f"{source}: no such file or folder")
    return sorted(((p, k) for k, p in found.items()), key=lambda item: item[1])


def partition_of(key: str, count: int) -> int:
    """Deterministic slice of a unit: a hash of its key, so adding inputs does not reshuffle others."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) % count


def run_job(job: Job, cfg: EngineConfig) -> dict[str, Any]:
    """Run (or resume) `job` into `cfg.out`; returns the summary also written to summary*.json."""
    out = Path(cfg.out)
    index, count = cfg.partition()
    tag = "" if count == 1 else f"-p{index:03d}of{count:03d}"
    units = [u for u in job.units if partition_of(u.key, count) == index]
    state_path = out / STATE_DIR / f"{job.name}{tag}.json"
    state = _load_state(state_path, _fingerprint(job, units, cfg))
    errors = ErrorLog(out / f"errors{tag}.jsonl")
    if state.units_done:
        log.info("%s: resuming after %d of %d %ss", job.name, state.units_done, len(units), job.unit_label)
    clock, written_before = Stopwatch(), sum(s["count"] for s in state.shards)
    todo = [u.payload for u in units[state.units_done :]]
    seen = set(state.seen)
    pending = _Pending(_shard_path(out, job.name, tag, len(state.shards)))
    with _mapper(cfg.workers) as mapper:
        results = mapper(job.process, todo)
        try:
            for result in progress(results, desc=job.name, total=len(todo), unit=job.unit_label):
                _absorb(result, pending, seen)
                if pending.count >= cfg.shard_size:
                    _commit(pending, state, state_path, errors)
                    pending = _Pending(_shard_path(out, job.name, tag, len(state.shards)))
        except BrokenProcessPool as err:
            raise UserError(
                f"{job.name}: a worker process died (a crash in a native library?) after "
                f"{state.units_done + pending.units} of {len(units)} {job.unit_label}s; finished shards "
                "are kept, a re-run resumes, --workers 1 names the culprit"
            ) from err
    if pending.units:
        _commit(pending, state, state_path, errors)
    write_manifest(out)
    samples = sum(s["count"] for s in state.shards)
    summary = {
        "job": job.name,
        "shard": cfg.shard,
        "units": len(units),
        "samples": samples,
        "shards": len(state.shards),
        "filtered": state.filtered,
        "errors": state.errors,
        "seconds": round(clock.seconds, 2),
        "samples_per_s_this_run": round((samples - written_before) / max(clock.seconds, 1e-9), 2),
        "settings": job.settings,
        **job.extra,
    }
    write_summary(out / f"summary{tag}.json", summary)
    return summary


def write_manifest(out: Path) -> dict[str, Any]:
    """Describe every finished shard in `out` (all jobs, all slices): counts, sizes, sha256."""
    shards = []
    for state_file in sorted((out / STATE_DIR).glob("*.json")):
        shards += [
            s for s in json.loads(state_file.read_text("utf-8"))["shards"] if (out / s["name"]).exists()
        ]
    totals: dict[str, Any] = {"samples": 0, "bytes": 0, "by_source": Counter(), "by_lang": Counter()}
    for shard in shards:
        totals["samples"] += shard["count"]
        totals["bytes"] += shard["bytes"]
        totals["by_source"].update(shard["by_source"])
        totals["by_lang"].update(shard["by_lang"])
    manifest = {"totals": {k: dict(v) if isinstance(v, Counter) else v for k, v in totals.items()}}
    manifest["shards"] = shards
    _write_atomic(out / MANIFEST, manifest)
    return manifest


def _absorb(result: UnitResult, pending: _Pending, seen: set[str]) -> None:
    pending.units += 1
    pending.filtered.update(result.filtered)
    pending.errors += result.errors
    for record in result.records:
        if record.dedup_key is not None:
            if record.dedup_key in seen:
                pending.filtered["duplicate"] += 1
                continue
            seen.add(record.dedup_key)
            pending.seen.append(record.dedup_key)
        pending.add(record)


def _commit(pending: _Pending, state: State, state_path: Path, errors: ErrorLog) -> None:
    """Finish the pending shard (if it has records), then advance the state; log the covered problems."""
    if pending.writer is not None:
        state.shards.append(asdict(pending.writer.close()))
    state.units_done += pending.units
    state.seen += pending.seen
    for reason, n in pending.filtered.items():
        state.filtered[reason] = state.filtered.get(reason, 0) + n
    for item, kind, message in pending.errors:
        errors.record(item, message, kind=kind)
        state.errors[kind] = state.errors.get(kind, 0) + 1
    _write_atomic(state_path, asdict(state))


def _shard_path(out: Path, name: str, tag: str, number: int) -> Path:
    return out / f"{name}{tag}-{number:06d}.tar"


def _fingerprint(job: Job, units: Sequence[Unit], cfg: EngineConfig) -> str:
    content = {
        "job": job.name,
        "settings": job.settings,
        "units": [u.key for u in units],
        "shard": cfg.shard,
        "shard_size": cfg.shard_size,
        "image": [cfg.image_format, cfg.jpeg_quality, cfg.png_level],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_state(path: Path, fingerprint: str) -> State:
    if not path.exists():
        return State(fingerprint)
    state = State(**json.loads(path.read_text("utf-8")))
    if state.fingerprint != fingerprint:
        raise UserError(
            f"{path.parent.parent}: holds a {path.stem} run with other inputs or settings; "
            "use a new --out folder (or delete that one) instead of mixing them"
        )
    return state


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def _mapper(
    workers: int,
) -> Iterator[Callable[[Callable[[Any], UnitResult], list[Any]], Iterator[UnitResult]]]:
    """Ordered map: in-process for one worker (no pickling cost), else a pool of processes.

    Forked where the platform can (workers inherit the imported modules: PyMuPDF 2 alone takes
    ~1 s to import, which spawned workers would each pay); the pool is made before the progress
    bar starts any thread, and workers open their own documents and figures.
    """
    if workers == 1:
        yield map
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        yield pool.map  # ordered; a worker killed by a native crash raises BrokenProcessPool, never hangs
