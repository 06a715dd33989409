"""A page image cut into the one-line crops a small model reads, and their texts joined again.

The built-in default model sees 64 x 64 pixels: it was trained on crops of one short text line
drawn at a line height in a known range (`vary data pdf --unit region`; `VaryConfig.line_height`),
and a whole page shrunk to 64 px has no legible glyph. To read a page it is cut the classic way,
by ink projection profiles (an XY-cut): rules, frames and arrows removed, columns at wide vertical
gutters, text lines at empty rows, words at gaps wider than a letter gap (in a typewriter face,
at empty cells of the grid its glyphs sit on). Each line is scaled
into the training range (a line, or a segment of one after a wide gap or in much fainter
print, printed clearly smaller, such as a footnote or a code listing's line numbers, by its own
height, as the data engine renders each font size) and cut into pieces of consecutive words
that fit the square; each piece is drawn on the page's paper colour with its x-height band in
the middle, where the training crops have it, faint print darkened to black. The pieces'
texts are joined with spaces (the parts of a word too wide for one piece without, unless the
cut's gap could be a tight line's space: the reader decides those), lines with newlines,
columns with a blank line, and a word hyphenated across lines is joined again, as in the
data's texts.

A page's lines are scaled from the page's typical line (robust); an image of one or two lines
(a crop) has only its own few pixels of x-height to go by, so it is left at its size when that
is already in the range, and a one-line crop that fits the square is read just as it is
(`PageLayout.page` tells the two apart: the reader tries a crop's doubtful readings at zooms of
its own, `VaryConfig.crop_zooms`).

This is only the reading order a profile gives: a table or a figure's labels come out row by
row, and text lines that touch are parted only where a nearly empty row runs between them.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image

from vary.data.regions import MARGIN, PAD
from vary.data.text import join_soft_breaks

INK_TO_LINE = 0.87  # ink height of a line with ascenders and descenders / its line height
XHEIGHT = 0.5  # x-height / line height of Latin text (0.45-0.53 in the manuals' fonts)
DIGIT = 0.65  # height of digits and capitals / line height
SLACK = 0.25  # a line height read off a few pixels of x-height is off by up to a quarter
WORD_GAP = 0.25  # a gap this wide (in line heights) separates words; letters sit closer
SPACE_GAP = 0.2  # a cut through a word at a gap this wide may be a space (the reader decides)
PITCH = (0.4, 0.75)  # a typewriter face's cell width / line height (cmtt 0.44-0.61, Courier 0.7)
ON_GRID = 0.12  # a glyph whose centre is this share of a cell off the grid's is not on it
TYPED = 0.15  # a word whose glyphs are this far off the grid on average is set in another face
TYPEWRITER = 0.8  # a segment with this share of its glyphs on one grid is set in a typewriter face,
TYPEWRITER_GLYPHS = 14  # if it has this many (a gloss line of 12 letters fit one by chance)
COLUMN_GAP = 2.0  # an empty strip this wide (in line heights) down the whole page separates columns
SEGMENT_GAP = 1.0  # a gap this wide (in line heights) inside a line sets off a segment (a line number)
SMALL_PRINT = 0.75  # a line or segment under this share of the line's height is scaled by its own,
SPECK = 0.25  # unless its ink is under this share (a dot, a dash: too few pixels to measure)
FAINTER = 0.6  # a line's first words at under this share of the rest's contrast, in small print,
# are a segment of their own (a grey line number)
PAGE_LINES = 3  # fewer lines: a crop (one column, no page to measure a typical line on)
MIN_CONTRAST = 48  # grey levels between the darkest and lightest pixel of a page with any ink
THIN = 0.4  # row runs thinner than this share of the median line are accents or dots
TOUCHING_RUN = 1.5  # a row run taller than this many typical lines may be lines that touch,
NEARLY_EMPTY = 0.08  # parted at rows inked under this share of its busiest row
PART = 0.75  # into parts at least this many typical lines tall
TALL = 2.5  # a row run taller than this many median lines is a figure unless it is wide like text
RULE = 1 / 8  # ink strokes longer than this share of the page's side are rules and frames,
MIN_RULE = 48  # and at least this many px (so that a dash in a crop of one word stays)
STROKE = 2.5  # on a page, a thin level stroke longer than this many typical lines is no glyph,
THIN_STROKE = 0.15  # thin: under this share of a typical line thick (a title's strokes are thicker)
SPACED_END_MARK = re.compile(r"(?<=\S) ([.,])(?=\s|$)")  # `notes .`: no typography spaces these off
FAINT = 2.0  # print whose contrast to the paper is under 1/FAINT of the paper's brightness is darkened

Span = tuple[int, int]  # [start, stop) in pixels
Joint = Literal["space", "glued", "either"]


@dataclass(frozen=True)
class Piece:
    """Words of one line read in one crop. `joint`: how its text follows the previous piece's:
    a new word ("space"), the same word cut between letters ("glued"), or cut at a gap as wide
    as a tight line's narrowest space ("either": the reader decides)."""

    box: tuple[int, int, int, int]  # left, top, right, bottom of the ink, in page pixels
    middle: float  # page row that goes to the middle of the crop (the x-height band's)
    scale: float  # page pixels -> crop pixels
    joint: Joint = "space"
    margin: float = 0.0  # page pixels of paper kept beside the ink, inside the square's padding

    def zoomed(self, factor: float, side: int) -> Piece:
        """The piece drawn `factor` times larger, or as large as still fits a `side` square with
        its margin."""
        fits = side * (1 - 2 * PAD) / max(1, self.box[2] - self.box[0] + 2 * self.margin)
        return replace(self, scale=min(self.scale * factor, max(self.scale, fits)))


@dataclass(frozen=True)
class PageLayout:
    """The pieces of a page, line by line; `blocks[i]` is the column of line i. `page`: its lines
    were scaled by the page's typical line; False for a crop (an image of one or two lines),
    scaled by its own few pixels of x-height, which cannot tell capitals from lower case."""

    lines: list[list[Piece]]
    blocks: list[int]
    paper: tuple[int, int, int]
    page: bool

    @property
    def pieces(self) -> list[Piece]:
        return [piece for line in self.lines for piece in line]

    @property
    def open_ends(self) -> list[bool]:
        """For each piece, whether its text may end inside a word: the next piece of its line
        continues the word, or may."""
        ends: list[bool] = []
        for line in self.lines:
            ends += [following.joint != "space" for following in line[1:]] + [False] * bool(line)
        return ends

    def crops(
        self, image: Image.Image, side: int, pieces: Sequence[Piece] | None = None
    ) -> list[Image.Image]:
        """Every piece (or these pieces of the page) as the model's input: scaled, centred on a
        `side` x `side` square of paper."""
        rgb = image.convert("RGB")
        return [crop(rgb, piece, side, self.paper) for piece in (self.pieces if pieces is None else pieces)]

    def join(self, texts: Sequence[str], spaced: Callable[[str, str], bool] | None = None) -> str:
        """The pieces' texts (in `pieces` order) as the page's text. `spaced(line so far, text)`
        decides a joint that could be a space (none without it). On a page, a period or comma
        read a space off its word (a typewriter face sets one a word gap off it, and a piece
        may hold it alone) joins the word; a crop's reading keeps it as the model wrote it (its
        training texts, words joined by spaces, have `John .` where a gloss sets one off)."""
        if len(texts) != len(self.pieces):
            raise ValueError(f"{len(texts)} texts for {len(self.pieces)} pieces")
        remaining = iter(texts)
        out: list[str] = []
        for number, line in enumerate(self.lines):
            if number and self.blocks[number] != self.blocks[number - 1]:
                out.append("")
            words = ""
            for piece in line:
                text = next(remaining).strip()
                if piece.joint == "either" and spaced is not None:
                    space = spaced(words, text)
                else:
                    space = piece.joint == "space"
                words += " " + text if words and space else text
            out.append(SPACED_END_MARK.sub(r"\1", words) if self.page else words)
        return join_soft_breaks("\n".join(out))


def runs(profile: np.ndarray) -> list[Span]:
    """[start, stop) of each run of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], profile.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def split_at_gaps(spans: Sequence[Span], min_gap: float) -> list[list[Span]]:
    """Spans grouped at gaps of at least `min_gap` (letters into words or a line's segments,
    inked stretches into columns)."""
    groups: list[list[Span]] = []
    for span in spans:
        if groups and span[0] - groups[-1][-1][1] < min_gap:
            groups[-1].append(span)
        else:
            groups.append([span])
    return groups


def dark_on_light(gray: np.ndarray) -> np.ndarray:
    """A greyscale page with its ink darker than its paper (light print on dark paper inverted)."""
    return 255 - gray if np.median(gray) < 128 else gray


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """Ink pixels of a greyscale page (dark on light, or light on dark), by Otsu's threshold."""
    gray = dark_on_light(gray)
    if int(gray.max()) - int(gray.min()) < MIN_CONTRAST:
        return np.zeros(gray.shape, dtype=bool)
    counts = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    below = np.cumsum(counts)
    mass = np.cumsum(counts * levels)
    above = below[-1] - below
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mass[-1] * below / below[-1] - mass) ** 2 / (below * above)
    threshold = int(np.nanargmax(between[:-1]))
    return gray <= threshold


def strokes(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Pixels of `mask` inside unbroken runs of at least `length` along `axis`."""
    mask = np.moveaxis(mask, axis, -1)
    zero = np.zeros((*mask.shape[:-1], 1), dtype=np.int32)
    total = np.concatenate([zero, np.cumsum(mask, axis=-1, dtype=np.int32)], axis=-1)
    starts = (total[..., length:] - total[..., :-length]) == length  # windows that are all ink
    covered = np.concatenate([zero, np.cumsum(starts, axis=-1, dtype=np.int32)], axis=-1)
    first = np.clip(np.arange(mask.shape[-1]) - length + 1, 0, None)
    last = np.clip(np.arange(mask.shape[-1]) + 1, None, starts.shape[-1])
    return np.moveaxis(covered[..., last] - covered[..., first] > 0, -1, axis)


def without_rules(mask: np.ndarray) -> np.ndarray:
    """The ink mask with long straight strokes (table rules, frames, underlines) removed."""
    length = max(MIN_RULE, round(RULE * min(mask.shape)))
    return mask & ~strokes(mask, length, axis=0) & ~strokes(mask, length, axis=1)


def thin_strokes(mask: np.ndarray, median: float) -> np.ndarray:
    """Pixels of level strokes longer than STROKE typical lines (`median`) and thinner than
    THIN_STROKE of one (at least 2 px): a figure's arrows, an underline, a short rule. A large
    title's letters have strokes as long, but thick."""
    level = strokes(mask, math.ceil(STROKE * median), axis=1)
    return level & ~strokes(level, max(2, math.ceil(THIN_STROKE * median)), axis=0)


def text_lines(mask: np.ndarray, median: float | None = None, page: bool = False) -> list[Span]:
    """Rows of each text line: runs of inked rows; thin runs nearby (accents, dots) join their
    line, and runs over TALL lines that are not wide like text (figures) are left out. On a
    `page`, a thin run far from any line, of several letters as wide as a word, is a line of
    small print (a grey line number alone on its line, of which the page's threshold keeps a
    few pixels: a quarter line either side is added for its faint ink); in a crop such runs
    are the tips of the lines cut at its edges. `median`: the page's typical line height
    (measured here if not given)."""
    spans = mend_split_rows(runs(mask.any(axis=1)))
    if not spans:
        return []
    median = median or line_median(mask, spans)
    lines = [span for span in spans if span[1] - span[0] >= THIN * median]
    small: list[Span] = []
    for start, stop in (span for span in spans if span[1] - span[0] < THIN * median):
        gaps = [max(top - stop, start - bottom) for top, bottom in lines]
        if gaps and min(gaps) < median / 2:
            near = int(np.argmin(gaps))
            lines[near] = (min(lines[near][0], start), max(lines[near][1], stop))
        elif (
            page
            and len(letters := runs(mask[start:stop].any(axis=0))) > 1
            and letters[-1][1] - letters[0][0] >= THIN * median
        ):
            pad = round(median / 4)
            top, bottom = max(0, start - pad), min(mask.shape[0], stop + pad)
            if small and top < small[-1][1]:  # two pieces of one faint line
                top = small.pop()[0]
            small.append((top, bottom))
    kept = [
        (top, bottom)
        for top, bottom in lines + small
        if bottom - top <= TALL * median or _wide(mask[top:bottom])
    ]
    return sorted(part for span in kept for part in touching_lines(mask, span, median))


def touching_lines(mask: np.ndarray, span: Span, median: float) -> list[Span]:
    """A row run over TOUCHING_RUN typical lines tall split at its nearly empty rows (inked
    under NEARLY_EMPTY of its busiest row's ink), where each part is at least PART lines
    tall, if every part is then line-like: lines that touch (a listing's braces reach the line
    below; a tight table's rows), which would otherwise be read as one line. A run with a taller
    part is a figure (a chart's plot, whose strips would read as junk) or one large line."""
    top, bottom = span
    if bottom - top <= TOUCHING_RUN * median:
        return [span]
    counts = mask[top:bottom].sum(axis=1)
    parts: list[Span] = []
    start = top
    for low_top, low_bottom in runs(counts <= NEARLY_EMPTY * counts.max()):
        row = top + low_top + int(np.argmin(counts[low_top:low_bottom]))
        if row - start >= PART * median and bottom - row >= PART * median:
            parts.append((start, row))
            start = row
    parts.append((start, bottom))
    return parts if all(b - a <= TOUCHING_RUN * median for a, b in parts) else [span]


def mend_split_rows(spans: Sequence[Span]) -> list[Span]:
    """Row runs one blank row apart, one at most half as tall as the other, as one run: a
    line that a coarse, compressed image's blank row cut into its body and its baseline (or an
    accent off its letters). Lines of text sit further apart."""
    mended: list[Span] = []
    for span in spans:
        if mended and span[0] - mended[-1][1] <= 1:
            heights = sorted((span[1] - span[0], mended[-1][1] - mended[-1][0]))
            if 2 * heights[0] <= heights[1]:
                mended[-1] = (mended[-1][0], span[1])
                continue
        mended.append(span)
    return mended


def line_median(mask: np.ndarray, spans: Sequence[Span]) -> float:
    """Median height of the row runs, each weighted by its width (inked columns): dots and
    accents barely count, and a large title counts no more than a line of body text."""
    heights = np.array([stop - start for start, stop in spans])
    weights = np.array([mask[start:stop].any(axis=0).sum() for start, stop in spans])
    order = np.argsort(heights)
    middle = np.searchsorted(np.cumsum(weights[order]), weights.sum() / 2)
    return float(heights[order][middle])


def _wide(band: np.ndarray) -> bool:
    """Whether a tall band's ink is a line of large text (twice as wide as tall), not a figure."""
    columns = np.flatnonzero(band.any(axis=0))
    return columns.size > 0 and columns[-1] - columns[0] >= 2 * band.shape[0]


def columns(mask: np.ndarray, line_height: float) -> list[Span]:
    """Columns of the page: inked stretches between empty strips at least COLUMN_GAP lines wide."""
    strips = split_at_gaps(runs(mask.any(axis=0)), COLUMN_GAP * line_height)
    return [(strip[0][0], strip[-1][1]) for strip in strips]


def pack(spans: Sequence[Span], fits: Callable[[int, int], bool]) -> list[Span]:
    """Consecutive spans joined greedily into as few groups as `fits(left, right)` allows."""
    groups: list[Span] = []
    for left, right in spans:
        if groups and fits(groups[-1][0], right):
            groups[-1] = (groups[-1][0], right)
        else:
            groups.append((left, right))
    return groups


def fit_pieces(
    words: Sequence[Sequence[Span]],
    rows: Span,
    middle: float,
    scale: float,
    smallest: float,
    width: float,
    ink: np.ndarray,
    space: float,
    clear: np.ndarray,
    margin: float = 0.0,
) -> list[Piece]:
    """A line's words (each a list of its letters' spans) packed into pieces that fit the square.

    Words are packed as they fit at `scale` with `margin` px of paper beside them (a page's: a
    quarter line, as training crops had; their edges showed cut neighbours, not text, and a
    last period drawn into the padding is read away). A word too wide alone is drawn smaller,
    down to the `smallest` scale (training crops too were shrunk to fit), and as far below it
    as its margin takes, or else cut between letters into
    parts glued to each other, except where the cut's gap is at least `space` px: a tight
    line's spaces can be narrower than a word gap (and a typewriter face's letter gaps as wide
    as them), so the reader decides those joints; a gap's width is measured to a fraction of a
    pixel (`clear`: each column's share of paper, `paper_share`), as at 1,000 px a tight line's
    spaces are 2-3 columns and its letter gaps 1-2. A group of touching letters still too wide
    (small typewriter print) is cut into even parts, each cut moved to the column of least
    `ink` (the line's ink per page column) within a quarter line of it: between two letters,
    not through one. Cut parts fill the square: more cuts would read worse than no margin. A
    word's last part reads on into the next words while they fit (a listing's `[1] {%` after
    a long macro: the model sees the gap in its font, where `{%` alone would be a new word).
    """

    def fits(left: float, right: float, at: float = scale, beside: float = 0.0) -> bool:
        return (right - left + 2 * beside) * at <= width

    def piece(left: float, right: float, joint: Joint = "space", beside: float = 0.0) -> Piece:
        box = (round(left), rows[0], round(right), rows[1])
        return Piece(box, middle, min(scale, width / (right - left + 2 * beside)), joint, beside)

    def cut(left: int, right: int) -> list[tuple[float, float, Joint]]:
        """A word too wide for one piece: its parts (left, right, joint)."""
        letters = [span for word in words for span in word if left <= span[0] < right]
        ends = {start: previous[1] for previous, (start, _) in itertools.pairwise(letters)}
        parts: list[tuple[float, float, Joint]] = []
        for start, stop in pack(letters, fits):
            joint: Joint = "space"
            if start != left:
                joint = "either" if gap_width(clear, ends[start], start) >= space else "glued"
            cuts = np.linspace(start, stop, math.ceil((stop - start) * scale / width) + 1)
            cuts[1:-1] = [least_ink(ink, at, (rows[1] - rows[0]) / 4) for at in cuts[1:-1]]
            parts += [(a, b, joint if a == start else "glued") for a, b in itertools.pairwise(cuts)]
        return parts

    pieces: list[Piece] = []
    whole_words = [(word[0][0], word[-1][1]) for word in words]
    first = 0
    while first < len(whole_words):
        left, after = whole_words[first][0], first + 1
        while after < len(whole_words) and fits(left, whole_words[after][1], beside=margin):
            after += 1
        right = whole_words[after - 1][1]
        if fits(left, right, smallest):
            pieces.append(piece(left, right, beside=margin))
            first = after
            continue
        *parts, (start, stop, joint) = cut(left, right)
        while after < len(whole_words) and fits(start, whole_words[after][1]):
            stop, after = whole_words[after][1], after + 1  # the last part reads on into whole words
        pieces += [piece(a, b, j) for a, b, j in [*parts, (start, stop, joint)]]
        first = after
    return pieces


def typewriter_grid(letters: Sequence[Span], clear: np.ndarray, size: float) -> tuple[float, float] | None:
    """(pitch, a cell's centre) of the grid of cells the glyphs of a segment `size` px tall sit
    on, if it is set in a typewriter face; None for proportional print. Each glyph's centre is
    its ink's (`clear`: `paper_share`), the grid the one most glyph centres fit, refined by a
    least-squares line through those."""
    glyphs = [span for span in letters if span[1] - span[0] < PITCH[1] * size]  # touching: wider
    if len(glyphs) < TYPEWRITER_GLYPHS:
        return None
    centres = np.array([ink_centre(clear, span) for span in glyphs])
    pitches = np.arange(PITCH[0], PITCH[1], 0.002)[:, None] * size
    turns = np.exp(2j * np.pi * centres / pitches)
    offsets = np.angle(turns * np.conj(turns.mean(axis=1, keepdims=True))) / (2 * np.pi)
    best = int(np.argmax((np.abs(offsets) < ON_GRID).sum(axis=1)))
    cells = np.round(centres / pitches[best, 0] - offsets[best])
    on = np.abs(offsets[best]) < ON_GRID
    if np.ptp(cells[on]) < 1:
        return None
    pitch, origin = np.polyfit(cells[on], centres[on], 1)
    grid = (float(pitch), float(origin))
    return grid if (np.abs(off_grid(centres, grid)) < ON_GRID).mean() >= TYPEWRITER else None


def off_grid(at: np.ndarray, grid: tuple[float, float]) -> np.ndarray:
    """How far (in cells, -0.5 to 0.5) columns `at` lie from the nearest cell centre of a
    typewriter `grid` (pitch, a cell's centre)."""
    pitch, origin = grid
    return ((at - origin) / pitch + 0.5) % 1 - 0.5


def ink_centre(clear: np.ndarray, span: Span) -> float:
    """The column (to a fraction of a pixel) at the middle of a glyph's ink, its edges' share
    counted (`clear`: `paper_share`)."""
    start, stop = max(0, span[0] - 1), min(len(clear), span[1] + 1)
    ink = 1.0 - clear[start:stop]
    return float(((np.arange(start, stop) + 0.5) * ink).sum() / max(ink.sum(), 1e-9))


def typewriter_words(
    words: Sequence[Sequence[Span]],
    grid: tuple[float, float],
    clear: np.ndarray,
    band: np.ndarray,
    size: float,
) -> list[list[Span]]:
    """A typewriter segment's words (letters parted at word gaps) joined again where no empty
    cell of its `grid` lies between them: a letter gap there is as wide as two narrow glyphs'
    side bearings (`:` to `1`), wider than some proportional spaces, while a space is a whole
    cell. A word off the grid (in another face), and a first word in small print (a line
    number; `band`: the ink mask of the line's rows, `size`: its line height), keep their gaps."""
    pitch, origin = grid

    def cell(at: float) -> float:
        return (at - origin) / pitch

    def typed(word: Sequence[Span]) -> bool:
        """Its glyphs on the grid, on average (a glyph's ink is centred in its cell only
        roughly); touching glyphs (wider than a cell) are passed over."""
        centres = np.array([ink_centre(clear, span) for span in word if span[1] - span[0] < pitch])
        return not centres.size or float(np.abs(off_grid(centres, grid)).mean()) < TYPED

    first = words[0]
    numbered = small_print(band[:, first[0][0] : first[-1][1]], size) is not None
    on = [typed(word) for word in words]
    joined = [list(first)]
    for number, (previous, word) in enumerate(itertools.pairwise(words)):
        empty_cells = round(cell(word[0][0]) + 0.25) - round(cell(previous[-1][1]) - 0.25) - 1
        if empty_cells < 1 and on[number] and on[number + 1] and not (numbered and number == 0):
            joined[-1] += word
        else:
            joined.append(list(word))
    return joined


def paper_share(gray: np.ndarray, rows: Span, ink: np.ndarray, paper: float) -> np.ndarray:
    """Each column's share of paper in a line's `rows`: 1 blank, 0 where a pixel is as dark as the
    line's ink (`ink`: its mask there), a letter's anti-aliased edge in between."""
    band = gray[rows[0] : rows[1]].astype(np.float64)
    darkest = float(np.percentile(band[ink], 10)) if ink.any() else 0.0
    coverage = np.clip((paper - band) / max(paper - darkest, 1.0), 0.0, 1.0)
    return 1.0 - coverage.max(axis=0)


def gap_width(clear: np.ndarray, stop: int, start: int) -> float:
    """The width in pixels of the gap between ink that stops at column `stop` and starts again
    at `start`, its edge columns' paper counted (`clear`: `paper_share`)."""
    return float(clear[max(0, stop - 1) : start + 1].sum())


def least_ink(ink: np.ndarray, at: float, reach: float) -> int:
    """The column within `reach` of `at` with the least ink (the nearest of equals)."""
    columns = np.arange(max(0, round(at - reach)), min(len(ink), round(at + reach) + 1))
    return int(columns[np.lexsort((np.abs(columns - at), ink[columns]))[0]])


def faint_ink(gray: np.ndarray, mask: np.ndarray, rows: Span, span: Span) -> np.ndarray:
    """The ink mask of one box of a page, with the pixels nearer the box's darkest than its paper
    (its median) added: print fainter than the page's threshold, light grey line numbers beside
    black code, is then measured whole instead of by the few pixels that reach it."""
    box = gray[rows[0] : rows[1], span[0] : span[1]].astype(np.int16)
    return mask[rows[0] : rows[1], span[0] : span[1]] | (box <= (box.min() + np.median(box)) / 2)


def small_print(band: np.ndarray, height: float) -> tuple[float, float] | None:
    """(middle row in `band`, own line height) of the ink of a line, or of a segment of one
    (letters after a wide gap), printed clearly smaller than the `height` the page gives the
    line: a footnote, a code listing's line numbers. It is then scaled, and cut into words, by
    its own height, as the data engine draws each small font. None for print of the line's
    size, or print too small to measure (a dot, a dash). A segment inked evenly from top to
    bottom is taken for digits (line numbers), not for lower-case letters without ascenders."""
    inked = np.flatnonzero(band.any(axis=1))
    ink = int(inked[-1] - inked[0]) + 1
    if ink < SPECK * height:
        return None
    start, stop = x_band(band[inked[0] : inked[-1] + 1])
    own = min(line_px(stop - start, ink, None), ink / DIGIT)
    if own >= SMALL_PRINT * height:
        return None
    return inked[0] + (start + stop) / 2, own


def segments(
    gray: np.ndarray, mask: np.ndarray, letters: Sequence[Span], rows: Span, height: float
) -> list[list[Span]]:
    """A page line's letters in segments, each scaled on its own: split at gaps of SEGMENT_GAP
    lines, and after its first words while they are in small print much fainter than the rest
    (a listing's grey line number closer than a line height to code that starts at the
    margin; a faint number's few inked pixels may look like several words). A word only x-high
    (`are`) can measure as small print, but it is as dark as its line."""
    out: list[list[Span]] = []
    for segment in split_at_gaps(letters, SEGMENT_GAP * height):
        words = split_at_gaps(segment, WORD_GAP * height)
        small = 0
        while small < len(words) - 1:
            prefix = [span for word in words[: small + 1] for span in word]
            rest = [span for word in words[small + 1 :] for span in word]
            faint = contrast(gray, rows, prefix) < FAINTER * contrast(gray, rows, rest)
            if not faint or small_segment(gray, mask, prefix, rows, height) is None:
                break
            small += 1
        cut = sum(map(len, words[:small]))
        out += [segment[:cut], segment[cut:]] if cut else [segment]
    return out


def contrast(gray: np.ndarray, rows: Span, letters: Sequence[Span]) -> float:
    """How much darker than the paper around them (their box's median) letters' darkest pixel is."""
    box = gray[rows[0] : rows[1], letters[0][0] : letters[-1][1]]
    return float(np.median(box)) - float(box.min())


def small_segment(
    gray: np.ndarray, mask: np.ndarray, letters: Sequence[Span], rows: Span, height: float
) -> tuple[float, float, list[Span]] | None:
    """(middle row, own line height, letters) of a segment of a line (`letters` after a wide
    gap) in small print, its faint ink included: half a line height either side, so that a
    faint first or last digit is not cut, even at its column's edge (the column was found by
    the page's threshold, which a faint digit's left half may not reach; the next column is
    COLUMN_GAP lines away). None for print of the line's size (`small_print`)."""
    margin = round(SEGMENT_GAP * height / 2)
    span = (max(0, letters[0][0] - margin), min(gray.shape[1], letters[-1][1] + margin))
    band = faint_ink(gray, mask, rows, span)
    small = small_print(band, height)
    if small is None:
        return None
    return rows[0] + small[0], small[1], [(a + span[0], b + span[0]) for a, b in runs(band.any(axis=0))]


def x_band(band: np.ndarray) -> Span:
    """Rows of a text line's x-height band: at least half as inked as the busiest row. Its
    height gives the line height whichever letters have ascenders or descenders, and its
    middle is where a training crop has the middle of its square."""
    counts = band.sum(axis=1)
    rows = np.flatnonzero(counts >= counts.max() / 2)
    return int(rows[0]), int(rows[-1]) + 1


def line_px(x_height: int, ink: int, page_median: float | None) -> float:
    """A text line's height, from its x-height band, but at least its ink (a line is as tall
    as its ascenders and descenders) and at most what an ink only x-high allows. On a page, at
    most what an ink as tall as capitals allows (capitals, digits and braces are inked evenly
    from top to bottom: their band is no x-height), and at least the page's typical line
    (`page_median` of ink): a line without descenders is not smaller text."""
    height = min(max(x_height / XHEIGHT, ink), ink / XHEIGHT)
    if page_median is None:
        return height
    return max(min(height, ink / DIGIT), page_median / INK_TO_LINE)


def scales(height: float, line_height: Sequence[int], keep: bool) -> tuple[float, float]:
    """(scale, smallest scale) for a line `height` px tall: to the middle of the training range,
    or, with `keep`, as it is while in the range (give or take the estimate's error), since the
    model learned every height in it. The smallest scale gives the range's bottom."""
    low, high = line_height
    inside = (1 - SLACK) * low <= height <= (1 + SLACK) * high
    scale = 1.0 if keep and inside else (low + high) / 2 / height
    return scale, min(scale, low / height)


def page_layout(image: Image.Image, line_height: Sequence[int], side: int) -> PageLayout:
    """The pieces of `image` for a model trained on `side`-px crops of lines `line_height` px tall
    ([smallest, largest])."""
    rgb = np.asarray(image.convert("RGB"))
    paper = tuple(int(v) for v in np.median(rgb.reshape(-1, 3), axis=0))
    gray = dark_on_light(np.asarray(image.convert("L")))
    paper_gray = float(np.median(gray))
    mask = without_rules(ink_mask(gray))
    all_lines = text_lines(mask)
    if not all_lines:
        return PageLayout([], [], paper, page=False)
    median = line_median(mask, all_lines)
    width = side * (1 - 2 * PAD)
    lines: list[list[Piece]] = []
    blocks: list[int] = []
    page = len(all_lines) >= PAGE_LINES
    if page:
        mask &= ~thin_strokes(mask, median)
    strips = columns(mask, median) if page else [(0, mask.shape[1])]
    for block, (left, right) in enumerate(strips):
        for top, bottom in text_lines(mask[:, left:right], median, page):
            band = mask[top:bottom, left:right]
            start, stop = x_band(band)
            height = line_px(stop - start, bottom - top, median if page else None)
            letters = [(a + left, b + left) for a, b in runs(band.any(axis=0))]
            line = (top + (start + stop) / 2, height)  # the row to centre, the line height
            ink = mask[top:bottom].sum(axis=0)
            clear = paper_share(gray, (top, bottom), mask[top:bottom], paper_gray)
            pieces: list[Piece] = []
            for segment in segments(gray, mask, letters, (top, bottom), height) if page else [letters]:
                small = page and small_segment(gray, mask, segment, (top, bottom), height)
                middle, size, segment = small or (*line, segment)
                scale, smallest = scales(size, line_height, keep=not page)
                words, space = split_at_gaps(segment, WORD_GAP * size), SPACE_GAP * size
                if grid := typewriter_grid(segment, clear, size):  # its cut letters are glued
                    words = typewriter_words(words, grid, clear, mask[top:bottom], size)
                    space = math.inf
                margin = MARGIN * size if page else 0.0  # a crop has its own margins
                pieces += fit_pieces(
                    words, (top, bottom), middle, scale, smallest, width, ink, space, clear, margin
                )
            lines.append(pieces)
            blocks.append(block)
    if (
        not page
        and len(lines) == 1
        and len(lines[0]) == 1
        and lines[0][0].scale == 1
        and max(image.size) <= side
    ):
        # already a crop the model reads: cutting it to its ink would only move its text
        return PageLayout([[Piece((0, 0, *image.size), image.size[1] / 2, 1.0)]], [0], paper, page=False)
    return PageLayout(lines, blocks, paper, page)


def crop(image: Image.Image, piece: Piece, side: int, paper: tuple[int, int, int]) -> Image.Image:
    """One piece of an RGB page, scaled and centred on a `side` x `side` square of paper colour."""
    left, top, right, bottom = piece.box
    size = (max(1, round((right - left) * piece.scale)), max(1, round((bottom - top) * piece.scale)))
    ink = darkened(image.crop(piece.box).resize(size, Image.Resampling.BICUBIC), paper)
    square = Image.new("RGB", (side, side), paper)
    square.paste(ink, ((side - size[0]) // 2, round(side / 2 - (piece.middle - top) * piece.scale)))
    return square


def darkened(ink: Image.Image, paper: tuple[int, int, int]) -> Image.Image:
    """Faint print (light grey line numbers, grey text on a grey panel) stretched away from the
    paper until its darkest pixel is black: the model learned dark print. Print dark enough
    already, and light print on dark paper, is left as it is."""
    pixels = np.asarray(ink, dtype=np.float32)
    background = np.array(paper, dtype=np.float32)
    contrast = background.mean() - pixels.mean(axis=2).min()
    if contrast <= 0 or background.mean() <= FAINT * contrast:
        return ink
    stretched = background - (background - pixels) * (background.mean() / contrast)
    return Image.fromarray(stretched.clip(0, 255).astype(np.uint8))
