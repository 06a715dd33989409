"""Peer OCR engines on real held-out PDF pages: accuracy and seconds per page.

Renders pages of the given PDFs with PyMuPDF, takes the PDF's own text layer as ground truth,
writes an OCR set (JSONL + PNG) and runs `vary eval ocr` on it. The text layer is what is
printed, in PDF order, so it is a fair but imperfect truth (reading order of multi-column
pages, math), the same for every engine.

    python benchmarks/bench_eval.py --lang en --pages 6 --out /tmp/bench_eval_en \\
        --pdf-dir /tmp/heldout/root/usr/share/doc/texlive-doc/latex   # texlive-humanities-doc
    python benchmarks/bench_eval.py --lang zh --pages 6 --out /tmp/bench_eval_zh \\
        --pdf /usr/share/doc/texlive-doc/latex/zhlipsum/zhlipsum.pdf

Only held-out PDFs belong here (../shared/README.md): texlive-humanities-doc, and
texlive-lang-chinese folders n to z.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pymupdf

from vary.evaluation.ocr import OcrEvalConfig, run_ocr_eval


def pick_pages(pdfs: list[Path], count: int, min_chars: int) -> list[tuple[Path, int]]:
    """Up to `count` text-rich pages: PDFs evenly spaced in the list, pages evenly spaced in each."""
    chosen = pdfs[:: max(len(pdfs) // count, 1)][:count]
    per_pdf = -(-count // len(chosen))
    pages = []
    for pdf in chosen:
        with pymupdf.open(pdf) as document:
            rich = [page.number for page in document if len(page.get_text().strip()) >= min_chars]
        pages += [(pdf, number) for number in rich[:: max(len(rich) // per_pdf, 1)][:per_pdf]]
    return pages[:count]


def build_set(pages: list[tuple[Path, int]], lang: str, dpi: int, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "set.jsonl"
    with path.open("w", encoding="utf-8") as sink:
        for pdf, number in pages:
            with pymupdf.open(pdf) as document:
                page = document[number]
                name = f"{pdf.stem}-p{number + 1}"
                page.get_pixmap(dpi=dpi).save(folder / f"{name}.png")
                record = {"id": name, "image": f"{name}.png", "text": page.get_text(), "lang": lang}
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdf", type=Path, action="append", default=[], help="a held-out PDF (repeatable)")
    parser.add_argument("--pdf-dir", type=Path, help="every PDF below this folder")
    parser.add_argument("--lang", choices=("en", "zh"), required=True)
    parser.add_argument("--pages", type=int, default=6)
    parser.add_argument("--dpi", type=int, default=144, help="144 dpi: an A4 page is 1190 x 1684")
    parser.add_argument("--min-chars", type=int, default=400, help="skip pages with less text")
    parser.add_argument("--engine", action="append", default=None, help="default: tesseract and rapidocr")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pdfs = sorted(args.pdf + (sorted(args.pdf_dir.rglob("*.pdf")) if args.pdf_dir else []))
    if not pdfs:
        parser.error("give --pdf or --pdf-dir")
    pages = pick_pages(pdfs, args.pages, args.min_chars)
    data = build_set(pages, args.lang, args.dpi, args.out / "set")
    engines = args.engine or ["tesseract", "rapidocr"]
    run_ocr_eval(OcrEvalConfig(data=data, engines=engines, out=args.out))
    print((args.out / "summary.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
