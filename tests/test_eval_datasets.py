from __future__ import annotations

from pathlib import Path

import pytest

from vary.cli import UserError
from vary.evaluation.datasets import (
    CHARTQA_ID,
    DOCVQA_ID,
    load_chartqa,
    load_docvqa,
    load_ocr_set,
    load_predictions,
    read_records,
)

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


def test_ocr_set_resolves_images_beside_the_file() -> None:
    pages = load_ocr_set(FIXTURES / "ocr" / "set.jsonl")
    assert [(page.id, page.lang) for page in pages] == [("en-1", "en"), ("zh-1", "zh"), ("broken", "en")]
    assert pages[0].image == FIXTURES / "ocr" / "en-1.png"


def test_docvqa_and_chartqa_public_formats() -> None:
    docvqa = load_docvqa(FIXTURES / "docvqa_val.json")
    assert docvqa[0].id == "101" and docvqa[0].answers == ("1/2/1996", "January 2, 1996")
    assert docvqa[0].image == FIXTURES / "documents" / "letter.png"
    chartqa = load_chartqa(FIXTURES / "chartqa_test.json")
    assert chartqa[0].id == "sales.png|What is the value in 2019?" and chartqa[0].answers == ("23.5",)
    assert chartqa[0].image == FIXTURES / "png" / "sales.png"


def test_predictions_are_keyed_like_the_questions() -> None:
    assert load_predictions(FIXTURES / "docvqa_predictions.json", DOCVQA_ID)["102"] == "ITC Limted"
    chart = load_predictions(FIXTURES / "chartqa_predictions.json", CHARTQA_ID)
    assert chart["share.png|Is the blue bar the tallest?"] == "yes"


def test_read_records_accepts_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_records(path) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1, "image": "x.png", "text": ""}\n{"id": 2,\n', r"a\.jsonl:2: not JSON"),
        ('{"id": 1, "image": "x.png"}\n', "record 0: missing key 'text'"),
        (
            '{"id": 1, "image": "x.png", "text": ""}\n{"id": "1", "image": "y.png", "text": ""}\n',
            "'1' appears twice",
        ),
        ("[1, 2]", "expected a list of JSON objects"),
    ],
)
def test_bad_sets_fail_with_one_line_naming_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_ocr_set(path)
