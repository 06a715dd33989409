"""Reading shards back: completeness, damage reports, LLaVA JSON, mixing, export for evaluation."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

from PIL import Image

from vary.cli import main
from vary.data.reader import iter_samples, mix
from vary.data.sample import Sample
from vary.data.shards import Encoding, Record, write_shard
from vary.evaluation.datasets import load_ocr_set
from vary.reporting import ErrorLog


def make_shard(path: Path, n: int, lang: str = "en", start: int = 0) -> Path:
    records = []
    for i in range(start, start + n):
        image = Image.new("RGB", (32, 24), (i * 10 % 256, 0, 0))
        sample = Sample(f"s{i}", None, f"text {i} 文字", lang, "synthetic", meta={"i": i})
        records.append(Record.from_sample(sample, Encoding("png").encode(image), "png"))
    write_shard(path, records)
    return path


def test_shards_read_back_complete(tmp_path: Path) -> None:
    make_shard(tmp_path / "a-000000.tar", 5)
    make_shard(tmp_path / "a-000001.tar", 3, start=5)
    samples = list(iter_samples([tmp_path]))
    assert [s.id for s in samples] == [f"s{i}" for i in range(8)]
    assert samples[6].text == "text 6 文字" and samples[6].meta == {"i": 6}
    assert samples[6].image.size == (32, 24) and samples[6].image.getpixel((0, 0)) == (60, 0, 0)


def test_shards_are_deterministic_and_webdataset_readable(tmp_path: Path) -> None:
    a, b = make_shard(tmp_path / "a.tar", 3), make_shard(tmp_path / "b.tar", 3)
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tar:
        assert tar.getnames()[:2] == ["s0.png", "s0.json"]


def test_truncated_and_corrupt_shards_are_reported_and_reading_goes_on(tmp_path: Path) -> None:
    full = make_shard(tmp_path / "x-000000.tar", 6).read_bytes()
    (tmp_path / "x-000000.tar").write_bytes(full[: len(full) // 2])  # cut inside a member
    make_shard(tmp_path / "x-000001.tar", 4, start=10)
    with tarfile.open(tmp_path / "x-000001.tar") as tar:  # cut exactly between two samples
        cut = next(m for m in tar.getmembers() if m.name == "s12.png").offset
    (tmp_path / "x-000002.tar").write_bytes((tmp_path / "x-000001.tar").read_bytes()[:cut])
    (tmp_path / "x-000003.tar").write_bytes(b"not a tar file at all" * 50)
    make_shard(tmp_path / "x-000004.tar", 2, start=20)
    errors = ErrorLog(tmp_path / "errors.jsonl")
    ids = [s.id for s in iter_samples([tmp_path], errors=errors)]
    assert ids == [*ids[: ids.index("s10")], "s10", "s11", "s12", "s13", "s10", "s11", "s20", "s21"]
    assert set(ids[: ids.index("s10")]) < {f"s{i}" for i in range(6)}  # what survived of the cut shard
    lines = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    bad = Counter(Path(x["item"]).name for x in lines if x["kind"] == "bad_shard")
    assert bad == {"x-000000.tar": 1, "x-000002.tar": 1, "x-000003.tar": 1}


def test_llava_json_is_accepted_as_input(tmp_path: Path) -> None:
    Image.new("RGB", (16, 16), "white").save(tmp_path / "img.png")
    turns = [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A square."}]
    items = [
        {"id": "a", "image": "img.png", "conversations": turns},
        {"id": "b", "image": "missing.png", "conversations": turns},
        {"id": "c", "conversations": [{"value": "no speaker"}]},
    ]
    (tmp_path / "llava.json").write_text(json.dumps(items))
    errors = ErrorLog()
    (sample,) = iter_samples([tmp_path / "llava.json"], errors=errors)
    assert sample.id == "a" and sample.conversations == turns and sample.image.size == (16, 16)
    assert errors.count == 2


def test_mix_follows_weights_and_drains_every_stream() -> None:
    mixed = list(mix([iter(["a"] * 3000), iter(["b"] * 1000)], weights=[3, 1], seed=0))
    assert Counter(mixed) == {"a": 3000, "b": 1000}
    head = Counter(mixed[:2000])
    assert 0.7 < head["a"] / 2000 < 0.8
    assert list(mix([[1, 2], [3]], [1, 1], seed=5)) == list(mix([[1, 2], [3]], [1, 1], seed=5))


def test_export_eval_writes_jsonl_with_relative_images(tmp_path: Path) -> None:
    make_shard(tmp_path / "shards" / "e-000000.tar", 3, lang="zh")
    make_shard(tmp_path / "shards" / "e-000001.tar", 3, lang="en", start=3)
    out = tmp_path / "sets" / "zh.jsonl"
    assert main(["data", "export-eval", str(tmp_path / "shards"), "--out", str(out), "--lang", "zh"]) == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["s0", "s1", "s2"] and {r["lang"] for r in rows} == {"zh"}
    assert rows[1]["text"] == "text 1 文字" and set(rows[1]) == {"id", "image", "text", "lang"}
    assert Image.open(out.parent / rows[1]["image"]).size == (32, 24)
    pages = load_ocr_set(out)  # the evaluation harness reads the set as written
    assert [p.id for p in pages] == ["s0", "s1", "s2"] and all(p.image.is_file() for p in pages)


def test_export_eval_every_spreads_over_all_shards(tmp_path: Path) -> None:
    make_shard(tmp_path / "shards" / "e-000000.tar", 4)
    make_shard(tmp_path / "shards" / "e-000001.tar", 4, start=4)
    out = tmp_path / "spread.jsonl"
    args = ["data", "export-eval", str(tmp_path / "shards"), "--out", str(out), "--every", "3"]
    args += ["--limit", "3"]
    assert main(args) == 0
    assert [json.loads(x)["id"] for x in out.read_text(encoding="utf-8").splitlines()] == ["s0", "s3", "s6"]
    assert main(["data", "export-eval", str(tmp_path / "shards"), "--out", str(out), "--every", "0"]) == 2
