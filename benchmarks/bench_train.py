"""Training throughput of `vary train` against a bare PyTorch loop on the same model and data.

    python benchmarks/bench_train.py                                  # the quickstart model
    python benchmarks/bench_train.py --config configs/quickstart.yaml --steps 60 --threads 2

Rows: the reference (batches collated beforehand, then forward / backward / fused AdamW step,
nothing else), and the trainer (reading shards, decoding, collating, Accelerate, logging) with
the collation in the training process and in one worker process. Ratios are trainer / reference:
the cost of everything around the model. Each rate is the best of `--repeat` runs; the trainer's
is its steady state (log windows after the first).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import tempfile
import time
from pathlib import Path

import torch

from vary.data.reader import iter_samples
from vary.model import VaryProcessor, build_model, build_tokenizer
from vary.training import TrainConfig, load_train_config, train
from vary.training.data import target_conversation
from vary.training.trainer import generate_synthetic


def reference(cfg: TrainConfig, steps: int) -> float:
    """Samples/s of the model alone: pre-collated batches, forward, backward, optimizer step."""
    samples = list(itertools.islice(iter_samples([cfg.data.sources[0].path]), 4 * cfg.global_batch_size))
    tokenizer = build_tokenizer(cfg.model.tokenizer, [s.text for s in samples])
    model = build_model(cfg.model, tokenizer).train()
    processor = VaryProcessor.from_config(model.config, tokenizer, cfg.data.max_length)
    size = cfg.optim.micro_batch_size
    batches = [
        processor([s.image for s in chunk], [target_conversation(s, cfg.stage) for s in chunk])
        for chunk in (samples[i : i + size] for i in range(0, len(samples), size))
    ]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    accumulation = cfg.global_batch_size // size
    start = 0.0
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            start = time.perf_counter()
        for micro in range(accumulation):
            model(**batches[(step * accumulation + micro) % len(batches)]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return steps * cfg.global_batch_size / (time.perf_counter() - start)


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_train_config(args.config)
    generate_synthetic(cfg.data.sources)
    rows = {
        "reference: model only": lambda: reference(cfg, args.steps),
        "vary train, collate in-process": lambda: trainer(cfg, args.steps, 0),
        "vary train, 1 collate worker": lambda: trainer(cfg, args.steps, 1),
    }
    results = {name: max(fn() for _ in range(args.repeat)) for name, fn in rows.items()}
    base = results["reference: model only"]
    print(
        f"\n{args.config}: {args.threads} thread(s), global batch {cfg.global_batch_size}, {args.steps} steps"
    )
    print(f"| {'run':32} | samples/s | vs reference |\n| {'-' * 32} | --------- | ------------ |")
    for name, value in results.items():
        print(f"| {name:32} | {value:9.1f} | {value / base:11.2f}x |")


if __name__ == "__main__":
    main()
