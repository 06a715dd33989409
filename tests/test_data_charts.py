"""Chart engine: the ground truth is what was plotted, read back from the figure's artists."""

from __future__ import annotations

import ast
import json
import math
import random
from pathlib import Path

import pytest
from matplotlib import font_manager
from matplotlib.patches import Rectangle, Wedge

from vary.cli import UserError
from vary.data.charts import FAMILIES, KINDS, ChartSpec, draw_chart, make_spec, make_style
from vary.data.config import ChartConfig, EngineConfig
from vary.data.engine import run_job
from vary.data.fonts import CJK_FAMILIES, find_cjk_font, latin_font, missing_glyphs
from vary.data.reader import iter_samples


def first_of_each_kind(family: str, lang: str) -> dict[str, tuple]:
    found: dict[str, tuple] = {}
    for seed in range(500):
        rng = random.Random(f"test:{seed}")
        spec = make_spec(rng, lang)
        found.setdefault(spec.kind, (spec, make_style(rng, family)))
        if len(found) == len(KINDS):
            return found
    raise AssertionError(f"kinds never drawn: {set(KINDS) - set(found)}")


def plotted(fig, spec: ChartSpec) -> list[list]:
    """The data of each series as drawn: bar lengths, line values, wedge angles, scatter x, y, x, y..."""
    ax = fig.axes[0]
    series: dict[int, list] = {}
    for artist in [*ax.patches, *ax.lines, *ax.collections]:
        gid = artist.get_gid() or ""
        if not gid.startswith("data:"):
            continue
        j = int(gid.split(":")[1])
        if isinstance(artist, Wedge):
            series.setdefault(j, []).append((artist.theta2 - artist.theta1) % 360 or 360)
        elif isinstance(artist, Rectangle):
            series.setdefault(j, []).append(
                artist.get_width() if spec.kind == "hbar" else artist.get_height()
            )
        elif hasattr(artist, "get_ydata"):
            series[j] = list(artist.get_ydata())
        else:
            series[j] = [float(v) for point in artist.get_offsets() for v in point]
    return [series[j] for j in sorted(series)]


@pytest.mark.parametrize("family", FAMILIES)
def test_truth_matches_the_plotted_data(family: str) -> None:
    for lang in ("en", "zh"):
        font = latin_font() if lang == "en" else find_cjk_font()
        for kind, (spec, style) in first_of_each_kind(family, lang).items():
            fig = draw_chart(spec, style, font, long_side=256)
            drawn = plotted(fig, spec)
            if kind == "pie":
                values = spec.series[0]["values"]
                expected = [[360 * v / sum(values) for v in values]]
            elif kind == "scatter":
                expected = [[v for point in s["points"] for v in point] for s in spec.series]
            else:
                expected = [s["values"] for s in spec.series]
            assert len(drawn) == len(expected), kind
            for got, want in zip(drawn, expected, strict=True):
                assert got == pytest.approx(want, abs=1e-6), (family, lang, kind)
            ax = fig.axes[0]
            assert spec.title in (ax.get_title(), ax.get_title(loc="left"))
            if kind in ("pie",):
                assert [t.get_text() for t in ax.texts] == spec.categories
            elif kind != "scatter":
                ticks = ax.get_yticklabels() if kind == "hbar" else ax.get_xticklabels()
                assert [t.get_text() for t in ticks] == spec.categories, kind
                assert (ax.get_xlabel(), ax.get_ylabel()) == (spec.x_label, spec.y_label)


def test_engine_writes_dict_strings_in_both_languages(tmp_path: Path) -> None:
    cfg = EngineConfig(out=str(tmp_path), shard_size=4)
    summary = run_job(_chart_job(ChartConfig(n=6, long_side=320, charts_per_unit=2), cfg), cfg)
    samples = list(iter_samples([tmp_path]))
    assert summary["samples"] == 6 and {s.lang for s in samples} == {"en", "zh"}
    for sample in samples:
        truth = ast.literal_eval(sample.text)  # a Python dict string
        assert truth == sample.meta["chart"] and truth["type"] in KINDS
        assert max(sample.image.size) == 320
    zh = next(s for s in samples if s.lang == "zh")
    assert any(map(_has_cjk, zh.text))


def test_font_without_the_glyphs_skips_and_reports(tmp_path: Path) -> None:
    latin_only = str(latin_font())
    assert missing_glyphs(Path(latin_only), "Sales 销售") == "销售"
    cfg = EngineConfig(out=str(tmp_path))
    charts = ChartConfig(n=3, langs=["en", "zh"], cjk_font=latin_only, long_side=256)
    summary = run_job(_chart_job(charts, cfg), cfg)
    assert summary["samples"] == 2 and summary["errors"] == {"missing_glyphs": 1}
    (line,) = (tmp_path / "errors.jsonl").read_text(encoding="utf-8").splitlines()
    assert "lacks glyphs" in json.loads(line)["error"]


def test_missing_cjk_font_is_one_clear_line() -> None:
    with pytest.raises(UserError, match="apt-get install fonts-wqy-zenhei") as err:
        find_cjk_font("No Such Font Family")
    assert "\n" not in str(err.value)


def test_cjk_font_installed_after_matplotlib_cached_its_font_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib writes its font list once; a CJK font installed later is found all the same."""
    installed = find_cjk_font()
    manager = font_manager.fontManager
    cjk_files = {e.fname for e in manager.ttflist if e.name in CJK_FAMILIES}
    monkeypatch.setattr(manager, "ttflist", [e for e in manager.ttflist if e.fname not in cjk_files])
    find_cjk_font.cache_clear()
    try:
        assert find_cjk_font() == installed
    finally:
        find_cjk_font.cache_clear()


def test_same_seed_same_charts() -> None:
    a, b = (make_spec(random.Random("x:1"), "en") for _ in range(2))
    assert a == b and math.isfinite(len(repr(a.truth())))


def _chart_job(charts: ChartConfig, cfg: EngineConfig):
    from vary.data.charts import chart_job

    return chart_job(charts, cfg)


def _has_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"
