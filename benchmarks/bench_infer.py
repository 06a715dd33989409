"""Inference speed: batching, beam search, the repetition guard's cost, PDF rendering, the server.

    python benchmarks/bench_infer.py [--config configs/models/tiny-cpu.yaml] [--pages 16]
        [--max-new-tokens 64] [--threads 1]

Random weights (the numbers are about speed, not text), the repetition guard off so every page
generates the same number of tokens; each row is compared with a reference measured in the same
run (batch 1 for batching, images read once per beam for beam search, sequential requests for
the server).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pymupdf
import torch
from PIL import Image
from transformers import GenerationMixin

import vary
from vary.inference import GenerationOptions, RepetitionGuard, VaryPipeline
from vary.inference.pipeline import conversation
from vary.inference.repetition import RepetitionStop
from vary.inference.sources import render_page
from vary.model import build_model, build_tokenizer, load_model_config, save_pretrained

T = TypeVar("T")


def build_pipeline(config: Path, folder: Path) -> VaryPipeline:
    spec = load_model_config(config)
    corpus = [p.read_text(encoding="utf-8") for p in Path(vary.__file__).parent.rglob("*.py")]
    tokenizer = build_tokenizer(spec.tokenizer, texts=corpus)
    save_pretrained(build_model(spec, tokenizer), tokenizer, folder)
    return VaryPipeline.from_pretrained(folder, device="cpu")


def pages(count: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def timed(run: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def bench_batching(pipeline: VaryPipeline, images: list[Image.Image], options: GenerationOptions) -> None:
    print(f"\n## Batching: {len(images)} pages x {options.max_new_tokens} new tokens")
    print("| batch size | pages/s | tokens/s | vs batch 1 |\n| ---: | ---: | ---: | ---: |")
    pipeline(images[:2], batch_size=2, options=options)  # warm-up
    reference = None
    for size in (1, 4, 8, 16):
        results, seconds = timed(partial(pipeline, images, batch_size=size, options=options))
        tokens = sum(r.num_tokens for r in results)
        reference = reference or seconds
        print(
            f"| {size} | {len(images) / seconds:.2f} | {tokens / seconds:.0f} | {reference / seconds:.2f}x |"
        )


def bench_beams(
    pipeline: VaryPipeline, images: list[Image.Image], max_new_tokens: int, beams: int = 4
) -> None:
    """Beam search with each image read once (`VaryForCausalLM.generate`) against the same
    search with the image read once per beam (`GenerationMixin.generate`: how it ran before)."""
    print(f"\n## Beam search: {len(images)} images in one batch, {beams} beams, {max_new_tokens} new tokens")
    print("| images read | s | vs once per beam |\n| --- | ---: | ---: |")
    batch = pipeline.processor(images, [conversation()] * len(images), padding_side="left")
    batch.pop("labels")
    options = {"num_beams": beams, "max_new_tokens": max_new_tokens, "do_sample": False}
    model = pipeline.model
    runs = {"once per beam": partial(GenerationMixin.generate, model), "once": model.generate}
    runs["once"](**batch, **options)  # warm-up
    outputs, reference = [], None
    for name, generate in runs.items():
        output, seconds = timed(partial(generate, **batch, **options))
        outputs.append(output)
        reference = reference or seconds
        print(f"| {name} | {seconds:.2f} | {reference / seconds:.2f}x |")
    assert torch.equal(*outputs), "the two searches read differently"


def bench_guard(batch: int = 8, length: int = 1024, steps: int = 100) -> None:
    """Cost of the loop check per generate step on sequences that never loop; a small alphabet
    (many tokens recur, so many periods are candidates) is the expensive case."""
    print(f"\n## Repetition guard, batch of {batch} x {length} ids that never loop")
    print("| distinct tokens | ms per step |\n| ---: | ---: |")
    for alphabet in (50_000, 100, 8):
        ids = torch.randint(0, alphabet, (batch, length))
        stop = RepetitionStop(RepetitionGuard(), prompt_length=0)
        done, seconds = timed(lambda ids=ids, stop=stop: [stop(ids, None) for _ in range(steps)])
        assert not any(flags.any() for flags in done)
        print(f"| {alphabet} | {seconds / steps * 1e3:.2f} |")


def render_all(document: pymupdf.Document, size: int) -> list[Image.Image]:
    return [render_page(page, size) for page in document]


def bench_render(sizes: tuple[int, ...] = (256, 1024), count: int = 20) -> None:
    document = pymupdf.open()
    for n in range(count):
        page = document.new_page()  # a Letter page full of text
        box = pymupdf.Rect(36, 36, page.rect.width - 36, page.rect.height - 36)
        page.insert_textbox(box, f"Page {n}. " + "Vary reads documents. " * 150)
    print("\n## PDF rendering (text page, PyMuPDF, straight to the model's square input)")
    print("| size | ms/page |\n| ---: | ---: |")
    for size in sizes:
        _, seconds = timed(partial(render_all, document, size))
        print(f"| {size} | {seconds / count * 1e3:.1f} |")


@contextmanager
def vary_serve(model: Path, options: GenerationOptions, threads: int) -> Iterator[str]:
    """`vary serve` in its own process (clients in this one would share its GIL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = ["vary", "serve", "--model", str(model), "--port", str(port), "--device", "cpu"]
    command += ["--max-new-tokens", str(options.max_new_tokens), "--no-repetition-guard"]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with suppress(httpx.TransportError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait()


def bench_server(model: Path, images: list[Image.Image], options: GenerationOptions, threads: int) -> None:
    bodies = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        bodies.append(buffer.getvalue())
    print(f"\n## Server: {len(images)} single-page OCR requests to `vary serve` (worker batch up to 8)")
    print("| clients | requests/s | median latency s | mean batch | vs 1 client |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    with vary_serve(model, options, threads) as url, httpx.Client(timeout=600) as client:

        def post(body: bytes) -> tuple[float, int]:
            response, seconds = timed(partial(client.post, f"{url}/ocr", files={"file": ("p.png", body)}))
            return seconds, response.raise_for_status().json()["pages"][0]["batch_size"]

        def run_clients(clients: int) -> list[tuple[float, int]]:
            with ThreadPoolExecutor(clients) as pool:
                return list(pool.map(post, bodies))

        post(bodies[0])  # warm-up
        reference = None
        for clients in (1, 4, 8):
            replies, seconds = timed(partial(run_clients, clients))
            reference = reference or seconds
            median = statistics.median(latency for latency, _ in replies)
            batch = statistics.mean(size for _, size in replies)
            rate = len(bodies) / seconds
            print(f"| {clients} | {rate:.2f} | {median:.2f} | {batch:.1f} | {reference / seconds:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/models/tiny-cpu.yaml"))
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        pipeline = build_pipeline(args.config, Path(folder))
        size = pipeline.input_size
        print(
            f"model {args.config} ({sum(p.numel() for p in pipeline.model.parameters()) / 1e6:.1f} M params,"
        )
        print(f"{size} px input), {args.threads} torch thread(s), {torch.get_num_threads()} used")
        options = GenerationOptions(max_new_tokens=args.max_new_tokens, repetition=None)
        images = pages(args.pages, size)
        bench_batching(pipeline, images, options)
        bench_beams(pipeline, images, args.max_new_tokens)
        bench_server(Path(folder), images, options, args.threads)
    bench_guard()
    bench_render()


if __name__ == "__main__":
    main()
