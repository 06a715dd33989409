"""PDF regions: PDFs with known lines, through the engine, checked against the PDF's own geometry."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from vary.cli import main
from vary.data.config import EngineConfig, PdfConfig
from vary.data.engine import run_job
from vary.data.pdf import pdf_job
from vary.data.reader import iter_samples
from vary.data.regions import PAD, Piece, PieceIndex, pieces
from vary.data.text import is_cjk

DOC = "usr/share/doc/texlive-doc"
EN_LINES = ["Vary reads pages", "dense documents", "alpha beta gamma delta epsilon zeta"]
ZH_LINE = "视觉词表的扩展让模型能够读取密集的中文文档"  # 21 ideographs: one MuPDF "word"
MAX = 16
# What the regions must say: each line cut greedily into runs of at most MAX characters.
EXPECTED = {
    "Vary reads pages",
    "dense documents",
    "alpha beta gamma",
    "delta epsilon",
    "zeta",
    "视觉词表的扩展让模型能够读取密集",
    "的中文文档",
}


def make_pdf(path: Path) -> Path:
    """English lines 40 pt apart (helv), one Chinese line (MuPDF's built-in CJK font)."""
    doc = pymupdf.open()
    page = doc.new_page(width=420, height=595)
    for i, line in enumerate(EN_LINES):
        page.insert_text((36, 60 + 40 * i), line, fontname="helv", fontsize=10)
    page.insert_text((36, 60 + 40 * len(EN_LINES)), ZH_LINE, fontname="china-s", fontsize=10)
    page.insert_text((36, 400), "12 34 56 78 90", fontname="helv", fontsize=10)  # few_letters
    page.insert_text((36, 440), "Boxed words here", fontname="helv", fontsize=10)
    page.draw_rect(pymupdf.Rect(30, 428, 200, 446), color=(0, 0, 0))  # overlaps_graphics
    page.insert_text((36, 480), "Supercalifragilisticexpialidocious", fontname="helv", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    return path


def config(**kw: object) -> PdfConfig:
    base = {"unit": "region", "region_size": 256, "region_max_chars": MAX, "regions_per_page": 50}
    return PdfConfig(**{**base, **kw})


def run(sources: list[Path], out: Path, cfg: PdfConfig) -> dict:
    engine = EngineConfig(out=str(out), image_format="png")
    return run_job(pdf_job(sources, cfg, engine), engine)


def test_regions_hold_exactly_the_words_they_show(tmp_path: Path) -> None:
    src = make_pdf(tmp_path / "a.pdf")
    summary = run([src], tmp_path / "out", config())
    samples = list(iter_samples([tmp_path / "out"]))
    assert {s.text for s in samples} == EXPECTED and summary["samples"] == len(EXPECTED)
    assert summary["filtered"] == {"few_letters": 1, "overlaps_graphics": 1, "long_word": 1}
    page_words = pieces(pymupdf.open(src)[0].get_text("words"))
    for s in samples:
        assert len(s.text) <= MAX and s.source == "pdf" and s.lang == ("zh" if is_cjk(s.text[0]) else "en")
        assert s.meta["unit"] == "region" and s.meta["page"] == 1 and s.meta["file"] == "a.pdf"
        assert s.id.startswith("pdf-") and "-p0001-r" in s.id
        inside = [p for p in page_words if p.centre_in(tuple(s.meta["bbox"]))]
        glue = "".join(("" if p.glued or i == 0 else " ") + p.text for i, p in enumerate(inside))
        assert glue == s.text  # the crop holds these words and no word of another line or group
        assert_ink_centred(s.image, 256)


def assert_ink_centred(image: Image.Image, size: int) -> None:
    assert image.size == (size, size)
    gray = image.convert("L")
    border = int(size * PAD)
    frame = [gray.crop(b) for b in ((0, 0, size, border), (0, size - border, size, size))]
    frame += [gray.crop(b) for b in ((0, 0, border, size), (size - border, 0, size, size))]
    assert all(f.getextrema()[0] > 250 for f in frame), "the square's border must stay white"
    ink = gray.point(lambda v: 255 if v < 128 else 0).getbbox()
    assert ink is not None, "a region must show its text"
    assert (
        abs((ink[0] + ink[2]) / 2 - size / 2) < size * 0.1
        and abs((ink[1] + ink[3]) / 2 - size / 2) < size * 0.1
    )


def test_text_height_and_fitting(tmp_path: Path) -> None:
    src = make_pdf(tmp_path / "a.pdf")
    run([src], tmp_path / "out", config(region_size=64, region_text_height=[14, 14], region_max_chars=24))
    samples = list(iter_samples([tmp_path / "out"]))
    assert samples and all(s.image.size == (64, 64) for s in samples)
    for s in samples:  # at 14 px a line of helv 10 pt is ~0.6 px a point: a few words fit in 64 px
        assert_ink_centred(s.image, 64)
        ink = s.image.convert("L").point(lambda v: 255 if v < 128 else 0).getbbox()
        assert 6 <= ink[3] - ink[1] <= 15
    assert "Vary reads pages" not in {s.text for s in samples}  # too wide at 14 px: cut


def test_stacked_lines(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=200)
    page.insert_text((36, 60), "alpha beta\ngamma delta\nepsilon eta", fontname="helv", fontsize=10)
    doc.save(tmp_path / "s.pdf")
    run([tmp_path / "s.pdf"], tmp_path / "out", config(region_lines=[2, 2]))
    texts = {s.text for s in iter_samples([tmp_path / "out"], decode_images=False)}
    assert texts in ({"alpha beta\ngamma delta"}, {"gamma delta\nepsilon eta"})


def test_reproducible_and_cli(tmp_path: Path) -> None:
    src = make_pdf(tmp_path / "a.pdf")
    run([src], tmp_path / "one", config(regions_per_page=3))
    args = [
        "data",
        "pdf",
        str(src),
        "--image-format",
        "png",
        "--unit",
        "region",
        "--set",
        "pdf.region_size=256",
    ]
    args += ["--set", f"pdf.region_max_chars={MAX}", "--set", "pdf.regions_per_page=3"]
    assert main([*args, "--out", str(tmp_path / "two")]) == 0
    shards = [json.loads((tmp_path / d / "manifest.json").read_text())["shards"] for d in ("one", "two")]
    assert shards[0] == shards[1] and shards[0][0]["count"] == 3


def test_heldout_rule_applies_to_regions(tmp_path: Path) -> None:
    make_pdf(tmp_path / "texlive-humanities-doc" / DOC / "latex/a/a.pdf")
    make_pdf(tmp_path / "texlive-latex-base-doc" / DOC / "latex/b/b.pdf")
    train = run([tmp_path], tmp_path / "train", config(dedup=False))
    heldout = run([tmp_path], tmp_path / "heldout2", config(dedup=False, split="heldout"))
    files = {
        d: {s.meta["file"] for s in iter_samples([tmp_path / d], decode_images=False)}
        for d in ("train", "heldout2")
    }
    assert train["files_not_in_train_split"] == 1 and all("humanities" not in f for f in files["train"])
    assert heldout["samples"] == len(EXPECTED) and all("humanities" in f for f in files["heldout2"])


def test_bad_region_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        PdfConfig(unit="region", region_lines=[2, 1])
    with pytest.raises(ValueError):
        PdfConfig(unit="region", region_size=32, region_lines=[1, 3], region_text_height=[14, 20])


def test_piece_index_finds_exactly_the_overlapping_pieces() -> None:
    """The array lookup that spares a dense page a loop per candidate agrees with the plain rule
    (boxes that only touch at an edge do not overlap); integer boxes make touching edges common."""
    rng = random.Random(0)

    def box() -> tuple[float, float, float, float]:
        x, y = rng.randint(0, 40), rng.randint(0, 40)
        return (x, y, x + rng.randint(1, 8), y + rng.randint(1, 8))

    page = [Piece(box(), str(k), (0, k)) for k in range(400)]
    index = PieceIndex(page)
    for _ in range(100):
        b = box()
        plain = [
            p
            for p in page
            if not (p.rect[2] <= b[0] or p.rect[0] >= b[2] or p.rect[3] <= b[1] or p.rect[1] >= b[3])
        ]
        assert index.overlapping(b) == plain
