"""Training throughput of `vary train` against a bare PyTorch loop on the same model and data.

    python benchmarks/bench_train.py                                  # the quickstart model
    python benchmarks/bench_train.py --config configs/quickstart.yaml --steps 60 --threads 2
    python benchmarks/bench_train.py --config configs/default-model-stage27.yaml \
        --compile inductor --batches 1024 2048 --workers 14 --repeat 1   # a GPU: what bounds the step?

Rows: the reference (batches collated beforehand, then forward / backward / fused AdamW step,
nothing else; on the GPU when there is one, in the trainer's precision), at the config's micro
batch, with its vision towers compiled (`--compile BACKEND`, as `optim.compile` does), at each of
`--batches`, and the trainer (reading shards, decoding, collating,
Accelerate, logging) with each of `--workers` collate processes (0: in the training process).
Ratios are against the reference at the config's batch: the cost of everything around the
model, and what a larger batch would gain per sample where fixed costs (a GPU's kernel
launches) set the pace. Each rate is the best of `--repeat` runs; the trainer's is its steady
state (log windows after the first).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import tempfile
import time
from pathlib import Path

import torch

from vary.data.reader import iter_samples
from vary.inference.pipeline import resolve_device
from vary.model import VaryProcessor
from vary.training import TrainConfig, load_train_config, train
from vary.training.data import target_conversation
from vary.training.trainer import generate_synthetic, new_tokenizer, prepare_model, resolve_precision


def on(device: torch.device, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def finish(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a clock read after them counts them."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference(cfg: TrainConfig, steps: int, size: int) -> float:
    """Samples/s of the model alone: pre-collated micro batches of `size` (as many per step as
    the config's global batch needs, at least one), forward, backward, optimizer step."""
    accumulation = max(1, cfg.global_batch_size // size)
    samples = list(itertools.islice(iter_samples([cfg.data.sources[0].path]), 4 * size))
    device = resolve_device()
    bf16 = resolve_precision(cfg.optim.mixed_precision) == "bf16"
    tokenizer = new_tokenizer(cfg)
    model = prepare_model(cfg, tokenizer).to(device).train()
    processor = VaryProcessor.from_config(model.config, tokenizer, cfg.data.max_length)
    chunks = (samples[i : i + size] for i in range(0, len(samples), size))
    batches = [
        on(device, processor([s.image for s in c], [target_conversation(s, cfg.stage) for s in c]))
        for c in chunks
    ]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    start = 0.0
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            finish(device)
            start = time.perf_counter()
        for micro in range(accumulation):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batches[(step * accumulation + micro) % len(batches)]).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    finish(device)
    return steps * accumulation * size / (time.perf_counter() - start)


def trainer(cfg: TrainConfig, steps: int, workers: int) -> float:
    """Steady-state samples/s of `vary train`: the log windows after the first (which holds the
    start-up: the first batch, a collate worker's start)."""
    with tempfile.TemporaryDirectory(prefix="bench-train-") as out:
        run = dataclasses.replace(
            cfg,
            output_dir=out,
            optim=dataclasses.replace(cfg.optim, max_steps=steps),
            data=dataclasses.replace(cfg.data, heldout=None, num_workers=workers),
            checkpoint=dataclasses.replace(cfg.checkpoint, every=10 * steps),
            log_every=10,
        )
        train(run)
        lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
        rates = [json.loads(line)["train/samples_per_s"] for line in lines[1:]]
        return sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/quickstart.yaml"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="*", default=[], help="more micro batch sizes")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="collate processes")
    parser.add_argument("--compile", default="", help="a torch.compile backend for the towers, e.g. inductor")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_train_config(args.config)
    generate_synthetic(cfg.data.sources)
    size = cfg.optim.micro_batch_size
    rows = {"reference: model only": functools.partial(reference, cfg, args.steps, size)}
    if args.compile:  # the towers compiled as `optim.compile` does; its warm-up steps compile them
        compiled = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, compile=args.compile))
        rows[f"reference, towers {args.compile}"] = functools.partial(reference, compiled, args.steps, size)
    for batch in args.batches:
        rows[f"reference, micro batch {batch}"] = functools.partial(reference, cfg, args.steps, batch)
    for workers in args.workers:
        name = f"vary train, {workers} collate worker(s)" if workers else "vary train, collate in-process"
        rows[name] = functools.partial(trainer, cfg, args.steps, workers)
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{args.threads} thread(s)"
    shape = f"global batch {cfg.global_batch_size} (micro {size})"
    print(f"\n{args.config}: {where}, {shape}, {args.steps} steps")
    print(f"| {'run':32} | samples/s | vs reference |\n| {'-' * 32} | --------- | ------------ |")
    base = 0.0
    for name, run in rows.items():  # each row as soon as it is measured: a time limit keeps the rest
        value = max(run() for _ in range(args.repeat))
        base = base or value  # the first row: the reference at the config's micro batch
        print(f"| {name:32} | {value:9.1f} | {value / base:11.2f}x |", flush=True)


if __name__ == "__main__":
    main()
