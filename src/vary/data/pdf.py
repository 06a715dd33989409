"""PDF pages -> (page image, page text) samples: Vary's document data engine on real PDFs.

Each page is rendered (long side 1024 px by default) and its text layer extracted with PyMuPDF,
normalised (`vary.data.text.normalise`), tagged en / zh, and dropped when it would teach the
model nothing or something wrong: too little text, image-only pages, garbled text layers, and
pages whose normalised text was already seen (running heads on blank pages, reprinted
documents). Text is read before rendering, so dropped pages cost almost nothing.

With `unit="region"` (`vary.data.regions`) each page gives instead up to `regions_per_page` small
squares of a few real text lines each, for small models; ids `pdf-<doc>-p<page>-r<k>`.

Work is cut into units of up to `pages_per_unit` pages of one file, so a worker keeps one
document open for many pages (reopening per page costs more than rendering, FINDINGS.md).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import pymupdf
from PIL import Image

from vary.cli import UserError
from vary.data.config import EngineConfig, PdfConfig
from vary.data.engine import Job, Unit, UnitResult, find_inputs
from vary.data.regions import page_regions
from vary.data.sample import Sample
from vary.data.shards import Encoding, Record
from vary.data.splits import UnknownOriginError, select
from vary.data.text import (
    detect_lang,
    garbled_share,
    is_latin,
    letter_share,
    normalise,
    text_hash,
    visible_count,
)
from vary.reporting import ErrorLog, get_logger, progress

pymupdf.TOOLS.mupdf_display_errors(False)  # broken PDFs are reported by us, once, not by MuPDF's chatter


def page_count(path: Path) -> int:
    """Pages in a PDF; 1 for one that cannot be opened, so its unit reports the problem.

    Uses MuPDF's own open, which skips what `pymupdf.open` also loads (the outline): planning a
    corpus then costs ~0.4 ms a file instead of ~3 ms.
    """
    try:
        return max(pymupdf.mupdf.fz_count_pages(pymupdf.mupdf.fz_open_document(str(path))), 1)
    except Exception:
        return 1


def pdf_job(sources: Sequence[str | Path], cfg: PdfConfig, engine: EngineConfig) -> Job:
    """Plan the units of a PDF run: files of the requested split, cut into page ranges."""
    files = find_inputs(sources, (".pdf",))
    paths = [p for p, _ in files]
    try:
        kept, other_split = select(paths, cfg.split)
    except UnknownOriginError as err:
        raise UserError(str(err)) from err
    keep = set(kept)
    units = []
    for path, key in files:
        if path not in keep:
            continue
        pages = page_count(path)
        for start in range(0, pages, cfg.pages_per_unit):
            stop = min(start + cfg.pages_per_unit, pages)
            units.append(Unit(key, (str(path), key, start, stop)))
    process = functools.partial(
        process_unit,
        cfg=cfg,
        encoding=engine.encoding(),
    )
    extra = {"files": len(kept), f"files_not_in_{cfg.split}_split": other_split}
    settings = {"pdf": asdict(cfg)}
    return Job("pdf", units, process, settings=settings, unit_label="chunk", extra=extra)


def text_corpus(
    sources: Sequence[str | Path], errors: ErrorLog, max_pages: int | None = None, latin_only: bool = False
) -> Iterator[str]:
    """The text of the training split's PDFs, a page at a time, and of its plain-text (.txt) files;
    with `latin_only`, only pages (files) whose letters are all Latin (`is_latin`).

    Line breaks and hyphens stay as printed (`normalise(..., join_breaks=False)`): a model that
    reads one line at a time writes them so. A file that cannot be read is recorded in `errors`
    and the rest go on.
    """
    files = find_inputs(sources, (".pdf", ".txt"))
    try:
        kept, heldout = select([path for path, _ in files], "train")
    except UnknownOriginError as err:
        raise UserError(str(err)) from err
    if heldout:
        get_logger("data").info("%d held-out file(s) skipped", heldout)
    keep = set(kept)
    for path, key in progress(files, desc="text", unit="file"):
        if path not in keep:
            continue
        try:
            if path.suffix.lower() == ".txt":
                texts = [path.read_text(encoding="utf-8")]
            else:
                with pymupdf.open(path) as doc:
                    texts = [page.get_text("text") for page in itertools.islice(doc, max_pages)]
        except Exception as err:
            errors.record(key, _one_line(err), "bad_file")
            continue
        for text in map(functools.partial(normalise, join_breaks=False), texts):
            if not latin_only or is_latin(text):
                yield text


def process_unit(payload: tuple[str, str, int, int], cfg: PdfConfig, encoding: Encoding) -> UnitResult:
    """Render and extract pages [start, stop) of one PDF (runs in a worker)."""
    path, key, start, stop = payload
    result = UnitResult()
    try:
        doc = pymupdf.open(path)
    except Exception as err:
        doc, problem = None, ("corrupt_pdf", f"cannot open PDF: {_one_line(err)}")
    else:
        problem = _document_problem(doc)
    if problem:
        if doc is not None:
            doc.close()
        if start == 0:  # a file-level problem is reported once, by the file's first unit
            result.errors.append((key, *problem))
        return result
    with doc:
        filtered: Counter = Counter()
        for number in range(start, min(stop, doc.page_count)):
            try:
                if cfg.unit == "region":
                    records, dropped = region_records(doc[number], key, number, cfg, encoding)
                    result.records += records
                    filtered.update(dropped)
                    continue
                record = page_record(doc[number], key, number, cfg, encoding)
            except Exception as err:
                result.errors.append((f"{key} page {number + 1}", "bad_page", _one_line(err)))
                continue
            if isinstance(record, str):
                filtered[record] += 1
            else:
                result.records.append(record)
        result.filtered = dict(filtered)
    return result


def page_record(page: pymupdf.Page, key: str, number: int, cfg: PdfConfig, encoding: Encoding):
    """A shard record for one page, or the reason (a string) it was dropped."""
    text = normalise(page.get_text("text"))
    reason = drop_reason(text, has_images=lambda: bool(page.get_images()), cfg=cfg)
    if reason:
        return reason
    image = render(page, cfg.long_side)
    meta = {"file": key, "page": number + 1, "split": cfg.split}
    return _record(f"pdf-{doc_id(key)}-p{number + 1:04d}", text, image, meta, cfg, encoding)


def region_records(
    page: pymupdf.Page, key: str, number: int, cfg: PdfConfig, encoding: Encoding
) -> tuple[list[Record], Counter]:
    """Shard records for the regions of one page (`vary.data.regions`), and why others were dropped."""
    check = functools.partial(drop_reason, has_images=lambda: False, cfg=cfg, min_chars=cfg.region_min_chars)
    regions, filtered = page_regions(page, f"{key}:{number}", cfg, check)
    records = []
    for k, region in enumerate(regions, start=1):
        meta = {
            "file": key,
            "page": number + 1,
            "split": cfg.split,
            "unit": "region",
            "bbox": list(region.bbox),
        }
        sample_id = f"pdf-{doc_id(key)}-p{number + 1:04d}-r{k}"
        records.append(_record(sample_id, region.text, region.image, meta, cfg, encoding))
    return records, filtered


def doc_id(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def _record(
    sample_id: str, text: str, image: Image.Image, meta: dict, cfg: PdfConfig, encoding: Encoding
) -> Record:
    sample = Sample(id=sample_id, image=None, text=text, lang=detect_lang(text), source="pdf", meta=meta)
    dedup = text_hash(text) if cfg.dedup else None
    return Record.from_sample(sample, encoding.encode(image), encoding.format, dedup)


def drop_reason(
    text: str, has_images: Callable[[], bool], cfg: PdfConfig, min_chars: int | None = None
) -> str | None:
    """Why a page should not become a sample, or None to keep it (`has_images` asked only if needed).

    `min_chars` replaces `cfg.min_chars` (regions hold a few words, not a page).
    """
    if visible_count(text) < (cfg.min_chars if min_chars is None else min_chars):
        return "image_only" if has_images() else "too_little_text"
    if garbled_share(text) > cfg.max_bad_share:
        return "garbled_text"
    if letter_share(text) < cfg.min_letter_share:
        return "few_letters"
    return None


def render(page: pymupdf.Page, long_side: int) -> Image.Image:
    zoom = long_side / max(page.rect.width, page.rect.height)
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False, colorspace=pymupdf.csRGB)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def _document_problem(doc: pymupdf.Document) -> tuple[str, str] | None:
    if doc.needs_pass:
        return "encrypted_pdf", "PDF is encrypted (needs a password)"
    if doc.page_count == 0:
        return "empty_pdf", "PDF has no pages"
    return None


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())
