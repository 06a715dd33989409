"""Inference: `VaryPipeline` (Python API), `vary ocr` / `vary chat` / `vary serve`."""

from vary.inference.pipeline import ChatUnsupported, GenerationOptions, PageResult, VaryPipeline
from vary.inference.repetition import RepetitionGuard
from vary.inference.sources import InputError, PageInput, PageSelection

__all__ = [
    "ChatUnsupported",
    "GenerationOptions",
    "InputError",
    "PageInput",
    "PageResult",
    "PageSelection",
    "RepetitionGuard",
    "VaryPipeline",
]
