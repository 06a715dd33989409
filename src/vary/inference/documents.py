"""Per-file results of `vary ocr`: pages grouped back into documents, rendered and written.

Pages of many files travel through the model together in batches; here they are grouped back
by file (results keep input order, so a file's pages are consecutive) and written one output
per input: plain text (pages separated by form feeds, as pdftotext), markdown (page comments
between pages) or JSON (every page's text, token ids and flags).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vary.data.pdf import page_count
from vary.inference.pipeline import PageResult
from vary.inference.sources import InputError, PageInput, PageSelection, Rendering, is_pdf_file, iter_pages
from vary.reporting import ErrorLog

Format = Literal["text", "markdown", "json"]
SUFFIXES: dict[str, str] = {"text": ".txt", "markdown": ".md", "json": ".json"}


@dataclass
class Document:
    source: str
    pages: list[PageResult]
    error: str | None = None  # set when some pages could not be read

    def to_json(self, model: str) -> dict[str, Any]:
        return {
            "source": self.source,
            "model": model,
            "pages": [page.to_json() for page in self.pages],
            "error": self.error,
        }


def readable_pages(
    sources: Iterable[Path],
    rendering: Rendering,
    pages: PageSelection,
    errors: ErrorLog,
    failures: dict[str, str],
) -> Iterator[PageInput]:
    """Pages of every source; a file that fails is recorded (in `errors` and `failures`) and skipped."""
    for source in sources:
        try:
            yield from iter_pages(source, rendering, pages)
        except (InputError, OSError) as err:
            detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            message = detail.removeprefix(f"{source}: ")  # the log line names the file already
            errors.record(str(source), message, kind=type(err).__name__)
            failures[str(source)] = message


def count_pages(sources: Iterable[Path], pages: PageSelection) -> int:
    """Pages `readable_pages` gives at most (the selected ones of each PDF, one per image): a
    progress bar's total, counted without rendering anything (~0.4 ms a PDF)."""
    return sum(_page_total(source, pages) for source in sources)


def _page_total(source: Path, pages: PageSelection) -> int:
    try:
        return len(pages.select(page_count(source))) if is_pdf_file(source) else 1
    except OSError:  # unreadable: reported when it is read
        return 1


def group_documents(results: Iterable[PageResult], failures: dict[str, str]) -> Iterator[Document]:
    """Consecutive pages of one source -> one `Document` (with the source's error, if any).

    A group ends when the next source's first page arrives, by which time reading the source
    has finished, so `failures` already holds its error.
    """
    for source, group in itertools.groupby(results, key=lambda result: result.source):
        pages = list(group)
        yield Document(str(source), pages, failures.get(str(source)))


def render(document: Document, fmt: Format, model: str) -> str:
    if fmt == "json":
        return json.dumps(document.to_json(model), ensure_ascii=False) + "\n"  # JSON Lines on stdout
    if fmt == "markdown":
        return "\n\n".join(_markdown_page(page) for page in document.pages) + "\n"
    return "\f".join(page.text for page in document.pages) + "\n"


def _markdown_page(page: PageResult) -> str:
    return page.text if page.page is None else f"<!-- page {page.page} -->\n\n{page.text}"


def output_path(out_dir: Path, source: str, fmt: Format, taken: set[Path]) -> Path:
    """`out/<stem>.<ext>`; on a clash (a.png and a.pdf) the full name, then a counter."""
    name = Path(source)
    suffix = SUFFIXES[fmt]
    numbered = (out_dir / f"{name.name}-{n}{suffix}" for n in itertools.count(2))
    candidates = itertools.chain(
        [out_dir / f"{name.stem}{suffix}", out_dir / f"{name.name}{suffix}"], numbered
    )
    path = next(c for c in candidates if c not in taken)
    taken.add(path)
    return path
