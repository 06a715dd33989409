"""Training data: the synthetic lines source, the resumable mixed stream, round-robin micro-batches."""

from __future__ import annotations

import itertools
import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_model_config
from vary.config import ConfigError, from_dict
from vary.data.config import EngineConfig
from vary.data.engine import run_job
from vary.data.lines import LinesConfig, line_sample, lines_job, words_allowed
from vary.model import VaryProcessor, build_model
from vary.reporting import ErrorLog
from vary.training.config import LowResConfig, SourceConfig
from vary.training.data import Collator, ParsedRef, Position, iter_steps, iter_stream


def write_lines(folder: Path, n: int, split: str = "train", **options) -> Path:
    """Shards of `n` rendered-text samples at the tiny test models' 64 px (via the data engine)."""
    cfg = LinesConfig(n=n, split=split, image_size=64, max_words=2, samples_per_unit=10, **options)
    engine = EngineConfig(out=str(folder), shard_size=10)
    run_job(lines_job(cfg, engine), engine)
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_lines(tmp_path_factory.mktemp("lines"), 60)


def ids(stream, count: int) -> list[str]:
    return [ref.load().id for ref, _ in itertools.islice(stream, count)]


def test_lines_are_pure_functions_of_config_and_index():
    cfg = LinesConfig(n=100, image_size=64, max_words=4, curriculum=0.5)
    a, b = line_sample(cfg, 7), line_sample(cfg, 7)
    assert a.text == b.text and a.image.tobytes() == b.image.tobytes() and a.image.size == (64, 64)
    assert [words_allowed(cfg, i) for i in (0, 25, 50, 99)] == [1, 3, 4, 4]  # the curriculum
    assert all(len(line_sample(cfg, i).text.split()) == 1 for i in range(5))
    heldout = {line_sample(LinesConfig(n=50, split="heldout"), i).text for i in range(50)}
    assert heldout != {line_sample(LinesConfig(n=50), i).text for i in range(50)}


def test_alphabet_lines_are_random_strings_of_its_letters():
    cfg = LinesConfig(n=200, image_size=64, max_words=2, alphabet="abc", max_word_chars=4)
    words = [word for i in range(200) for word in line_sample(cfg, i).text.split(" ")]
    assert set("".join(words)) == set("abc") and {len(w) for w in words} == {1, 2, 3, 4}
    assert len(set(words)) > 60  # of the 120 strings of 1-4 letters: no small word list
    with pytest.raises(ValueError, match="exclude each other"):
        LinesConfig(alphabet="abc", vocabulary=100)


def test_stream_resumes_exactly_from_any_position(shards):
    sources = [SourceConfig(path=str(shards))]
    errors = ErrorLog()
    full = list(itertools.islice(iter_stream(sources, 3, Position(), errors), 150))  # 2.5 epochs
    for cut in (0, 7, 24, 59, 60, 101):
        resumed = iter_stream(sources, 3, full[cut - 1][1] if cut else Position(), errors)
        assert ids(resumed, 150 - cut) == [ref.load().id for ref, _ in full[cut:]]
    first, second = [ref.load().id for ref, _ in full[:60]], [ref.load().id for ref, _ in full[60:120]]
    assert sorted(first) == sorted(second) and first != second  # every epoch once, files reshuffled
    in_order = ids(iter_stream([SourceConfig(path=str(shards), shuffle=False)], 3, Position(), errors), 60)
    assert in_order == sorted(in_order)  # generation order kept: a curriculum survives


def test_sources_are_mixed_by_weight(shards, tmp_path):
    other = write_lines(tmp_path / "other", 30, seed=1)
    sources = [SourceConfig(path=str(shards), weight=3.0), SourceConfig(path=str(other), weight=1.0)]
    drawn = ids(iter_stream(sources, 0, Position(), ErrorLog()), 800)
    share = Counter(i.split("-")[2] for i in drawn)["0"] / len(drawn)  # seed 0 = the first source
    assert share == pytest.approx(0.75, abs=0.05)


def edge_energy(image: Image.Image) -> float:
    """Mean absolute difference of horizontally neighbouring grey pixels: falls as detail is lost."""
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    return float(np.abs(np.diff(grey, axis=1)).mean())


def test_low_res_images_are_drawn_per_sample_and_survive_a_resume(shards):
    low_res = LowResConfig(share=0.5, scale=[0.5, 0.6], jpeg_quality=[70, 80])
    sources = [SourceConfig(path=str(shards), low_res=low_res)]
    full = list(itertools.islice(iter_stream(sources, 3, Position(), ErrorLog()), 200))
    drawn = [ref.low_res for ref, _ in full]
    degraded = [d for d in drawn if d is not None]
    assert len(degraded) / len(drawn) == pytest.approx(0.5, abs=0.1)
    assert all(0.5 <= d.scale <= 0.6 and 70 <= d.quality <= 80 for d in degraded)
    resumed = iter_stream(sources, 3, full[99][1], ErrorLog())
    assert [ref.low_res for ref, _ in itertools.islice(resumed, 100)] == drawn[100:]
    plain = iter_stream([SourceConfig(path=str(shards))], 3, Position(), ErrorLog())
    assert all(ref.low_res is None for ref, _ in itertools.islice(plain, 50))

    ref = next(ref for ref, _ in full if ref.low_res is not None)
    coarse, sharp = ref.load().image, replace(ref, low_res=None).load().image
    assert coarse.size == sharp.size == (64, 64)
    assert edge_energy(coarse) < 0.8 * edge_energy(sharp)  # the same text, its edges blurred


def test_a_bad_low_res_setting_is_one_config_error():
    with pytest.raises(ConfigError, match=r"low_res: share must be in \(0, 1\], got 1.5"):
        from_dict(SourceConfig, {"path": "crops", "low_res": {"share": 1.5}}, "stage.yaml")
    with pytest.raises(ConfigError, match="scale must be"):
        from_dict(SourceConfig, {"path": "crops", "low_res": {"scale": [0.9, 0.5]}}, "stage.yaml")


def test_micro_batches_are_the_same_for_any_number_of_processes(shards):
    def steps(rank: int, world: int, accumulation: int) -> list[list[list[str]]]:
        stream = iter_stream([SourceConfig(path=str(shards))], 0, Position(), ErrorLog())
        return [
            [[r.where for r in micro] for micro in own]
            for own, _ in itertools.islice(iter_steps(stream, 4, accumulation, rank, world), 3)
        ]

    one = steps(0, 1, 4)
    two = [steps(0, 2, 2), steps(1, 2, 2)]
    four = [steps(r, 4, 1) for r in range(4)]
    for step in range(3):
        assert one[step] == [two[k % 2][step][k // 2] for k in range(4)]
        assert one[step] == [four[k][step][0] for k in range(4)]


def test_llava_json_and_a_broken_image_keep_their_slot(tmp_path, tokenizer):
    Image.new("RGB", (64, 64), "white").save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    turns = [{"from": "human", "value": "<image>\nRead it."}, {"from": "gpt", "value": "hello"}]
    items = [{"id": name, "image": f"{name}.png", "conversations": turns} for name in ("ok", "broken")]
    (tmp_path / "chat.json").write_text(json.dumps(items))
    stream = iter_stream([SourceConfig(path=str(tmp_path / "chat.json"))], 0, Position(), ErrorLog())
    refs = [ref for ref, _ in itertools.islice(stream, 2)]
    assert isinstance(refs[0], ParsedRef) and refs[0].sample.conversations == turns
    model = build_model(tiny_model_config("base"), tokenizer)
    batch = Collator(VaryProcessor.from_config(model.config, tokenizer), "base-sft")(refs)
    assert [where for where, _ in batch.problems] == ["chat.json[1]"]
    labels = batch.inputs["labels"]
    assert (labels[0] != -100).sum() > 0 and (labels[1] != -100).sum() == 0  # no target, same shape


def test_the_stream_hands_out_positions_and_a_cut_shard_is_named_where_it_is_read(
    shards, tmp_path, tokenizer
):
    """The training process counts records from the manifest and reads none; a record the
    manifest promises but a cut shard lacks fails in the collate step, naming shard and damage."""
    folder = tmp_path / "copy"
    shutil.copytree(shards, folder)
    first = sorted(folder.glob("*.tar"))[0]
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    source = SourceConfig(path=str(folder), shuffle=False)
    refs = [ref for ref, _ in itertools.islice(iter_stream([source], 0, Position(), ErrorLog()), 12)]
    assert [(ref.path, ref.record) for ref in refs[:10]] == [(first, k) for k in range(10)]
    model = build_model(tiny_model_config(), tokenizer)
    batch = Collator(VaryProcessor.from_config(model.config, tokenizer), "tiny")(refs)
    readable = 10 - len(batch.problems)
    assert 0 < readable < 10  # what is left of the cut shard is still read
    assert [where for where, _ in batch.problems] == [f"{first.name}#{k}" for k in range(readable, 10)]
    assert all(
        f"only {readable} readable records" in p and "truncated or corrupt" in p for _, p in batch.problems
    )

    (folder / "manifest.json").unlink()  # shards from elsewhere: counted from their headers
    errors = ErrorLog()
    stream = iter_stream([source], 0, Position(), errors)
    assert ids(stream, readable + 1)[readable:] == [refs[10].load().id]
    assert errors.count == 1  # the cut, reported once for the epoch
