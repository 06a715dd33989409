"""Synthetic charts -> (image, data as a Python dict string): Vary's chart data engine.

A seeded generator draws a chart *spec* (kind, title, axis labels, categories, series values,
English or Chinese words from `vary.data.words`) and a *style*, and matplotlib draws it. The
target text is `repr(spec.truth())`, e.g. `{'type': 'bar', 'title': ..., 'series': [...]}`.

Two families of looks:
- "matplotlib": matplotlib's own style sheets (ggplot, bmh, fivethirtyeight, seaborn, ...),
  palettes, markers, value labels, legend places;
- "echarts": the look of Apache ECharts' default theme, drawn by matplotlib too (its palette,
  grey axis text, light split lines, no box, title top-left, legend on top, rounded bars). The
  real ECharts needs a headless browser to rasterise (~2 charts/s here, FINDINGS.md, and ~80 MB
  of chromium in CI); the imitation gets the visual statistics that matter for reading charts at
  matplotlib's speed, and keeps the ground truth checkable from the drawn artists.

Every data artist carries a `gid` ("data:<series>"), so tests read the plotted values back from
the figure instead of trusting the spec.
"""

from __future__ import annotations

import functools
import random
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.style
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from vary.data import words
from vary.data.config import ChartConfig, EngineConfig
from vary.data.engine import Job, Unit, UnitResult
from vary.data.fonts import family_name, find_cjk_font, latin_font, missing_glyphs
from vary.data.sample import Sample
from vary.data.shards import Encoding, Record

KINDS = ("bar", "hbar", "grouped_bar", "stacked_bar", "line", "area", "pie", "scatter")
MULTI_SERIES = ("grouped_bar", "stacked_bar", "line", "area")
FAMILIES = ("matplotlib", "echarts")
STYLE_SHEETS = (
    "default",
    "ggplot",
    "bmh",
    "fivethirtyeight",
    "seaborn-v0_8-whitegrid",
    "seaborn-v0_8-darkgrid",
    "Solarize_Light2",
    "classic",
    "seaborn-v0_8-pastel",
    "tableau-colorblind10",
)
PALETTES = ("tab10", "Set1", "Set2", "Dark2", "Paired", "tab20b", "Accent")
ECHARTS_PALETTE = (
    "#5470c6",
    "#91cc75",
    "#fac858",
    "#ee6666",
    "#73c0de",
    "#3ba272",
    "#fc8452",
    "#9a60b4",
    "#ea7ccc",
)
ECHARTS_TEXT, ECHARTS_AXIS, ECHARTS_SPLIT = "#464646", "#6E7079", "#E0E6F1"
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class ChartSpec:
    """What the chart shows; `truth()` is exactly the target the model must write."""

    kind: str
    lang: str
    title: str
    categories: list[str]
    series: list[dict[str, Any]]  # {"name", "values"} or, for scatter, {"name", "points": [[x, y], ...]}
    x_label: str = ""
    y_label: str = ""

    def truth(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, "title": self.title}
        if self.kind != "pie":
            out |= {"x_label": self.x_label, "y_label": self.y_label}
        if self.kind != "scatter":
            out["categories"] = self.categories
        out["series"] = self.series
        return out

    def texts(self) -> str:
        """Every string the figure will draw (for the glyph check)."""
        return " ".join(
            [self.title, self.x_label, self.y_label, *self.categories, *(s["name"] for s in self.series)]
        )


@dataclass
class ChartStyle:
    family: str
    sheet: str = "default"
    colors: list[str] = field(default_factory=list)
    aspect: float = 4 / 3  # width / height
    font_size: float = 12.0
    value_labels: bool = False
    legend_loc: str = "best"
    marker: str = "o"
    donut: bool = False


def make_spec(rng: random.Random, lang: str) -> ChartSpec:
    """A random chart in `lang` ("en" or "zh"): kind, words, and plausible numbers."""
    kind = rng.choice(KINDS)
    title = words.english_title(rng, rng.randint(2, 4)) if lang == "en" else _zh_title(rng)
    n_series = rng.randint(2, 4) if kind in MULTI_SERIES else rng.randint(1, 3) if kind == "scatter" else 1
    names = _names(rng, lang, n_series)
    x_label, categories = _categories(rng, lang, 3 if kind == "pie" else 4, 7 if kind == "pie" else 10)
    y_label = _label(rng, lang)
    if kind == "scatter":
        x_label = _label(rng, lang)
        series = [{"name": n, "points": _points(rng)} for n in names]
        return ChartSpec(kind, lang, title, [], series, x_label, y_label)
    scale = rng.choice((1, 10, 100, 1000)) if kind != "pie" else rng.choice((10, 100))
    series = [
        {"name": n, "values": _values(rng, len(categories), scale, kind in ("line", "area"))} for n in names
    ]
    if kind == "hbar":  # labels name the axes as drawn: categories run up the y axis
        x_label, y_label = y_label, x_label
    return ChartSpec(kind, lang, title, categories, series, x_label, y_label)


def make_style(rng: random.Random, family: str) -> ChartStyle:
    colors = list(ECHARTS_PALETTE) if family == "echarts" else _palette(rng)
    return ChartStyle(
        family=family,
        sheet="default" if family == "echarts" else rng.choice(STYLE_SHEETS),
        colors=colors,
        aspect=rng.choice((4 / 3, 16 / 9, 3 / 2, 1.0, 5 / 4)),
        font_size=rng.uniform(10, 16),
        value_labels=rng.random() < 0.35,
        legend_loc=rng.choice(("best", "upper left", "upper right", "lower right", "center right")),
        marker=rng.choice(("o", "s", "^", "D", "")),
        donut=rng.random() < 0.4,
    )


def draw_chart(spec: ChartSpec, style: ChartStyle, font: Path, long_side: int = 1024) -> Figure:
    """The figure for `spec` in `style`, text drawn with `font` (no pyplot, no global state kept)."""
    width, height = (
        (long_side, long_side / style.aspect) if style.aspect >= 1 else (long_side * style.aspect, long_side)
    )
    rc = {
        "font.family": [family_name(font)],
        "font.size": style.font_size,
        "axes.unicode_minus": False,
        "axes.prop_cycle": matplotlib.cycler(color=style.colors),
    }
    with matplotlib.style.context(style.sheet), matplotlib.rc_context(rc):
        fig = Figure(figsize=(width / 100, height / 100), dpi=100)
        ax = fig.add_subplot()
        _PLOTTERS[spec.kind](ax, spec, style)
        if style.family == "echarts":
            _echarts_look(fig, ax, spec)
        else:
            ax.set_title(spec.title, fontsize=style.font_size * 1.3)
            if len(spec.series) > 1:
                ax.legend(loc=style.legend_loc)
        if spec.kind != "pie":
            ax.set_xlabel(spec.x_label)
            ax.set_ylabel(spec.y_label)
        with warnings.catch_warnings():  # tiny figures cannot fit every label: keep what fits
            warnings.simplefilter("ignore", UserWarning)
            fig.tight_layout()
        FigureCanvasAgg(fig).draw()
    return fig


def figure_image(fig: Figure) -> Image.Image:
    canvas = fig.canvas
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")


def chart_job(cfg: ChartConfig, engine: EngineConfig) -> Job:
    fonts = {lang: str(_font_for(lang, cfg.cjk_font)) for lang in cfg.langs}  # fails early, one line
    step = cfg.charts_per_unit
    units = [Unit(f"chart:{cfg.seed}:{i}", (i, min(i + step, cfg.n))) for i in range(0, cfg.n, step)]
    process = functools.partial(
        process_unit,
        cfg=cfg,
        fonts=fonts,
        encoding=engine.encoding(),
    )
    return Job("chart", units, process, settings={"charts": asdict(cfg)}, unit_label="batch")


def process_unit(
    payload: tuple[int, int], cfg: ChartConfig, fonts: dict[str, str], encoding: Encoding
) -> UnitResult:
    """Charts [start, stop): each index seeds its own generator, so any slice reproduces alone."""
    result = UnitResult()
    for index in range(*payload):
        rng = random.Random(f"{cfg.seed}:{index}")
        lang = cfg.langs[index % len(cfg.langs)]
        spec, style = make_spec(rng, lang), make_style(rng, rng.choice(cfg.families))
        item = f"chart {index} ({lang}, {spec.kind})"
        font = Path(fonts[lang])
        missing = missing_glyphs(font, spec.texts())
        if missing:
            result.errors.append((item, "missing_glyphs", f"font {font.name} lacks glyphs {missing[:20]!r}"))
            continue
        try:
            fig = draw_chart(spec, style, font, cfg.long_side)
            image = figure_image(fig)
        except Exception as err:
            result.errors.append((item, "render_failed", f"{type(err).__name__}: {err}"))
            continue
        truth = spec.truth()
        sample = Sample(
            f"chart-{cfg.seed}-{index:07d}",
            None,
            repr(truth),
            lang,
            "chart",
            meta={"chart": truth, "family": style.family, "style": style.sheet},
        )
        result.records.append(Record.from_sample(sample, encoding.encode(image), encoding.format))
    return result


def _font_for(lang: str, cjk_font: str) -> Path:
    return find_cjk_font(cjk_font) if lang == "zh" else latin_font()


# --- plotting, one function per kind ---------------------------------------------------------


def _bars(ax: Axes, spec: ChartSpec, style: ChartStyle) -> None:
    horizontal, n = spec.kind == "hbar", len(spec.series)
    grouped = spec.kind == "grouped_bar"
    width = 0.8 / n if grouped else 0.6
    bottoms = [0.0] * len(spec.categories)
    for j, series in enumerate(spec.series):
        xs = [i + (j - (n - 1) / 2) * width if grouped else i for i in range(len(spec.categories))]
        draw = ax.barh if horizontal else ax.bar
        kwargs = {"left" if horizontal else "bottom": bottoms} if spec.kind == "stacked_bar" else {}
        bars = draw(xs, series["values"], width, label=series["name"], gid=f"data:{j}", **kwargs)
        if style.family == "echarts":  # round joins on a same-colour edge: ECharts' rounded bars
            for bar in bars:
                bar.set_edgecolor(bar.get_facecolor())
                bar.set_linewidth(2.5)
                bar.set_joinstyle("round")
        if style.value_labels and spec.kind != "stacked_bar":
            ax.bar_label(bars, fontsize=style.font_size * 0.8)
        if spec.kind == "stacked_bar":
            bottoms = [b + v for b, v in zip(bottoms, series["values"], strict=True)]
    ticks = range(len(spec.categories))
    (ax.set_yticks if horizontal else ax.set_xticks)(ticks, spec.categories)
    if not horizontal and max(map(len, spec.categories)) * len(spec.categories) > 60:
        ax.tick_params(axis="x", labelrotation=30)


def _lines(ax: Axes, spec: ChartSpec, style: ChartStyle) -> None:
    xs = range(len(spec.categories))
    for j, series in enumerate(spec.series):
        face = "white" if style.family == "echarts" else None
        ax.plot(
            xs,
            series["values"],
            marker=style.marker or None,
            markerfacecolor=face,
            label=series["name"],
            gid=f"data:{j}",
            linewidth=2,
        )
        if spec.kind == "area":
            ax.fill_between(xs, series["values"], alpha=0.25)
    ax.set_xticks(xs, spec.categories)


def _pie(ax: Axes, spec: ChartSpec, style: ChartStyle) -> None:
    wedge = {"width": 0.45, "edgecolor": "white"} if style.donut else {"edgecolor": "white"}
    wedges, _ = ax.pie(
        spec.series[0]["values"],
        labels=spec.categories,
        startangle=90,
        counterclock=False,
        wedgeprops=wedge,
        colors=style.colors,
    )
    for wedge_patch in wedges:
        wedge_patch.set_gid("data:0")
    ax.set_aspect("equal")


def _scatter(ax: Axes, spec: ChartSpec, style: ChartStyle) -> None:
    for j, series in enumerate(spec.series):
        xs, ys = zip(*series["points"], strict=True)
        ax.scatter(xs, ys, label=series["name"], gid=f"data:{j}", marker=style.marker or "o")


_PLOTTERS = {
    "bar": _bars,
    "hbar": _bars,
    "grouped_bar": _bars,
    "stacked_bar": _bars,
    "line": _lines,
    "area": _lines,
    "pie": _pie,
    "scatter": _scatter,
}


def _echarts_look(fig: Figure, ax: Axes, spec: ChartSpec) -> None:
    """ECharts' default theme: no box, light split lines, grey axis text, title left, legend on top."""
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color(ECHARTS_AXIS)
    ax.set_facecolor("white")
    fig.set_facecolor("white")
    ax.grid(axis="x" if spec.kind == "hbar" else "y", color=ECHARTS_SPLIT, linewidth=1)
    ax.set_axisbelow(True)
    ax.tick_params(colors=ECHARTS_AXIS, length=0)
    ax.xaxis.label.set_color(ECHARTS_AXIS)
    ax.yaxis.label.set_color(ECHARTS_AXIS)
    ax.set_title(spec.title, loc="left", fontweight="bold", color=ECHARTS_TEXT, pad=28)
    if len(spec.series) > 1 or spec.kind == "pie":
        ax.legend(
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            ncol=min(len(ax.get_legend_handles_labels()[1]), 6),
            frameon=False,
            labelcolor=ECHARTS_TEXT,
            fontsize="small",
        )


# --- words and numbers --------------------------------------------------------------------------


def _palette(rng: random.Random) -> list[str]:
    cmap = matplotlib.colormaps[rng.choice(PALETTES)]
    colors = [matplotlib.colors.to_hex(c) for c in getattr(cmap, "colors", [])]
    rng.shuffle(colors)
    return colors or list(ECHARTS_PALETTE)


def _categories(rng: random.Random, lang: str, low: int, high: int) -> tuple[str, list[str]]:
    """(axis label, category names): years, months, quarters or words."""
    n = rng.randint(low, high)
    kind = rng.choice(("year", "month", "quarter", "word"))
    if kind == "year":
        start = rng.randint(1990, 2024 - n)
        return (
            ("Year", [str(start + i) for i in range(n)])
            if lang == "en"
            else ("年份", [f"{start + i}年" for i in range(n)])
        )
    if kind == "month":
        n = min(n, 12)
        return ("Month", list(MONTHS_EN[:n])) if lang == "en" else ("月份", [f"{i + 1}月" for i in range(n)])
    if kind == "quarter":
        return (
            ("Quarter", [f"Q{i + 1}" for i in range(4)])
            if lang == "en"
            else ("季度", ["一季度", "二季度", "三季度", "四季度"])
        )
    return _label(rng, lang), _names(rng, lang, n)


def _names(rng: random.Random, lang: str, n: int) -> list[str]:
    pool = words.english_words()[:1500] if lang == "en" else words.chinese_words()[:1500]
    return [w.capitalize() for w in rng.sample(pool, n)]


def _label(rng: random.Random, lang: str) -> str:
    (word,) = _names(rng, lang, 1)
    unit = rng.choice(
        ("", "", " (%)", " (k)", " (USD)") if lang == "en" else ("", "", "（%）", "（万元）", "（吨）")
    )
    return word + unit


def _zh_title(rng: random.Random) -> str:
    return words.chinese_title(rng, rng.randint(1, 2)) + rng.choice(
        ("统计", "分布", "变化趋势", "对比", "情况")
    )


def _values(rng: random.Random, n: int, scale: int, walk: bool) -> list[float]:
    """n positive values near `scale`; a random walk for lines (trends), independent for bars."""
    values, level = [], rng.uniform(0.3, 1.0) * scale
    for _ in range(n):
        level = max(level * rng.uniform(0.8, 1.25), scale * 0.05) if walk else rng.uniform(0.1, 1.0) * scale
        values.append(level)
    return _round(values, scale)


def _points(rng: random.Random) -> list[list[float]]:
    n, slope = rng.randint(8, 25), rng.uniform(-2, 2)
    xs = sorted(round(rng.uniform(0, 100), 1) for _ in range(n))
    return [[x, round(slope * x + rng.gauss(0, 20) + 100, 1)] for x in xs]


def _round(values: Sequence[float], scale: int) -> list[float]:
    return [round(v, 1) if scale <= 10 else round(v) for v in values]
