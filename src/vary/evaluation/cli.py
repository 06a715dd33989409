"""`vary eval ocr | docvqa | chartqa`: the evaluation commands (docs/evaluation.md)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from vary.config import from_dict
from vary.evaluation.ocr import OcrEvalConfig, run_ocr_eval
from vary.evaluation.qa import QaEvalConfig, run_qa_eval
from vary.reporting import quiet_transformers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate OCR engines and models on held-out sets")
    tasks = parser.add_subparsers(dest="eval_task", required=True, metavar="TASK")

    ocr = tasks.add_parser("ocr", help="page OCR: edit distance, F1, BLEU, METEOR per language")
    ocr.add_argument("--data", type=Path, required=True, help='JSONL of {"id", "image", "text", "lang"}')
    ocr.add_argument(
        "--engine",
        action="append",
        required=True,
        dest="engines",
        help="tesseract | rapidocr | vary:MODEL_DIR; repeat to compare engines on the same pages",
    )
    _add_common(ocr)
    ocr.set_defaults(func=partial(_run, run_ocr_eval, OcrEvalConfig))

    for task, data_help in (
        ("docvqa", 'DocVQA JSON {"data": [{"questionId", "question", "image", "answers"}]} (ANLS)'),
        ("chartqa", 'ChartQA JSON [{"imgname", "query", "label"}] (relaxed accuracy)'),
    ):
        qa = tasks.add_parser(task, help=data_help)
        qa.add_argument("--data", type=Path, required=True, help=data_help)
        qa.add_argument("--images", type=Path, help="image folder (default: as laid out in the release)")
        source = qa.add_mutually_exclusive_group(required=True)
        source.add_argument("--predictions", type=Path, help="answers file (JSON or JSONL, with 'answer')")
        source.add_argument("--engine", help="vary:MODEL_DIR")
        _add_common(qa)
        qa.set_defaults(func=partial(_run, run_qa_eval, QaEvalConfig), task=task)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--limit", type=int, help="only the first N items (a quick check)")


def _run(run: Callable[[Any], object], config_class: type, args: argparse.Namespace) -> int:
    """Build the run's typed config from the parsed arguments (checked by `vary.config.from_dict`)."""
    names = {field.name for field in dataclasses.fields(config_class)}
    values = {name: value for name, value in vars(args).items() if name in names and value is not None}
    quiet_transformers()  # a `vary:` engine loads a model folder
    run(from_dict(config_class, values, source="vary eval"))
    return 0
