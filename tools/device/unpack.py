"""Unpack pack.py's crops into shuffled PNG shards (the format `vary train` reads), on every core.

Shuffled across the source: a batch of 512 would otherwise hold runs of one page's crops.

    python tools/device/unpack.py .gpu/data out/default-model/data
"""

from __future__ import annotations

import io
import json
import lzma
import random
import sys
import tarfile
import time
from collections.abc import Iterator
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from pack import LEVELS
from PIL import Image

SHARD_SIZE = 1000

Job = tuple[Path, list[str], np.ndarray]


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(job: Job) -> tuple[Path, int]:
    path, metas, pixels = job
    with tarfile.open(path, "w") as tar:
        for meta, grey in zip(metas, pixels, strict=True):
            key = json.loads(meta)["id"]
            png, image = io.BytesIO(), Image.fromarray((grey * LEVELS).astype(np.uint8)).convert("RGB")
            image.save(png, format="PNG", compress_level=1)
            add(tar, key + ".png", png.getvalue())
            add(tar, key + ".json", meta.encode())
    return path, len(metas)


def write_manifests(written: list[tuple[Path, int]]) -> None:
    """Records per shard, as `vary data` writes them: `vary train` counts from these, reading nothing."""
    folders: dict[Path, list[dict]] = {}
    for path, count in sorted(written):
        folders.setdefault(path.parent, []).append({"name": path.name, "count": count})
    for folder, shards in folders.items():
        totals = {"samples": sum(shard["count"] for shard in shards)}
        (folder / "manifest.json").write_text(json.dumps({"totals": totals, "shards": shards}))


def jobs(packed: Path, out: Path) -> Iterator[Job]:
    for meta_file in sorted(packed.glob("*.meta.xz")):
        name = meta_file.name.removesuffix(".meta.xz")
        metas = lzma.decompress(meta_file.read_bytes()).decode().split("\n")
        pixels = np.frombuffer(lzma.decompress((packed / f"{name}.pix.xz").read_bytes()), np.uint8)
        pixels = pixels.reshape(len(metas), 64, 64)
        order = list(range(len(metas)))
        random.Random(name).shuffle(order)
        (out / name).mkdir(parents=True, exist_ok=True)
        for start in range(0, len(order), SHARD_SIZE):
            part = order[start : start + SHARD_SIZE]
            yield out / name / f"gpu-{start // SHARD_SIZE:06d}.tar", [metas[i] for i in part], pixels[part]


if __name__ == "__main__":
    began = time.time()
    with Pool() as pool:
        written = list(pool.imap_unordered(write_shard, jobs(Path(sys.argv[1]), Path(sys.argv[2]))))
    write_manifests(written)
    print(f"unpacked {sum(count for _, count in written)} crops in {time.time() - began:.1f}s")
