"""TrainConfig: the paper's defaults per stage, model files with overrides, clear errors."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from vary.config import ConfigError
from vary.model import build_model, build_tokenizer
from vary.training import load_train_config
from vary.training.config import SourceConfig

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_stage_defaults_are_the_papers(tmp_path):
    base = "output_dir: out\nmodel: {kind: tiny}\ndata: {sources: [{path: shards}]}\n"
    tiny = load_train_config(write(tmp_path, "stage: tiny\n" + base))
    sft = load_train_config(write(tmp_path, "stage: base-sft\n" + base))
    assert (tiny.lr, tiny.global_batch_size, sft.lr, sft.global_batch_size) == (5e-5, 512, 1e-5, 256)
    assert (
        tiny.optim.schedule == "cosine" and tiny.optim.warmup_ratio == 0.03 and tiny.optim.weight_decay == 0
    )
    assert tiny.accumulation_steps(8) == 512 // (8 * tiny.optim.micro_batch_size)
    with pytest.raises(ConfigError, match="not a multiple"):
        tiny.accumulation_steps(3)


def test_model_file_is_expanded_so_overrides_reach_it(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    text = "stage: tiny\noutput_dir: out\nmodel: configs/models/tiny-cpu.yaml\ndata: {sources: [{path: s}]}\n"
    path = write(tmp_path, text)
    cfg = load_train_config(path, ["model.language_model.num_hidden_layers=1", "optim.lr=3e-4"])
    assert cfg.model.vocabulary.image_size == 256 and cfg.model.language_model["num_hidden_layers"] == 1
    assert cfg.lr == 3e-4


def test_base_config_is_merged_under_the_later_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stage1.yaml").write_text(
        "stage: tiny\noutput_dir: s1\nmodel: {kind: tiny}\n"
        "data: {sources: [{path: a}, {path: b}], max_length: 96}\noptim: {lr: 5.0e-4, max_steps: 10}\n"
    )
    (tmp_path / "stage2.yaml").write_text(
        "base: stage1.yaml\noutput_dir: s2\ninit_from: s1/model\nmodel: null\n"
        "data: {max_length: 64}\noptim: {max_steps: 30}\n"
    )
    cfg = load_train_config("stage2.yaml", ["optim.lr=1e-4"])
    assert (cfg.output_dir, cfg.init_from, cfg.model) == ("s2", "s1/model", None)
    assert [s.path for s in cfg.data.sources] == ["a", "b"] and cfg.data.max_length == 64  # merged
    assert (cfg.optim.max_steps, cfg.lr) == (30, 1e-4)
    (tmp_path / "stage1.yaml").write_text("base: stage2.yaml\n")
    with pytest.raises(ConfigError, match=r"stage1\.yaml: base config stage2\.yaml leads back to itself"):
        load_train_config("stage2.yaml")
    with pytest.raises(ConfigError, match=r"run\.yaml: base config missing\.yaml not found"):
        load_train_config(write(tmp_path, "base: missing.yaml\n"))


def test_redraw_draws_each_synthetic_source_anew_into_a_folder_of_its_own(tmp_path, monkeypatch):
    """`redraw: N` moves each `lines:` source's seed on by N and gives it a new folder; the rest
    of the mix, and the YAML aliases the base shares between sources, stay as they were."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stage1.yaml").write_text(
        "stage: tiny\noutput_dir: s1\nmodel: {kind: tiny}\ndata:\n  sources:\n"
        "    - {path: crops, weight: 0.5, low_res: &low {share: 0.5}}\n"
        "    - {path: glyphs, weight: 0.3, low_res: *low, lines: &glyphs {n: 20, seed: 7}}\n"
        "    - {path: words, weight: 0.2, lines: {<<: *glyphs, max_words: 2}}\n"
        "  heldout: {path: held, lines: {n: 5, seed: 1, split: heldout}}\n"
    )
    (tmp_path / "stage2.yaml").write_text("base: stage1.yaml\noutput_dir: s2\nredraw: 10\n")
    first, again = load_train_config("stage1.yaml"), load_train_config("stage2.yaml")
    assert [(s.path, s.lines and s.lines.seed) for s in again.data.sources] == [
        ("crops", None),
        ("glyphs-redraw10", 17),
        ("words-redraw10", 17),
    ]
    for was, now in zip(first.data.sources, again.data.sources, strict=True):
        assert (now.weight, now.low_res) == (was.weight, was.low_res)
        assert now.lines is None or replace(now.lines, seed=was.lines.seed) == was.lines
    assert again.data.heldout == first.data.heldout  # the yardstick stays put
    assert load_train_config("stage2.yaml", ["redraw=3"]).data.sources[1].lines.seed == 10
    (tmp_path / "stage3.yaml").write_text("base: stage2.yaml\nredraw: 20\n")  # counts from as written
    third = load_train_config("stage3.yaml").data.sources
    assert [s.path for s in third][1:] == ["glyphs-redraw20", "words-redraw20"]
    with pytest.raises(ConfigError, match=r"stage2\.yaml: redraw must be a whole number >= 0, got -1"):
        load_train_config("stage2.yaml", ["redraw=-1"])
    plain = "stage: tiny\noutput_dir: p\nmodel: {kind: tiny}\ndata: {sources: [{path: a}]}\n"
    (tmp_path / "plain.yaml").write_text(plain)
    with pytest.raises(ConfigError, match=r"plain\.yaml: redraw 2: no data source has `lines:` to draw anew"):
        load_train_config("plain.yaml", ["redraw=2"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {kind: tiny}\ndata: {sources: [{path: s}]}\nstage: large", r"stage: 'large' is not one of"),
        ("stage: tiny\ndata: {sources: [{path: s}]}\n", "exactly one of `model`"),
        ("stage: tiny\nmodel: {kind: tiny}\ndata: {sources: []}\n", "data.sources is empty"),
        (
            "stage: tiny\nmodel: {kind: tiny}\ndata: {sources: [{path: s, wieght: 2}]}\n",
            r"unknown key .*'wieght'",
        ),
        (
            "stage: tiny\nmodel: no/such.yaml\ndata: {sources: [{path: s}]}\n",
            "model file no/such.yaml not found",
        ),
    ],
)
def test_mistakes_name_the_key(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match=message):
        load_train_config(write(tmp_path, "output_dir: out\n" + text))


def test_shipped_configs_load(monkeypatch):
    monkeypatch.chdir(ROOT)
    recipes = sorted((ROOT / "configs").glob("*.yaml"))  # quickstart, the default model's stages
    assert len(recipes) >= 3
    for path in [*recipes, *sorted((ROOT / "configs" / "train").glob("*.yaml"))]:
        load_train_config(path)


def test_default_model_recipe_sizes(monkeypatch):
    """The sizes docs/default-model.md argues for: 64 px -> 16 image tokens, one token per byte."""
    monkeypatch.chdir(ROOT)
    cfg = load_train_config(ROOT / "configs" / "default-model.yaml")
    tokenizer = build_tokenizer(cfg.model.tokenizer, ["Vary reads 64 px crops of real text."] * 4)
    model = build_model(cfg.model, tokenizer)
    assert model.config.num_image_tokens == 16 and model.config.image_resize == "pad"
    assert tokenizer.tokenize("crops") == list("crops")
    assert 2e6 < sum(p.numel() for p in model.parameters()) < 2.5e6


def test_every_default_model_stage_config_loads(monkeypatch):
    """The recipe's stages (docs/default-model.md) parse, each continuing from the one before."""
    monkeypatch.chdir(ROOT)
    paths = sorted((ROOT / "configs").glob("default-model-stage*.yaml"))
    stages = {int(p.stem.removeprefix("default-model-stage")): load_train_config(p) for p in paths}
    assert sorted(stages) == list(range(2, 29))
    for n, cfg in stages.items():
        parent = {15: 13}.get(n, n - 1)  # stage 14 was tried and not kept: 15 goes on from 13
        previous = "out/default-model" if n == 2 else f"out/default-model-stage{parent}"
        if n >= 16 and n not in (24, 26, 28):  # from the shipped model (recipe steps 17, 20, ..., 32, 35)
            assert cfg.init_from == "src/vary/assets/default-model"
        else:
            assert cfg.init_from == f"{previous}/model"
        assert cfg.output_dir == f"out/default-model-stage{n}"
    assert [n for n, cfg in stages.items() if cfg.deepen == 2] == [7, 8]
    assert [n for n, cfg in stages.items() if cfg.widen == 2] == [11, 14]
    assert all(cfg.deepen == cfg.widen == 1 for n, cfg in stages.items() if n < 7)
    for n in range(8, 29):  # stage 3's beams, and the line height of the recipe's crops
        assert stages[n].generation.num_beams == 4 and stages[n].generation.line_height == [15, 22]
    numbers = ["numbers-small", "numbers-roman", "numbers-mono", "numbers-sans"]  # stage 17's
    tiny = ["tiny-numbers-roman", "tiny-numbers-sans"]  # stage 22's
    for n in range(9, 29):  # crops and words seen coarse (stage 16: more, coarser); stage 12's crops too
        coarse = {name(s): s.low_res for s in stages[n].data.sources if s.low_res}
        crops = ["regions-train", "regions-train-extra", "regions-train-extra2", "regions-train-extra3"]
        later = {17: numbers, 21: [*numbers, "glyphs-mono", "glyphs-accents", "glyphs-italic"]}.get(
            n, [*numbers, "glyphs-mono", *(tiny if n >= 22 else [])] if n >= 18 else []
        )
        assert list(coarse) == [*crops[: 4 if n >= 12 else 3], "words-lm", *later]
        expected = {9: (0.5, [0.45, 0.9]), 16: (0.75, [0.3, 0.75])}.get(n, (0.5, [0.3, 0.9]))
        assert all((coarse[k].share, coarse[k].scale) == expected for k in [*crops[:3], "words-lm"])
        assert all((coarse[k].share, coarse[k].scale) == (0.75, [0.3, 0.75]) for k in coarse if k in numbers)
    assert all(abs(sum(s.weight for s in stages[n].data.sources) - 1) < 1e-9 for n in (17, 18, 19, 20, 21))
    assert not any(s.low_res for n in range(2, 9) for s in stages[n].data.sources)


def name(source: SourceConfig) -> str:
    """A recipe source by its data folder's name, a GPU stage's re-rendered ones (`large-`: stage
    19's, `s23-`: stage 23's, `-redrawN`: `redraw`'s) as the originals."""
    return re.sub(r"^(large|s23)-|-redraw\d+$", "", source.path.rsplit("/", 1)[1])


def test_gpu_stage_is_stage_18_with_fresh_larger_synthetic_data(monkeypatch):
    """Stage 19 (the H100 run) keeps stage 18's mix and draws every rendered source anew, larger."""
    monkeypatch.chdir(ROOT)
    stages = [load_train_config(ROOT / f"configs/default-model-stage{n}.yaml") for n in range(2, 20)]
    gpu, cpu = stages[-1], stages[-2]
    first = {name(s): s.lines for cfg in stages[:-1] for s in cfg.data.sources if s.lines}  # as rendered
    assert [(name(s), s.weight, s.low_res) for s in gpu.data.sources] == [
        (name(s), s.weight, s.low_res) for s in cpu.data.sources
    ]
    rendered = [s for s in gpu.data.sources if s.path.rsplit("/", 1)[1].startswith("large-")]
    assert len(rendered) == 8 and all(s.lines is not None for s in rendered)
    for source in rendered:
        old = first[name(source)]
        assert source.lines.n >= 2 * old.n and source.lines.seed != old.seed
        assert replace(source.lines, n=old.n, seed=old.seed) == old
    assert gpu.global_batch_size == 16 * cpu.global_batch_size and gpu.lr == pytest.approx(4 * cpu.lr)


def test_stage_21_adds_accents_and_italics_to_stage_18_s_mix(monkeypatch):
    """Stage 21 keeps stage 18's sources as they were, giving 12% of the mix to the two new ones."""
    monkeypatch.chdir(ROOT)
    before, after = (load_train_config(ROOT / f"configs/default-model-stage{n}.yaml") for n in (18, 21))
    old = {name(s): s for s in before.data.sources}
    new = {name(s): s for s in after.data.sources}
    assert list(new) == [*old, "glyphs-accents", "glyphs-italic"]
    changed = {k: (old[k].weight, new[k].weight) for k in old if old[k].weight != new[k].weight}
    assert changed == {"regions-train-extra3": (0.25, 0.19), "glyphs-mono": (0.1, 0.04)}
    assert all(replace(new[k], weight=old[k].weight) == old[k] for k in old)
    accents, italic = new["glyphs-accents"].lines, new["glyphs-italic"].lines
    assert {"ü", "é", "ß", "“", "•"} <= set(accents.alphabet) and italic.font.endswith("lmroman10-italic.otf")
    assert replace(italic, seed=accents.seed, alphabet=accents.alphabet, font=accents.font) == accents


def test_stage_22_joins_small_numbers_to_stage_19_s_mix(monkeypatch):
    """Stage 22 is stage 19's mix with numbers drawn 3-4 px tall and enlarged back joined."""
    monkeypatch.chdir(ROOT)
    gpu19, cpu22 = (load_train_config(f"configs/default-model-stage{n}.yaml") for n in (19, 22))
    mix = [(name(s), s.weight, s.low_res) for s in cpu22.data.sources]
    assert mix[:12] == [(name(s), s.weight, s.low_res) for s in gpu19.data.sources]
    assert [m[0] for m in mix[12:]] == ["tiny-numbers-roman", "tiny-numbers-sans"]
    for source in cpu22.data.sources[12:]:
        assert source.low_res.share == 1.0 and source.low_res.scale == [0.2, 0.35]
        assert source.lines.alphabet == "0123456789" and source.lines.max_words == 1


@pytest.mark.parametrize(("before", "after"), [(22, 23), (23, 25), (23, 27)])
def test_gpu_stage_keeps_the_mix_and_draws_every_rendered_source_anew(monkeypatch, before, after):
    """Stages 23, 25 and 27 (GPU) keep stage 22's mix, every rendered source drawn anew in
    folders of its own, with seeds no other stage's data has used (stages 24, 26 and 28 train
    on the folders of the stage before them)."""
    monkeypatch.chdir(ROOT)
    old, new = (load_train_config(f"configs/default-model-stage{n}.yaml") for n in (before, after))
    assert [(name(s), s.weight, s.low_res) for s in new.data.sources] == [
        (name(s), s.weight, s.low_res) for s in old.data.sources
    ]
    others = [load_train_config(p) for p in sorted(ROOT.glob("configs/default-model-stage*.yaml"))]
    used = {s.lines.seed for cfg in others if cfg.data != new.data for s in cfg.data.sources if s.lines}
    for was, now in zip(old.data.sources, new.data.sources, strict=True):
        if was.lines is None:
            assert now.path == was.path
        else:
            assert now.path != was.path and now.lines.n >= was.lines.n
            assert replace(now.lines, seed=was.lines.seed, n=was.lines.n) == was.lines
            assert now.lines.seed not in used


@pytest.mark.parametrize("first", [23, 25, 27])
def test_a_gentler_gpu_stage_goes_on_from_the_one_before_on_its_data(monkeypatch, first):
    """Stages 24, 26 and 28 train the model of the stage before again on its rendered folders."""
    monkeypatch.chdir(ROOT)
    gpu, gentler = (load_train_config(f"configs/default-model-stage{n}.yaml") for n in (first, first + 1))
    assert gentler.data == gpu.data and gentler.init_from == f"{gpu.output_dir}/model"
    assert gentler.lr < gpu.lr / 3 and gentler.global_batch_size == gpu.global_batch_size
