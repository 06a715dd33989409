"""Data engine throughput, with references measured in the same run (run by hand, not in CI).

    apt-get download texlive-latex-recommended-doc && dpkg -x texlive-latex-recommended-doc_*.deb texdoc/
    python benchmarks/bench_data.py --pdfs texdoc --pages 1200

Rows: the PDF engine (1 and 2 worker processes, JPEG and PNG) against plain PyMuPDF doing the
same work on exactly the pages the engine kept (open once, get_text, render, encode), charts/s,
LaTeX pages/s (English with pdflatex, Chinese with xelatex + ctex). Each timing is the best of
`--repeat` runs, to damp the noise of a shared machine.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pymupdf

from vary.data.config import ChartConfig, EngineConfig, LatexConfig, PdfConfig
from vary.data.engine import find_inputs, run_job
from vary.data.pdf import pdf_job, render
from vary.data.reader import iter_samples
from vary.data.shards import Encoding


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


@dataclass
class Timing:
    """Best wall-clock seconds of a variant, and the CPU seconds (all processes) of that run."""

    seconds: float = float("inf")
    cpu: float = 0.0
    items: int = 0


def measure(fn: Callable[[], int], timing: Timing) -> None:
    """Run fn once (it returns how many items it made); keep the run if it is the fastest so far."""
    cpu0, start = _cpu_seconds(), time.perf_counter()
    items = fn()
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    if seconds < timing.seconds:
        timing.seconds, timing.cpu, timing.items = seconds, cpu, items


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_engine(job_factory: Callable[[EngineConfig], object], **engine: object) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-data-") as out:
        cfg = EngineConfig(out=out, **engine)
        return run_job(job_factory(cfg), cfg)["samples"]


def plain_pymupdf(kept: dict[str, list[int]], long_side: int, fmt: str) -> int:
    """The reference: what a hand-written loop does for the same pages, nothing more."""
    encoding = Encoding(fmt)
    for path, numbers in kept.items():
        with pymupdf.open(path) as doc:
            for number in numbers:
                page = doc[number]
                page.get_text("text")
                encoding.encode(render(page, long_side))
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
        "--pdfs", type=Path, required=True, help="a folder of PDFs (an extracted texlive -doc)"
    )
    parser.add_argument("--pages", type=int, default=1200)
    parser.add_argument("--charts", type=int, default=64)
    parser.add_argument("--latex", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    files = pick_pdfs(args.pdfs, args.pages)
    kept = kept_pages(files)
    from vary.data.charts import chart_job
    from vary.data.latex import latex_job

    def pdfs(fmt: str, workers: int) -> Callable[[], int]:
        return lambda: run_engine(lambda c: pdf_job(files, PdfConfig(), c), image_format=fmt, workers=workers)

    # name -> (function, unit, the row it is compared with)
    variants: dict[str, tuple[Callable[[], int], str, str]] = {}
    for fmt in ("jpg", "png"):
        reference = f"plain PyMuPDF, {fmt} (reference)"
        variants[reference] = (lambda f=fmt: plain_pymupdf(kept, 1024, f), "pages/s", "")
        variants[f"PDF engine, 1 process, {fmt}"] = (pdfs(fmt, 1), "pages/s", reference)
        variants[f"PDF engine, 2 processes, {fmt}"] = (
            pdfs(fmt, 2),
            "pages/s",
            f"PDF engine, 1 process, {fmt}",
        )
    charts = ChartConfig(n=args.charts)
    variants["charts, 1 process (en+zh, both families)"] = (
        lambda: run_engine(lambda c: chart_job(charts, c)),
        "charts/s",
        "",
    )
    if shutil.which("pdflatex") and shutil.which("xelatex"):
        for lang in ("en", "zh"):
            cfg = LatexConfig(n=args.latex, langs=[lang])
            variants[f"LaTeX pages, 1 process, {lang}"] = (
                lambda cfg=cfg: run_engine(lambda c: latex_job(cfg, c)),
                "pages/s",
                "",
            )

    timings = {name: Timing() for name in variants}
    for _ in range(args.repeat):  # interleaved, so slow phases of a shared machine hit every row alike
        for name, (fn, _, _) in variants.items():
            measure(fn, timings[name])

    kept_count = sum(map(len, kept.values()))
    print(f"\n{len(files)} PDFs, {kept_count} kept pages, long side 1024 px, best of {args.repeat}\n")
    print("| what | rate | unit | CPU ms / item | ratio (vs) |")
    print("|---|---|---|---|---|")
    for name, (_, unit, versus) in variants.items():
        t = timings[name]
        rate = t.items / t.seconds
        ratio = f"{rate / (timings[versus].items / timings[versus].seconds):.2f} ({versus})" if versus else ""
        print(f"| {name} | {rate:.1f} | {unit} | {1000 * t.cpu / max(t.items, 1):.1f} | {ratio} |")


if __name__ == "__main__":
    main()
