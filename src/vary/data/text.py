"""Text clean-up and checks shared by the engines: normalise, tag the language, spot garbage, hash.

Targets must be what a reader sees on the page, written one canonical way, so that the same page
extracted twice (or from two copies of a PDF) hashes the same and a model is not taught two
spellings of one glyph (NFKC folds the "ﬁ" ligature into "fi" and full-width digits into ASCII).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SOFT_BREAK = re.compile(r"(?<=[a-z])-\n(?=[a-z])")  # "extrac-\ntion" -> "extraction"
# Patterns match only what changes (runs of spaces, tabs, odd spaces; spaces at line edges), not
# every single space and newline: normalise runs on every page of every PDF.
_SPACES = re.compile(r"[ \t\u00a0\u3000]{2,}|[\t\u00a0\u3000]")
_LINE_EDGES = re.compile(r" \n ?|\n ")  # after _SPACES, at most one space sits at a line's edge
_BLANK_LINES = re.compile(r"\n{3,}")
_FULLWIDTH_PUNCT = re.compile("([\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff5e])")
# Character classes counted with regexes (C speed: these run on every page of every PDF).
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_BAD = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ufffd\ue000-\uf8ff\U000f0000-\U0010ffff]")
_NOT_LETTERS = re.compile(r"[\W\d_]+")
# A letter outside the Latin blocks (Basic Latin, Latin-1, Latin Extended A/B, Latin Extended Additional)
_NON_LATIN_LETTER = re.compile("(?![A-Za-z\u00aa\u00b5\u00ba\u00c0-\u024f\u1e00-\u1eff])[^\\W\\d_]")
# TeX's 7-bit (OT1) fonts draw an accent as a glyph of its own before the letter it sits on; MuPDF
# extracts it as a spacing accent ("Schr¨odinger", "pr´elev´ee", "fa¸con"), which NFKC would split
# into a space and a combining mark. A grave after a backslash or a backtick is code: \`a, ``quote''.
_SPACING_ACCENTS = {
    "¨": "\u0308", "´": "\u0301", "`": "\u0300", "ˆ": "\u0302", "˜": "\u0303", "ˇ": "\u030c", "˚": "\u030a",
    "¯": "\u0304", "˙": "\u0307", "˝": "\u030b", "˘": "\u0306", "¸": "\u0327", "˛": "\u0328",
}  # fmt: skip
_ACCENT_THEN_LETTER = re.compile(f"(?<![`\\\\])([{''.join(_SPACING_ACCENTS)}])([^\\W\\d_])")
_DOTLESS = {"ı": "i", "ȷ": "j"}  # TeX puts accents on dotless i and j: "na¨ıve"
_NOT_OVERLAY = re.compile("\u0338( ?)(\\S)")  # TeX's \not: the slash comes before its symbol


def is_cjk(char: str) -> bool:
    """CJK ideographs (the Chinese script), including extension A and compatibility forms."""
    code = ord(char)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF


def attach_accents(text: str) -> str:
    """Accents extracted apart from their letters, put back on them: "Schr¨odinger" ->
    "Schrödinger", "Maˇr´ık" -> "Mařík", "i̸ = j" -> "i ≠ j" (PyMuPDF will not: its issue #4151)."""
    text = _ACCENT_THEN_LETTER.sub(
        lambda m: unicodedata.normalize("NFC", _DOTLESS.get(m[2], m[2]) + _SPACING_ACCENTS[m[1]]), text
    )
    return _NOT_OVERLAY.sub(lambda m: m[1] + unicodedata.normalize("NFC", m[2] + "\u0338"), text)


def nfkc(text: str) -> str:
    """NFKC, except full-width punctuation, which is how Chinese text writes "，" and "："; accents
    extracted apart from their letters are attached first (`attach_accents`).

    Plain NFKC would turn "第三行补充：" into "第三行补充:" and teach two spellings of Chinese
    punctuation; full-width letters and digits are still folded to ASCII.
    """
    pieces = _FULLWIDTH_PUNCT.split(attach_accents(text))
    return "".join(p if i % 2 else unicodedata.normalize("NFKC", p) for i, p in enumerate(pieces))


def normalise(text: str, join_breaks: bool = True) -> str:
    """NFKC (see `nfkc`), join words hyphenated across lines (unless told not to), tidy spaces
    and blank lines."""
    text = nfkc(text).replace("\r\n", "\n").replace("\r", "\n")
    text = join_soft_breaks(text) if join_breaks else text
    text = _SPACES.sub(" ", text)
    return _BLANK_LINES.sub("\n\n", _LINE_EDGES.sub("\n", text)).strip()


def join_soft_breaks(text: str) -> str:
    """Words hyphenated across lines joined again ("extrac-\\ntion" -> "extraction"), as every
    target text has them: a reader of lines writes page text the way the data engine does."""
    return _SOFT_BREAK.sub("", text) if "-\n" in text else text


def detect_lang(text: str, min_cjk_share: float = 0.15) -> str:
    """ "zh" when CJK ideographs make up a real share of the visible characters, else "en".

    Chinese pages carry plenty of Latin (commands, code, names), so the test is a share of
    ideographs among non-space characters, not a majority.
    """
    visible = visible_count(text)
    cjk = len(_CJK.findall(text))
    return "zh" if cjk >= 5 and cjk / visible >= min_cjk_share else "en"


def visible_count(text: str) -> int:
    return len("".join(text.split()))


def garbled_share(text: str) -> float:
    """Share of characters that signal a broken text layer: U+FFFD, private-use, controls.

    Fonts without a ToUnicode map extract as replacement or private-use characters; a page full
    of them would teach the model to read noise.
    """
    visible = visible_count(text)
    return len(_BAD.findall(text)) / visible if visible else 0.0


def letter_share(text: str) -> float:
    """Share of letters among visible characters: low for indexes, number tables and code dumps."""
    visible = visible_count(text)
    return len(_NOT_LETTERS.sub("", text)) / visible if visible else 0.0


def is_latin(text: str) -> bool:
    """True when every letter of `text` is a Latin one (accented or not): no Greek, Cyrillic, CJK."""
    return _NON_LATIN_LETTER.search(text) is None


def text_hash(text: str) -> str:
    """Hash of the text with all whitespace removed and case folded: the de-duplication key."""
    key = "".join(text.split()).casefold()
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
