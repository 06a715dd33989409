"""Data engine throughput, with references measured in the same run (run by hand, not in CI).

    apt-get download texlive-latex-recommended-doc && dpkg -x texlive-latex-recommended-doc_*.deb texdoc/
    python benchmarks/bench_data.py --pdfs texdoc --pages 600

Rows: the PDF engine (1 and 2 worker processes, JPEG and PNG) against plain PyMuPDF doing the
same work on exactly the pages the engine kept (open once, get_text, render, encode), charts/s,
LaTeX pages/s (English with pdflatex, Chinese with xelatex + ctex). Each timing is the best of
`--repeat` runs, to damp the noise of a shared machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pymupdf

from vary.data.config import ChartConfig, EngineConfig, LatexConfig, PdfConfig
from vary.data.engine import find_inputs, run_job
from vary.data.pdf import pdf_job, render
from vary.data.reader import iter_samples
from vary.data.shards import encode_image


def pick_pdfs(root: Path, pages: int) -> list[Path]:
    """The first PDFs (by path) that add up to at least `pages` pages."""
    chosen, total = [], 0
    for path, _ in find_inputs([root], (".pdf",)):
        with pymupdf.open(path) as doc:
            total += doc.page_count
        chosen.append(path)
        if total >= pages:
            break
    return chosen


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    """(best seconds, items) over `repeat` runs of fn, which returns how many items it made."""
    best, items = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        items = fn()
        best = min(best, time.perf_counter() - start)
    return best, items


def run_engine(job_factory: Callable[[EngineConfig], object], **engine: object) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-data-") as out:
        cfg = EngineConfig(out=out, **engine)
        return run_job(job_factory(cfg), cfg)["samples"]


def plain_pymupdf(kept: dict[str, list[int]], long_side: int, fmt: str) -> int:
    """The reference: what a hand-written loop does for the same pages, nothing more."""
    for path, numbers in kept.items():
        with pymupdf.open(path) as doc:
            for number in numbers:
                page = doc[number]
                page.get_text("text")
                encode_image(render(page, long_side), fmt)
    return sum(map(len, kept.values()))


def kept_pages(files: list[Path]) -> dict[str, list[int]]:
    """Which pages of which file the engine keeps (after its filters), to feed the reference."""
    by_key = {key: str(path) for path, key in find_inputs(files, (".pdf",))}
    with tempfile.TemporaryDirectory(prefix="bench-data-") as out:
        cfg = EngineConfig(out=out)
        run_job(pdf_job(files, PdfConfig(), cfg), cfg)
        kept: dict[str, list[int]] = defaultdict(list)
        for sample in iter_samples([out], decode_images=False):
            kept[by_key[sample.meta["file"]]].append(sample.meta["page"] - 1)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pdfs", type=Path, required=True, help="a folder of PDFs (e.g. an extracted texlive -doc)"
    )
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--charts", type=int, default=64)
    parser.add_argument("--latex", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    files = pick_pdfs(args.pdfs, args.pages)
    kept = kept_pages(files)
    pages = sum(map(len, kept.values()))
    rows: list[tuple[str, float, str, str]] = []

    def add(name: str, seconds: float, items: int, unit: str, ref: float | None = None) -> float:
        rate = items / seconds
        rows.append((name, rate, unit, f"{rate / ref:.2f}" if ref else ""))
        return rate

    ref = {
        fmt: add(
            f"plain PyMuPDF, {fmt} (reference)",
            *best_of(args.repeat, lambda f=fmt: plain_pymupdf(kept, 1024, f)),
            "pages/s",
        )
        for fmt in ("jpg", "png")
    }
    for fmt in ("jpg", "png"):
        one = add(
            f"PDF engine, 1 process, {fmt}",
            *best_of(
                args.repeat,
                lambda f=fmt: run_engine(lambda c: pdf_job(files, PdfConfig(), c), image_format=f),
            ),
            "pages/s",
            ref[fmt],
        )
        two_s, two_n = best_of(
            args.repeat,
            lambda f=fmt: run_engine(lambda c: pdf_job(files, PdfConfig(), c), image_format=f, workers=2),
        )
        rows.append(
            (
                f"PDF engine, 2 processes, {fmt}",
                two_n / two_s,
                "pages/s",
                f"{two_n / two_s / one:.2f} (vs 1 process)",
            )
        )

    charts = ChartConfig(n=args.charts)
    from vary.data.charts import chart_job
    from vary.data.latex import latex_job

    add(
        "charts, 1 process (en+zh, both families)",
        *best_of(1, lambda: run_engine(lambda c: chart_job(charts, c))),
        "charts/s",
    )
    if shutil.which("pdflatex"):
        for lang in ("en", "zh"):
            cfg = LatexConfig(n=args.latex, langs=[lang])
            add(
                f"LaTeX pages, 1 process, {lang}",
                *best_of(1, lambda cfg=cfg: run_engine(lambda c: latex_job(cfg, c))),
                "pages/s",
            )

    print(f"\n{len(files)} PDFs, {pages} kept pages, long side 1024 px, best of {args.repeat}\n")
    print(f"| {'what':44} | {'rate':>8} | {'unit':8} | ratio |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|-------|")
    for name, rate, unit, ratio in rows:
        print(f"| {name:44} | {rate:8.1f} | {unit:8} | {ratio} |")


if __name__ == "__main__":
    main()
