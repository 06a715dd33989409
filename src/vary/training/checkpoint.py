"""Checkpoints a killed run can always resume from: written aside, then renamed into place.

A checkpoint is `OUTPUT/checkpoints/step-00001200/`: Accelerate's `save_state` (model, optimizer,
scheduler, gradient-accumulation counter, every process's RNG states; sharded under FSDP and
DeepSpeed) plus `trainer_state.json` (step, data position, counters). It is written to a
temporary folder by all processes and renamed by the main one, so a run killed at any moment
leaves only complete checkpoints behind; the last `keep_last` are kept. Paths are assumed to be
on a file system every process sees (as Accelerate assumes for `save_state`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
PREFIX = "step-"
TMP_PREFIX = ".tmp-"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    folder = output_dir / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{PREFIX}*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(PREFIX)))


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, step: int, state: dict[str, Any], keep_last: int
) -> Path:
    """Save on every process (sharded states need them all); the main process publishes it."""
    folder = output_dir / CHECKPOINTS
    final = folder / checkpoint_name(step)
    tmp = folder / f"{TMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        _remove(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_json(tmp / STATE_FILE, state)
        _remove(final)
        os.replace(tmp, final)
        _fsync_dir(folder)
        for old in list_checkpoints(output_dir)[:-keep_last]:
            _remove(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: Path) -> dict[str, Any]:
    """Restore everything `save_checkpoint` saved; returns the trainer state."""
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def remove_partial(output_dir: Path) -> None:
    """Drop what a killed run left half-written (never a complete checkpoint)."""
    for tmp in (output_dir / CHECKPOINTS).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path) -> None:
    """Rename, then delete: a deletion cut short never leaves a checkpoint that looks complete."""
    if not path.exists():
        return
    doomed = path.with_name(f"{TMP_PREFIX}deleted-{path.name}")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
