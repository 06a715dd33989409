"""From a YAML model section to a ready model, tokenizer and image processor, and back from disk.

`ModelConfig` is what users write (configs/models/*.yaml); `VaryConfig` is what gets saved in a
model folder. Sizes of every part are configurable so the same code builds the paper's models
and the tiny ones the tests and the CPU recipes use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import (
    CONFIG_MAPPING,
    AutoTokenizer,
    CLIPVisionConfig,
    PreTrainedTokenizerBase,
    SamVisionConfig,
)

from vary.config import ConfigError, load_config
from vary.convert.parts import language_model_options, load_clip, load_language_model, load_vocabulary
from vary.model.configuration import VaryConfig
from vary.model.image_processing import VaryImageProcessor
from vary.model.modeling import VaryBase, VaryForCausalLM, VaryTiny
from vary.model.tokenizer import add_vary_tokens, image_token_ids, train_bpe_tokenizer


@dataclass
class VocabularyConfig:
    """The SAM ViTDet encoder + neck + two stride-2 convs (defaults: the paper's SAM ViT-B)."""

    image_size: int = 1024
    patch_size: int = 16
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_dim: int | None = None  # default 4 x hidden_size
    window_size: int = 14
    global_attn_indexes: list[int] = field(default_factory=lambda: [2, 5, 8, 11])
    neck_channels: int = 256
    channels: list[int] = field(default_factory=lambda: [512, 1024])
    # SAM (`sam_vit_b_01ec64.pth` or a Hugging Face SAM folder) or a model with a vocabulary
    # network (a Vary-tiny folder of ours, Vary-toy, GOT-OCR2, ...): see vary.convert.parts
    pretrained: str | None = None

    def to_hf(self) -> SamVisionConfig:
        return SamVisionConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            mlp_dim=self.mlp_dim or 4 * self.hidden_size,
            window_size=self.window_size,
            global_attn_indexes=list(self.global_attn_indexes),
            output_channels=self.neck_channels,
            initializer_range=0.02,
        )


@dataclass
class ClipConfig:
    """CLIP vision tower (defaults: ViT-L/14 at 224, as Vary-base)."""

    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    pretrained: str | None = None  # a CLIP folder (CLIPModel or CLIPVisionModel), e.g. clip-vit-large-patch14

    def to_hf(self) -> CLIPVisionConfig:
        return CLIPVisionConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
        )


@dataclass
class TokenizerConfig:
    """A tokenizer folder, or (when `path` is empty) byte-level BPE trained on the data's text."""

    path: str | None = None
    vocab_size: int = 4096


@dataclass
class ModelConfig:
    kind: Literal["tiny", "base"] = "tiny"
    vocabulary: VocabularyConfig = field(default_factory=VocabularyConfig)
    clip: ClipConfig | None = None
    # Any causal LM: `model_type` plus that transformers config's fields (vocab_size is raised
    # to the tokenizer's size when smaller). `pretrained: FOLDER` (config.json + weights +
    # tokenizer) starts from that LM: its config, its weights and, unless tokenizer.path is set,
    # its tokenizer; other keys override its config.
    language_model: dict[str, Any] = field(default_factory=lambda: {"model_type": "opt"})
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    image_normalization: Literal["clip", "imagenet", "ink"] = "clip"
    image_resize: Literal["stretch", "pad"] = "stretch"  # "pad": aspect kept (VaryConfig)
    frozen_towers: list[str] | None = None  # default: none for tiny, all for base
    template: Literal["plain", "chatml"] | None = None  # default: plain for tiny, chatml for base
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"

    def __post_init__(self) -> None:
        if self.kind == "tiny" and self.clip is not None:
            raise ValueError("kind 'tiny' has no clip branch; use kind 'base'")
        pretrained = self.language_model.get("pretrained")
        if pretrained:
            self.language_model = language_model_options(pretrained) | self.language_model
            if self.tokenizer.path is None:
                self.tokenizer = dataclasses.replace(self.tokenizer, path=pretrained)
        check_language_model_keys(self.language_model)


def check_language_model_keys(options: dict[str, Any]) -> None:
    """Reject unknown language-model keys (transformers configs silently accept anything)."""
    model_type = options.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"language_model.model_type {model_type!r} is not a transformers model type")
    known = {f.name for f in dataclasses.fields(CONFIG_MAPPING[model_type])} | {"model_type", "pretrained"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown key language_model.{unknown[0]} for a {model_type} config")


def load_model_config(path: str | Path, overrides: Iterable[str] = ()) -> ModelConfig:
    return load_config(path, ModelConfig, list(overrides))


def build_tokenizer(config: TokenizerConfig, texts: Iterable[str] | None = None) -> PreTrainedTokenizerBase:
    """Load the tokenizer folder, or train byte-level BPE on `texts`; Vary's tokens are added."""
    if config.path:
        tokenizer = AutoTokenizer.from_pretrained(config.path)
        add_vary_tokens(tokenizer)
        return tokenizer
    if texts is None:
        raise ConfigError("tokenizer.path is empty: give a tokenizer folder or texts to train BPE on")
    return train_bpe_tokenizer(texts, config.vocab_size)


def build_vary_config(config: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> VaryConfig:
    ids = image_token_ids(tokenizer)
    text_options = {k: v for k, v in config.language_model.items() if k not in ("model_type", "pretrained")}
    # A config may pad the vocabulary beyond the tokenizer (as Qwen does), never below it.
    vocab_size = max(text_options.pop("vocab_size", 0), len(tokenizer))
    text_config = CONFIG_MAPPING[config.language_model["model_type"]](
        **text_options,
        vocab_size=vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    default_frozen = [] if config.kind == "tiny" else ["vocabulary"] + (["clip"] if config.clip else [])
    vary_config = VaryConfig(
        vision_config=config.vocabulary.to_hf(),
        clip_config=config.clip.to_hf() if config.clip is not None else None,
        text_config=text_config,
        vocabulary_channels=list(config.vocabulary.channels),
        image_token_id=ids.pad,
        image_start_token_id=ids.start,
        image_end_token_id=ids.end,
        image_normalization=config.image_normalization,
        image_resize=config.image_resize,
        frozen_towers=default_frozen if config.frozen_towers is None else config.frozen_towers,
        template=config.template or ("plain" if config.kind == "tiny" else "chatml"),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vary_config._attn_implementation = config.attn_implementation
    return vary_config


def model_class(config: VaryConfig) -> type[VaryForCausalLM]:
    """Vary-base models are those with a CLIP branch or the chat template (vocabulary-only)."""
    return VaryBase if config.clip_config is not None or config.template == "chatml" else VaryTiny


def build_model(config: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> VaryForCausalLM:
    """A Vary model of the configured sizes: random, then the configured pretrained parts."""
    vary_config = build_vary_config(config, tokenizer)
    model = model_class(vary_config)(vary_config)
    load_pretrained_parts(model, config)
    return model


def load_pretrained_parts(model: VaryForCausalLM, config: ModelConfig) -> None:
    """The `pretrained` weights of each part; each load checks keys and shapes (one clear error)."""
    if config.vocabulary.pretrained:
        load_vocabulary(model.vocabulary, config.vocabulary.pretrained)
    if config.clip is not None and config.clip.pretrained:
        load_clip(model.clip, config.clip.pretrained)
    if config.language_model.get("pretrained"):
        load_language_model(model.language_model, config.language_model["pretrained"])


def load_pretrained(
    path: str | Path, **kwargs: Any
) -> tuple[VaryForCausalLM, PreTrainedTokenizerBase, VaryImageProcessor]:
    """Model, tokenizer and image processor from a Vary model folder."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Vary model folder (no config.json)")
    config = VaryConfig.from_pretrained(path)
    model = model_class(config).from_pretrained(path, config=config, **kwargs)
    model.freeze_towers()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer, VaryImageProcessor.from_config(config)


def save_pretrained(model: VaryForCausalLM, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """A Hugging Face model folder: config.json, model.safetensors, tokenizer files."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
