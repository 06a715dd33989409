"""vary.inference.layout on drawn pages: columns, lines, words, scale and placement of the crops."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pymupdf
import pytest
from PIL import Image, ImageDraw, ImageFont

from vary.data.regions import MARGIN, PAD
from vary.inference.layout import (
    DIGIT,
    INK_TO_LINE,
    WORD_GAP,
    PageLayout,
    Piece,
    Span,
    dark_on_light,
    darkened,
    fit_pieces,
    gap_width,
    ink_mask,
    least_ink,
    line_px,
    page_layout,
    paper_share,
    runs,
    split_at_gaps,
    text_lines,
    thin_strokes,
    typewriter_grid,
    typewriter_words,
    x_band,
)

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSerif.ttf"
LINE_HEIGHT = [15, 22]  # the built-in model's training range
SIDE = 64


def draw_page(
    columns: list[list[str]], size: int = 24, page: tuple[int, int] = (900, 400), ink: str = "black"
) -> Image.Image:
    """Columns of text lines, 1.5 lines apart, columns 450 px apart, on white (or `ink` on black)."""
    image = Image.new("RGB", page, "white" if ink == "black" else "black")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), size)
    for number, lines in enumerate(columns):
        for row, text in enumerate(lines):
            draw.text((30 + 450 * number, 30 + row * 1.5 * size), text, fill=ink, font=font)
    return image


def read_back(layout: PageLayout, texts_by_line: list[str]) -> str:
    """The join of a layout whose every line is one piece, given each line's true text."""
    assert [len(line) for line in layout.lines] == [1] * len(texts_by_line)
    return layout.join(texts_by_line)


LEFT = ["alpha beta", "gamma delta", "epsilon"]
RIGHT = ["one two", "three", "four five"]


def test_columns_then_lines_in_reading_order() -> None:
    layout = page_layout(draw_page([LEFT, RIGHT]), LINE_HEIGHT, side=1024)  # a side every line fits
    assert layout.blocks == [0, 0, 0, 1, 1, 1]
    assert read_back(layout, LEFT + RIGHT) == "\n".join(LEFT) + "\n\n" + "\n".join(RIGHT)


def test_a_word_hyphenated_across_lines_is_joined_as_in_the_data() -> None:
    lines = ["the extrac-", "tion of WWW-", "Quellen ends-", "Here"]
    layout = page_layout(draw_page([lines]), LINE_HEIGHT, side=1024)
    assert read_back(layout, lines) == "the extraction of WWW-\nQuellen ends-\nHere"


def test_a_period_or_comma_read_a_space_off_its_word_joins_it() -> None:
    """On a page, a typewriter face sets a period a word gap off its word: it is read as a piece
    of its own, or with a space in its piece (`notes .`), and no typography spaces a period or
    comma off. A colon keeps its space (French sets one), and so does a mark that starts a line
    or a word."""
    pieces = [Piece((left, 0, left + 10, 10), 5.0, 1.0) for left in (0, 20, 40, 60)]
    layout = PageLayout([pieces], [0], (255, 255, 255), page=True)
    assert layout.join(["critical", "notes", " .", "In"]) == "critical notes. In"
    assert layout.join(["can have", "notes ,", "b :", ".5 em"]) == "can have notes, b : .5 em"
    assert layout.join([",", "a", ",", ":"]) == ", a, :"
    crop = PageLayout([pieces], [0], (255, 255, 255), page=False)  # read as its training texts
    assert crop.join(["critical", "notes", " .", "In"]) == "critical notes . In"


def test_pieces_break_at_word_gaps_and_fit_the_square() -> None:
    image = draw_page([["aa bb cc dd ee ff gg hh", "ii jj kk", "ll"]])
    mask = ink_mask(np.asarray(image.convert("L")))
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    first = layout.lines[0]
    assert len(first) > 1 and all(piece.joint == "space" for piece in first)
    for piece, following in itertools.pairwise(first):
        _, top, right, bottom = piece.box
        assert right < following.box[0] and not mask[top:bottom, right : following.box[0]].any()
    for piece in layout.pieces:
        assert (piece.box[2] - piece.box[0]) * piece.scale <= SIDE * (1 - 2 * PAD) + 1e-6


def test_a_word_too_wide_is_cut_between_letters() -> None:
    image = draw_page([["internationalization", "x", "y"]], size=40)
    mask = ink_mask(np.asarray(image.convert("L")))
    word = page_layout(image, LINE_HEIGHT, SIDE).lines[0]
    assert len(word) > 1 and [piece.joint for piece in word] == ["space"] + ["glued"] * (len(word) - 1)
    for piece in word[:-1]:
        _, top, right, bottom = piece.box
        assert not mask[top:bottom, right].any()  # a cut between letters, not through one
    inked = np.flatnonzero(mask[word[0].box[1] : word[0].box[3]].any(axis=0))
    assert (word[0].box[0], word[-1].box[2]) == (inked[0], inked[-1] + 1)  # the whole word, once


@pytest.mark.parametrize("zoom", [1.0, 1.45, 2.0])
def test_a_page_s_words_keep_a_training_crop_s_margin_off_the_padding(zoom: float) -> None:
    """Training crops had a quarter line of paper beside their words, and what reached the edge
    was a cut neighbour, not text: drawn up to the padding, a last period is read away."""
    lines = ["notes.", "the sides,", "of hedges.", "quietly"]
    image = draw_page([lines], size=24, page=(500, 300))
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    assert layout.page and all(piece.joint == "space" for piece in layout.pieces)
    pieces = [piece.zoomed(zoom, SIDE) for piece in layout.pieces]
    at_edge = 0
    for crop in layout.crops(image, SIDE, pieces):
        mask = ink_mask(np.asarray(crop.convert("L")))
        columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
        line = (rows[-1] + 1 - rows[0]) / INK_TO_LINE  # at most the line drawn: a bound to keep
        beside = SIDE * PAD + MARGIN * line
        assert columns[0] >= beside - 1.5 and columns[-1] + 1 <= SIDE - beside + 1.5
        at_edge += columns[-1] + 1 > SIDE - beside - 3
    assert at_edge  # some were as wide as the margin lets them


@pytest.mark.parametrize("size", [10, 24, 60])
def test_page_lines_are_drawn_inside_the_training_range(size: int) -> None:
    image = draw_page([["example", "heights", "quietly"]], size=size, page=(700, 300))
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    width = SIDE * (1 - 2 * PAD)  # at the bottom, a word as wide as the square keeps its margins:
    bottom = LINE_HEIGHT[0] * width / (width + 2 * MARGIN * LINE_HEIGHT[0])
    for crop in layout.crops(image, SIDE):  # each word has ascenders and descenders: ink = a line
        mask = ink_mask(np.asarray(crop.convert("L")))
        rows = np.flatnonzero(mask.any(axis=1))
        assert INK_TO_LINE * bottom - 1 <= rows[-1] + 1 - rows[0] <= LINE_HEIGHT[1]


@pytest.mark.parametrize("words", [["abode", "bold", "hated"], ["pure", "gray", "query"]])
def test_the_x_height_band_goes_to_the_middle_of_the_crop(words: list[str]) -> None:
    """As in training crops, whatever the letters: ascenders only, descenders only."""
    image = draw_page([words], page=(400, 300))
    for crop in page_layout(image, LINE_HEIGHT, SIDE).crops(image, SIDE):
        start, stop = x_band(ink_mask(np.asarray(crop.convert("L"))))
        assert (start + stop) / 2 == pytest.approx(SIDE / 2, abs=1)


def test_a_zoomed_piece_is_drawn_larger_about_its_middle_until_it_fills_the_square() -> None:
    image = draw_page([["ab", "internationalization"]], size=20, page=(700, 200))
    short, *long = page_layout(image, LINE_HEIGHT, SIDE).pieces
    assert short.zoomed(1.0, SIDE) == short
    big = short.zoomed(1.25, SIDE)
    assert big.scale == pytest.approx(1.25 * short.scale) and (big.box, big.middle) == (
        short.box,
        short.middle,
    )
    crops = PageLayout([[short, big]], [0], (255, 255, 255), page=False).crops(image, SIDE)
    before, after = (ink_mask(np.asarray(crop.convert("L"))) for crop in crops)
    assert after.sum() > 1.4 * before.sum()  # the ink's area grows with the zoom's square
    for mask in (before, after):  # the x-height band stays in the middle, as in training crops
        assert sum(x_band(mask)) / 2 == pytest.approx(SIDE / 2, abs=1)
    widest = max(long, key=lambda piece: (piece.box[2] - piece.box[0]) * piece.scale)
    fills = SIDE * (1 - 2 * PAD) / (widest.box[2] - widest.box[0])
    assert widest.zoomed(3.0, SIDE).scale == pytest.approx(
        max(widest.scale, fills)
    )  # no wider than the square
    assert short.zoomed(0.5, SIDE).scale == pytest.approx(short.scale / 2)


def test_line_numbers_in_small_print_are_scaled_by_their_own_height() -> None:
    """A listing's line numbers, set off by a wide gap, reach the model at a readable size."""
    image = Image.new("RGB", (700, 200), "white")
    draw = ImageDraw.Draw(image)
    small, large = ImageFont.truetype(str(FONT), 11), ImageFont.truetype(str(FONT), 28)
    for row, text in enumerate(["\\begin{top}", "\\item[gap]", "\\end{top}"]):
        baseline = 40 + 48 * row
        draw.text((30, baseline), str(12 + row), fill="black", font=small, anchor="ls")
        draw.text((90, baseline), text, fill="black", font=large, anchor="ls")
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    crops = iter(layout.crops(image, SIDE))
    for line in layout.lines:
        assert len(line) > 1 and line[0].scale > 1.5 * line[1].scale
        number = next(crops)  # unscaled, the digits would be 5-6 px tall in the crop
        rows = np.flatnonzero(ink_mask(np.asarray(number.convert("L"))).any(axis=1))
        assert LINE_HEIGHT[0] / 2 <= rows[-1] + 1 - rows[0] <= LINE_HEIGHT[1]
        for _ in line[1:]:
            next(crops)


def draw_listing(
    grey: float,
    zoom: float,
    code_at: float = 32,
    listing: Sequence[str] = ("\\ifboolexpr{%", "\\ifdefvoid{\\at@every}", "\\ifstrempty{#1}}%", "}%"),
) -> Image.Image:
    """A PDF code listing with tiny line numbers (`grey`: their grey level) at x = 12 pt and its
    code, at 9 pt, from x = `code_at` pt, rendered `zoom` times 72 dpi."""
    document = pymupdf.open()
    page = document.new_page(width=300, height=100)
    for row, code in enumerate(listing):
        page.insert_text((12, 30 + 12 * row), str(8864 + row), fontsize=4.5, color=(grey,) * 3)
        page.insert_text((code_at, 30 + 12 * row), code, fontsize=9, fontname="cour")
    pixmap = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom))
    return Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)


@pytest.mark.parametrize(
    ("grey", "zoom", "code_at"), [(0.0, 2.0, 32), (0.58, 2.4, 32), (0.6, 2.0, 32), (0.6, 2.0, 25)]
)
def test_light_grey_line_numbers_are_measured_whole(grey: float, zoom: float, code_at: float) -> None:
    """A PDF listing's tiny grey line numbers, of which the page's ink threshold keeps only a few
    pixels, are still scaled by their own height, all alike, their digits as tall as a
    trained line's capitals and whole (a faint first digit's left edge too, left of the column
    the threshold found); also where the code starts at the margin, closer to the numbers than
    a line height (`code_at` 25 pt)."""
    image = draw_listing(grey, zoom, code_at)
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    numbers = [line[0] for line in layout.lines]
    assert len(numbers) == 4 and all(number.box[2] < (code_at - 1) * zoom for number in numbers)
    assert len({number.scale for number in numbers}) == 1  # all alike
    assert numbers[0].scale > 1.3 * layout.lines[0][1].scale
    gray = np.asarray(image.convert("L"))
    for number in numbers:
        left, top, right, bottom = number.box
        digits = gray[top:bottom, : round(code_at * zoom) - 2]
        inked = np.flatnonzero((digits < (int(digits.min()) + 255) / 2).any(axis=0))
        assert left <= inked[0] and right > inked[-1]
    for crop in layout.crops(image, SIDE, numbers):
        rows = np.flatnonzero(ink_mask(np.asarray(crop.convert("L"))).any(axis=1))
        assert DIGIT * LINE_HEIGHT[0] <= rows[-1] + 1 - rows[0] <= LINE_HEIGHT[1]


def test_a_grey_line_number_alone_on_its_line_is_read() -> None:
    """A blank line of a listing keeps its grey number: the few pixels of it the page's threshold
    keeps are a thin row run, as an accent's, but far from any line and as wide as a word, a
    line of small print; its crop holds the whole number, top to bottom."""
    image = draw_listing(0.6, 2.0, listing=("\\ifboolexpr{%", "", "\\ifstrempty{#1}}%", "}%"))
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    assert len(layout.lines) == 4 and len(layout.lines[1]) == 1
    alone = layout.lines[1][0]
    assert alone.scale == pytest.approx(layout.lines[0][0].scale)  # as the other numbers
    gray = np.asarray(image.convert("L"))
    rows = np.flatnonzero((gray[:, : 26 * 2] < 230).any(axis=1))  # left of the code (32 pt)
    number = rows[(rows > layout.lines[0][0].box[3]) & (rows < layout.lines[2][0].box[1])]
    assert alone.box[1] <= number[0] and alone.box[3] > number[-1]


def test_a_speck_far_from_the_line_is_no_line() -> None:
    """The tip of a descender from the line above, cut at a crop's edge, stays out of the
    reading: in a crop, a thin run far from the line is no line of small print."""
    image = draw_page([["case we"]], size=11, page=(64, 64))
    ImageDraw.Draw(image).rectangle((40, 14, 45, 15), fill="black")
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    assert len(layout.lines) == 1


def paper_between(letters: list[tuple[int, int]], width: int) -> np.ndarray:
    """`paper_share` of a line of solid letters: 1 between them, 0 on them."""
    clear = np.ones(width)
    for a, b in letters:
        clear[a:b] = 0.0
    return clear


def test_touching_letters_are_cut_between_letters() -> None:
    """Small typewriter print whose letters touch (one run of 100 columns) is cut into three
    parts that fit 40 px, each cut at the least inked column within a quarter line of the even
    cut (33.3 -> 30, 66.7 -> 70), not through a letter."""
    ink = np.full(120, 6)
    ink[[30, 39, 60, 70]] = [1, 0, 1, 1]  # 39 is nearer to 33.3 but over a quarter line away
    pieces = fit_pieces([[(0, 100)]], (0, 20), 10, 1.0, 1.0, 40, ink, space=5, clear=np.zeros(120))
    assert [piece.box[::2] for piece in pieces] == [(0, 30), (30, 70), (70, 100)]
    assert [piece.joint for piece in pieces] == ["space", "glued", "glued"]
    assert least_ink(np.array([0, 2, 2, 0, 2]), 2.6, 3) == 3  # the nearest of equals


def test_a_cut_through_a_word_at_a_gap_as_wide_as_a_narrow_space_is_the_reader_s_to_join() -> None:
    """Letters 8 px wide, 3 px apart after the second (a tight line's space, narrower than a
    word gap) and 1 px apart elsewhere: one 'word' 46 px wide for a 20 px square, cut where
    the square is full. The joint at the 3 px gap may be a space: the reader decides (without
    a judge, none); the one at the 1 px gap is a letter gap."""
    letters = [(0, 8), (9, 17), (20, 28), (29, 37), (38, 46)]
    clear = paper_between(letters, 50)
    pieces = fit_pieces([letters], (0, 20), 10, 1.0, 1.0, 20, np.zeros(50), space=2.5, clear=clear)
    assert [piece.box[::2] for piece in pieces] == [(0, 17), (20, 37), (38, 46)]
    assert [piece.joint for piece in pieces] == ["space", "either", "glued"]
    layout = PageLayout([pieces], [0], (255, 255, 255), page=True)
    asked = []

    def spaced(before: str, after: str) -> bool:
        asked.append((before, after))
        return True

    assert layout.join(["we", "use", "d"], spaced) == "we used"
    assert asked == [("we", "use")]  # the line so far and the next reading, at the open joint only
    assert layout.join(["we", "use", "d"]) == "weused"
    assert layout.open_ends == [True, True, False]  # each part but the last may end mid-word
    two_lines = PageLayout([pieces[:1], pieces[1:]], [0, 0], (255, 255, 255), page=True)
    assert two_lines.open_ends == [False, True, False]


def test_a_long_word_s_last_part_reads_on_into_the_words_after_it() -> None:
    """A listing's long macro (letters 5 px wide, 1 px apart: 35 px for a 32 px square) is cut
    into parts; the words after it (`[1]`, `{%`: 4 px gaps, as wide as a word gap) are read
    with its last part while they fit, so the model sees their gaps in their font (alone, a
    piece of their own would join them with a space); a word that no longer fits starts the
    next piece."""
    macro = [(x, x + 5) for x in range(0, 36, 6)]
    words = [macro, [(39, 44)], [(48, 50)], [(58, 66)]]
    clear = paper_between([span for word in words for span in word], 70)
    pieces = fit_pieces(words, (0, 10), 5, 1.0, 1.0, 32, np.zeros(70), space=2.5, clear=clear)
    assert [piece.box[::2] for piece in pieces] == [(0, 29), (30, 50), (58, 66)]
    assert [piece.joint for piece in pieces] == ["space", "glued", "space"]


def test_a_gap_is_measured_to_a_fraction_of_a_pixel_from_its_edges_grey() -> None:
    """At 1,000 px a tight line's space is 2 blank columns between anti-aliased letter edges,
    a letter gap 2 blank columns between solid ones: as blank columns the two look alike;
    counting each column's share of paper (grey 191 is a quarter ink on paper 255, ink 0)
    tells them apart, and only the space's joint is the reader's to decide."""
    gray = np.full((4, 12), 255, dtype=np.uint8)
    gray[:, [0, 1, 2, 5, 6, 11]] = 0  # letters, solid to their edges
    gray[:, [7, 10]] = 191  # a space's anti-aliased edges, 2 blank columns between them
    clear = paper_share(gray, (0, 4), gray < 128, paper=255.0)
    assert clear[[0, 3, 7]] == pytest.approx([0.0, 1.0, 0.75], abs=0.01)
    assert gap_width(clear, 3, 5) == 2.0
    assert gap_width(clear, 7, 11) == pytest.approx(3.5, abs=0.01)
    letters = [(0, 3), (5, 7), (11, 12)]
    pieces = fit_pieces([letters], (0, 4), 2, 1.0, 1.0, 5, np.zeros(12), space=2.5, clear=clear)
    assert [piece.joint for piece in pieces] == ["space", "glued", "either"]
    gray[1, 7] = 0  # one pixel as dark as the ink makes its column ink
    assert paper_share(gray, (0, 4), gray < 128, paper=255.0)[7] == 0.0


def test_lines_that_touch_are_parted_at_their_nearly_empty_rows() -> None:
    """Two listing lines 10 rows tall whose braces touch (one inked pixel a row between them)
    form one row run twice a line tall: parted where the rows are nearly empty. A title's
    ascenders (a few pixels a row over its first 4 rows) are no line of their own."""
    mask = np.zeros((40, 100), dtype=bool)
    mask[2:12, 10:90] = True
    mask[12:14, 50] = True  # a brace's tip reaching the line below
    mask[14:24, 10:90] = True
    assert text_lines(mask, median=10.0) == [(2, 12), (12, 24)]
    title = np.zeros((40, 100), dtype=bool)
    title[2:6, [10, 30, 60]] = True  # ascenders
    title[6:18, 10:90] = True
    assert text_lines(title, median=10.0) == [(2, 18)]


def test_thin_level_strokes_longer_than_a_glyph_s_are_not_ink() -> None:
    """An underline or an arrow (1 px thick, 100 px long) is no glyph; a bar as long but thick
    (a large title's letter) and a short thin stroke (a dash) are kept."""
    mask = np.zeros((60, 200), dtype=bool)
    mask[10, 20:120] = True  # thin and long: an arrow's shaft
    mask[20:26, 20:120] = True  # thick: a title's `E` arm
    mask[40, 20:50] = True  # short: a dash
    assert np.array_equal(np.flatnonzero(thin_strokes(mask, 20).any(axis=1)), [10])
    image = draw_page([["alpha beta", "gamma delta", "epsilon zeta"]], size=24, page=(900, 900))
    ImageDraw.Draw(image).line((30, 98, 130, 98), fill="black")  # under `gamma` (shorter than a rule)
    underlined = page_layout(image, LINE_HEIGHT, SIDE).lines[1]
    assert all(piece.box[3] <= 96 for piece in underlined)


def test_a_small_first_word_as_dark_as_its_line_stays_with_it() -> None:
    """Only a first word both small and much fainter than its line (a grey line number) is
    scaled on its own: a word only x-high can measure as small as a number's digits, but it is
    as dark as the words after it."""
    image = draw_page([["alpha beta", "gamma delta", "epsilon"]], size=24, page=(600, 300))
    draw = ImageDraw.Draw(image)
    draw.text((30, 160), "are", fill="black", font=ImageFont.truetype(str(FONT), 13))
    draw.text((62, 160), "used here", fill="black", font=ImageFont.truetype(str(FONT), 24))
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    assert len(layout.lines) == 4 and len({piece.scale for piece in layout.lines[-1]}) == 1


@pytest.mark.parametrize("text", ["XXX.7 MAIN 327", "8870 1594"])
def test_a_line_of_capitals_or_digits_is_scaled_as_the_page_s_lines(text: str) -> None:
    """Capitals and digits are inked evenly top to bottom, so their x-height band is their whole
    ink; a line of them in the page's font is still measured near the page's size (before, as
    a line a third taller: 0.73 of its scale)."""
    lines = ["alpha beta gamma", "delta epsilon", text, "quietly heights"]
    layout = page_layout(draw_page([lines], size=24, page=(600, 300)), LINE_HEIGHT, SIDE)
    assert len(layout.lines) == 4
    assert layout.lines[2][0].scale > 0.9 * layout.lines[0][0].scale


def test_a_footnote_line_is_scaled_by_its_own_height() -> None:
    image = draw_page([["Large body text", "of the page", "goes on here"]], size=28, page=(600, 300))
    draw = ImageDraw.Draw(image)
    draw.text((30, 200), "quietly heights", fill="black", font=ImageFont.truetype(str(FONT), 14))
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    footnote = layout.crops(image, SIDE)[-len(layout.lines[-1]) :]
    for crop in footnote:  # at the page's scale its ink would be ~8 px tall
        rows = np.flatnonzero(ink_mask(np.asarray(crop.convert("L"))).any(axis=1))
        assert INK_TO_LINE * LINE_HEIGHT[0] - 1 <= rows[-1] + 1 - rows[0] <= LINE_HEIGHT[1]


def test_a_one_line_crop_in_the_training_range_is_read_as_it_is() -> None:
    image = draw_page([["word"]], size=17, page=(60, SIDE))
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    assert layout.pieces == [Piece((0, 0, 60, SIDE), SIDE / 2, 1.0)]
    (crop,) = layout.crops(image, SIDE)
    assert np.array_equal(np.asarray(crop)[:, 2:62], np.asarray(image))  # centred, not moved
    larger = page_layout(draw_page([["word"]], size=40, page=(200, SIDE)), LINE_HEIGHT, SIDE)
    assert larger.pieces[0].scale < 1  # out of the range: scaled and cut to its ink


def test_only_a_layout_of_several_lines_is_a_page() -> None:
    """A page's lines are scaled by its typical line; a crop of one or two lines by its own
    pixels (the reader tries such a crop at other zooms: `VaryConfig.crop_zooms`)."""
    assert page_layout(draw_page([LEFT]), LINE_HEIGHT, SIDE).page
    for lines in (["word"], LEFT[:2]):
        assert not page_layout(draw_page([lines], page=(300, 120)), LINE_HEIGHT, SIDE).page


def test_a_line_cut_by_a_blank_row_stays_one_line() -> None:
    """A coarse JPEG can leave one blank row through a line, above its descenders."""
    image = Image.new("RGB", (SIDE, SIDE), "white")
    ImageDraw.Draw(image).text(
        (SIDE / 2, SIDE / 2), "analog", fill="black", font=ImageFont.truetype(str(FONT), 16), anchor="mm"
    )
    rows = np.flatnonzero(ink_mask(np.asarray(image.convert("L"))).any(axis=1))
    cut = np.asarray(image).copy()
    cut[rows[0] + (rows[-1] + 1 - rows[0]) * 2 // 3] = 255  # its body above, a third below
    layout = page_layout(Image.fromarray(cut), LINE_HEIGHT, SIDE)
    assert layout.pieces == [Piece((0, 0, SIDE, SIDE), SIDE / 2, 1.0)]  # one line, read as it is


def test_frames_rules_and_figures_are_not_read() -> None:
    image = draw_page([LEFT], page=(500, 300))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 490, 160), outline="black", width=2)  # a frame around the text
    draw.line((20, 200, 480, 200), fill="black", width=3)  # a rule below it
    draw.rectangle((200, 220, 280, 295), fill="black")  # a figure
    layout = page_layout(image, LINE_HEIGHT, side=1024)
    assert read_back(layout, LEFT) == "\n".join(LEFT)


def test_light_text_on_dark_paper_reads_like_dark_on_light() -> None:
    dark = page_layout(draw_page([LEFT, RIGHT]), LINE_HEIGHT, SIDE)
    light = page_layout(draw_page([LEFT, RIGHT], ink="white"), LINE_HEIGHT, SIDE)
    assert [piece.box for piece in light.pieces] == [piece.box for piece in dark.pieces]
    assert light.paper == (0, 0, 0) and dark.paper == (255, 255, 255)


def test_faint_print_is_drawn_as_dark_as_dark_print() -> None:
    """Light grey text (its darkest pixel 166 on white paper) reaches the model as the same
    text in black would; black text, and light text on dark paper, are drawn as they are."""
    dark = draw_page([LEFT, RIGHT])
    faint = Image.fromarray(
        (255 - (255 - np.asarray(dark, dtype=np.float32)) * 0.35).round().astype(np.uint8)
    )
    layout = page_layout(faint, LINE_HEIGHT, SIDE)
    assert layout.pieces == page_layout(dark, LINE_HEIGHT, SIDE).pieces
    for drawn, black in zip(layout.crops(faint, SIDE), layout.crops(dark, SIDE), strict=True):
        drawn, black = np.asarray(drawn, dtype=np.int16), np.asarray(black, dtype=np.int16)
        assert drawn.min() <= 4 and np.abs(drawn - black).max() <= 24  # black, a little darker
    for page in (dark, draw_page([LEFT, RIGHT], ink="white")):
        paper = page_layout(page, LINE_HEIGHT, SIDE).paper
        assert darkened(page, paper) is page


def test_a_blank_page_has_no_pieces_and_joins_to_nothing() -> None:
    layout = page_layout(Image.new("RGB", (300, 200), "white"), LINE_HEIGHT, SIDE)
    assert layout.pieces == [] and layout.join([]) == ""
    with pytest.raises(ValueError, match="1 texts for 0 pieces"):
        layout.join(["stray"])


LISTING = ["\\ibibleverse{Exod}(20:17) Exodus 20:17;21:3", "\\newcommand*{\\do@lineL}[1]{% x:=y"]
PROSE = ["The quick brown fox jumps over the lazy dog, twice a day.", "Exodus 20:17;21:3 and 2 Corinthians"]


def draw_pdf_lines(lines: Sequence[str], font: str, zoom: float) -> tuple[Image.Image, list[list[Span]]]:
    """PDF lines at 9 pt in `font` after a line number in Times at 6 pt (as a listing's), rendered
    `zoom` times 72 dpi, and each line's words as the PDF places them ([left, right) in px)."""
    document = pymupdf.open()
    page = document.new_page(width=320, height=20 + 12 * len(lines))
    for row, text in enumerate(lines):
        page.insert_text((6, 20 + 12 * row), str(1008 + row), fontsize=6, fontname="tiro")
        page.insert_text((22, 20 + 12 * row), text, fontsize=9, fontname=font)
    words: list[list[Span]] = [[] for _ in lines]
    for x0, y0, x1, y1, *_ in page.get_text("words", sort=True):
        row = round(((y0 + y1) / 2 - 17) / 12)  # its baseline is about 3 pt under its middle
        words[row].append((round(x0 * zoom), round(x1 * zoom)))
    pixmap = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom))
    return Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples), words


def line_letters(image: Image.Image) -> list[tuple[list[Span], np.ndarray, np.ndarray, float]]:
    """Each text line's letters, `paper_share`, ink mask and line height, measured as
    `page_layout` does."""
    gray = dark_on_light(np.asarray(image.convert("L")))
    mask = ink_mask(gray)
    out = []
    for top, bottom in text_lines(mask):
        band = mask[top:bottom]
        start, stop = x_band(band)
        clear = paper_share(gray, (top, bottom), band, float(np.median(gray)))
        out.append((runs(band.any(axis=0)), clear, band, line_px(stop - start, bottom - top, None)))
    return out


@pytest.mark.parametrize("zoom", [1.2, 1.45, 2.0])
def test_a_typewriter_line_s_words_part_at_empty_cells_of_its_grid(zoom: float) -> None:
    """Courier's cells are 0.6 em wide: the grid its glyphs sit on is found to 1%. Between two
    narrow glyphs (`:` `1`, `(` `2`) a letter gap is wider than a quarter line, where words of
    proportional print part; on the grid, words part only at an empty cell, as the PDF sets
    them. The Times line number before the code is off the grid and keeps its gap."""
    image, words = draw_pdf_lines(LISTING, "cour", zoom)
    for (letters, clear, band, size), expected in zip(line_letters(image), words, strict=True):
        grid = typewriter_grid(letters, clear, size)
        assert grid is not None and grid[0] == pytest.approx(0.6 * 9 * zoom, rel=0.01)
        by_gaps = split_at_gaps(letters, WORD_GAP * size)
        assert len(by_gaps) > len(expected)  # what the proportional rule would do
        found = [(word[0][0], word[-1][1]) for word in typewriter_words(by_gaps, grid, clear, band, size)]
        assert len(found) == len(expected)
        for (left, right), (x0, x1) in zip(found, expected, strict=True):
            assert x0 - 1 <= left < right <= x1 + 1  # the ink of that word, inside its box


@pytest.mark.parametrize("zoom", [1.2, 1.45, 2.0])
def test_proportional_print_sits_on_no_grid(zoom: float) -> None:
    for lines, font in [(LISTING, "tiro"), (PROSE, "tiro"), (PROSE, "helv")]:
        image, _ = draw_pdf_lines(lines, font, zoom)
        for letters, clear, _, size in line_letters(image):
            assert typewriter_grid(letters, clear, size) is None


def test_a_typewriter_line_is_cut_into_pieces_at_its_words_and_glued_inside_them() -> None:
    """Through `page_layout`: a piece of a listing line starts a new word ("space") only where
    the PDF starts one; the cuts through its long words are between letters ("glued"), never
    a joint for the reader to decide."""
    image, words = draw_pdf_lines([*LISTING, LISTING[0]], "cour", 1.45)
    layout = page_layout(image, LINE_HEIGHT, SIDE)
    for line, expected in zip(layout.lines, words, strict=True):
        assert len(line) > len(expected)
        assert {piece.joint for piece in line} == {"space", "glued"}
        for piece in line:
            if piece.joint == "space":
                assert any(x0 - 1 <= piece.box[0] <= x0 + 0.3 * 9 * 1.45 for x0, _ in expected)
