"""`VaryConfig`: the Hugging Face config saved in every Vary model folder (`config.json`).

It composes the configs of the parts that transformers already knows: a SAM ViTDet vision
config for the new vocabulary network, an optional CLIP vision config (Vary-base's second
branch) and the config of any causal language model (OPT, Qwen2, ...).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, CLIPVisionConfig, PreTrainedConfig, SamVisionConfig
from transformers.configuration_utils import SubConfigSpec

TOWERS = ("vocabulary", "clip")


def check_line_height(line_height: list[int] | tuple[int, ...] | None) -> None:
    """A line height range is None or [smallest, largest], both positive pixels."""
    if line_height is not None and not (len(line_height) == 2 and 0 < line_height[0] <= line_height[1]):
        raise ValueError(f"line_height must be [smallest, largest] px, not {list(line_height)}")


def check_zooms(zooms: list[float] | tuple[float, ...] | None) -> None:
    """A line reader's zooms (of pages or of crops) are None or a non-empty list of positive factors."""
    if zooms is not None and not (zooms and all(zoom > 0 for zoom in zooms)):
        raise ValueError(f"zooms must be positive factors, at least one, not {list(zooms)}")


@strict
class VaryConfig(PreTrainedConfig):
    """Vary model: vision vocabulary (+ optional CLIP) -> linear projectors -> causal LM.

    vocabulary_channels: output channels of the two stride-2 convolutions after the SAM neck
        (`net_2`, `net_3`); the last one is the vocabulary's token width (1024 in the paper).
    clip_feature_layer: which CLIP hidden state feeds the LM (-2, CLS dropped, as LLaVA/Vary).
    image_normalization: "clip" (OpenAI CLIP's mean/std), "imagenet" (ImageNet's, as the released
        Vary-tiny / Vary-base vocabulary networks) or "ink" (inverted, background-free
        pixels; helps small models trained from scratch see dark text on white, see
        `vary.model.image_processing`).
    image_resize: how the vocabulary branch makes a page square: "stretch" (the official models)
        or "pad" (centred on its border colour, aspect kept; small models trained on square crops).
    frozen_towers: vision towers whose weights are frozen ("vocabulary", "clip"); Vary-base
        freezes both, Vary-tiny none.
    line_height: [smallest, largest] px per text line of the one-line crops a small model was
        trained on (`vary data pdf --unit region`). Set, the model reads a page line by line,
        each line cut into crops drawn at that height (`vary.inference.layout`); None (every
        model of the paper's size) reads the whole page at once.
    line_zooms: a line reader reads each crop at the first of these zooms (1: as the layout
        scales it), then a doubtful reading again at each other zoom, and keeps the reading the
        model finds likeliest (mean log-probability per token); None reads each crop once.
    crop_zooms: the same for an image of one or two lines (a crop, not a page): its line height
        is a guess from its own few pixels (capitals taken for lower case, blurred print for
        larger print), so its doubtful readings may need a larger zoom; None: `line_zooms`.
    line_doubt: a reading less likely than this (mean log-probability per token) is doubtful;
        None doubts every reading (each crop is read at every zoom).
    ngram_weight: how much of the folder's n-gram model (`ngram.safetensors`,
        `vary.inference.ngram`) is added to the model's log-probabilities as it decodes;
        None or 0: not used.
    """

    model_type = "vary"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "vision_config": SubConfigSpec(config_class=SamVisionConfig, init_kwargs={"initializer_range": 0.02}),
        "clip_config": SubConfigSpec(config_class=CLIPVisionConfig, optional=True),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="opt"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    clip_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    vocabulary_channels: list[int] | tuple[int, ...] = (512, 1024)
    clip_feature_layer: int = -2
    image_token_id: int = 0
    image_start_token_id: int = 0
    image_end_token_id: int = 0
    image_normalization: Literal["clip", "imagenet", "ink"] = "clip"
    image_resize: Literal["stretch", "pad"] = "stretch"
    frozen_towers: list[str] | tuple[str, ...] = ()
    template: Literal["plain", "chatml"] = "plain"
    line_height: list[int] | tuple[int, ...] | None = None
    line_zooms: list[float] | tuple[float, ...] | None = None
    crop_zooms: list[float] | tuple[float, ...] | None = None
    line_doubt: float | None = None
    ngram_weight: float | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        unknown = set(self.frozen_towers) - set(TOWERS)
        if unknown:
            raise ValueError(f"frozen_towers: unknown tower(s) {sorted(unknown)}; known: {list(TOWERS)}")
        if "clip" in self.frozen_towers and self.clip_config is None:
            raise ValueError("frozen_towers names 'clip' but the model has no clip_config")
        check_line_height(self.line_height)
        check_zooms(self.line_zooms)
        check_zooms(self.crop_zooms)

    @property
    def num_image_tokens(self) -> int:
        """Tokens per image: the vocabulary's 64x64 neck map after two stride-2 convs (16x16)."""
        side = self.vision_config.image_size // self.vision_config.patch_size
        for _ in self.vocabulary_channels:
            side = (side + 1) // 2
        return side * side

    @property
    def clip_num_tokens(self) -> int:
        return (self.clip_config.image_size // self.clip_config.patch_size) ** 2
