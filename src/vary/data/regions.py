"""PDF regions: crops of a few words of real rendered text, at a small model's input size.

A small Vary-tiny on a CPU reads 64-256 px squares, not 1024 px pages; shrinking a page that far
leaves no legible glyph. A region is instead one or a few consecutive text lines of a page, each
cut to at most `region_max_chars` characters, rendered by MuPDF straight from the PDF at a zoom
that makes one line `region_text_height` px tall, and centred on a white square. Its target is
exactly the words inside the crop, so the text stays as true as the PDF's own text layer.

How a page becomes regions (all geometry in PDF points, from `page.get_text("words")`):

1. *Pieces.* Words; a word made only of wide (CJK) characters is cut into its characters (CJK
   glyphs have equal advances, so each one's box is an equal share of the word's box), because
   MuPDF returns a whole line of Chinese as one "word".
2. *Groups.* Each line is cut greedily into groups of consecutive pieces while the group's text
   has at most `region_max_chars` characters *and* its crop still fits the square at the smallest
   text height. A piece that alone breaks either rule is dropped: `long_word` / `too_wide`.
3. *Candidates.* A group, stacked with the words right below it (within its left and right
   edges) in the next k-1 rows (k drawn from `region_lines`; `long_line` when one of them is
   longer than `region_max_chars`, `not_stacked` when a row is missing). Candidates are shuffled
   by a generator seeded with the file key and page number, and taken until `regions_per_page`
   are kept; pieces are never used twice.
4. *Crop.* The union box plus a margin, shrunk away from every other word it touches. Dropped:
   another word still showing in it beyond a sliver (`overlaps_text`: groups of stacked lines
   that are not aligned), rows that do not follow each other (`not_stacked`), a vector
   drawing or image inside (`overlaps_graphics`), a stack that does not fit (`too_wide`), text
   the page filters reject (`vary.data.pdf.drop_reason` with `region_min_chars`).
"""

from __future__ import annotations

import itertools
import random
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pymupdf
from PIL import Image

from vary.data.config import PdfConfig
from vary.data.text import nfkc, normalise

MARGIN = 0.25  # crop margin around the words, in line heights (ink may overhang the word boxes)
SLIVER = 0.3  # share of a neighbouring word's height allowed inside a crop (ascenders, descenders)
PAD = 0.04  # white border of the square, as a share of its side, never covered by the crop
_BACKGROUND = 0.9  # drawings covering this share of the page are backgrounds, not figures
_TEXT_OPS = ("fill-text", "stroke-text", "ignore-text")


@dataclass(frozen=True)
class Piece:
    """A word (or one character of a CJK word) with its box; `glued` joins it to the previous one."""

    rect: tuple[float, float, float, float]
    text: str
    line: tuple[int, int]  # (block, line) as MuPDF numbers them
    glued: bool = False

    @property
    def height(self) -> float:
        return self.rect[3] - self.rect[1]

    def centre_in(self, box: tuple[float, float, float, float]) -> bool:
        cx, cy = (self.rect[0] + self.rect[2]) / 2, (self.rect[1] + self.rect[3]) / 2
        return box[0] < cx < box[2] and box[1] < cy < box[3]


@dataclass
class Region:
    text: str
    bbox: tuple[float, float, float, float]  # the crop, PDF points
    image: Image.Image
    order: tuple[int, int]  # (line index, group index): reading order on the page


class PieceIndex:
    """A page's pieces with their boxes in one array, to find the pieces near a crop without a
    Python loop over the whole page per candidate: a page of plots can hold 10k+ words, and a
    loop per candidate made such a page take minutes."""

    def __init__(self, pieces: Sequence[Piece]) -> None:
        self.pieces = list(pieces)
        self.rects = np.array([p.rect for p in self.pieces], dtype=np.float64).reshape(-1, 4)

    def select(self, mask: np.ndarray) -> list[Piece]:
        """The pieces where `mask` (over the page's pieces) holds, in page order."""
        return [self.pieces[k] for k in np.flatnonzero(mask)]

    def overlapping(self, box: tuple[float, float, float, float]) -> list[Piece]:
        """The pieces whose boxes overlap `box` by more than an edge."""
        r = self.rects
        return self.select((r[:, 2] > box[0]) & (r[:, 0] < box[2]) & (r[:, 3] > box[1]) & (r[:, 1] < box[3]))


def is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def pieces(words: Sequence[tuple]) -> list[Piece]:
    """Pieces from `page.get_text("words")`, NFKC'd, all-wide words cut into characters."""
    out = []
    for x0, y0, x1, y1, word, block, line, _ in words:
        text = nfkc(word).strip()
        if not text:
            continue
        if len(text) > 1 and all(is_wide(c) for c in text):
            step = (x1 - x0) / len(text)
            out += [
                Piece((x0 + i * step, y0, x0 + (i + 1) * step, y1), c, (block, line), glued=i > 0)
                for i, c in enumerate(text)
            ]
        else:
            out.append(Piece((x0, y0, x1, y1), text, (block, line)))
    return out


def join(group: Sequence[Piece]) -> str:
    return "".join(("" if p.glued or i == 0 else " ") + p.text for i, p in enumerate(group))


def union(group: Sequence[Piece]) -> tuple[float, float, float, float]:
    rects = [p.rect for p in group]
    return (
        min(r[0] for r in rects),
        min(r[1] for r in rects),
        max(r[2] for r in rects),
        max(r[3] for r in rects),
    )


def _fits(box: tuple[float, float, float, float], line_height: float, cfg: PdfConfig) -> bool:
    """Whether a crop of `box` (margin added) fits the square with lines at the smallest height."""
    zoom = cfg.region_text_height[0] / line_height
    margin = 2 * MARGIN * line_height
    avail = cfg.region_size * (1 - 2 * PAD)
    return max(box[2] - box[0], box[3] - box[1]) + margin <= avail / zoom


def line_groups(line: Sequence[Piece], cfg: PdfConfig) -> list[list[Piece] | str]:
    """Cut one line into groups (see module doc); a piece that cannot be placed becomes a reason."""
    out: list[list[Piece] | str] = []
    group: list[Piece] = []
    for piece in line:
        trial = [*group, piece]
        height = max(p.height for p in trial)
        if len(join(trial)) <= cfg.region_max_chars and _fits(union(trial), height, cfg):
            group = trial
            continue
        if group:
            out.append(group)
        alone_ok = len(piece.text) <= cfg.region_max_chars
        group = [piece] if alone_ok and _fits(piece.rect, piece.height, cfg) else []
        if not group:
            out.append("long_word" if not alone_ok else "too_wide")
    if group:
        out.append(group)
    return out


def graphics_boxes(page: pymupdf.Page) -> list[tuple[float, float, float, float]]:
    """Boxes of everything drawn on the page that is not text (paths, images, shadings)."""
    area = abs(page.rect)
    boxes = []
    for kind, box in page.get_bboxlog():
        rect = pymupdf.Rect(box)
        if kind in _TEXT_OPS or kind.startswith("clip") or rect.is_empty:
            continue
        if abs(rect) < _BACKGROUND * area:
            boxes.append(tuple(rect))
    return boxes


def with_margin(
    box: tuple[float, float, float, float], line_height: float
) -> tuple[float, float, float, float]:
    """The words' union `box` plus the crop margin: the largest crop they can get."""
    m = MARGIN * line_height
    return box[0] - m, box[1] - m, box[2] + m, box[3] + m


def crop_box(
    box: tuple[float, float, float, float], others: Sequence[Piece], line_height: float
) -> tuple[float, float, float, float] | None:
    """The words' union `box` `with_margin`, shrunk off every other piece; None if one stays inside.

    Only pieces that overlap that first box can matter (the crop only shrinks).
    """
    x0, y0, x1, y1 = with_margin(box, line_height)
    for other in others:
        o = other.rect
        if o[2] <= x0 or o[0] >= x1 or o[3] <= y0 or o[1] >= y1:
            continue
        # Shrink one side so the other piece is left outside, never cutting into the words.
        options = [
            (o[3] - y0, "y0", min(max(o[3], y0), box[1])),
            (y1 - o[1], "y1", max(min(o[1], y1), box[3])),
            (o[2] - x0, "x0", min(max(o[2], x0), box[0])),
            (x1 - o[0], "x1", max(min(o[0], x1), box[2])),
        ]
        # Prefer a side that leaves the piece wholly outside; else (boxes of tight lines overlap the
        # words' own box) the least shrink, and `_intrudes` judges what is left.
        clear = [opt for opt in options if opt[2] in (o[3], o[1], o[2], o[0])]
        _, side, value = min(clear or options)
        x0, y0, x1, y1 = (
            value if side == "x0" else x0,
            value if side == "y0" else y0,
            value if side == "x1" else x1,
            value if side == "y1" else y1,
        )
    crop = (x0, y0, x1, y1)
    return None if any(_intrudes(o, crop) for o in others) else crop


def _intrudes(other: Piece, crop: tuple[float, float, float, float]) -> bool:
    """Whether another piece shows in the crop: more than a sliver of its height (an ascender or
    descender of a neighbouring line is tolerated) over any width (0.3 pt)."""
    o = other.rect
    width = min(o[2], crop[2]) - max(o[0], crop[0])
    height = min(o[3], crop[3]) - max(o[1], crop[1])
    return width > 0.3 and height > SLIVER * other.height


def row_below(
    index: PieceIndex,
    above: tuple[float, float, float, float],
    edges: tuple[float, float, float, float],
) -> list[Piece]:
    """The pieces of the next row under `above` that lie within the left and right `edges`.

    Rows, not MuPDF lines: MuPDF splits a row at font changes and groups blocks its own way.
    """
    height = above[3] - above[1]
    tol = 0.5 * height
    r = index.rects
    row = index.select(
        ((above[1] + above[3]) / 2 < r[:, 1])
        & (r[:, 1] <= above[3] + height)
        & (r[:, 0] >= edges[0] - tol)
        & (r[:, 2] <= edges[2] + tol)
    )
    if not row:
        return []
    top = min(p.rect[1] for p in row)  # the nearest row only
    row = [p for p in row if p.rect[1] < top + 0.5 * height]
    return sorted(row, key=lambda p: p.rect[0])


def stacked(stack: Sequence[Sequence[Piece]]) -> bool:
    """Whether the groups are successive rows: each starts below the middle of the one above, at
    most a line height lower, and overlaps it horizontally (MuPDF also splits one row into lines)."""
    for upper, lower in itertools.pairwise(stack):
        a, b = union(upper), union(lower)
        if not ((a[1] + a[3]) / 2 <= b[1] <= a[3] + (a[3] - a[1]) and b[0] < a[2] and a[0] < b[2]):
            return False
    return True


def render_region(
    dlist: pymupdf.DisplayList, crop: tuple[float, float, float, float], zoom: float, size: int
) -> Image.Image:
    """The crop rendered at `zoom` (shrunk to fit if needed), centred on a white size x size square."""
    avail = size * (1 - 2 * PAD)
    zoom = min(zoom, avail / (crop[2] - crop[0]), avail / (crop[3] - crop[1]))
    pix = dlist.get_pixmap(
        matrix=pymupdf.Matrix(zoom, zoom), clip=pymupdf.Rect(crop), alpha=False, colorspace=pymupdf.csRGB
    )
    tile = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    canvas = Image.new("RGB", (size, size), "white")
    canvas.paste(tile, ((size - tile.width) // 2, (size - tile.height) // 2))
    return canvas


def page_regions(
    page: pymupdf.Page, seed: str, cfg: PdfConfig, check: Callable[[str], str | None]
) -> tuple[list[Region], Counter]:
    """Up to `cfg.regions_per_page` regions of one page, and why the other candidates tried were dropped.

    `check(text)` returns a reason to drop a region's text (the page filters), or None.
    """
    filtered: Counter = Counter()
    index = PieceIndex(pieces(page.get_text("words")))
    lines: dict[tuple[int, int], list[Piece]] = {}
    for piece in index.pieces:
        lines.setdefault(piece.line, []).append(piece)
    groups = [line_groups(line, cfg) for line in lines.values()]
    rng = random.Random(seed)
    candidates = [(i, j) for i, line in enumerate(groups) for j in range(len(line))]
    rng.shuffle(candidates)
    graphics: list | None = None
    dlist: pymupdf.DisplayList | None = None
    used: set[int] = set()
    regions: list[Region] = []
    for i, j in candidates:
        if len(regions) >= cfg.regions_per_page:
            break
        k = rng.randint(*cfg.region_lines)
        height_px = rng.randint(*cfg.region_text_height)
        first = groups[i][j]
        if isinstance(first, str):
            filtered[first] += 1
            continue
        stack = [first]
        while len(stack) < k and stack[-1]:
            stack.append(row_below(index, union(stack[-1]), union(first)))
        if not all(stack) or not stacked(stack):
            filtered["not_stacked"] += 1
            continue
        if max(len(join(g)) for g in stack) > cfg.region_max_chars:
            filtered["long_line"] += 1
            continue
        words = [p for g in stack for p in g]
        if any(id(p) in used for p in words):
            continue
        line_height = sorted(max(p.height for p in g) for g in stack)[len(stack) // 2]
        text = normalise("\n".join(join(g) for g in stack))
        mine = {id(p) for p in words}
        box = union(words)
        reason = check(text) or (None if _fits(box, line_height, cfg) else "too_wide")
        if not reason:  # the text checks first: they are cheap, the crop looks at its neighbours
            others = [p for p in index.overlapping(with_margin(box, line_height)) if id(p) not in mine]
            crop = crop_box(box, others, line_height)
            reason = "overlaps_text" if crop is None else None
        if not reason:
            graphics = graphics_boxes(page) if graphics is None else graphics
            if any(pymupdf.Rect(g).intersects(crop) for g in graphics):
                reason = "overlaps_graphics"
        if reason:
            filtered[reason] += 1
            continue
        dlist = dlist or page.get_displaylist(annots=False)
        image = render_region(dlist, crop, height_px / line_height, cfg.region_size)
        used |= mine
        bbox = tuple(round(v, 2) for v in crop)
        regions.append(Region(text, bbox, image, (i, j)))
    regions.sort(key=lambda r: r.order)
    return regions, filtered
