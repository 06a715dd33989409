"""Evaluation sets on disk: our OCR JSONL, the public DocVQA and ChartQA JSON, prediction files.

Every reader checks the keys it needs and fails with one line naming the file and the record,
so a malformed set is fixed before an hour of inference, not after.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from vary.cli import UserError


class _HasId(Protocol):
    id: str


T = TypeVar("T", bound=_HasId)


@dataclass(frozen=True)
class OcrPage:
    """One page of an OCR set: `{"id", "image" (relative to the set file), "text", "lang"}`."""

    id: str
    image: Path
    text: str
    lang: str = "en"


@dataclass(frozen=True)
class QaItem:
    """One question; `keys` are the fields that identify it in the public format (for predictions)."""

    id: str
    question: str
    image: Path
    answers: tuple[str, ...]
    keys: tuple[tuple[str, Any], ...]


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records from a JSON list, a `{"data": [...]}` object (DocVQA) or JSON Lines."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        loaded = [
            _json_line(path, number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()
        ]
    if isinstance(loaded, dict):
        loaded = loaded["data"] if isinstance(loaded.get("data"), list) else [loaded]
    if not isinstance(loaded, list) or not all(isinstance(record, dict) for record in loaded):
        raise UserError(f"{path}: expected a list of JSON objects")
    return loaded


def _json_line(path: Path, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{number}: not JSON ({err.msg})") from err


def _load(path: Path, needs: Sequence[str], build: Callable[[dict[str, Any]], T]) -> list[T]:
    """Build one item per record after checking its keys; ids must be unique within the file."""
    items = []
    for index, record in enumerate(read_records(path)):
        missing = [key for key in needs if key not in record]
        if missing:
            raise UserError(f"{path}: record {index}: missing key {missing[0]!r} (needs {', '.join(needs)})")
        items.append(build(record))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise UserError(f"{path}: id {item.id!r} appears twice")
        seen.add(item.id)
    return items


def load_ocr_set(path: Path) -> list[OcrPage]:
    path = Path(path)
    return _load(
        path,
        ("id", "image", "text"),
        lambda r: OcrPage(str(r["id"]), path.parent / r["image"], str(r["text"]), r.get("lang", "en")),
    )


def item_id(record: dict[str, Any], id_fields: Sequence[str]) -> str:
    """The id of a question, from the fields its public format identifies it by."""
    return "|".join(str(record[key]) for key in id_fields)


DOCVQA_ID = ("questionId",)
CHARTQA_ID = ("imgname", "query")


def _qa_item(
    record: dict[str, Any], id_fields: Sequence[str], question: str, image: Path, answers: Any
) -> QaItem:
    return QaItem(
        id=item_id(record, id_fields),
        question=str(record[question]),
        image=image,
        answers=tuple(str(answer) for answer in answers),
        keys=tuple((key, record[key]) for key in id_fields),
    )


def load_docvqa(path: Path, images: Path | None = None) -> list[QaItem]:
    """DocVQA `{"data": [{"questionId", "question", "image", "answers"}]}`; images are relative to
    `images`, by default the folder of the JSON file (where `documents/` lies in the release)."""
    root = images or Path(path).parent
    return _load(
        Path(path),
        (*DOCVQA_ID, "question", "image", "answers"),
        lambda r: _qa_item(r, DOCVQA_ID, "question", root / r["image"], r["answers"]),
    )


def load_chartqa(path: Path, images: Path | None = None) -> list[QaItem]:
    """ChartQA `[{"imgname", "query", "label"}]`; images are `images/imgname`, by default the `png/`
    folder beside the JSON file, as in the release (`test/test_human.json`, `test/png/`)."""
    root = images or Path(path).parent / "png"
    return _load(
        Path(path),
        (*CHARTQA_ID, "label"),
        lambda r: _qa_item(r, CHARTQA_ID, "query", root / r["imgname"], [r["label"]]),
    )


@dataclass(frozen=True)
class Prediction:
    id: str
    answer: str


def load_predictions(path: Path, id_fields: Sequence[str]) -> dict[str, str]:
    """Answers keyed by question id: DocVQA's submission format `[{"questionId", "answer"}]`,
    ChartQA `[{"imgname", "query", "answer"}]`, or the `predictions.jsonl` an engine run wrote."""
    rows = _load(
        Path(path), (*id_fields, "answer"), lambda r: Prediction(item_id(r, id_fields), str(r["answer"]))
    )
    return {row.id: row.answer for row in rows}
