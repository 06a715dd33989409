"""Writing evaluation outputs: per-item JSON Lines and markdown tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from vary.reporting import ErrorLog


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_jsonl_row(sink: TextIO, row: dict[str, Any]) -> None:
    """One record per line, flushed, so an interrupted run keeps what it has scored."""
    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    sink.flush()


def fresh_error_log(out: Path) -> ErrorLog:
    """An ErrorLog writing `out/errors.jsonl`, emptied first: ErrorLog appends, a rerun must not."""
    path = out / "errors.jsonl"
    path.unlink(missing_ok=True)
    return ErrorLog(path)
