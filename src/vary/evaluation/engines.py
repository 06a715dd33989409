"""Engines under evaluation, behind one small protocol so they run on the same pages.

An engine spec on the command line is `NAME` or `NAME:ARGUMENT`:
`tesseract` (Debian's tesseract-ocr, eng + chi_sim), `rapidocr` (PP-OCR models shipped in the
PyPI wheel) and `vary:MODEL_DIR` (our model). Every engine returns raw text; normalisation is
the evaluator's job, the same for all.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from vary.cli import UserError
from vary.evaluation.text import join_cjk


@runtime_checkable
class OcrEngine(Protocol):
    """Reads all the text of a page image; `lang` ("en", "zh") is a hint engines may ignore."""

    name: str

    def read(self, image: Image.Image, lang: str) -> str: ...


@runtime_checkable
class QaEngine(Protocol):
    """Answers a question about an image (DocVQA, ChartQA)."""

    name: str

    def answer(self, image: Image.Image, question: str) -> str: ...


@dataclass
class TesseractEngine:
    """Tesseract 5 through its command line (PNG on stdin, text on stdout): no Python binding to install.

    Tesseract's chi_sim model puts a space between Chinese characters; `read` removes the spaces
    between two CJK characters so its raw output is fair Chinese text (docs/evaluation.md).
    """

    name: str = "tesseract"
    languages: dict[str, str] = field(default_factory=lambda: {"en": "eng", "zh": "chi_sim+eng"})
    psm: int = 3  # fully automatic page segmentation, Tesseract's default
    timeout_s: float = 300.0
    # Tesseract's OpenMP threads fight over busy cores: one thread measured 5x faster on 2 cores.
    threads: int = 1

    def __post_init__(self) -> None:
        if shutil.which("tesseract") is None:
            raise UserError(
                "tesseract not found: apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim"
            )

    def read(self, image: Image.Image, lang: str) -> str:
        png = io.BytesIO()
        image.save(png, format="PNG")
        languages = self.languages.get(lang, "eng")
        command = ["tesseract", "stdin", "stdout", "-l", languages, "--psm", str(self.psm)]
        done = subprocess.run(
            command,
            input=png.getvalue(),
            capture_output=True,
            timeout=self.timeout_s,
            check=False,
            env={**os.environ, "OMP_THREAD_LIMIT": str(self.threads)},
        )
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"]
            raise RuntimeError(f"tesseract exited with {done.returncode}: {lines[-1]}")
        return join_cjk(done.stdout.decode("utf-8")).strip()


class RapidOcrEngine:
    """RapidOCR 3 (PP-OCR detection + recognition on onnxruntime); its one Chinese model reads
    English as well, so `lang` is not used. Lines come top to bottom, one per detected box."""

    name = "rapidocr"

    def __init__(self) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as err:
            raise UserError('rapidocr is not installed: pip install -e ".[peers]"') from err
        self._ocr = RapidOCR(params={"Global.log_level": "error"})

    def read(self, image: Image.Image, lang: str) -> str:
        result = self._ocr(image.convert("RGB"))
        return "\n".join(result.txts or ())


class VaryEngine:
    """Our model through `vary.inference.VaryPipeline`; its call returns an object with `.text`."""

    def __init__(self, model_dir: str) -> None:
        from vary.inference import VaryPipeline  # imported here: the inference stage is optional

        self.name = f"vary:{Path(model_dir).name}"
        self._pipeline: Any = VaryPipeline.from_pretrained(model_dir)

    def read(self, image: Image.Image, lang: str) -> str:
        return self._pipeline(image).text

    def answer(self, image: Image.Image, question: str) -> str:
        return self._pipeline(image, question).text


def _without_argument(factory: Callable[[], Any]) -> Callable[[str], Any]:
    def make(argument: str) -> Any:
        if argument:
            raise UserError(f"engine {factory.__name__} takes no argument, got {argument!r}")
        return factory()

    return make


def _with_argument(factory: Callable[[str], Any]) -> Callable[[str], Any]:
    def make(argument: str) -> Any:
        if not argument:
            raise UserError(f"engine {factory.__name__} needs an argument: NAME:ARGUMENT")
        return factory(argument)

    return make


# Engine name -> factory taking the text after the colon. Tests register fakes here.
ENGINES: dict[str, Callable[[str], Any]] = {
    "tesseract": _without_argument(TesseractEngine),
    "rapidocr": _without_argument(RapidOcrEngine),
    "vary": _with_argument(VaryEngine),
}


def _build(spec: str, protocol: type[Any]) -> Any:
    name, _, argument = spec.partition(":")
    factory = ENGINES.get(name)
    if factory is None:
        raise UserError(f"unknown engine {spec!r} (known: {', '.join(sorted(ENGINES))})")
    engine = factory(argument)
    if not isinstance(engine, protocol):
        raise UserError(f"engine {spec!r} cannot do this task (it is not a {protocol.__name__})")
    return engine


def make_engine(spec: str) -> OcrEngine:
    """Build the page reader named by `spec` (`tesseract`, `rapidocr`, `vary:MODEL_DIR`)."""
    return _build(spec, OcrEngine)


def make_qa_engine(spec: str) -> QaEngine:
    """Build a question-answering engine (`vary:MODEL_DIR`); page readers cannot answer questions."""
    return _build(spec, QaEngine)
