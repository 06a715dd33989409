"""A run's final model (else its last checkpoint's) as float16 halves: the device tool brings back
files of at most 16 MiB. Here: `python tools/device/export.py --merge PART1 PART2 OUT_FILE`.

    python tools/device/export.py out/default-model-stage19 $OUT
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

SMALL_FILES = [
    "config.yaml",
    "metrics.jsonl",
    "summary.json",
    "model/config.json",
    "model/generation_config.json",
    "model/tokenizer.json",
    "model/tokenizer_config.json",
]


def export(run: Path, out: Path) -> None:
    final = run / "model" / "model.safetensors"
    source = final if final.exists() else sorted((run / "checkpoints").glob("step-*/model.safetensors"))[-1]
    print("exporting", source)
    weights = {k: v.to(torch.float16).contiguous() for k, v in load_file(source).items()}
    total, seen, halves = sum(v.numel() for v in weights.values()), 0, ({}, {})
    for key in sorted(weights):
        halves[seen >= total / 2][key] = weights[key]
        seen += weights[key].numel()
    for i, tensors in enumerate(halves, start=1):
        metadata = {"format": "pt", "source": str(source)}
        save_file(tensors, out / f"model-part{i}.safetensors", metadata=metadata)
    with tarfile.open(out / "run.tar.gz", "w:gz") as tar:
        for name in SMALL_FILES:
            if (run / name).exists():
                tar.add(run / name, arcname=name)


def merge(parts: list[Path], out: Path) -> None:
    weights = {}
    for part in parts:
        weights.update(load_file(part))
    save_file(weights, out, metadata={"format": "pt"})


if __name__ == "__main__":
    if sys.argv[1] == "--merge":
        merge([Path(p) for p in sys.argv[2:-1]], Path(sys.argv[-1]))
    else:
        export(Path(sys.argv[1]), Path(sys.argv[2]))
