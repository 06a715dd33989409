"""`vary ocr`, `vary chat` and `vary serve`: the model as a command-line tool and a web service;
`vary ngram`: the n-gram model a folder's model decodes with.

    vary ocr scans/ report.pdf --pages 1-3 --format markdown --out texts/
    vary chat chart.png "Which year had the most sales?" --model out/vary-base
    vary serve --model out/vary-tiny --port 8000
    vary ngram out/src/texlive-latex-base-doc --model out/vary-tiny

`--model` defaults to the model shipped inside the package (`default_model_dir()`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, TextStreamer

import vary
from vary.cli import UserError
from vary.inference.documents import (
    Document,
    Format,
    count_pages,
    group_documents,
    output_path,
    readable_pages,
    render,
)
from vary.inference.pipeline import ChatUnsupported, GenerationOptions, VaryPipeline
from vary.inference.repetition import RepetitionGuard
from vary.inference.sources import InputError, PageSelection, expand_paths
from vary.reporting import ErrorLog, get_logger, progress, quiet_transformers, write_summary

log = get_logger("inference")


def default_model_dir() -> Path:
    """The model shipped inside the package, used when `--model` is not given."""
    return Path(vary.__file__).parent / "assets" / "default-model"


def register(subparsers: argparse._SubParsersAction) -> None:
    ocr = subparsers.add_parser("ocr", help="read images and PDFs into text")
    ocr.add_argument("inputs", nargs="+", metavar="INPUT", help="images, PDFs or folders of them")
    ocr.add_argument("--pages", help="PDF pages, 1-based: 1-3,5,8- (default: all)")
    ocr.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    ocr.add_argument("--out", type=Path, help="write one file per input here (default: stdout)")
    ocr.add_argument("--batch-size", type=int, default=8, help="pages per generate call")
    ocr.add_argument("--prompt", help="a question or instruction after the image (Vary-base models)")
    _add_model_arguments(ocr)
    ocr.set_defaults(func=run_ocr)

    chat = subparsers.add_parser("chat", help="ask a Vary-base model about an image")
    chat.add_argument("image")
    chat.add_argument("question")
    _add_model_arguments(chat)
    chat.set_defaults(func=run_chat)

    serve = subparsers.add_parser("serve", help="HTTP API (OCR, chat, OpenAI-compatible) and web page")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--batch-size", type=int, default=8, help="most pages per generate call")
    serve.add_argument("--max-upload-mb", type=float, default=20.0)
    serve.add_argument("--max-pages", type=int, default=16, help="most PDF pages per request")
    _add_model_arguments(serve)
    serve.set_defaults(func=run_serve)

    ngram = subparsers.add_parser(
        "ngram", help="fit a model folder's n-gram model (added to its scores as it decodes)"
    )
    ngram.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="PDFs, folders of them, .txt files (held out: skipped)"
    )
    ngram.add_argument("--model", type=Path, required=True, help="writes its ngram.safetensors")
    ngram.add_argument("--order", type=int, default=6, help="longest n-gram counted, in tokens")
    ngram.add_argument("--min-count", type=int, default=4, help="n-grams seen fewer times are dropped")
    ngram.add_argument("--weight", type=float, default=0.2, help="config.json's ngram_weight")
    ngram.add_argument("--max-pages", type=int, default=None, help="at most this many pages of a PDF")
    ngram.add_argument(
        "--latin-only",
        action="store_true",
        help="only pages whose letters are all Latin (no Greek, Cyrillic...)",
    )
    ngram.set_defaults(func=run_ngram)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="Vary model folder (default: the built-in model)")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=GenerationOptions.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    parser.add_argument("--no-repetition-guard", action="store_true", help="let loops run to the limit")
    parser.add_argument(
        "--num-beams", type=int, help="beam search width (default: the model's generation_config.json, or 1)"
    )
    parser.add_argument(
        "--zooms",
        help="a line-by-line model reads each crop at each zoom and keeps the likeliest reading,"
        " e.g. 1,1.2, on pages and lone crops alike (default: the model's config.json, its"
        " line_zooms and crop_zooms; 1 reads each once, fastest)",
    )
    parser.add_argument(
        "--ngram-weight",
        type=float,
        help="weight of the model folder's n-gram model as it decodes (default: its config.json; 0: unused)",
    )


def load_pipeline(args: argparse.Namespace) -> VaryPipeline:
    model_dir = args.model or default_model_dir()
    if not (model_dir / "config.json").is_file():
        if args.model is None:
            raise UserError(f"no built-in model at {model_dir} yet: pass --model DIR (a Vary model folder)")
        raise UserError(f"{model_dir}: not a Vary model folder (no config.json)")
    quiet_transformers()
    try:
        return VaryPipeline.from_pretrained(model_dir, device=args.device, dtype=args.dtype)
    except ValueError as err:  # no CUDA, unknown dtype
        raise UserError(str(err)) from err


def generation_options(args: argparse.Namespace) -> GenerationOptions:
    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be at least 1")
    guard = None if args.no_repetition_guard else RepetitionGuard()
    try:
        zooms = None if args.zooms is None else tuple(float(zoom) for zoom in args.zooms.split(","))
    except ValueError as err:
        raise UserError(f"--zooms {args.zooms!r}: numbers separated by commas, e.g. 1,1.2") from err
    try:
        return GenerationOptions(
            args.max_new_tokens, args.temperature, guard, args.num_beams, zooms, args.ngram_weight
        )
    except ValueError as err:  # --num-beams below 1, a zoom not above 0, a negative n-gram weight
        raise UserError(str(err)) from err


def terminal_streamer(pipeline: VaryPipeline, options: GenerationOptions) -> TextStreamer | None:
    """Text shown as it is generated, where decoding has one sequence to show (no beam search,
    no page read line by line)."""
    if pipeline.num_beams(options) > 1 or pipeline.line_height is not None:
        return None
    return TextStreamer(pipeline.tokenizer, skip_prompt=True, skip_special_tokens=True)


def run_ocr(args: argparse.Namespace) -> int:
    try:
        selection = PageSelection.parse(args.pages)
    except ValueError as err:
        raise UserError(str(err)) from err
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    sources = list(dict.fromkeys(expand_paths(args.inputs)))
    if not sources:
        raise UserError(f"no images or PDFs in {' '.join(args.inputs)}")
    options = generation_options(args)
    pipeline = load_pipeline(args)
    errors = ErrorLog(args.out / "errors.jsonl" if args.out else None)
    failures: dict[str, str] = {}
    # One input read to the terminal: show its text as it is generated.
    one_to_terminal = len(sources) == 1 and args.format == "text" and args.out is None
    streamer = terminal_streamer(pipeline, options) if one_to_terminal else None
    streaming = streamer is not None
    start = time.perf_counter()
    pages = readable_pages(sources, pipeline.rendering, selection, errors, failures)
    results = pipeline.stream(
        pages, args.prompt, batch_size=1 if streaming else args.batch_size, options=options, streamer=streamer
    )
    if not streaming:  # pages as the model finishes them (a page read line by line takes a while)
        results = progress(results, desc="ocr", total=count_pages(sources, selection), unit="page")
    documents = group_documents(results, failures)
    totals = _write_documents(documents, args, pipeline.name, echo=not streaming)
    seconds = time.perf_counter() - start
    log.info(
        "%d page(s) of %d file(s) in %.1f s (%.2f pages/s), %d token(s); %d file(s) failed",
        totals["pages"], len(sources), seconds, totals["pages"] / max(seconds, 1e-9), totals["tokens"],
        len(failures),
    )  # fmt: skip
    if args.out is not None:
        summary = {"model": pipeline.name, "files": len(sources), "failed": len(failures), "seconds": seconds}
        write_summary(args.out / "summary.json", summary | totals | {"errors": errors.by_kind})
    return 1 if failures else 0


def _write_documents(documents: Iterator[Document], args: argparse.Namespace, model: str, echo: bool) -> dict:
    """Write each document (a file under --out, or stdout); count pages, tokens and flags."""
    totals = {"pages": 0, "tokens": 0, "repetition_stopped": 0, "truncated": 0}
    taken: set[Path] = set()
    fmt: Format = args.format
    for document in documents:
        for page in document.pages:
            totals["pages"] += 1
            totals["tokens"] += page.num_tokens
            totals["repetition_stopped"] += page.repetition_stopped
            totals["truncated"] += page.truncated
            if page.repetition_stopped or page.truncated:
                where = document.source + (f" page {page.page}" if page.page else "")
                reason = "stopped a repetition loop" if page.repetition_stopped else "hit --max-new-tokens"
                log.warning("%s: %s", where, reason)
        if args.out is not None:
            path = output_path(args.out, document.source, fmt, taken)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(document, fmt, model), encoding="utf-8")
        elif echo:
            header = f"==> {document.source} <==\n" if len(args.inputs) > 1 and fmt != "json" else ""
            sys.stdout.write(header + render(document, fmt, model))
            sys.stdout.flush()
    return totals


def run_chat(args: argparse.Namespace) -> int:
    options = generation_options(args)
    pipeline = load_pipeline(args)
    streamer = terminal_streamer(pipeline, options)
    try:
        result = pipeline.chat(args.image, args.question, options, streamer)
    except (ChatUnsupported, InputError) as err:
        raise UserError(str(err)) from err
    if streamer is None:
        print(result.text)
    if result.repetition_stopped or result.truncated:
        log.warning(
            "answer %s", "stopped a repetition loop" if result.repetition_stopped else "was cut short"
        )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    try:
        from vary.inference.server import ServerLimits, serve
    except ModuleNotFoundError as err:
        raise UserError(f'{err.name} is not installed: pip install -e ".[serve]"') from err
    options = generation_options(args)
    limits = ServerLimits(int(args.max_upload_mb * 2**20), args.max_pages, args.batch_size)
    serve(load_pipeline(args), args.host, args.port, limits, options)
    return 0


def run_ngram(args: argparse.Namespace) -> int:
    """Fit the n-gram model on the sources' text, in the model's tokens, and set its weight."""
    from vary.data.pdf import text_corpus
    from vary.inference.ngram import NGRAM_FILE, TokenNgram

    config_file = args.model / "config.json"
    if not config_file.is_file():
        raise UserError(f"{args.model}: not a Vary model folder (no config.json)")
    if args.weight < 0:
        raise UserError(f"--weight must be 0 or more, not {args.weight}")
    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except (OSError, ValueError) as err:
        raise UserError(
            f"{args.model}: no tokenizer to count its tokens with ({type(err).__name__})"
        ) from err
    errors = ErrorLog()
    texts = text_corpus(args.sources, errors, args.max_pages, args.latin_only)
    pieces = [np.array(tokenizer.encode(text + "\n", add_special_tokens=False), np.int32) for text in texts]
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)  # 4 bytes a token, not a list's ~36
    try:
        ngram = TokenNgram.fit(tokens, args.order, len(tokenizer), args.min_count)
    except ValueError as err:
        raise UserError(f"--order {args.order}: {err}") from err
    ngram.save(args.model / NGRAM_FILE)
    config = json.loads(config_file.read_text(encoding="utf-8")) | {"ngram_weight": args.weight}
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info(
        "%s: %d tokens, %d n-grams of order 1-%d, weight %g; %d source(s) failed",
        args.model / NGRAM_FILE, len(tokens), sum(map(len, ngram.keys)), args.order, args.weight,
        errors.count,
    )  # fmt: skip
    return 0
