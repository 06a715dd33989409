"""PDF engine: real PDFs made here, through the engine, back out of the shards."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymupdf
import pytest

from vary.cli import UserError, main
from vary.data.config import EngineConfig, PdfConfig
from vary.data.engine import STATE_DIR, Job, Unit, UnitResult, run_job
from vary.data.latex import compile_tex
from vary.data.pdf import drop_reason, pdf_job
from vary.data.reader import iter_samples
from vary.data.splits import UnknownOriginError, is_reserved, select, split_of
from vary.data.text import detect_lang, nfkc, normalise

EN_PAGES = [
    "The quick brown fox jumps over the lazy dog near the river bank.\n"
    "A second line explains how vision vocabularies are scaled up for documents.",
    "Dense perception of documents needs a vocabulary of its own, not only CLIP.\n"
    "This page mentions an extrac-\ntion that was hyphenated across two lines.",
]
ZH_PAGE = (
    "视觉词表的扩展让模型能够读取密集的中文文档与图表。\n第二行继续说明这个方法在文档理解上的优势和效果。\n"
    "第三行补充：新的词表与原有的视觉编码器一起工作，模型因此可以同时处理自然图像和文档。"
)


def make_pdf(path: Path, pages: list[str], fontname: str = "helv") -> Path:
    """A real PDF whose text layer holds exactly `pages` (one string per page)."""
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page(width=420, height=595)
        page.insert_text((36, 60), text, fontname=fontname, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    return path


def run_pdf(sources: list[Path], out: Path, **engine: object) -> dict:
    split = engine.pop("split", "train")
    cfg = EngineConfig(out=str(out), **engine)
    return run_job(pdf_job(sources, PdfConfig(split=split), cfg), cfg)


def test_text_round_trips_into_shards(tmp_path: Path) -> None:
    src = make_pdf(tmp_path / "docs" / "a.pdf", EN_PAGES)
    summary = run_pdf([tmp_path / "docs"], tmp_path / "out")
    samples = sorted(iter_samples([tmp_path / "out"]), key=lambda s: s.meta["page"])
    assert summary["samples"] == 2 and [s.meta["page"] for s in samples] == [1, 2]
    assert samples[0].text == normalise(EN_PAGES[0])
    assert "extraction that was hyphenated" in samples[1].text  # de-hyphenated
    assert max(samples[0].image.size) == 1024 and samples[0].lang == "en" and samples[0].source == "pdf"
    assert samples[0].meta["file"] == "docs/a.pdf" and src.exists()
    (shard,) = json.loads((tmp_path / "out" / "manifest.json").read_text())["shards"]
    data = (tmp_path / "out" / shard["name"]).read_bytes()
    assert shard["sha256"] == hashlib.sha256(data).hexdigest() and shard["bytes"] == len(data)
    assert shard["count"] == 2 and shard["by_lang"] == {"en": 2} and shard["by_source"] == {"pdf": 2}


def test_cjk_text_survives(tmp_path: Path) -> None:
    make_pdf(tmp_path / "zh.pdf", [ZH_PAGE], fontname="china-s")
    run_pdf([tmp_path / "zh.pdf"], tmp_path / "out")
    (sample,) = iter_samples([tmp_path / "out"])
    assert sample.text == ZH_PAGE and sample.lang == "zh"


def test_bad_pdfs_are_skipped_reported_and_counted(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    make_pdf(docs / "good.pdf", EN_PAGES[:1])
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.7\n this is not a pdf at all")
    (docs / "empty.pdf").write_bytes(b"")
    secret = pymupdf.open()
    secret.new_page().insert_text((36, 60), EN_PAGES[0])
    secret.save(docs / "encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="pw", owner_pw="pw")
    summary = run_pdf([docs], tmp_path / "out")
    assert summary["samples"] == 1
    assert summary["errors"] == {"corrupt_pdf": 2, "encrypted_pdf": 1}
    lines = [json.loads(x) for x in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert sorted(x["item"] for x in lines) == ["docs/corrupt.pdf", "docs/empty.pdf", "docs/encrypted.pdf"]
    assert all("\n" not in x["error"] for x in lines)


def test_filters_and_dedup(tmp_path: Path) -> None:
    index_page = "Index\n" + "\n".join(f"\\cmd . . . . {i}, {i + 7}, {i + 19}" for i in range(40))
    pages = [EN_PAGES[0], "Too short.", EN_PAGES[0], index_page]
    make_pdf(tmp_path / "a.pdf", pages)
    make_pdf(tmp_path / "copy.pdf", EN_PAGES[:1])
    summary = run_pdf([tmp_path / "a.pdf", tmp_path / "copy.pdf"], tmp_path / "out")
    assert summary["samples"] == 1
    assert summary["filtered"] == {"too_little_text": 1, "duplicate": 2, "few_letters": 1}
    # A text layer without a Unicode map extracts as U+FFFD: dropped as garbled.
    assert (
        drop_reason("\ufffd" * 90 + " text" * 20, has_images=lambda: False, cfg=PdfConfig()) == "garbled_text"
    )
    assert drop_reason("", has_images=lambda: True, cfg=PdfConfig()) == "image_only"


def test_two_workers_and_slices_give_the_same_samples(tmp_path: Path) -> None:
    for i in range(4):
        make_pdf(tmp_path / "docs" / f"{i}.pdf", [f"Document {i}. " + p for p in EN_PAGES])
    one = run_pdf([tmp_path / "docs"], tmp_path / "one", shard_size=3)
    two = run_pdf([tmp_path / "docs"], tmp_path / "two", shard_size=3, workers=2)
    shas = [json.loads((tmp_path / d / "manifest.json").read_text())["shards"] for d in ("one", "two")]
    assert one["samples"] == two["samples"] == 8 and shas[0] == shas[1]
    ids = set()
    for i in range(2):
        out = tmp_path / "sliced"
        run_pdf([tmp_path / "docs"], out, shard=f"{i}/2")
        assert (out / f"summary-p{i:03d}of002.json").exists()
    ids = {s.id for s in iter_samples([tmp_path / "sliced"], decode_images=False)}
    assert len(ids) == 8
    assert json.loads((tmp_path / "sliced" / "manifest.json").read_text())["totals"]["samples"] == 8


def test_rerun_into_same_folder_with_other_inputs_is_refused(tmp_path: Path) -> None:
    make_pdf(tmp_path / "a.pdf", EN_PAGES)
    make_pdf(tmp_path / "b.pdf", EN_PAGES[:1])
    run_pdf([tmp_path / "a.pdf"], tmp_path / "out")
    assert run_pdf([tmp_path / "a.pdf"], tmp_path / "out")["samples"] == 2  # same inputs: nothing to do
    assert main(["data", "pdf", str(tmp_path / "b.pdf"), "--out", str(tmp_path / "out")]) == 2


def test_killed_run_resumes_to_identical_shards(tmp_path: Path) -> None:
    """SIGKILL a real `vary data pdf` run mid-way, re-run it, compare with an uninterrupted run."""
    pages = [f"Page {i}: " + EN_PAGES[i % 2] for i in range(60)]
    make_pdf(tmp_path / "big.pdf", pages)
    args = ["data", "pdf", str(tmp_path / "big.pdf"), "--shard-size", "2", "--set", "pdf.pages_per_unit=1"]
    cmd = [sys.executable, "-m", "vary.cli", *args, "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / STATE_DIR / "pdf.json"
    deadline = time.monotonic() + 60
    while not (state.exists() and json.loads(state.read_text() or "{}").get("units_done", 0) >= 4):
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["units_done"]
    assert 4 <= done < 60, "the kill must land mid-run"
    # Whatever the kill left, every file that looks like a shard is a complete one.
    for shard in (tmp_path / "killed").glob("*.tar"):
        assert len(list(iter_samples([shard], decode_images=False))) == 2
    assert main([*args, "--out", str(tmp_path / "killed")]) == 0
    assert main([*args, "--out", str(tmp_path / "clean")]) == 0
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("killed", "clean")]
    assert manifests[0] == manifests[1] and manifests[0]["totals"]["samples"] == 60
    assert not list((tmp_path / "killed").glob("*.tmp"))


def _die(unit: int) -> UnitResult:
    os._exit(3)  # what a segfault in a native library looks like to the pool


def test_a_worker_that_dies_stops_the_run_with_one_line(tmp_path: Path) -> None:
    job = Job("crash", [Unit("a", 1), Unit("b", 2)], _die, settings={})
    with pytest.raises(UserError, match="worker process died"):
        run_job(job, EngineConfig(out=str(tmp_path), workers=2))


# --- the held-out rule ---------------------------------------------------------------------------

DOC = "usr/share/doc/texlive-doc"


@pytest.mark.parametrize(
    ("package", "rest", "expected"),
    [
        ("texlive-humanities-doc", "latex/abc/abc.pdf", "heldout"),
        ("texlive-humanities-doc_2022.20230122-4_all", "latex/zzz/z.pdf", "heldout"),
        ("texlive-lang-chinese", "latex/zhnumber/zhnumber.pdf", "heldout"),
        ("texlive-lang-chinese", "latex/Njurepo/n.pdf", "heldout"),
        ("texlive-lang-chinese", "latex/ctex/ctex.pdf", "train"),
        ("texlive-lang-chinese", "latex/mmm/m.pdf", "train"),
        ("texlive-lang-chinese", "xelatex/nanicolle/n.pdf", "train"),  # not under latex/
        ("texlive-latex-base-doc", "latex/zzz/z.pdf", "train"),
    ],
)
def test_reserved_rule(tmp_path: Path, package: str, rest: str, expected: str) -> None:
    assert split_of(tmp_path / package / DOC / rest) == expected


def test_reserved_rule_other_sources_and_unknown_origin(tmp_path: Path) -> None:
    assert split_of(tmp_path / "papers" / "x.pdf") == "train"
    installed = "/usr/share/doc/texlive-doc/latex/poetrytex/poetrytex.pdf"  # found through dpkg's lists
    (tmp_path / "texlive-humanities-doc.list").write_text(f"/usr/share/doc\n{installed}\n")
    assert split_of(installed, dpkg_info=tmp_path) == "heldout"
    with pytest.raises(UnknownOriginError, match="dpkg -x"):
        split_of(tmp_path / "copied" / "texlive-doc" / "latex" / "abc" / "abc.pdf", dpkg_info=tmp_path)
    assert is_reserved("texlive-lang-chinese", ("latex", "n")) and not is_reserved(None, ("latex", "z"))


def test_train_split_never_reads_reserved_pdfs(tmp_path: Path) -> None:
    reserved = make_pdf(tmp_path / "texlive-humanities-doc" / DOC / "latex/a/a.pdf", EN_PAGES[:1])
    allowed = make_pdf(tmp_path / "texlive-latex-base-doc" / DOC / "latex/b/b.pdf", EN_PAGES[1:])
    assert select([reserved, allowed], "train") == ([allowed], 1)
    train = run_pdf([tmp_path], tmp_path / "train")
    heldout = run_pdf([tmp_path], tmp_path / "heldout", split="heldout")
    files = {
        d: {s.meta["file"] for s in iter_samples([tmp_path / d], decode_images=False)}
        for d in ("train", "heldout")
    }
    assert all("humanities" not in f for f in files["train"]) and train["files_not_in_train_split"] == 1
    assert all("humanities" in f for f in files["heldout"]) and heldout["samples"] == 1


def test_normalise() -> None:
    raw = "  ﬁne  print\t here \n\n\n\n  extrac-\ntion e-\nMail ＡＢＣ１２３\r\n中文：标点，保留\u3000 "
    assert normalise(raw) == "fine print here\n\nextraction e-\nMail ABC123\n中文：标点，保留"


def test_accents_extracted_apart_are_put_back_on_their_letters() -> None:
    assert nfkc("beh¨alt") == "behält" and nfkc("Maˇr´ık") == "Mařík" and nfkc("gra¸cas") == "graças"
    assert nfkc("i\u0338=j") == "i≠j" and nfkc("n˜ao `a la") == "não à la"
    code = "\\`a ``quoted'' x^2 can't"  # a grave after \\ or ` is TeX source, not an accent
    assert nfkc(code) == code


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_accents_of_a_real_tex_page_come_out_composed(tmp_path: Path) -> None:
    body = r"Schr\"odinger pr\'elev\'ee fa\c{c}on r\^ole Ma\v{r}\'{\i}k na\"{\i}ve gr\"o\ss{}er $i \not= j$. "
    tex = r"\documentclass{article}\begin{document}" + body * 3 + r"\end{document}"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "accents.pdf").write_bytes(compile_tex(tex, "pdflatex"))
    assert "Schr¨odinger" in pymupdf.open(tmp_path / "docs" / "accents.pdf")[0].get_text()  # MuPDF's text
    run_pdf([tmp_path / "docs"], tmp_path / "out")
    (sample,) = iter_samples([tmp_path / "out"])
    expected = "Schrödinger prélevée façon rôle Mařík naïve größer i ≠ j."
    assert " ".join(sample.text.split()) == f"{expected} {expected} {expected} 1"  # 1: the page number


def test_language_tags() -> None:
    assert detect_lang(ZH_PAGE) == "zh"
    assert detect_lang("\\usepackage{ctex} 这是一个中文文档的例子") == "zh"
    assert detect_lang("Chinese word 中文 in an English sentence") == "en"
    assert detect_lang(EN_PAGES[0]) == "en" and detect_lang("") == "en"
