"""What a training run is: `TrainConfig`, one typed YAML file plus `key=value` overrides.

The defaults are the paper's recipe (section 4.1 and the official training scripts): AdamW,
no weight decay, cosine schedule after a 3% linear warm-up, gradient clipping at 1.0, learning
rate 5e-5 for Vary-tiny and the Vary-base pre-training, 1e-5 for the SFT; global batch 512 for
Vary-tiny and 256 for Vary-base, reached with gradient accumulation on whatever devices there are.

    stage: tiny                     # tiny | base-pretrain | base-sft
    output_dir: out/vary-tiny
    model: configs/models/tiny-cpu.yaml    # a model YAML file, or the section inline
    # init_from: out/vary-base-init        # ... or start from a saved Vary model folder
    data:
      sources: [{path: out/data/pdf, weight: 0.7}, {path: out/data/charts, weight: 0.3}]
      heldout: {path: out/data/heldout}
    optim: {max_steps: 5000, micro_batch_size: 8}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from vary.config import ConfigError, apply_override, from_dict, read_yaml
from vary.data.lines import LinesConfig
from vary.model import ModelConfig
from vary.model.configuration import check_line_height

Stage = Literal["tiny", "base-pretrain", "base-sft"]
STAGE_LR = {"tiny": 5e-5, "base-pretrain": 5e-5, "base-sft": 1e-5}
STAGE_GLOBAL_BATCH = {"tiny": 512, "base-pretrain": 256, "base-sft": 256}


@dataclass
class LowResConfig:
    """A share of a source's images seen at a lower resolution (`vary.training.augment`)."""

    share: float = 0.5  # of the source's samples
    scale: list[float] = field(default_factory=lambda: [0.45, 0.9])  # shrink factor, drawn uniformly
    jpeg_quality: list[int] = field(default_factory=lambda: [60, 95])

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share}")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must be [smallest, largest] within (0, 1], got {self.scale}")
        if len(self.jpeg_quality) != 2 or not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must be [lowest, highest] within 1-100, got {self.jpeg_quality}")


@dataclass
class SourceConfig:
    """One training source: shard folder(s)/.tar files or a LLaVA JSON file, and its weight."""

    path: str
    weight: float = 1.0  # share of the samples drawn from this source (normalised over sources)
    image_root: str | None = None  # LLaVA JSON: where image paths start (default: the JSON's folder)
    shuffle: bool = True  # shuffle file order each epoch; off keeps generation order (curricula)
    # Synthetic rendered text written to `path` first when `path` does not exist yet.
    lines: LinesConfig | None = None
    low_res: LowResConfig | None = None  # none: images as stored

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"source {self.path}: weight must be > 0")


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    heldout: SourceConfig | None = None  # held-out loss and edit distance are computed on it
    max_length: int = 4096  # tokens per sample, image placeholders included (longer: truncated)
    num_workers: int = 0  # processes decoding images and building batches (0: in the main process)
    tokenizer_texts: int = 50000  # texts read to train a BPE tokenizer when model.tokenizer.path is empty

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("data.sources is empty: name at least one shard folder or LLaVA JSON file")


@dataclass
class OptimConfig:
    max_steps: int = 1000  # optimizer steps; an epoch is (samples / global_batch_size) steps
    lr: float | None = None  # default: the stage's paper value (STAGE_LR)
    global_batch_size: int | None = None  # default: the stage's paper value (STAGE_GLOBAL_BATCH)
    micro_batch_size: int = 4  # samples per device per forward pass
    weight_decay: float = 0.0  # not on biases and norms
    # Learning rate of the vision towers relative to `lr`. Small models trained from scratch: < 1
    # keeps the image features from collapsing to a constant while the LM learns its prior.
    vision_lr_scale: float = 1.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 on GPUs that have it
    gradient_checkpointing: bool = False
    # A torch.compile backend for the vision towers ("inductor": fused kernels, for GPUs, where a
    # small model's many element-wise kernels over every image patch set the pace); "": eager.
    compile: str = ""

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.micro_batch_size < 1:
            raise ValueError("max_steps and micro_batch_size must be >= 1")
        if len(self.betas) != 2:
            raise ValueError("betas must be two numbers")
        if self.compile:
            from torch._dynamo import list_backends  # a second to import: only when asked

            if self.compile not in list_backends(exclude_tags=()):
                known = ", ".join(list_backends())  # the usual ones; debugging backends count too
                raise ValueError(f"compile: no torch.compile backend {self.compile!r} (known: {known})")


@dataclass
class EvalConfig:
    every: int = 500  # steps between evaluations (and at the end); 0: only at the end
    samples: int = 64  # held-out samples for the loss
    decode_samples: int = 16  # of which this many are greedily decoded for the edit distance
    batch_size: int = 8
    max_new_tokens: int = 512
    show: int = 3  # decoded examples written to the log


@dataclass
class CheckpointConfig:
    every: int = 500  # steps between checkpoints; a killed run loses at most this many
    keep_last: int = 2

    def __post_init__(self) -> None:
        if self.every < 1 or self.keep_last < 1:
            raise ValueError("checkpoint.every and checkpoint.keep_last must be >= 1")


@dataclass
class GenerationConfig:
    """How the trained model reads by default, saved in its folder for `vary ocr`, `vary eval`
    and `vary serve`: beams in generation_config.json, line height in config.json."""

    num_beams: int = 1  # 1: greedy; more: beam search (slower, often fewer errors on short lines)
    # [smallest, largest] px per line of the one-line crops it learned from (`pdf.region_text_height`):
    # pages are then read line by line (VaryConfig.line_height); unset keeps the init_from model's.
    line_height: list[int] | None = None

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise ValueError("generation.num_beams must be >= 1")
        check_line_height(self.line_height)


@dataclass
class TrainConfig:
    stage: Stage
    output_dir: str
    data: DataConfig
    # A new model (parts may start from `pretrained:` weights, e.g. the vocabulary of a Vary-tiny
    # folder for Vary-base: docs/pretrained.md) or a saved Vary model folder to continue from.
    model: ModelConfig | None = None
    init_from: str | None = None
    # With init_from: each trained layer followed by deepen-1 identity copies, and each MLP given
    # widen x the hidden units, the new ones' outputs zero (vary.model.growth): a model short of
    # capacity goes on from where it stopped, bigger.
    deepen: int = 1
    widen: int = 1
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    log_every: int = 10  # steps between progress/TensorBoard/metrics.jsonl lines
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.model is None) == (self.init_from is None):
            raise ValueError("give exactly one of `model` (a new model) or `init_from` (a Vary model folder)")
        for name, factor in (("deepen", self.deepen), ("widen", self.widen)):
            if factor < 1 or (factor > 1 and self.init_from is None):
                raise ValueError(f"{name} {factor}: give a factor >= 1, and above 1 only with init_from")

    @property
    def lr(self) -> float:
        return self.optim.lr if self.optim.lr is not None else STAGE_LR[self.stage]

    @property
    def global_batch_size(self) -> int:
        size = self.optim.global_batch_size
        return size if size is not None else STAGE_GLOBAL_BATCH[self.stage]

    def accumulation_steps(self, num_processes: int) -> int:
        """Micro-batches per device per step so that all devices together make the global batch."""
        per_step = self.optim.micro_batch_size * num_processes
        if self.global_batch_size % per_step:
            raise ConfigError(
                f"optim.global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size"
                f" {self.optim.micro_batch_size} x {num_processes} process(es)"
            )
        return self.global_batch_size // per_step


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a training YAML; `base:` and `model: FILE.yaml` are expanded first, so overrides apply,
    and `redraw:` last, so an override can set it too."""
    path = Path(path)
    raw = _with_base(read_yaml(path), path, seen=(path.resolve(),))
    raw["model"] = _model_section(raw.get("model"), path)
    for item in overrides:
        apply_override(raw, item, source=str(path))
    return from_dict(TrainConfig, _redrawn(raw, path), source=str(path))


def _with_base(raw: dict[str, Any], source: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """`base: OTHER.yaml` (a later training stage): that config, with this file's keys merged over it."""
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = Path(base)
    if not base_path.is_file():
        raise ConfigError(
            f"{source}: base config {base} not found (paths are relative to the working folder)"
        )
    if base_path.resolve() in seen:
        raise ConfigError(f"{source}: base config {base} leads back to itself")
    return _merged(_with_base(read_yaml(base_path), base_path, (*seen, base_path.resolve())), raw)


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`, mappings merged key by key, everything else (lists too) replaced."""
    out = dict(base)
    for key, value in update.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both_maps else value
    return out


def _redrawn(raw: dict[str, Any], source: Path) -> dict[str, Any]:
    """`redraw: N`: the same mix with every synthetic source (`lines:`) drawn anew, its seed moved
    on by N and its images written to a folder of their own, `PATH-redrawN` (a later stage that
    should see new samples of the same kinds; N counts from the seeds as written, once)."""
    step = raw.pop("redraw", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ConfigError(f"{source}: redraw must be a whole number >= 0, got {step!r}")
    data = raw.get("data")
    sources = data.get("sources") if isinstance(data, dict) else None
    if not step or not isinstance(sources, list):
        return raw
    drawn = [_source_redrawn(s, step) for s in sources]
    if drawn == sources:
        raise ConfigError(f"{source}: redraw {step}: no data source has `lines:` to draw anew")
    return {**raw, "data": {**data, "sources": drawn}}


def _source_redrawn(source: Any, step: int) -> Any:
    """One source under `redraw: step`; new mappings, since YAML aliases share theirs."""
    if not isinstance(source, dict) or not isinstance(source.get("lines"), dict):
        return source
    if not isinstance(source.get("path"), str):
        return source  # from_dict names what is missing
    seed = source["lines"].get("seed", LinesConfig.seed)
    if not isinstance(seed, int):
        return source  # from_dict names the wrong type
    lines = {**source["lines"], "seed": seed + step}
    return {**source, "path": f"{source['path']}-redraw{step}", "lines": lines}


def _model_section(value: Any, source: Path) -> Any:
    if not isinstance(value, str):
        return value
    model_file = Path(value)
    if not model_file.is_file():
        raise ConfigError(
            f"{source}: model file {value} not found (paths are relative to the working folder)"
        )
    return yaml.safe_load(model_file.read_text(encoding="utf-8")) or {}
