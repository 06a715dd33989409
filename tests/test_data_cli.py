"""`vary data` configuration: shipped configs load, mistakes are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from vary.cli import build_parser, main
from vary.config import ConfigError
from vary.data.cli import _load
from vary.data.config import ChartConfig, LatexConfig, NaturalConfig, PdfConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"
SECTIONS = {"pdf": PdfConfig, "charts": ChartConfig, "latex": LatexConfig, "natural": NaturalConfig}


def parse(*argv: str):
    return build_parser().parse_args(["data", *argv])


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_shipped_configs_load_and_flags_win(name: str) -> None:
    argv = [name, *(["src"] if name in ("pdf", "natural") else []), "--config", str(CONFIGS / f"{name}.yaml")]
    args = parse(*argv, "--workers", "3", "--set", "engine.shard_size=7")
    engine, cfg = _load(args, name, SECTIONS[name], {})
    assert (engine.workers, engine.shard_size) == (3, 7) and isinstance(cfg, SECTIONS[name])


def test_config_mistakes_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key pdf\.'dpi'"):
        _load(parse("pdf", "x", "--set", "pdf.dpi=200"), "pdf", PdfConfig, {})
    with pytest.raises(ConfigError, match="split"):
        _load(parse("pdf", "x", "--set", "pdf.split=test"), "pdf", PdfConfig, {})
    with pytest.raises(ConfigError, match="i/N"):
        _load(parse("pdf", "x", "--shard", "3/2"), "pdf", PdfConfig, {})
    assert main(["data", "pdf", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2


def test_lines_command_writes_readable_shards(tmp_path: Path) -> None:
    from vary.data.lines import LinesConfig, line_sample
    from vary.data.reader import iter_samples

    out = tmp_path / "lines"
    argv = ["data", "lines", "--n", "12", "--seed", "3", "--split", "heldout", "--out", str(out)]
    assert main([*argv, "--set", "lines.image_size=48"]) == 0
    samples = list(iter_samples([out]))
    expected = [line_sample(LinesConfig(n=12, seed=3, split="heldout", image_size=48), i) for i in range(12)]
    assert [s.text for s in samples] == [e.text for e in expected]
    assert all(s.image.size == (48, 48) for s in samples)
