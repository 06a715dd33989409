"""VaryPipeline on tiny random models: batching, PDF pages, chat, flags, devices.

Also the helpers the other inference tests import: saved tiny models, noise pages, PDFs.
Random models write garbage, so tests compare runs with each other (batched vs alone, a PDF
page vs the same page rendered by hand), never with expected text.
"""

from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import numpy as np
import pymupdf
import pytest
import torch
from PIL import Image

import vary.inference.pipeline
from conftest import CORPUS, tiny_model_config
from test_infer_layout import draw_page
from vary.inference import ChatUnsupported, GenerationOptions, PageSelection, VaryPipeline
from vary.inference.layout import Piece, page_layout
from vary.inference.pipeline import (
    CROPS_PER_CALL,
    LINE_PAGE_SIDE,
    MAX_LINE_PAGE_SIDE,
    PageResult,
    conversation,
    resolve_device,
    resolve_dtype,
)
from vary.inference.sources import InputError, PageInput, Rendering, iter_pages, render_page
from vary.model import TokenizerConfig, build_model, build_tokenizer, save_pretrained
from vary.model.tokenizer import IM_END

# Large initial weights make the random LMs' logits peaked, so greedy argmax has no near-ties
# and left padding cannot flip a token between a batch and a single run.
PEAKED = {"tiny": {"init_std": 0.5}, "base": {"initializer_range": 0.5}}
SHORT = GenerationOptions(max_new_tokens=12)
_MODELS = tempfile.TemporaryDirectory(prefix="vary-infer-models-")


@functools.cache
def saved_model(kind: str) -> Path:
    """A tiny random Vary-tiny ("tiny", plain template) or Vary-base ("base", chatml) folder."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer(TokenizerConfig(vocab_size=400), texts=CORPUS)
    spec = tiny_model_config(kind)
    spec.language_model |= PEAKED[kind]
    path = Path(_MODELS.name) / kind
    save_pretrained(build_model(spec, tokenizer), tokenizer, path)
    return path


def noise(seed: int, size: int = 64) -> Image.Image:
    """A blocky random page: different seeds give clearly different model outputs."""
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_pdf(path: Path, seeds: list[int]) -> Path:
    """A PDF with one noise picture per page (seed i on page i + 1)."""
    document = pymupdf.open()
    for seed in seeds:
        page = document.new_page(width=300, height=400)
        page.insert_image(page.rect, stream=png_bytes(noise(seed)))
    document.save(path)
    document.close()
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: extra threads only add synchronisation, and cost 10x on a shared CPU."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["tiny", "base"])
def pipeline(request) -> VaryPipeline:
    return VaryPipeline.from_pretrained(saved_model(request.param))


@pytest.fixture(scope="module")
def base() -> VaryPipeline:
    return VaryPipeline.from_pretrained(saved_model("base"))


def test_batched_equals_one_by_one(pipeline):
    images = [noise(seed) for seed in range(5)]
    batched = pipeline(images, batch_size=3, options=SHORT)
    assert [r.batch_size for r in batched] == [3, 3, 3, 2, 2]
    for image, together in zip(images, batched, strict=True):
        alone = pipeline(image, options=SHORT)
        assert alone.batch_size == 1
        assert (alone.token_ids, alone.finish_reason, alone.text) == (
            together.token_ids,
            together.finish_reason,
            together.text,
        )
    assert len({tuple(r.token_ids) for r in batched}) > 1  # the image matters


def test_pdf_page_selection(base, tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", [11, 12, 13])
    results = base(pdf, pages=PageSelection.parse("2-"), options=SHORT)
    assert [(r.source, r.page) for r in results] == [(str(pdf), 2), (str(pdf), 3)]
    with pymupdf.open(pdf) as document:
        by_hand = [base(render_page(document[n], base.rendering), options=SHORT) for n in range(3)]
        page_object = base(document[2], options=SHORT)  # a PyMuPDF page is one input
    assert [r.token_ids for r in results] == [by_hand[1].token_ids, by_hand[2].token_ids]
    assert by_hand[0].token_ids != by_hand[1].token_ids
    assert page_object.page == 3 and page_object.token_ids == by_hand[2].token_ids
    # a one-page selection of a PDF path is still a list; a missing page is an error
    assert len(base(pdf, pages=PageSelection.parse("1"), options=SHORT)) == 1
    with pytest.raises(InputError, match="no selected page exists"):
        base(pdf, pages=PageSelection.parse("7"))


def test_page_selection_parsing():
    assert PageSelection.parse("1-3,5,8-").select(10) == [1, 2, 3, 5, 8, 9, 10]
    assert PageSelection.parse(None).select(3) == [1, 2, 3]
    assert PageSelection.parse("2,2,1").select(1) == [1]
    for bad in ("0", "3-1", "a", "1-2-3"):
        with pytest.raises(ValueError, match="bad page selection"):
            PageSelection.parse(bad)


def test_pdf_render_size(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", [1])
    (page,) = iter_pages(pdf, Rendering(64))
    assert page.image.size == (64, 64) and page.image.mode == "RGB"
    (page,) = iter_pages(pdf, Rendering(200, square=False))  # a 300 x 400 pt page, its aspect kept
    assert page.image.size == (150, 200)


@pytest.fixture
def line_reader() -> VaryPipeline:
    """The tiny random Vary-tiny, told it was trained on one-line crops (as the built-in model)."""
    reader = VaryPipeline.from_pretrained(saved_model("tiny"))
    reader.model.config.line_height = [15, 22]
    return reader


def test_a_line_reader_reads_a_page_crop_by_crop(line_reader):
    page = draw_page([["alpha beta", "gamma delta", "epsilon"], ["one two", "three", "four"]])
    layout = page_layout(page, [15, 22], line_reader.input_size)
    crops = [PageInput(crop, "<image>") for crop in layout.crops(page, line_reader.input_size)]
    assert 6 <= len(crops) <= CROPS_PER_CALL
    by_hand = line_reader.generate(crops, [conversation()] * len(crops), SHORT)
    result = line_reader(page, options=SHORT)
    assert result.token_ids == [token for crop in by_hand for token in crop.token_ids]
    assert result.text == layout.join([crop.text for crop in by_hand])
    assert result.text.count("\n\n") >= 1 and result.batch_size == len(crops)  # two columns
    assert result.prompt_tokens == sum(crop.prompt_tokens for crop in by_hand)


@pytest.mark.parametrize("beams", [1, 3])
def test_a_scored_reading_carries_its_mean_log_probability(line_reader, beams):
    """The score that picks between zooms is the model's own likelihood of the text it wrote:
    teacher-forcing the text (and its stop token) through the model gives the same mean."""
    pages = [PageInput(noise(seed), "<image>") for seed in (1, 2)]
    options = GenerationOptions(max_new_tokens=12, num_beams=beams)
    results = line_reader.generate(pages, [conversation()] * 2, options, scored=True)
    for page, result in zip(pages, results, strict=True):
        assert result.score == pytest.approx(teacher_forced_score(line_reader, page, result), abs=1e-4)


def teacher_forced_score(reader: VaryPipeline, page: PageInput, result) -> float:
    """The model's mean log-probability of a result's tokens (and stop token) on its page."""
    batch = reader.processor([page.image], [conversation()])
    ids = result.token_ids + [reader.tokenizer.eos_token_id] * (result.finish_reason == "stop")
    prompt = batch["input_ids"].shape[1]
    text = torch.cat([batch["input_ids"], torch.tensor([ids])], dim=1)
    with torch.no_grad():
        logits = reader.model(input_ids=text, pixel_values=batch["pixel_values"]).logits
    log_probs = logits[0, prompt - 1 : -1].log_softmax(-1).gather(1, torch.tensor(ids)[:, None])
    return log_probs.mean().item()


def test_log_likelihoods_are_the_teacher_forced_log_probabilities_of_any_texts(line_reader):
    """Any text, not only one the model wrote, gets the log-probability that teacher forcing
    gives it (and its stop) on its image; texts of different lengths share one padded batch."""
    images = [noise(seed) for seed in (1, 2, 3)]
    texts = ["alpha", "be", "gamma delta"]
    totals = line_reader.log_likelihoods(images, texts)
    for image, text, total in zip(images, texts, totals, strict=True):
        assert total == pytest.approx(forced_total(line_reader, text, image), abs=1e-3)


def forced_reading(reader: VaryPipeline, text: str, image: Image.Image) -> PageResult:
    """`text` as if the model had read it on `image`: a stopped reading, scored by teacher forcing."""
    result = PageResult(text, reader.tokenizer.encode(text, add_special_tokens=False), "stop", 0, 0, 1)
    result.score = teacher_forced_score(reader, PageInput(image, "<image>"), result)
    return result


def forced_total(reader: VaryPipeline, text: str, image: Image.Image) -> float:
    """The model's log-probability of `text` and its stop on `image`, by teacher forcing."""
    reading = forced_reading(reader, text, image)
    return reading.score * (reading.num_tokens + 1)


def piece_looks(reader: VaryPipeline, texts: list[str]):
    """A drawn page, its layout, and its first piece seen at three zooms, look i read as texts[i]."""
    page = draw_page([["alpha beta", "gamma"]])
    layout = page_layout(page, [15, 22], reader.input_size)
    side = reader.input_size
    pieces = [layout.pieces[0], layout.pieces[0].zoomed(1.3, side), layout.pieces[0].zoomed(0.7, side)]
    crops = layout.crops(page, side, pieces)
    readings = [forced_reading(reader, text, image) for text, image in zip(texts, crops, strict=True)]
    return page, layout, crops, {0: list(zip(pieces, readings, strict=True))}


def test_a_piece_read_at_several_zooms_keeps_the_reading_likeliest_over_all_its_looks(line_reader):
    """Each reading is scored on every look of its piece and the log-probabilities summed: the
    choice is the argmax of those sums, worked out here by teacher forcing; a piece whose
    looks agree keeps its first reading."""
    texts = ["alpha beta", "alpha", "beta"]
    page, layout, crops, looks = piece_looks(line_reader, texts)
    looks[1] = [(layout.pieces[1], forced_reading(line_reader, "gamma", crops[0]))] * 2
    sums = [sum(forced_total(line_reader, text, image) for image in crops) for text in texts]
    assert np.argmax(sums) != 0  # not the first look's reading
    chosen = line_reader.likeliest_readings(page, layout, looks, [False, False], SHORT)
    assert list(chosen) == [0] and chosen[0].text == texts[int(np.argmax(sums))]


def test_a_crop_is_read_at_the_crop_zooms_and_a_page_at_the_line_zooms(line_reader, monkeypatch):
    """Every reading doubted (`line_doubt` None), so each piece is read at each zoom of its
    kind; `GenerationOptions.zooms` stands for both."""
    line_reader.model.config.line_zooms, line_reader.model.config.crop_zooms = [1.0, 1.2], [1.0, 2.0]
    factors = []
    zoomed = Piece.zoomed

    def spy(piece, factor, side):
        factors.append(factor)
        return zoomed(piece, factor, side)

    monkeypatch.setattr(Piece, "zoomed", spy)
    page = draw_page([["alpha beta", "gamma", "delta"]])
    crop = draw_page([["alpha"]], page=(160, 90))
    for image, zooms in ((page, {1.0, 1.2}), (crop, {1.0, 2.0})):
        factors.clear()
        line_reader(image, options=SHORT)
        assert set(factors) == zooms
    factors.clear()
    line_reader(crop, options=GenerationOptions(max_new_tokens=4, zooms=(1.0, 1.5)))
    assert set(factors) == {1.0, 1.5}


def test_a_pages_readings_are_judged_on_all_looks_a_crops_on_its_own(line_reader, monkeypatch):
    """A page's looks are alike (1x, 1.2x): its pieces' readings go to `likeliest_readings`. A
    crop's larger look is the better one: it keeps the reading its own look scored highest."""
    line_reader.model.config.line_zooms, line_reader.model.config.crop_zooms = [1.0, 1.2], [1.0, 2.0]
    line_reader.model.config.line_doubt = None  # every reading read again
    calls = []
    judge = line_reader.likeliest_readings

    def spy(image, layout, looks, *args):
        calls.append({i: len(pairs) for i, pairs in looks.items()})
        return judge(image, layout, looks, *args)

    monkeypatch.setattr(line_reader, "likeliest_readings", spy)
    page = draw_page([["alpha beta", "gamma", "delta"]])
    line_reader(page, options=SHORT)
    assert len(calls) == 1 and max(calls[0].values()) == 2  # (a piece filling the square: read once)
    crop = draw_page([["alpha"]], page=(160, 90))
    layout = page_layout(crop, [15, 22], line_reader.input_size)
    (piece,) = layout.pieces
    looks = layout.crops(crop, line_reader.input_size, [piece, piece.zoomed(2.0, line_reader.input_size)])
    readings = line_reader.generate(
        [PageInput(look, "<image>") for look in looks], [conversation()] * 2, SHORT, scored=True
    )
    assert line_reader(crop, options=SHORT).text == layout.join([max(readings, key=lambda r: r.score).text])
    assert len(calls) == 1


def test_a_line_reader_says_which_crops_end_inside_a_word(line_reader, monkeypatch):
    """A word too wide for one crop is cut into parts: every part but its last ends inside the
    word, and the reader tells `generate` so (where an n-gram model would hold back a stop)."""
    line_reader.model.config.line_zooms = None  # each piece read once
    page = draw_page([["internationalization", "x", "y"]], size=40)
    expected = page_layout(page, [15, 22], line_reader.input_size).open_ends
    assert expected[0] and not expected[-1]
    told = []
    generate = line_reader.generate

    def spy(*args, open_ends=(), **kwargs):
        told.extend(open_ends)
        return generate(*args, open_ends=open_ends, **kwargs)

    monkeypatch.setattr(line_reader, "generate", spy)
    line_reader(page, options=SHORT)
    assert told == expected
    with pytest.raises(ValueError, match="1 open ends for 2 pages"):
        generate([PageInput(noise(1), "<image>")] * 2, [conversation()] * 2, SHORT, open_ends=[True])


def test_a_line_reader_shrinks_a_huge_image_before_cutting_it(line_reader, monkeypatch):
    seen = []

    def cut(image, line_height, side):
        seen.append(image.size)
        return page_layout(image, line_height, side)

    monkeypatch.setattr(vary.inference.pipeline, "page_layout", cut)
    page = draw_page([["alpha beta", "gamma"]], size=100, page=(MAX_LINE_PAGE_SIDE + 904, 400))
    assert line_reader(page, options=SHORT).text.count("\n") >= 1
    assert seen == [(MAX_LINE_PAGE_SIDE, round(400 * MAX_LINE_PAGE_SIDE / page.width))]


def test_a_line_reader_draws_pdf_pages_at_their_aspect(line_reader, tmp_path):
    assert line_reader.rendering == Rendering(LINE_PAGE_SIDE, square=False)
    (page,) = iter_pages(make_pdf(tmp_path / "doc.pdf", [1]), line_reader.rendering)
    assert page.image.size == (LINE_PAGE_SIDE * 3 // 4, LINE_PAGE_SIDE)


def test_a_line_reader_takes_no_question_and_streams_nothing(line_reader):
    with pytest.raises(ChatUnsupported, match="line by line"):
        line_reader(noise(1), "What is this?")
    with pytest.raises(ValueError, match="line by line"):
        line_reader.stream([PageInput(noise(1), "<image>")], options=SHORT, streamer=object()).__next__()


def test_result_flags_and_json(base):
    result = base(noise(3), options=GenerationOptions(max_new_tokens=3, repetition=None))
    assert result.truncated and not result.repetition_stopped and result.num_tokens == 3
    record = result.to_json()
    expected = {"text", "token_ids", "num_tokens", "finish_reason", "prompt_tokens", "seconds", "batch_size"}
    assert expected | {"source", "page", "score", "repetition_stopped", "truncated"} == set(record)
    assert record["score"] is None  # a likelihood only where one is asked for
    assert record["prompt_tokens"] == result.prompt_tokens > base.model.config.num_image_tokens


def test_chat_needs_a_chatml_model(base):
    tiny = VaryPipeline.from_pretrained(saved_model("tiny"))
    with pytest.raises(ChatUnsupported, match="Vary-base"):
        tiny.chat(noise(1), "What is this?")
    assert tiny(noise(1), "What is this?").finish_reason in ("stop", "length")  # the harness' call
    answer = base.chat(noise(1), "What is this?", options=SHORT)
    assert answer.token_ids == base(noise(1), "What is this?", options=SHORT).token_ids
    assert answer.token_ids != base(noise(1), options=SHORT).token_ids  # the question is in the prompt
    assert base.stop_token_ids()[-1] == base.tokenizer.convert_tokens_to_ids(IM_END)


def test_device_and_dtype_selection():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_bfloat16_runs():
    pipeline = VaryPipeline.from_pretrained(saved_model("tiny"), device="cpu", dtype="bfloat16")
    assert next(pipeline.model.parameters()).dtype == torch.bfloat16
    assert pipeline(noise(2), options=GenerationOptions(max_new_tokens=4)).finish_reason in ("stop", "length")
