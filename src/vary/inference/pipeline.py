"""`VaryPipeline`: a model folder in, text out, for one image, a PDF or thousands of pages.

    pipeline = VaryPipeline.from_pretrained("./out/quickstart/model")          # device/dtype "auto"
    pipeline("page.png").text                                     # one image -> one PageResult
    pipeline(["a.png", "b.pdf"], pages=PageSelection.parse("1-2"))  # many -> list, batched
    pipeline.chat("chart.png", "What is the highest bar?")       # Vary-base (chatml) models

Pages are batched with left padding, so every prompt ends where decoding starts and a batch
gives the same greedy text as one page at a time. Each result says why decoding ended: the
stop token, the token budget (`truncated`) or a loop (`repetition_stopped`). A small model
trained on one-line crops (`VaryConfig.line_height`, the built-in model) reads each page line
by line instead: the page is cut into crops (`vary.inference.layout`), they are read in batches
and their texts joined into the page's result.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from PIL import Image, ImageOps
from transformers import LogitsProcessorList, PreTrainedTokenizerBase, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer
from transformers.generation.utils import GenerateOutput

from vary.inference.layout import PageLayout, Piece, page_layout
from vary.inference.ngram import NGRAM_FILE, NgramFusion, TokenNgram, reading_log_prob
from vary.inference.repetition import RepetitionGuard, RepetitionStop, find_loop
from vary.inference.sources import (
    ALL_PAGES,
    FIRST_PAGE,
    PageInput,
    PageSelection,
    Rendering,
    Source,
    is_pdf_file,
    iter_pages,
)
from vary.model import VaryForCausalLM, VaryProcessor, load_pretrained, ocr_conversation
from vary.model.configuration import check_zooms
from vary.model.templates import IGNORE_INDEX
from vary.model.tokenizer import IM_END

T = TypeVar("T")
FinishReason = Literal["stop", "length", "repetition"]
Conversation = list[dict[str, str]]
CROPS_PER_CALL = 32  # one-line crops per generate call when a page is read line by line
LINE_PAGE_SIDE = 2048  # px, long side of a PDF page read line by line (10 pt text: ~30 px lines)
MAX_LINE_PAGE_SIDE = 4096  # px: a larger image is shrunk to this before it is cut (memory)


class ChatUnsupported(ValueError):
    """Chat asked of a Vary-tiny model (its plain template has no turns to put a question in),
    or a question asked of a model that reads pages line by line."""


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 2048  # lowered to what the language model's positions allow
    temperature: float = 0.0  # 0: greedy (reproducible OCR); > 0: sampling
    repetition: RepetitionGuard | None = field(default_factory=RepetitionGuard)
    num_beams: int | None = None  # None: the model folder's generation_config.json (1 if unset)
    # A line reader's zooms, pages' and crops' alike (VaryConfig.line_zooms, crop_zooms); None:
    # the model folder's config.json (1 if unset)
    zooms: tuple[float, ...] | None = None
    # Weight of the folder's n-gram model (VaryConfig.ngram_weight); None: the model's; 0: unused
    ngram_weight: float | None = None

    def __post_init__(self) -> None:
        if self.num_beams is not None and self.num_beams < 1:
            raise ValueError(f"num_beams must be at least 1, not {self.num_beams}")
        if self.ngram_weight is not None and self.ngram_weight < 0:
            raise ValueError(f"ngram_weight must be 0 or more, not {self.ngram_weight}")
        check_zooms(self.zooms)


DEFAULT_OPTIONS = GenerationOptions()


@dataclass
class PageResult:
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    seconds: float  # wall time of the generate call that produced this page (shared by its batch)
    batch_size: int
    source: str | None = None
    page: int | None = None
    score: float | None = None  # mean log-probability per token of the text, where it was asked for

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def repetition_stopped(self) -> bool:
        return self.finish_reason == "repetition"

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_json(self) -> dict[str, Any]:
        flags = {"num_tokens": self.num_tokens, "repetition_stopped": self.repetition_stopped}
        return asdict(self) | flags | {"truncated": self.truncated}


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" is the GPU when there is one; asking for CUDA without one is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "auto" is bfloat16 on GPU (fast, as the paper's models were trained) and float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"unknown dtype {name!r}: use auto, float32, bfloat16 or float16")
    return dtype


def conversation(question: str | None = None) -> Conversation:
    """The prompt of one page: the image alone (OCR) or the image then a question."""
    return ocr_conversation(question=f"\n{question}" if question else "")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class VaryPipeline:
    def __init__(
        self,
        model: VaryForCausalLM,
        processor: VaryProcessor,
        name: str = "vary",
        ngram: TokenNgram | None = None,
    ):
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.ngram = ngram

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "auto", dtype: str = "auto") -> VaryPipeline:
        """The model folder's weights, tokenizer and, where it has one, its n-gram model."""
        target = resolve_device(device)
        model, tokenizer, _ = load_pretrained(path, dtype=resolve_dtype(dtype, target))
        processor = VaryProcessor.from_config(model.config, tokenizer)
        ngram_file = Path(path) / NGRAM_FILE
        ngram = TokenNgram.load(ngram_file) if ngram_file.is_file() else None
        if ngram is not None and ngram.vocab_size != len(tokenizer):
            raise ValueError(
                f"{ngram_file} counts {ngram.vocab_size} tokens, the tokenizer has {len(tokenizer)}: "
                "fit it again with `vary ngram`"
            )
        return cls(model.to(target), processor, Path(path).name, ngram)

    # -- facts about the model ---------------------------------------------------------------
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def template(self) -> str:
        return self.processor.template.name

    @property
    def input_size(self) -> int:
        """Side of the square image the vision vocabulary reads (and of a crop read line by line)."""
        return self.processor.image_processor.vocabulary.size

    @property
    def line_height(self) -> list[int] | None:
        """[smallest, largest] px per line of a model that reads pages line by line, else None."""
        height = self.model.config.line_height
        return None if height is None else list(height)

    @property
    def rendering(self) -> Rendering:
        """How PDF pages are drawn for this model: its square input, or large at their own aspect."""
        if self.line_height is None:
            return Rendering(self.input_size)
        return Rendering(LINE_PAGE_SIDE, square=False)

    def require_chat(self) -> None:
        if self.template != "chatml":
            raise ChatUnsupported(
                f"model {self.name!r} uses the {self.template!r} template (Vary-tiny): it only reads"
                " pages; chat needs a Vary-base model (chatml template)"
            )

    # -- calls -------------------------------------------------------------------------------
    def __call__(
        self,
        inputs: Source | Sequence[Source],
        question: str | None = None,
        *,
        pages: PageSelection = ALL_PAGES,
        batch_size: int = 8,
        options: GenerationOptions = DEFAULT_OPTIONS,
    ) -> PageResult | list[PageResult]:
        """OCR (or answer `question` about) an image, a PDF page, a PDF path, or a list of them.

        One image or page gives one `PageResult`; a list or a PDF path gives a list (a PDF
        path's pages are chosen by `pages`).
        """
        single = not isinstance(inputs, list | tuple)
        sources = [inputs] if single else list(inputs)
        page_inputs = (page for source in sources for page in iter_pages(source, self.rendering, pages))
        results = list(self.stream(page_inputs, question, batch_size=batch_size, options=options))
        return results[0] if single and not is_pdf_file(inputs) else results

    def chat(
        self,
        image: Source,
        question: str,
        options: GenerationOptions = DEFAULT_OPTIONS,
        streamer: BaseStreamer | None = None,
    ) -> PageResult:
        """Answer a question about one image, or a PDF's first page (Vary-base models)."""
        self.require_chat()
        (page,) = iter_pages(image, self.rendering, FIRST_PAGE)
        (result,) = self.run([page], [conversation(question)], options, streamer)
        return result

    def stream(
        self,
        pages: Iterable[PageInput],
        question: str | None = None,
        *,
        batch_size: int = 8,
        options: GenerationOptions = DEFAULT_OPTIONS,
        streamer: BaseStreamer | None = None,
    ) -> Iterator[PageResult]:
        """Results in input order, `batch_size` pages per generate call, pages read lazily."""
        for batch in batched(pages, batch_size):
            yield from self.run(batch, [conversation(question)] * len(batch), options, streamer)

    def run(
        self,
        pages: Sequence[PageInput],
        conversations: Sequence[Conversation],
        options: GenerationOptions = DEFAULT_OPTIONS,
        streamer: BaseStreamer | None = None,
    ) -> list[PageResult]:
        """Page i read with conversation i: in one batched generate call, or line by line."""
        if self.line_height is None:
            return self.generate(pages, conversations, options, streamer)
        if streamer is not None:
            raise ValueError(f"model {self.name!r} reads line by line: it has no one sequence to stream")
        pairs = zip(pages, conversations, strict=True)
        return [self.read_lines(page, turns, options) for page, turns in pairs]

    def read_lines(self, page: PageInput, turns: Conversation, options: GenerationOptions) -> PageResult:
        """One page cut into one-line crops (`vary.inference.layout`), read in batches (a doubtful
        reading again at each other zoom, the model's likeliest kept), joined."""
        if turns != conversation():
            raise ChatUnsupported(f"model {self.name!r} reads pages line by line: it takes no question")
        start = time.perf_counter()
        image = page.image
        if max(image.size) > MAX_LINE_PAGE_SIDE:
            image = ImageOps.contain(image, (MAX_LINE_PAGE_SIDE,) * 2, Image.Resampling.LANCZOS)
        layout = page_layout(image, self.line_height, self.input_size)
        side, (first_zoom, *others) = self.input_size, self.zooms(options, layout.page)
        first = [piece.zoomed(first_zoom, side) for piece in layout.pieces]
        open_ends = layout.open_ends
        parts = self.read_pieces(page, image, layout, first, open_ends, options, scored=bool(others))
        doubt = self.model.config.line_doubt
        looks = {i: [(piece, part)] for i, (piece, part) in enumerate(zip(first, parts, strict=True))}
        for zoom in others:  # a doubtful reading is read again at each other zoom
            zoomed = [piece.zoomed(zoom, side) for piece in layout.pieces]
            again = [
                i
                for i, part in enumerate(parts)
                if zoomed[i] != first[i] and (doubt is None or part.score < doubt)
            ]
            pieces, ends = [zoomed[i] for i in again], [open_ends[i] for i in again]
            # only a crop's looks are judged by their own scores (a page's: `likeliest_readings`)
            readings = self.read_pieces(page, image, layout, pieces, ends, options, scored=not layout.page)
            for i, piece, part in zip(again, pieces, readings, strict=True):
                looks[i].append((piece, part))
        if layout.page:  # looks alike: each reading judged on all of them
            for i, reading in self.likeliest_readings(image, layout, looks, open_ends, options).items():
                parts[i] = reading
        else:  # a crop's larger look is the better one: each reading judged on its own look
            parts = [max((part for _, part in pairs), key=lambda r: r.score) for pairs in looks.values()]
        reasons = {part.finish_reason for part in parts}
        reason = next((r for r in ("repetition", "length") if r in reasons), "stop")
        return PageResult(
            text=layout.join(
                [part.text for part in parts], self.spaced if self.ngram_weight(options) else None
            ),
            token_ids=[token for part in parts for token in part.token_ids],
            finish_reason=reason,
            prompt_tokens=sum(part.prompt_tokens for part in parts),
            seconds=time.perf_counter() - start,
            batch_size=min(len(parts), CROPS_PER_CALL),
            source=page.source,
            page=page.page,
        )

    def likeliest_readings(
        self,
        image: Image.Image,
        layout: PageLayout,
        looks: dict[int, list[tuple[Piece, PageResult]]],
        open_ends: Sequence[bool],
        options: GenerationOptions,
    ) -> dict[int, PageResult]:
        """For each piece whose looks (`looks[i]`: each look and its reading) read it differently,
        the reading that decoding's own objective (the model's log-probability plus the n-gram
        model's at its weight) finds likeliest summed over all the looks: every reading scored
        on every look. Judged on its own look alone, a reading that one look gets confidently
        wrong outvotes the looks that show otherwise (`amoy` for `annoy`)."""
        asked = [
            (i, j, text)
            for i, pairs in looks.items()
            if len(texts := dict.fromkeys(part.text for _, part in pairs)) > 1
            for text in texts
            for j in range(len(pairs))
        ]
        crops = layout.crops(image, self.input_size, [looks[i][j][0] for i, j, _ in asked])
        model = dict(zip(asked, self.log_likelihoods(crops, [text for *_, text in asked]), strict=True))
        weight = self.ngram_weight(options)

        def objective(i: int, text: str) -> float:
            n = len(looks[i])
            fused = n * weight * self.ngram_log_prob(text, open_ends[i]) if weight else 0.0
            return sum(model[i, j, text] for j in range(n)) + fused

        return {
            i: max((part for _, part in looks[i]), key=lambda part: objective(i, part.text))
            for i in dict.fromkeys(i for i, _, _ in asked)
        }

    @torch.inference_mode()
    def log_likelihoods(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]:
        """The model's log-probability of text i (its stop included) as the reading of image i."""
        totals: list[float] = []
        for chunk in batched(list(zip(images, texts, strict=True)), CROPS_PER_CALL):
            batch = self.processor([im for im, _ in chunk], [ocr_conversation(text) for _, text in chunk])
            batch = {k: v.to(self.device) for k, v in batch.items()}
            labels = batch.pop("labels")[:, 1:]
            logits = self.model(**batch).logits[:, :-1].float()
            token = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            totals += (token * (labels != IGNORE_INDEX)).sum(1).tolist()
        return totals

    def read_pieces(
        self,
        page: PageInput,
        image: Image.Image,
        layout: PageLayout,
        pieces: Sequence[Piece],
        open_ends: Sequence[bool],
        options: GenerationOptions,
        scored: bool,
    ) -> list[PageResult]:
        """Pieces of a page (`image`, the page's image as cut) read in batches of CROPS_PER_CALL
        (`open_ends`: as in `generate`)."""
        crops = [
            PageInput(crop, page.source, page.page) for crop in layout.crops(image, self.input_size, pieces)
        ]
        batches = zip(batched(crops, CROPS_PER_CALL), batched(open_ends, CROPS_PER_CALL), strict=True)
        return [
            part
            for batch, ends in batches
            for part in self.generate(
                batch, [conversation()] * len(batch), options, scored=scored, open_ends=ends
            )
        ]

    @torch.inference_mode()
    def generate(
        self,
        pages: Sequence[PageInput],
        conversations: Sequence[Conversation],
        options: GenerationOptions = DEFAULT_OPTIONS,
        streamer: BaseStreamer | None = None,
        scored: bool = False,
        open_ends: Sequence[bool] = (),
    ) -> list[PageResult]:
        """One batched generate call: page i is read with conversation i; `scored` also gives
        each text's likelihood (`PageResult.score`); `open_ends[i]`: page i is a crop that may
        end inside a word (the n-gram model holds no stop back there)."""
        beams = self.num_beams(options)
        if streamer is not None and (len(pages) > 1 or beams > 1):
            raise ValueError("a streamer shows one greedy sequence: stream one page with num_beams=1")
        if open_ends and len(open_ends) != len(pages):
            raise ValueError(f"{len(open_ends)} open ends for {len(pages)} pages")
        batch = self.processor([p.image for p in pages], list(conversations), padding_side="left")
        batch.pop("labels")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        prompt_length = batch["input_ids"].shape[1]
        stop_ids = self.stop_token_ids()
        guard = RepetitionStop(options.repetition, prompt_length) if options.repetition else None
        sampling = {"temperature": options.temperature} if options.temperature > 0 else {}
        fusion = self.ngram_fusion(options, prompt_length, stop_ids, open_ends)
        start = time.perf_counter()
        output = self.model.generate(
            **batch,
            max_new_tokens=self._token_budget(prompt_length, options.max_new_tokens),
            do_sample=options.temperature > 0,
            num_beams=beams,
            eos_token_id=stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([guard] if guard else []),
            streamer=streamer,
            output_scores=scored,
            return_dict_in_generate=True,
            logits_processor=LogitsProcessorList([fusion] if fusion is not None else []),
            **sampling,
        )
        generated = output.sequences[:, prompt_length:].tolist()
        steps = self.token_log_probs(output, beams, fusion) if scored else None
        seconds = time.perf_counter() - start
        end_ids = {*stop_ids, self.tokenizer.pad_token_id}  # generate pads a row after it ends
        results = []
        for row, (page, ids) in enumerate(zip(pages, generated, strict=True)):
            prompt_tokens = int(batch["attention_mask"][row].sum())
            ids, reason = self._finish(ids, end_ids, options)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            score = None if steps is None else steps[row, : len(ids) + (reason == "stop")].mean().item()
            results.append(
                PageResult(
                    text, ids, reason, prompt_tokens, seconds, len(pages), page.source, page.page, score
                )
            )
        return results

    def token_log_probs(
        self, output: GenerateOutput, beams: int, fusion: NgramFusion | None = None
    ) -> torch.Tensor:
        """(rows, generated tokens): the model's log-probability of each token generated, its
        stop token included (the scores beam search keeps are log-probabilities already; an
        n-gram model's share of them is taken back out: a reading's doubt is the model's own)."""
        scores = output.scores
        if fusion is not None:
            scores = tuple(step - added for step, added in zip(scores, fusion.added, strict=True))
        beam_indices = getattr(output, "beam_indices", None) if beams > 1 else None
        return self.model.compute_transition_scores(
            output.sequences, scores, beam_indices, normalize_logits=beams == 1
        )

    def ngram_weight(self, options: GenerationOptions) -> float:
        """Weight of the folder's n-gram model: the options' own, else the model's
        (`VaryConfig.ngram_weight`); 0 where the folder has none."""
        if self.ngram is None:
            return 0.0
        if options.ngram_weight is not None:
            return options.ngram_weight
        return self.model.config.ngram_weight or 0.0

    def ngram_fusion(
        self, options: GenerationOptions, prompt_length: int, stop_ids: list[int], open_ends: Sequence[bool]
    ) -> NgramFusion | None:
        """The folder's n-gram model at `ngram_weight`; None where that is 0. A reading starts
        where a word does, and ends where one does unless its end is open."""
        weight = self.ngram_weight(options)
        if self.ngram is None or weight == 0:
            return None
        space, newline = self.word_end_ids
        return NgramFusion(self.ngram, weight, prompt_length, [space], stop_ids, [space, newline], open_ends)

    def ngram_log_prob(self, text: str, open_end: bool = False) -> float:
        """The n-gram model's log-probability of a crop's reading, as its fusion scores it."""
        assert self.ngram is not None
        space, newline = self.word_end_ids
        tokens = self.tokenizer.encode(text, add_special_tokens=False)
        return reading_log_prob(self.ngram, tokens, [space], [space, newline], open_end)

    def spaced(self, before: str, after: str) -> bool:
        """Whether two readings of a line cut where a narrow space could be are two words: the
        n-gram model's likelier joint (`before`: the line so far; `after`: the next reading)."""
        assert self.ngram is not None
        encode = functools.partial(self.tokenizer.encode, add_special_tokens=False)
        return self.ngram.log_prob(encode(f"{before} {after}")) > self.ngram.log_prob(encode(before + after))

    @functools.cached_property
    def word_end_ids(self) -> tuple[int, int]:
        """The tokens of a space and of a line break (where a reading starts and may end)."""
        space, newline = (self.tokenizer.encode(s, add_special_tokens=False)[0] for s in (" ", "\n"))
        return space, newline

    # -- helpers -----------------------------------------------------------------------------
    def num_beams(self, options: GenerationOptions) -> int:
        """Beams of a generate call: the options' own, else the model's default (its folder's
        `generation_config.json`, where a shipped OCR model can ask for beam search)."""
        if options.num_beams is not None:
            return options.num_beams
        return self.model.generation_config.num_beams or 1

    def zooms(self, options: GenerationOptions, page: bool = True) -> tuple[float, ...]:
        """Zooms a line reader reads each piece of a page (or of a crop: `page` False) at: the
        options' own, else the model's (`VaryConfig.line_zooms`, `crop_zooms`, where a shipped
        model can ask for several), else just 1."""
        if options.zooms is not None:
            return options.zooms
        config = self.model.config
        zooms = config.line_zooms if page or config.crop_zooms is None else config.crop_zooms
        return tuple(zooms or (1.0,))

    def stop_token_ids(self) -> list[int]:
        """End of an answer: the tokenizer's eos, and `<|im_end|>` for the chatml template."""
        ids = [self.tokenizer.eos_token_id]
        if self.template == "chatml":
            ids.append(self.tokenizer.convert_tokens_to_ids(IM_END))
        return ids

    def _token_budget(self, prompt_length: int, requested: int) -> int:
        positions = getattr(self.model.config.text_config, "max_position_embeddings", None)
        if positions is None:
            return requested
        if positions <= prompt_length:
            raise ValueError(f"the prompt ({prompt_length} tokens) fills the model's {positions} positions")
        return min(requested, positions - prompt_length)

    @staticmethod
    def _finish(
        ids: list[int], end_ids: set[int], options: GenerationOptions
    ) -> tuple[list[int], FinishReason]:
        """Cut one row's generated ids where its answer ends, and say why it ended.

        A row stopped by the repetition guard is padded after its loop, so a loop at the end
        of the row's text is how it is told apart (the guard stops a loop as soon as it forms,
        before any stop token could follow it); only the loop's first copy is kept.
        """
        end = next((i for i, token in enumerate(ids) if token in end_ids), None)
        text = ids if end is None else ids[:end]
        loop = find_loop(text, options.repetition) if options.repetition else None
        if loop:
            return text[: loop.start + loop.period], "repetition"
        return text, "length" if end is None else "stop"
