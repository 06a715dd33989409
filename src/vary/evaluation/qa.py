"""`vary eval docvqa` / `vary eval chartqa`: score answers from an engine or a predictions file.

DocVQA is scored with ANLS, ChartQA with relaxed accuracy (5 % on numbers), both on the public
JSON formats. A question without an answer (engine error, missing prediction) is recorded in
`errors.jsonl` and scores 0. Outputs in `--out`: `predictions.jsonl` (readable back with
`--predictions`), `summary.md`, `summary.json`, `errors.jsonl`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from PIL import Image

from vary.cli import UserError
from vary.evaluation.datasets import (
    CHARTQA_ID,
    DOCVQA_ID,
    QaItem,
    load_chartqa,
    load_docvqa,
    load_predictions,
)
from vary.evaluation.engines import make_qa_engine
from vary.evaluation.metrics import anls, relaxed_match
from vary.evaluation.report import fresh_error_log, markdown_table, write_jsonl_row
from vary.reporting import progress, write_summary


def relaxed_accuracy(prediction: str, answers: Sequence[str]) -> float:
    return float(any(relaxed_match(prediction, answer) for answer in answers))


@dataclass(frozen=True)
class QaTask:
    name: str
    metric: str
    id_fields: tuple[str, ...]
    load: Callable[[Path, Path | None], list[QaItem]]
    score: Callable[[str, Sequence[str]], float]


TASKS = {
    "docvqa": QaTask("DocVQA", "ANLS", DOCVQA_ID, load_docvqa, anls),
    "chartqa": QaTask("ChartQA", "relaxed accuracy", CHARTQA_ID, load_chartqa, relaxed_accuracy),
}


@dataclass
class QaEvalConfig:
    task: str  # a key of TASKS
    data: Path
    out: Path
    images: Path | None = None
    predictions: Path | None = None  # exactly one of predictions / engine
    engine: str | None = None
    limit: int | None = None  # only the first N questions

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        if (self.predictions is None) == (self.engine is None):
            raise ValueError("give exactly one of predictions or engine")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")


Answerer = Callable[[QaItem], str]


def predictions_answerer(predictions: dict[str, str]) -> Answerer:
    def answer(item: QaItem) -> str:
        if item.id not in predictions:
            raise LookupError("no prediction for this question")
        return predictions[item.id]

    return answer


def engine_answerer(spec: str) -> Answerer:
    engine = make_qa_engine(spec)

    def answer(item: QaItem) -> str:
        with Image.open(item.image) as image:
            return engine.answer(image.convert("RGB"), item.question)

    return answer


def run_qa_eval(config: QaEvalConfig) -> dict[str, float]:
    task = TASKS[config.task]
    items = task.load(config.data, config.images)[: config.limit]
    if not items:
        raise UserError(f"{config.data}: no questions to evaluate")
    if config.predictions is not None:
        answer = predictions_answerer(load_predictions(config.predictions, task.id_fields))
    else:
        answer = engine_answerer(str(config.engine))
    config.out.mkdir(parents=True, exist_ok=True)
    errors = fresh_error_log(config.out)
    scores = []
    with (config.out / "predictions.jsonl").open("w", encoding="utf-8") as sink:
        for item in progress(items, desc=f"eval {config.task}", total=len(items), unit="question"):
            prediction, error = "", None
            try:
                prediction = answer(item)
            except Exception as err:  # one bad question must not stop the run
                error = f"{type(err).__name__}: {err}"
                errors.record(item.id, err, kind="answer")
            scores.append(task.score(prediction, item.answers))
            row = {"question": item.question, "answer": prediction, "truth": list(item.answers)}
            write_jsonl_row(sink, {**dict(item.keys), **row, "score": scores[-1], "error": error})
    summary = {"questions": len(items), "failures": errors.count, "score": fmean(scores)}
    source = str(config.predictions or config.engine)
    table = markdown_table(
        ["answers from", "questions", "failures", f"{task.metric} (%)"],
        [[source, str(len(items)), str(errors.count), f"{100 * summary['score']:.1f}"]],
    )
    title = f"# {task.name} evaluation: {config.data.name}\n\n"
    (config.out / "summary.md").write_text(title + table + "\n", encoding="utf-8")
    write_summary(config.out / "summary.json", {"task": config.task, "data": str(config.data), **summary})
    return summary
