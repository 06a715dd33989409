"""What the model reads: images and PDF pages from paths, bytes, PIL images or PyMuPDF pages.

Every input becomes one or more `PageInput`s (a PIL image plus where it came from). PDF pages are
rendered straight at the model's square input size with a non-uniform scale: the image
processor squashes every page to a square anyway, and rendering the vector page at that size
is sharper than rendering at the page's aspect ratio and resampling. A model that reads line by
line (`VaryConfig.line_height`) gets pages at their own aspect instead, large enough to cut its
crops from (`Rendering`). A file is recognised by its content (`%PDF-` magic, else PIL), not by
its name.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pymupdf
from PIL import Image, UnidentifiedImageError

pymupdf.TOOLS.mupdf_display_errors(False)  # we report a broken PDF once, in one line

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
PDF_MAGIC = b"%PDF-"

Source = str | Path | Image.Image | pymupdf.Page


class InputError(ValueError):
    """A file that cannot be read (a damaged PDF or image), or a page selection it cannot satisfy."""


class UnsupportedInput(InputError):
    """Content that is neither a PDF nor an image format PIL knows."""


@dataclass(frozen=True)
class Rendering:
    """How a PDF page becomes an image: squashed to a `size` x `size` square (the model's input),
    or, with `square` False, at the page's own aspect with its longer side `size` px."""

    size: int
    square: bool = True


@dataclass
class PageInput:
    image: Image.Image
    source: str  # file path, upload name, or "<image>" for an in-memory image
    page: int | None = None  # 1-based page number within a PDF


@dataclass(frozen=True)
class PageSelection:
    """Pages as a user writes them, `1-3,5,8-`: 1-based, inclusive, open-ended ranges allowed.

    Pages past the end of a document are dropped, so `--pages 1-3` means "the first three
    pages" for every PDF of a batch; a selection that leaves nothing is an error.
    """

    ranges: tuple[tuple[int, int | None], ...] = ((1, None),)

    @classmethod
    def parse(cls, spec: str | None) -> PageSelection:
        if spec is None or not spec.strip():
            return cls()
        ranges = []
        for part in spec.replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+)(?:(-)(\d*))?", part)
            if not match or int(match[1]) < 1:
                raise ValueError(f"bad page selection {spec!r}: use 1-based pages such as 1-3,5,8-")
            start = int(match[1])
            stop = start if not match[2] else int(match[3]) if match[3] else None
            if stop is not None and stop < start:
                raise ValueError(f"bad page selection {spec!r}: range {part} is backwards")
            ranges.append((start, stop))
        return cls(tuple(ranges))

    def select(self, page_count: int) -> list[int]:
        """Selected 1-based page numbers that exist in a document of `page_count` pages, in order."""
        chosen = {
            page
            for start, stop in self.ranges
            for page in range(start, min(page_count, stop or page_count) + 1)
        }
        return sorted(chosen)


ALL_PAGES = PageSelection()
FIRST_PAGE = PageSelection(((1, 1),))


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus the images and PDFs inside named folders (sorted, recursive).

    Missing paths are kept: reading them fails later with a per-file error, so one typo does
    not stop a batch.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | {".pdf"}
            )
        else:
            files.append(path)
    return files


def iter_pages(source: Source, rendering: Rendering, pages: PageSelection = ALL_PAGES) -> Iterator[PageInput]:
    """The pages of one input, rendered lazily (a long PDF is never held in memory at once)."""
    if isinstance(source, Image.Image):
        yield PageInput(source, "<image>")
    elif isinstance(source, pymupdf.Page):
        yield PageInput(render_page(source, rendering), source.parent.name or "<pdf>", source.number + 1)
    else:
        path = Path(source)
        if path.is_dir():
            raise InputError(f"{path}: is a folder (pass its files, or use the CLI, which expands folders)")
        yield from iter_bytes(path.read_bytes(), str(path), rendering, pages)


def iter_bytes(
    data: bytes, name: str, rendering: Rendering, pages: PageSelection = ALL_PAGES
) -> Iterator[PageInput]:
    """Pages of a file's content: a PDF (selected pages) or a single image."""
    if data.startswith(PDF_MAGIC):
        yield from _pdf_pages(data, name, rendering, pages)
    else:
        yield PageInput(_open_image(data, name), name)


def is_pdf_file(source: Source) -> bool:
    """Whether `source` names a PDF file (by content): such inputs give a list of pages."""
    if not isinstance(source, str | Path) or not Path(source).is_file():
        return False
    with open(source, "rb") as f:
        return f.read(len(PDF_MAGIC)) == PDF_MAGIC


def render_page(page: pymupdf.Page, rendering: Rendering) -> Image.Image:
    """A PDF page drawn on a white RGB canvas, as `rendering` says."""
    width, height = page.rect.width, page.rect.height
    if rendering.square:
        size = (rendering.size, rendering.size)
    else:
        zoom = rendering.size / max(width, height)
        size = (max(1, round(width * zoom)), max(1, round(height * zoom)))
    scale = pymupdf.Matrix(size[0] / width, size[1] / height)
    pixmap = page.get_pixmap(matrix=scale, alpha=False, colorspace=pymupdf.csRGB)
    image = Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
    return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def _pdf_pages(data: bytes, name: str, rendering: Rendering, pages: PageSelection) -> Iterator[PageInput]:
    try:
        document = pymupdf.open(stream=data, filetype="pdf")
    except Exception as err:  # MuPDF raises its own error types for every kind of damage
        raise InputError(f"{name}: not a readable PDF ({_one_line(err)})") from err
    with document:
        if document.needs_pass:
            raise InputError(f"{name}: PDF is encrypted")
        numbers = pages.select(document.page_count)
        if not numbers:
            raise InputError(f"{name}: no selected page exists (the PDF has {document.page_count} pages)")
        for number in numbers:
            try:
                image = render_page(document[number - 1], rendering)
            except Exception as err:
                raise InputError(f"{name}: page {number} cannot be rendered ({_one_line(err)})") from err
            yield PageInput(image, name, number)


def _open_image(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decode now: a truncated file fails here, not inside a batch
    except UnidentifiedImageError as err:
        raise UnsupportedInput(f"{name}: not an image or PDF") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{name}: damaged image ({_one_line(err)})") from err
    return image.convert("RGB")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
