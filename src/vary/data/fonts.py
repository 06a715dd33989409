"""Fonts for synthetic images: find a CJK font, and check a font really has the glyphs of a text.

A font without a glyph draws a box (tofu) or nothing, and the sample would then teach the model
that a blank means "净利润". Every synthetic text is checked against the font's character map
before it is drawn; items that fail are skipped and reported, never rendered.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from fontTools.ttLib import TTCollection, TTFont
from matplotlib import font_manager

from vary.cli import UserError

# Debian's CJK fonts, best first (fonts-noto-cjk, fonts-wqy-zenhei, fonts-wqy-microhei, arphic).
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Source Han Sans SC",
    "AR PL UMing CN",
    "AR PL SungtiL GB",
)
LATIN_FAMILY = "DejaVu Sans"
# WenQuanYi declares weight 500 only: matplotlib would warn on every "normal"/"bold" lookup.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)


@functools.lru_cache(maxsize=8)
def find_cjk_font(preferred: str = "") -> Path:
    """The CJK font file to draw Chinese with: `preferred` (a file or family name) or the first found."""
    if preferred and Path(preferred).is_file():
        return Path(preferred)
    families = (preferred,) if preferred else CJK_FAMILIES
    found = _font_file(families)
    if found is None and _register_new_system_fonts():
        found = _font_file(families)
    if found is not None:
        return found
    wanted = f"font {preferred!r}" if preferred else "CJK font"
    raise UserError(
        f"no {wanted} for Chinese text: install one (apt-get install fonts-wqy-zenhei "
        "or fonts-noto-cjk) or name a font file with --set charts.cjk_font=FILE"
    )


def _font_file(families: tuple[str, ...]) -> Path | None:
    """The file of the first of `families` that matplotlib's font list holds."""
    for family in families:
        for entry in font_manager.fontManager.ttflist:
            if entry.name == family:
                return Path(entry.fname)
    return None


def _register_new_system_fonts() -> bool:
    """Add the system's font files that matplotlib's cached list lacks: it is written once, on
    first use, so a font installed after that stays unknown to it. True if any were added."""
    known = {entry.fname for entry in font_manager.fontManager.ttflist}
    added = False
    for path in font_manager.findSystemFonts():
        if path in known:
            continue
        try:
            font_manager.fontManager.addfont(path)
        except (OSError, RuntimeError, ValueError):  # a file FreeType cannot read: not a font for us
            continue
        added = True
    return added


def latin_font() -> Path:
    return Path(font_manager.findfont(LATIN_FAMILY, fallback_to_default=True))


def family_name(path: Path) -> str:
    """The family name matplotlib knows the font file by (registering the file if it is new)."""
    for entry in font_manager.fontManager.ttflist:
        if Path(entry.fname) == path:
            return entry.name
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def missing_glyphs(font: Path, text: str) -> str:
    """The distinct characters of `text` that `font` cannot draw (whitespace ignored), in order."""
    cmap = _charmap(font)
    missing = dict.fromkeys(c for c in text if not c.isspace() and ord(c) not in cmap)
    return "".join(missing)


@functools.lru_cache(maxsize=16)
def _charmap(font: Path) -> frozenset[int]:
    if font.suffix.lower() == ".ttc":
        return frozenset(TTCollection(str(font), lazy=True).fonts[0].getBestCmap())
    return frozenset(TTFont(str(font), lazy=True).getBestCmap())
