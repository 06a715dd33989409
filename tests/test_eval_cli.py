"""`vary eval ...` end to end on the tiny sets in tests/fixtures/eval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from vary.cli import main
from vary.evaluation.engines import ENGINES

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


class FlakyEngine:
    """Says the same sentence on every page and fails on Chinese ones."""

    name = "flaky"

    def read(self, image: Image.Image, lang: str) -> str:
        if lang == "zh":
            raise RuntimeError("out of memory on this page")
        return "Vary scales up the vocabulary."


class LookupQaEngine:
    """Answers from a table, after checking it was handed a real image."""

    name = "lookup"

    def __init__(self) -> None:
        self.answers = {
            "What is the date on the letter?": "1/2/1996",
            "Which company is named in the header?": "ITC",
        }

    def answer(self, image: Image.Image, question: str) -> str:
        assert image.size == (32, 16)
        return self.answers.get(question, "")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_eval_ocr_compares_engines_and_records_failures(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(ENGINES, "flaky", lambda _argument: FlakyEngine())
    out = tmp_path / "out"
    data = FIXTURES / "ocr" / "set.jsonl"
    code = main(
        ["eval", "ocr", "--data", str(data), "--engine", "tesseract", "--engine", "flaky", "--out", str(out)]
    )
    assert code == 0

    rows = read_jsonl(out / "predictions.jsonl")
    assert [(row["id"], row["engine"]) for row in rows] == [
        (page, engine) for page in ("en-1", "zh-1", "broken") for engine in ("tesseract", "flaky")
    ]
    by_key = {(row["id"], row["engine"]): row for row in rows}
    assert by_key["en-1", "tesseract"]["edit_distance"] < 0.05
    assert by_key["zh-1", "flaky"]["error"] == "RuntimeError: out of memory on this page"
    assert by_key["zh-1", "flaky"]["edit_distance"] == 1.0  # a failure scores as an empty page
    assert by_key["broken", "tesseract"]["error"] == "image could not be read"

    errors = read_jsonl(out / "errors.jsonl")
    assert {(error["item"], error["kind"]) for error in errors} == {
        ("zh-1 [flaky]", "flaky"),
        ("broken", "image"),
    }

    summary = json.loads((out / "summary.json").read_text())
    assert summary["pages"] == 3
    assert summary["results"]["en"]["flaky"]["failures"] == 1  # the broken image
    assert summary["results"]["zh"]["flaky"] == pytest.approx(
        {"pages": 1, "failures": 1, "edit_distance": 1.0, "cer": 1.0, "f1": 0.0, "precision": 0.0}
        | {
            "recall": 0.0,
            "bleu": 0.0,
            "meteor": 0.0,
            "seconds_per_page": summary["results"]["zh"]["flaky"]["seconds_per_page"],
        }
    )
    table = (out / "summary.md").read_text()
    assert "## en" in table and "## zh" in table and "| flaky | 1 | 1 | 1.000 |" in table
    assert (out / "edit_distance.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "extra",
    [["--engine", "tesseract", "--limit", "0"], ["--engine", "abbyy"]],
)
def test_eval_ocr_user_errors_exit_2(tmp_path: Path, extra: list[str]) -> None:
    data = FIXTURES / "ocr" / "set.jsonl"
    assert main(["eval", "ocr", "--data", str(data), "--out", str(tmp_path), *extra]) == 2


def test_eval_ocr_rejects_a_bad_set_before_running(tmp_path: Path) -> None:
    bad = tmp_path / "set.jsonl"
    bad.write_text('{"id": "a", "image": "a.png"}\n')
    assert main(["eval", "ocr", "--data", str(bad), "--engine", "tesseract", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "predictions.jsonl").exists()


def qa_run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "out"
    assert main(["eval", *args, "--out", str(out)]) == 0
    return json.loads((out / "summary.json").read_text())


def test_eval_docvqa_scores_a_predictions_file_with_anls(tmp_path: Path) -> None:
    data, predictions = FIXTURES / "docvqa_val.json", FIXTURES / "docvqa_predictions.json"
    summary = qa_run(tmp_path, "docvqa", "--data", str(data), "--predictions", str(predictions))
    # exact, one letter missing from 11, wrong, no prediction
    assert summary["score"] == pytest.approx((1 + 10 / 11 + 0 + 0) / 4)
    assert summary["failures"] == 1
    assert "| 47.7 |" in (tmp_path / "out" / "summary.md").read_text()


def test_eval_chartqa_scores_a_predictions_file_with_relaxed_accuracy(tmp_path: Path) -> None:
    data, predictions = FIXTURES / "chartqa_test.json", FIXTURES / "chartqa_predictions.json"
    summary = qa_run(tmp_path, "chartqa", "--data", str(data), "--predictions", str(predictions))
    # 24 for 23.5 (within 5 %), 50 for 45 (not), yes for Yes, Europe for Asia
    assert summary["score"] == 0.5
    assert summary["failures"] == 0


def test_eval_docvqa_with_an_engine_and_reading_its_output_back(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(ENGINES, "lookup", lambda _argument: LookupQaEngine())
    images = tmp_path / "images"
    (images / "documents").mkdir(parents=True)
    Image.new("RGB", (32, 16), "white").save(images / "documents" / "letter.png")  # memo.png is missing
    data = FIXTURES / "docvqa_val.json"
    summary = qa_run(tmp_path, "docvqa", "--data", str(data), "--images", str(images), "--engine", "lookup")
    assert summary["score"] == pytest.approx(0.25)  # 1 exact; "ITC" is too far from "ITC Limited"
    assert summary["failures"] == 2  # the two questions on the missing image

    written = tmp_path / "first.jsonl"
    shutil.copy(tmp_path / "out" / "predictions.jsonl", written)
    again = qa_run(tmp_path, "docvqa", "--data", str(data), "--predictions", str(written))
    assert again["score"] == summary["score"]


def test_eval_ocr_runs_a_saved_vary_model(tmp_path: Path, tokenizer, capsys) -> None:
    """`--engine vary:DIR` loads a real model folder and scores exactly what the pipeline reads;
    transformers' weight-loading bar stays out of the command's output."""
    from transformers.utils import logging as hf_logging

    from conftest import tiny_model_config
    from vary.inference import VaryPipeline
    from vary.model import build_model, save_pretrained

    model_dir = tmp_path / "model"
    save_pretrained(build_model(tiny_model_config(), tokenizer), tokenizer, model_dir)
    out = tmp_path / "out"
    data = FIXTURES / "ocr" / "set.jsonl"
    hf_logging.enable_progress_bar()  # as in a fresh process
    assert main(["eval", "ocr", "--data", str(data), "--engine", f"vary:{model_dir}", "--out", str(out)]) == 0
    assert "Loading weights" not in capsys.readouterr().err

    rows = {row["id"]: row for row in read_jsonl(out / "predictions.jsonl")}
    assert rows["en-1"]["engine"] == "vary:model"
    pipeline = VaryPipeline.from_pretrained(model_dir)
    expected = pipeline(Image.open(FIXTURES / "ocr" / json.loads(data.read_text().splitlines()[0])["image"]))
    assert rows["en-1"]["prediction"] == expected.text
    assert rows["broken"]["error"] == "image could not be read"
