"""Logging, progress bars, per-item error records and run summaries, shared by every command.

Long jobs (rendering pages, training, evaluation) all report the same way: a tqdm bar on the
terminal, one log line per failed item naming the item and the problem, an `errors.jsonl` next
to the output, and a `summary.json` at the end.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
LOGGER_NAME = "vary"


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    return logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")


def setup_logging(verbose: bool = False, log_file: str | Path | None = None) -> None:
    """Configure the `vary` logger: terse lines on stderr, optionally mirrored to a file."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(file_handler)
    logger.propagate = False


def quiet_transformers() -> None:
    """Hide transformers' load-time chatter (warnings, the weight-loading bar): what a command
    prints is its own progress and results."""
    from transformers.utils import logging as hf_logging  # imported here: not every command loads a model

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A progress bar (rate and ETA) that stays quiet when stderr is not a terminal-like stream."""
    yield from tqdm(items, desc=desc, total=total, unit=unit, dynamic_ncols=True, mininterval=1.0)


@dataclass
class ErrorLog:
    """Records failed items: one clear log line each, plus a JSONL file, and keeps counts."""

    path: Path | None = None
    count: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def record(self, item: str, problem: str | BaseException, kind: str = "error") -> None:
        message = problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}"
        message = " ".join(str(message).split())  # always one line
        get_logger("errors").warning("%s: %s", item, message)
        self.count += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"item": item, "kind": kind, "error": message}, ensure_ascii=False) + "\n")


@dataclass
class Stopwatch:
    start: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def write_summary(path: str | Path, summary: dict[str, Any]) -> Path:
    """Write a run summary as pretty JSON and log where it went."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    get_logger().info("summary written to %s", path)
    return path
