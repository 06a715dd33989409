"""Vary-base conversations: LLaVA-style multi-turn samples made from the engines' shards.

Vary-base is tuned on conversations rather than plain transcripts. This turns existing samples
into them, keeping each image as it is:

- charts: "convert the chart to a Python dict", plus ChartQA-style questions answered from the
  chart's data (a value, the title, the largest category);
- PDF and LaTeX pages: the OCR / markdown instruction, plus a DocVQA-style question (first line);
- natural images: "is there any text?" -> "No.";
- LLaVA JSON (`[{"id", "image", "conversations"}]`) and samples that already carry
  conversations pass through unchanged.

Output is shards (source "qa") or, with `--format llava`, `llava.json` + `images/`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vary.data.config import EngineConfig
from vary.data.engine import Job, Unit, UnitResult
from vary.data.reader import find_shards, iter_records, iter_samples
from vary.data.sample import IMAGE_TOKEN
from vary.data.shards import Record, safe_key
from vary.reporting import ErrorLog, get_logger

PROMPTS = {
    "en": {
        "chart": "Convert the chart to a Python dict.",
        "ocr": "Provide the OCR results of this image.",
        "markdown": "Convert the document to markdown.",
        "any_text": "Is there any text in this image?",
        "value": "What is the value of {series} at {category}?",
        "title": "What is the title of the chart?",
        "largest": "Which category has the largest value of {series}?",
        "first_line": "What is written in the first line of the page?",
        "no": "No.",
    },
    "zh": {
        "chart": "把图表转换成Python字典。",
        "ocr": "请识别图中的文字。",
        "markdown": "把文档转换成markdown。",
        "any_text": "图中有文字吗？",
        "value": "{series}在{category}的数值是多少？",
        "title": "图表的标题是什么？",
        "largest": "{series}中哪个类别的数值最大？",
        "first_line": "这一页第一行写的是什么？",
        "no": "没有。",
    },
}


@dataclass
class _Collect(ErrorLog):
    """An ErrorLog that keeps the problems, so a worker can hand them back with its result."""

    items: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, item: str, problem: str | BaseException, kind: str = "error") -> None:
        self.items.append((item, kind, str(problem)))


def conversations_for(record: dict[str, Any]) -> list[dict[str, str]]:
    """Turns for one shard record (its own if it has some); [] when there is nothing to ask."""
    if record.get("conversations"):
        return record["conversations"]
    rng = random.Random(str(record["id"]))
    lang = record.get("lang") if record.get("lang") in PROMPTS else "en"
    p, source, text = PROMPTS[lang], record.get("source"), record.get("text", "")
    if source == "chart" and "chart" in record.get("meta", {}):
        questions = _chart_questions(record["meta"]["chart"], p, rng)
        pairs = [(p["chart"], text), *rng.sample(questions, k=min(2, len(questions)))]
    elif source in ("pdf", "latex") and text:
        first = text.split("\n", 1)[0].lstrip("# ")
        pairs = [(p["markdown" if source == "latex" else "ocr"], text), (p["first_line"], first)]
    elif source == "natural":
        pairs = [(p["any_text"], p["no"])]
    else:
        return []
    turns = []
    for i, (question, answer) in enumerate(pairs):
        turns.append({"from": "human", "value": f"{IMAGE_TOKEN}\n{question}" if i == 0 else question})
        turns.append({"from": "gpt", "value": answer})
    return turns


def qa_job(sources: Sequence[str | Path], engine: EngineConfig) -> Job:
    units = [Unit(path.as_posix(), str(path)) for path in find_shards(sources)]
    return Job("qa", units, process_unit, settings={"qa": {"prompts": PROMPTS}}, unit_label="file")


def process_unit(path: str) -> UnitResult:
    errors = _Collect()
    records = list(qa_records(Path(path), errors))
    return UnitResult(records=records, errors=errors.items)


def qa_records(path: Path, errors: ErrorLog) -> Iterator[Record]:
    """Conversation records from one shard or LLaVA JSON file, images carried over byte for byte."""
    if path.suffix == ".json":
        for sample in iter_samples([path], errors=errors, decode_images=False):
            image_file = sample.meta.get("image_file")
            data = (path.parent / image_file).read_bytes() if image_file else None
            ext = Path(image_file).suffix.lstrip(".").lower().replace("jpeg", "jpg") if image_file else "png"
            yield Record(safe_key(f"llava-{sample.id}"), sample.to_json(), data, ext)
        return
    for raw in iter_records(path, errors):
        turns = conversations_for(raw.record)
        if not turns:
            continue
        record = raw.record | {"source": "qa", "conversations": turns}
        record["meta"] = {**raw.record.get("meta", {}), "from_source": raw.record.get("source")}
        yield Record(safe_key(f"qa-{raw.key}"), record, raw.image, raw.ext or "png")


def write_llava(sources: Sequence[str | Path], out: Path) -> Path:
    """The conversations as one LLaVA JSON file plus an images folder (what LLaVA tooling reads)."""
    errors = ErrorLog(out / "errors.jsonl")
    items = []
    (out / "images").mkdir(parents=True, exist_ok=True)
    for path in find_shards(sources):
        for rec in qa_records(path, errors):
            item: dict[str, Any] = {"id": rec.record["id"], "conversations": rec.record["conversations"]}
            if rec.image is not None:
                item["image"] = f"images/{rec.key}.{rec.ext}"
                (out / item["image"]).write_bytes(rec.image)
            items.append(item)
    target = out / "llava.json"
    target.write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    get_logger("data").info("%d conversations -> %s (%d problems)", len(items), target, errors.count)
    return target


def _chart_questions(chart: dict[str, Any], p: dict[str, str], rng: random.Random) -> list[tuple[str, str]]:
    """ChartQA-style (question, answer) pairs answered from the chart's data."""
    questions = [(p["title"], chart["title"])]
    categories = chart.get("categories") or []
    for series in chart["series"]:
        if "values" not in series or not categories:
            continue
        values = series["values"]
        i = max(range(len(values)), key=values.__getitem__)
        questions.append((p["largest"].format(series=series["name"]), categories[i]))
        j = rng.randrange(len(values))
        questions.append((p["value"].format(series=series["name"], category=categories[j]), str(values[j])))
    return questions
