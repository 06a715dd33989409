"""Generated LaTeX pages -> (page image, markdown + LaTeX math): Vary's formula/table data engine.

Real PDFs give good text but lose formulas and tables (their text layer linearises them). Here a
seeded generator writes one page of headings, paragraphs with inline math, display formulas and
tables, as LaTeX *and* as the markdown a reader would write for it (`$...$`, `$$...$$`, pipe
tables); texlive compiles the LaTeX (pdflatex for English, xelatex + ctex for Chinese) and the
page is rendered like a real PDF page. Compile errors, pages that overflow to a second page and
characters the font lacks (xelatex only warns about those) skip the item with a reason.
"""

from __future__ import annotations

import functools
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pymupdf

from vary.cli import UserError
from vary.data import words
from vary.data.config import EngineConfig, LatexConfig
from vary.data.engine import Job, Unit, UnitResult
from vary.data.pdf import render
from vary.data.sample import Sample
from vary.data.shards import Encoding, Record

ENGINES = {"en": "pdflatex", "zh": "xelatex"}
PREAMBLES = {
    "en": r"\documentclass[{size}pt]{{article}}",
    "zh": r"\documentclass[UTF8,zihao={zihao},fontset=fandol]{{ctexart}}",
}
COMMON_PREAMBLE = r"""\usepackage[a4paper,margin={margin}cm]{{geometry}}
\usepackage{{amsmath,amssymb,booktabs}}
\pagestyle{{empty}}
\setlength{{\parindent}}{{0pt}}
\setlength{{\parskip}}{{6pt}}"""
GREEK = (
    r"\alpha",
    r"\beta",
    r"\gamma",
    r"\delta",
    r"\theta",
    r"\lambda",
    r"\mu",
    r"\sigma",
    r"\phi",
    r"\omega",
)
LETTERS = tuple("abcxyzkmnpqt")
RELATIONS = ("=", "<", r"\leq", r"\approx")
OPERATORS = ("+", "-", r"\cdot")
BUDGET = {"en": 3400, "zh": 1400}  # characters of body text that comfortably fit one A4 page


class LatexError(RuntimeError):
    """A document that did not compile; the message is the first error of the log, on one line."""


@dataclass
class Page:
    tex: str  # the whole document
    markdown: str  # the target text: what was rendered, as markdown with LaTeX math


def make_page(rng: random.Random, lang: str, extra_preamble: str = "") -> Page:
    """A one-page document of random blocks, and its markdown twin."""
    size = rng.choice((10, 11, 12))
    head = PREAMBLES[lang].format(size=size, zihao=rng.choice((5, -4)))
    preamble = "\n".join([head, COMMON_PREAMBLE.format(margin=rng.choice((2.0, 2.5, 3.0))), extra_preamble])
    budget = BUDGET[lang] * (12 / size) ** 2 * rng.uniform(0.5, 1.0)
    tex_blocks, md_blocks, used = [], [], 0.0
    while used < budget:
        kind = rng.choices(("heading", "paragraph", "display", "table"), weights=(1, 5, 2, 1))[0]
        tex, md, cost = _BLOCKS[kind](rng, lang)
        tex_blocks.append(tex)
        md_blocks.append(md)
        used += cost
    body = "\n\n".join(tex_blocks)
    return Page(f"{preamble}\n\\begin{{document}}\n{body}\n\\end{{document}}\n", "\n\n".join(md_blocks))


def compile_tex(tex: str, engine: str, timeout_s: float = 60.0) -> bytes:
    """PDF bytes of `tex` compiled by `engine` in a scratch folder; LatexError on failure."""
    with tempfile.TemporaryDirectory(prefix="vary-tex-") as tmp:
        source = Path(tmp) / "page.tex"
        source.write_text(tex, encoding="utf-8")
        cmd = [engine, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", source.name]
        try:
            done = subprocess.run(
                cmd, cwd=tmp, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as err:
            raise LatexError(f"{engine} timed out after {timeout_s:g}s") from err
        log = (
            (Path(tmp) / "page.log").read_text(encoding="utf-8", errors="replace")
            if (Path(tmp) / "page.log").exists()
            else ""
        )
        if done.returncode != 0 or not (Path(tmp) / "page.pdf").exists():
            raise LatexError(
                f"{engine} failed: {first_error(log) or done.stdout.decode(errors='replace')[-200:]}"
            )
        missing = re.findall(r"Missing character: There is no (.)", log)
        if missing:
            raise LatexError(f"font lacks glyphs {''.join(dict.fromkeys(missing))!r}")
        return (Path(tmp) / "page.pdf").read_bytes()


def first_error(log: str) -> str:
    """The first `! ...` error of a TeX log with its `l.N` context line, as one line."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("! "):
            context = next((ln.strip() for ln in lines[i + 1 : i + 12] if ln.startswith("l.")), "")
            return " ".join(f"{line} {context}".split())
    return ""


def latex_job(cfg: LatexConfig, engine: EngineConfig) -> Job:
    for lang in cfg.langs:
        if shutil.which(ENGINES[lang]) is None:
            package = "texlive-latex-base" if lang == "en" else "texlive-xetex texlive-lang-chinese"
            raise UserError(f"{ENGINES[lang]} not found (needed for {lang} pages): apt-get install {package}")
    units = [Unit(f"latex:{cfg.seed}:{i}", i) for i in range(cfg.n)]
    process = functools.partial(
        process_unit,
        cfg=cfg,
        encoding=engine.encoding(),
    )
    return Job("latex", units, process, settings={"latex": asdict(cfg)}, unit_label="page")


def process_unit(index: int, cfg: LatexConfig, encoding: Encoding) -> UnitResult:
    rng = random.Random(f"{cfg.seed}:{index}")
    lang = cfg.langs[index % len(cfg.langs)]
    page = make_page(rng, lang, cfg.extra_preamble)
    item = f"latex page {index} ({lang})"
    try:
        pdf = compile_tex(page.tex, ENGINES[lang], cfg.timeout_s)
    except LatexError as err:
        kind = "missing_glyphs" if "lacks glyphs" in str(err) else "latex_error"
        return UnitResult(errors=[(item, kind, str(err))])
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        if doc.page_count != 1:
            return UnitResult(filtered={"overflow": 1})
        image = render(doc[0], cfg.long_side)
    sample = Sample(
        f"latex-{cfg.seed}-{index:07d}", None, page.markdown, lang, "latex", meta={"engine": ENGINES[lang]}
    )
    return UnitResult(records=[Record.from_sample(sample, encoding.encode(image), encoding.format)])


# --- blocks: each returns (latex, markdown, cost in characters of page space) -------------------


def _heading(rng: random.Random, lang: str) -> tuple[str, str, float]:
    title = (
        words.english_title(rng, rng.randint(1, 4))
        if lang == "en"
        else words.chinese_title(rng, rng.randint(1, 3))
    )
    return f"\\section*{{{title}}}", f"# {title}", 150 if lang == "en" else 60


def _paragraph(rng: random.Random, lang: str) -> tuple[str, str, float]:
    parts_tex, parts_md = [], []
    for _ in range(rng.randint(2, 5)):
        sentence = rng.choice(words.english_sentences()) if lang == "en" else words.chinese_sentence(rng)
        parts_tex.append(sentence)
        parts_md.append(sentence)
        if rng.random() < 0.4:
            math = math_expression(rng, depth=1)
            lead = (
                rng.choice(("Let", "Consider", "We have"))
                if lang == "en"
                else rng.choice(("其中", "即", "且"))
            )
            parts_tex.append(f"{lead} ${math}$.")
            parts_md.append(f"{lead} ${math}$.")
    joiner = " " if lang == "en" else ""
    text_md = joiner.join(parts_md)
    return joiner.join(parts_tex), text_md, len(text_md) + (80 if lang == "en" else 30)


def _display(rng: random.Random, lang: str) -> tuple[str, str, float]:
    math = math_expression(rng, depth=3)
    return f"\\[ {math} \\]", f"$$\n{math}\n$$", 250 if lang == "en" else 100


def _table(rng: random.Random, lang: str) -> tuple[str, str, float]:
    cols, rows = rng.randint(2, 5), rng.randint(2, 6)
    pool = words.english_words()[:800] if lang == "en" else words.chinese_words()[:800]
    header = [w.capitalize() for w in rng.sample(pool, cols)]
    body = [[rng.choice(pool)] + [_number(rng) for _ in range(cols - 1)] for _ in range(rows)]
    tex_rows = [" & ".join(header) + r" \\", r"\midrule"] + [" & ".join(r) + r" \\" for r in body]
    tex = "\\begin{center}\n\\begin{tabular}{" + "l" + "r" * (cols - 1) + "}\n\\toprule\n"
    tex += "\n".join(tex_rows) + "\n\\bottomrule\n\\end{tabular}\n\\end{center}"
    md_rows = ["| " + " | ".join(header) + " |", "|" + "---|" * cols] + [
        "| " + " | ".join(r) + " |" for r in body
    ]
    return tex, "\n".join(md_rows), (rows + 3) * (110 if lang == "en" else 45)


_BLOCKS = {"heading": _heading, "paragraph": _paragraph, "display": _display, "table": _table}


def math_expression(rng: random.Random, depth: int) -> str:
    """A random, well-formed LaTeX formula: sums, fractions, roots, scripts, Greek letters."""
    if depth <= 0:
        return _atom(rng)
    form = rng.randrange(8)
    a, b = math_expression(rng, depth - 1), math_expression(rng, depth - 1)
    if form == 0:
        return rf"\frac{{{a}}}{{{b}}}"
    if form == 1:
        return rf"\sqrt{{{a}}} + {b}"
    if form == 2:
        i = rng.choice("ijk")
        return rf"\sum_{{{i}=1}}^{{n}} {{{a}}}_{{{i}}}"  # braces: `a` may carry its own subscript
    if form == 3:
        return rf"\int_{{0}}^{{1}} {a} \, d{rng.choice('xt')}"
    if form == 4:
        return rf"\left( {a} \right)^{{{rng.randint(2, 4)}}}"
    operator = rng.choice(RELATIONS if form == 5 else OPERATORS)
    return f"{a} {operator} {b}"


def _atom(rng: random.Random) -> str:
    base = rng.choice(GREEK + LETTERS) if rng.random() < 0.8 else str(rng.randint(1, 99))
    if rng.random() < 0.3:
        base += f"^{{{rng.randint(2, 3)}}}"
    elif rng.random() < 0.2:
        base += f"_{{{rng.choice('0123ijn')}}}"
    return base


def _number(rng: random.Random) -> str:
    return str(rng.randint(0, 999)) if rng.random() < 0.5 else f"{rng.uniform(0, 100):.2f}"
