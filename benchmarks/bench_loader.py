"""The training input pipeline's cost per step, process by process (run by hand, not in CI).

    python benchmarks/bench_loader.py configs/default-model-stage18.yaml --batch 512

On one H100 the default model's stage 19 trained at ~1,900 samples/s with the GPU mostly idle:
the one training process drew the mixed stream and took the collated batches back, serially,
while 14 collate workers waited on it. This times each part of a step of `--batch` samples as
the pipeline is now (the training process hands out shard positions, the workers read the
records, pixels cross as uint8 and are normalised where the model runs) against the reference
it replaced, on the same samples in the same run: each record read in the training process,
pixels sent as normalised float32. (The reference reads through a cached index of each shard, so
it is a lower bound of the old stream's cost: that parsed the tar headers too, every epoch.)
Each time is the best of `--repeat` passes over `--steps` steps; the last lines turn them into
ceilings: the samples/s the training process allows (on a GPU its pixel normalisation runs as
kernels, not on the CPU as here), and what one collate worker does.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from vary.data.reader import read_record
from vary.data.sample import Sample
from vary.model import VaryProcessor, load_pretrained
from vary.reporting import ErrorLog
from vary.training.config import TrainConfig, load_train_config
from vary.training.data import (
    Batch,
    Collator,
    ParsedRef,
    Position,
    Ref,
    ShardRef,
    cached_index,
    iter_steps,
    iter_stream,
)


def best_ms(fn: Callable[[Any], Any], items: Sequence[Any], repeat: int) -> tuple[list[Any], float]:
    """`fn` over `items`, the best of `repeat` passes: (results, milliseconds per item)."""
    best, out = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        out = [fn(item) for item in items]
        best = min(best, (time.perf_counter() - start) / len(items) * 1e3)
    return out, best


def draw_steps(cfg: TrainConfig, batch: int, steps: int) -> list[list[Ref]]:
    stream = iter_stream(cfg.data.sources, cfg.seed, Position(), ErrorLog())
    return [own[0] for own, _ in itertools.islice(iter_steps(stream, batch, 1, 0, 1), steps)]


def read_in_training_process(refs: list[Ref], handles: dict[Path, BinaryIO]) -> list[Ref]:
    """The reference: each record read where the stream is drawn, its image bytes in hand."""
    read: list[Ref] = []
    for ref in refs:
        if isinstance(ref, ShardRef):
            shard = handles.setdefault(ref.path, ref.path.open("rb"))
            raw = read_record(shard, ref.path.name, cached_index(ref.path).records[ref.record])
            ref = ParsedRef(Sample.from_json(raw.record, None), raw.image, ref.where, ref.low_res)
        read.append(ref)
    return read


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="a `vary train` config whose data sources exist")
    parser.add_argument("overrides", nargs="*", help="key=value, as `vary train` takes them")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="where the training process normalises pixels")
    args = parser.parse_args()
    cfg = load_train_config(args.config, args.overrides)
    model, tokenizer, _ = load_pretrained(cfg.init_from)
    processor = VaryProcessor.from_config(model.config, tokenizer, cfg.data.max_length)
    collator = Collator(processor, cfg.stage)

    def to_float32(batch: Batch) -> Batch:
        return dataclasses.replace(batch, inputs=processor.image_processor.normalize(batch.inputs))

    def normalise_on_device(batch: Batch) -> None:
        inputs = processor.image_processor.normalize({k: v.to(args.device) for k, v in batch.inputs.items()})
        float(inputs["pixel_values"][0, 0, 0, 0])  # waits for the device

    now, reference = {}, {}  # part -> ms per step
    steps, now["draw the step (training)"] = best_ms(
        lambda _: draw_steps(cfg, args.batch, args.steps), [0], args.repeat
    )
    steps = steps[0]
    now["draw the step (training)"] /= args.steps
    handles: dict[Path, BinaryIO] = {}
    read, read_ms = best_ms(lambda refs: read_in_training_process(refs, handles), steps, args.repeat)
    reference["draw the step (training)"] = now["draw the step (training)"] + read_ms
    normalised = f"copy to {args.device} and normalise pixels (training)"
    for table, refs in ((now, steps), (reference, read)):
        sent, table["send it to a worker (training)"] = best_ms(pickle.dumps, refs, args.repeat)
        _, table["receive it (worker)"] = best_ms(pickle.loads, sent, args.repeat)
        batches, table["collate (worker)"] = best_ms(collator, refs, args.repeat)
        table[normalised] = best_ms(normalise_on_device, batches, args.repeat)[1]
        if table is reference:  # normalised in the worker instead
            batches, normalise_ms = best_ms(to_float32, batches, args.repeat)
            table["collate (worker)"] += normalise_ms
            table[normalised] = 0.0
        back, table["send the batch back (worker)"] = best_ms(pickle.dumps, batches, args.repeat)
        _, table["receive the batch (training)"] = best_ms(pickle.loads, back, args.repeat)
        table["MB per batch"] = len(back[0]) / 1e6
    for handle in handles.values():
        handle.close()

    print(
        f"ms per step of {args.batch} samples ({args.steps} steps of {args.config}, best of {args.repeat})\n"
    )
    print("| part (process) | now | reference | reference / now |\n| --- | ---: | ---: | ---: |")
    for part in now:
        ratio = reference[part] / max(now[part], 1e-9)
        print(f"| {part} | {now[part]:.1f} | {reference[part]:.1f} | {ratio:.1f}x |")
    totals = {
        "training process": ("(training)",),
        "the same without the pixels (a GPU's kernels)": ("(training)", "normalise"),
        "one collate worker": ("(worker)",),
    }
    for name, (process, *left_out) in totals.items():
        ms = [
            sum(v for k, v in table.items() if k.endswith(process) and not any(x in k for x in left_out))
            for table in (now, reference)
        ]
        rates = [args.batch / total * 1e3 for total in ms]
        cells = " | ".join(f"{m:.1f} / {rate:,.0f}" for m, rate in zip(ms, rates, strict=True))
        print(f"| {name}: total / samples a second | {cells} | {rates[0] / rates[1]:.1f}x |")


if __name__ == "__main__":
    main()
