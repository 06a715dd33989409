"""LaTeX engine: generated pages compile to one page, and compile errors are reported, not fatal."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pymupdf
import pytest

from vary.data.config import EngineConfig, LatexConfig
from vary.data.engine import run_job
from vary.data.latex import ENGINES, LatexError, compile_tex, latex_job, make_page, math_expression
from vary.data.reader import iter_samples

needs = {
    lang: pytest.mark.skipif(shutil.which(e) is None, reason=f"{e} not installed")
    for lang, e in ENGINES.items()
}


def test_markdown_twin_holds_the_math_and_tables() -> None:
    page = make_page(random.Random("t:3"), "en")
    assert page.tex.startswith("\\documentclass") and "\\begin{document}" in page.tex
    for seed in range(20):
        md = make_page(random.Random(f"t:{seed}"), "en").markdown
        assert md.count("$") % 2 == 0
    formula = math_expression(random.Random(1), depth=3)
    assert formula.count("{") == formula.count("}")


@needs["en"]
def test_english_pages_compile_and_render(tmp_path: Path) -> None:
    cfg = EngineConfig(out=str(tmp_path))
    summary = run_job(latex_job(LatexConfig(n=2, langs=["en"], long_side=512), cfg), cfg)
    assert summary["samples"] + summary["filtered"].get("overflow", 0) == 2
    for sample in iter_samples([tmp_path]):
        assert sample.source == "latex" and max(sample.image.size) == 512 and sample.text


@needs["zh"]
def test_chinese_page_compiles_with_ctex() -> None:
    page = make_page(random.Random("zh:0"), "zh")
    with pymupdf.open(stream=compile_tex(page.tex, "xelatex"), filetype="pdf") as doc:
        text = doc[0].get_text()
    first_line = next(line for line in page.markdown.splitlines() if not line.startswith(("#", "|", "$")))
    assert first_line[:4] in text.replace("\n", "")


@needs["en"]
def test_compile_error_is_skipped_reported_and_counted(tmp_path: Path) -> None:
    with pytest.raises(LatexError, match="Undefined control sequence"):
        compile_tex("\\documentclass{article}\\begin{document}\\nosuchmacro\\end{document}", "pdflatex")
    cfg = EngineConfig(out=str(tmp_path))
    broken = LatexConfig(n=2, langs=["en"], extra_preamble="\\usepackage{no-such-package-here}")
    summary = run_job(latex_job(broken, cfg), cfg)
    assert summary["samples"] == 0 and summary["errors"] == {"latex_error": 2}
    lines = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all("no-such-package-here" in x["error"] for x in lines)
