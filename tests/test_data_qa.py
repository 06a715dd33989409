"""Natural-image negatives and Vary-base conversations (shards in, shards or LLaVA JSON out)."""

from __future__ import annotations

import ast
from pathlib import Path

from PIL import Image

from vary.cli import main
from vary.data.reader import iter_samples
from vary.data.sample import IMAGE_TOKEN


def test_natural_images_become_empty_target_negatives(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (2000, 1000), (20, 120, 40)).save(photos / "field.jpg")
    Image.new("RGB", (300, 200), (90, 90, 200)).save(photos / "sky.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["data", "natural", str(photos), "--out", str(tmp_path / "out")]) == 0
    samples = sorted(iter_samples([tmp_path / "out"]), key=lambda s: s.meta["file"])
    assert [(s.text, s.lang, s.source) for s in samples] == [("", "none", "natural")] * 2
    assert samples[0].image.size == (1024, 512) and samples[1].image.size == (300, 200)
    assert "broken.jpg" in (tmp_path / "out" / "errors.jsonl").read_text()


def test_conversations_from_charts_round_trip_through_llava_json(tmp_path: Path) -> None:
    charts = tmp_path / "charts"
    assert main(["data", "charts", "--n", "4", "--out", str(charts), "--set", "charts.long_side=256"]) == 0
    assert main(["data", "qa", str(charts), "--out", str(tmp_path / "qa")]) == 0
    samples = list(iter_samples([tmp_path / "qa"]))
    assert len(samples) == 4
    for sample in samples:
        turns = sample.conversations
        assert turns[0]["from"] == "human" and turns[0]["value"].startswith(IMAGE_TOKEN + "\n")
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        chart = sample.meta["chart"]
        assert ast.literal_eval(turns[1]["value"]) == chart
        answers = {t["value"] for t in turns[3::2]}
        names = {chart["title"], *chart.get("categories", [])}
        values = {str(v) for s in chart["series"] for v in s.get("values", [])}
        assert answers <= names | values
        assert sample.image is not None and sample.source == "qa"
    assert (
        main(["data", "qa", str(tmp_path / "qa"), "--format", "llava", "--out", str(tmp_path / "llava")]) == 0
    )
    again = list(iter_samples([tmp_path / "llava" / "llava.json"]))
    assert [s.conversations for s in again] == [s.conversations for s in samples]
    assert again[0].image.size == samples[0].image.size
