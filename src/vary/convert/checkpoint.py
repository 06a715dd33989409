"""Reading weights and configs from the files people download: safetensors, `.bin`, `.pth`.

A checkpoint is a file or a folder; a folder's weights are all its `*.safetensors` files
(sharded or not), else its `*.bin`, else its `*.pth` / `*.pt`. Pickled files are read with
`weights_only=True`: a checkpoint is data, never code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from vary.convert.keys import CheckpointError

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pth", "*.pt")
# What else transformers' Trainer leaves in a folder it saved.
NOT_WEIGHTS = {"training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth"}
# Training checkpoints (LAVIS, plain torch.save) wrap the weights in a dict under one of these.
WRAPPER_KEYS = ("model", "state_dict", "module")


def weight_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint file or folder")
    for pattern in WEIGHT_PATTERNS:
        files = sorted(file for file in path.glob(pattern) if file.name not in NOT_WEIGHTS)
        if files:
            return files
    raise CheckpointError(f"{path}: no weight files ({', '.join(WEIGHT_PATTERNS)})")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file or folder, on the CPU, in their stored dtype."""
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(path):
        state.update(_read(file))
    return state


def _read(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        return load_file(file)
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many types
        raise CheckpointError(
            f"{file}: not a plain tensor checkpoint ({type(err).__name__}); re-save only the weights,"
            " e.g. torch.save(checkpoint['model'], 'weights.pth')"
        ) from err
    for key in WRAPPER_KEYS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{file}: does not hold a state dict (name -> tensor)")
    return data


def read_config(folder: str | Path) -> dict[str, Any]:
    """`config.json` of a checkpoint folder (the folder of a checkpoint file)."""
    folder = Path(folder)
    path = (folder if folder.is_dir() else folder.parent) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; the checkpoint folder's config.json gives the LM sizes")
    return json.loads(path.read_text(encoding="utf-8"))
