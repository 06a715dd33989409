"""`vary eval ocr`: several engines on the same pages, one normalisation, one set of metrics.

Each page image is loaded once and given to every engine in turn. A failure (unreadable image,
engine error) is recorded in `errors.jsonl` and scored as an empty prediction, so an engine
cannot look better by failing on its hardest pages; the `failures` column counts them.
Outputs in `--out`: `predictions.jsonl` (one row per page and engine), `summary.md` (a table
per language), `summary.json`, `edit_distance.png` and `errors.jsonl`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from PIL import Image

from vary.cli import UserError
from vary.evaluation.datasets import OcrPage, load_ocr_set
from vary.evaluation.engines import OcrEngine, make_engine
from vary.evaluation.metrics import OcrScores, ocr_scores
from vary.evaluation.report import fresh_error_log, markdown_table, write_jsonl_row
from vary.reporting import ErrorLog, progress, write_summary


@dataclass
class OcrEvalConfig:
    data: Path
    engines: list[str]
    out: Path
    limit: int | None = None  # only the first N pages

    def __post_init__(self) -> None:
        if not self.engines:
            raise ValueError("name at least one engine")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")


@dataclass(frozen=True)
class PageResult:
    id: str
    engine: str
    lang: str
    prediction: str
    seconds: float
    scores: OcrScores
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        fields = {"id": self.id, "engine": self.engine, "lang": self.lang, "prediction": self.prediction}
        return {**fields, **dataclasses.asdict(self.scores), "seconds": self.seconds, "error": self.error}


def read_page(engine: OcrEngine, page: OcrPage, image: Image.Image | None, errors: ErrorLog) -> PageResult:
    """Run one engine on one page and score it; any exception is recorded, not raised."""
    start = time.perf_counter()
    prediction, error = "", None
    if image is None:
        error = "image could not be read"
    else:
        try:
            prediction = engine.read(image, page.lang)
        except Exception as err:  # a bad page must not stop the run
            error = f"{type(err).__name__}: {err}"
            errors.record(f"{page.id} [{engine.name}]", err, kind=engine.name)
    seconds = time.perf_counter() - start
    scores = ocr_scores(prediction, page.text, page.lang)
    return PageResult(page.id, engine.name, page.lang, prediction, seconds, scores, error)


def _load_image(page: OcrPage, errors: ErrorLog) -> Image.Image | None:
    try:
        with Image.open(page.image) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as err:  # missing, truncated or not an image
        errors.record(page.id, err, kind="image")
        return None


def iter_page_results(
    pages: Sequence[OcrPage], engines: Sequence[OcrEngine], errors: ErrorLog
) -> Iterator[PageResult]:
    for page in progress(pages, desc="eval ocr", total=len(pages), unit="page"):
        image = _load_image(page, errors)
        for engine in engines:
            yield read_page(engine, page, image, errors)


METRICS = ("edit_distance", "cer", "f1", "precision", "recall", "bleu", "meteor")


def _by_language_and_engine(results: Sequence[PageResult]) -> dict[str, dict[str, list[PageResult]]]:
    groups: dict[str, dict[str, list[PageResult]]] = {}
    for result in results:
        groups.setdefault(result.lang, {}).setdefault(result.engine, []).append(result)
    return groups


def summarize(results: Sequence[PageResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Means per language and engine, in the order they first appear."""
    groups = _by_language_and_engine(results)
    return {
        lang: {engine: _means(rows) for engine, rows in engines.items()} for lang, engines in groups.items()
    }


def _means(rows: Sequence[PageResult]) -> dict[str, float]:
    means: dict[str, float] = {"pages": len(rows), "failures": sum(row.error is not None for row in rows)}
    means.update({metric: fmean(getattr(row.scores, metric) for row in rows) for metric in METRICS})
    charts = [row.scores.chart_f1 for row in rows if row.scores.chart_f1 is not None]
    if charts:
        means["chart_f1"] = fmean(charts)
    means["seconds_per_page"] = fmean(row.seconds for row in rows)
    return means


# (header, summary key, format); a column shows only where some engine has the value.
COLUMNS = (
    ("pages", "pages", "{:.0f}"),
    ("failures", "failures", "{:.0f}"),
    ("edit dist ↓", "edit_distance", "{:.3f}"),
    ("CER ↓", "cer", "{:.3f}"),
    ("F1", "f1", "{:.3f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("BLEU", "bleu", "{:.3f}"),
    ("METEOR", "meteor", "{:.3f}"),
    ("chart F1", "chart_f1", "{:.3f}"),
    ("s/page", "seconds_per_page", "{:.2f}"),
)


def summary_markdown(title: str, summary: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        f"# {title}",
        "",
        "Text normalised the same for every engine (NFKC, no invisible characters, whitespace collapsed,"
        " no spaces between CJK characters); failures scored as empty output. See docs/evaluation.md.",
    ]
    for lang, engines in summary.items():
        columns = [column for column in COLUMNS if any(column[1] in row for row in engines.values())]
        rows = [
            [engine, *(fmt.format(row[key]) if key in row else "-" for _, key, fmt in columns)]
            for engine, row in engines.items()
        ]
        lines += ["", f"## {lang}", "", markdown_table(["engine", *(c[0] for c in columns)], rows)]
    return "\n".join(lines) + "\n"


def plot_edit_distances(results: Sequence[PageResult], path: Path) -> None:
    """Box plot of per-page edit distance, one panel per language side by side, one box per engine."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    groups = _by_language_and_engine(results)
    width = sum(1.5 + 1.3 * len(engines) for engines in groups.values())
    figure = Figure(figsize=(width, 4.0))
    panels = figure.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    for axes, (lang, engines) in zip(panels, groups.items(), strict=True):
        values = [[row.scores.edit_distance for row in rows] for rows in engines.values()]
        axes.boxplot(values, tick_labels=list(engines), showfliers=False)
        for position, column in enumerate(values, 1):
            offsets = [0.15 * (i / max(len(column) - 1, 1) - 0.5) for i in range(len(column))]
            axes.scatter([position + offset for offset in offsets], column, s=10, alpha=0.6)
        axes.set_title(f"{lang}: {len(values[0])} pages")
    panels[0].set_ylabel("normalised edit distance ↓")
    panels[0].set_ylim(-0.03, 1.03)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def run_ocr_eval(config: OcrEvalConfig) -> dict[str, dict[str, dict[str, float]]]:
    """The whole `vary eval ocr` run: load the set, build the engines, score, write the report."""
    pages = load_ocr_set(config.data)[: config.limit]
    if not pages:
        raise UserError(f"{config.data}: no pages to evaluate")
    engines = [make_engine(spec) for spec in config.engines]
    names = [engine.name for engine in engines]
    if len(set(names)) != len(names):
        raise UserError(f"engines must have distinct names, got {names}")
    config.out.mkdir(parents=True, exist_ok=True)
    errors = fresh_error_log(config.out)
    results = []
    with (config.out / "predictions.jsonl").open("w", encoding="utf-8") as sink:
        for result in iter_page_results(pages, engines, errors):
            write_jsonl_row(sink, result.to_json())
            results.append(result)
    summary = summarize(results)
    title = f"OCR evaluation: {config.data.name}"
    (config.out / "summary.md").write_text(summary_markdown(title, summary), encoding="utf-8")
    plot_edit_distances(results, config.out / "edit_distance.png")
    write_summary(
        config.out / "summary.json",
        {
            "data": str(config.data),
            "engines": names,
            "pages": len(pages),
            "errors": errors.count,
            "results": summary,
        },
    )
    return summary
