"""The peer engines run for real on pages rendered here (fonts from .ci/apt-packages.txt)."""

from __future__ import annotations

import re

import pytest
from PIL import Image, ImageDraw, ImageFont

from vary.cli import UserError
from vary.evaluation.engines import RapidOcrEngine, TesseractEngine, make_engine, make_qa_engine
from vary.evaluation.metrics import edit_distance
from vary.evaluation.text import CJK_CHARS, normalize_text

LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"  # fonts-dejavu-core
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"  # fonts-wqy-zenhei
ENGLISH = "Vary scales up the vision vocabulary.\nIt reads dense documents and charts."
CHINESE = "视觉词表扩展方法可以提升文档理解能力。"
SPACE_BETWEEN_CJK = re.compile(rf"[{CJK_CHARS}] +[{CJK_CHARS}]")


def render(lines: list[tuple[str, str, int]]) -> Image.Image:
    """A white page with one block of text per (text, font, size), top to bottom."""
    page = Image.new("RGB", (1000, 120 + 110 * len(lines)), "white")
    draw = ImageDraw.Draw(page)
    y = 40
    for text, font, size in lines:
        draw.multiline_text((40, y), text, fill="black", font=ImageFont.truetype(font, size), spacing=20)
        y += 2 * (size + 20) + 20
    return page


def error_rate(prediction: str, truth: str) -> float:
    return edit_distance(normalize_text(prediction), normalize_text(truth))


def test_tesseract_reads_english() -> None:
    text = TesseractEngine().read(render([(ENGLISH, LATIN_FONT, 32)]), "en")
    assert error_rate(text, ENGLISH) < 0.05


def test_tesseract_reads_chinese_without_spaces_between_characters() -> None:
    text = TesseractEngine().read(render([(CHINESE, CJK_FONT, 40)]), "zh")
    assert SPACE_BETWEEN_CJK.search(text) is None
    assert error_rate(text, CHINESE) < 0.2


def test_tesseract_failure_is_an_exception_naming_the_cause() -> None:
    engine = TesseractEngine(languages={"en": "no_such_language"})
    with pytest.raises(RuntimeError, match="tesseract exited"):
        engine.read(render([("x", LATIN_FONT, 20)]), "en")


def test_rapidocr_reads_english_and_chinese_offline() -> None:
    page = render([(ENGLISH, LATIN_FONT, 32), (CHINESE, CJK_FONT, 40)])
    text = RapidOcrEngine().read(page, "zh")
    assert error_rate(text, ENGLISH + "\n" + CHINESE) < 0.05


def test_make_engine_rejects_bad_specs() -> None:
    with pytest.raises(UserError, match="unknown engine"):
        make_engine("abbyy")
    with pytest.raises(UserError, match="takes no argument"):
        make_engine("tesseract:fast")
    with pytest.raises(UserError, match="needs an argument"):
        make_engine("vary")
    with pytest.raises(UserError, match="cannot do this task"):
        make_qa_engine("tesseract")
