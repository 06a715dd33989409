"""Vary models: vision towers -> linear projectors -> any Hugging Face causal LM.

The image placeholder run `<img>` + `<imgpad>` x N + `</img>` in the token sequence is where the
image features go: the `<imgpad>` embeddings are replaced by the projected vision features
(as the official Vary code and LLaVA do), so text, padding, the KV cache and `generate` all
stay the language model's own.

- `VaryTiny`: vocabulary network -> projector -> small LM (OPT-125M in the paper); all trained.
- `VaryBase`: CLIP ViT-L/14 and the vocabulary network in parallel, both frozen, each with its
  own projector to half the LM width, concatenated along channels (CLIP first, as the official
  code), -> LM (Qwen-7B in the paper). With no CLIP config it is vocabulary-only (as GOT-OCR2).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, CLIPVisionModel, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from vary.model.configuration import VaryConfig
from vary.model.vocabulary import VisionVocabulary


class VaryPreTrainedModel(PreTrainedModel):
    config_class = VaryConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Projectors and the vocabulary's stride-2 convs; nested transformers models
        (SAM encoder, CLIP, the LM) are initialised by their own `_init_weights`."""
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        else:
            super()._init_weights(module)


class VaryForCausalLM(VaryPreTrainedModel, GenerationMixin):
    def __init__(self, config: VaryConfig):
        super().__init__(config)
        text_hidden = config.text_config.hidden_size
        self.vocabulary = VisionVocabulary(config.vision_config, config.vocabulary_channels)
        if config.clip_config is None:
            self.clip = None
            self.clip_projector = None
            self.vocabulary_projector = nn.Linear(self.vocabulary.hidden_size, text_hidden)
        else:
            if text_hidden % 2:
                raise ValueError(f"text hidden size {text_hidden} must be even to split between two towers")
            if config.clip_num_tokens != config.num_image_tokens:
                raise ValueError(
                    f"CLIP gives {config.clip_num_tokens} tokens, the vocabulary {config.num_image_tokens};"
                    " features are concatenated per token, so the counts must match"
                )
            self.clip = CLIPVisionModel(config.clip_config)
            self.clip_projector = nn.Linear(config.clip_config.hidden_size, text_hidden // 2)
            self.vocabulary_projector = nn.Linear(self.vocabulary.hidden_size, text_hidden // 2)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()
        self.freeze_towers()

    # -- parts ---------------------------------------------------------------------------
    def towers(self) -> dict[str, nn.Module]:
        return {"vocabulary": self.vocabulary} | ({"clip": self.clip} if self.clip is not None else {})

    def freeze_towers(self, names: tuple[str, ...] | list[str] | None = None) -> None:
        """Freeze the named towers (default: `config.frozen_towers`) and unfreeze the others."""
        frozen = set(self.config.frozen_towers if names is None else names)
        self.config.frozen_towers = sorted(frozen)
        for name, tower in self.towers().items():
            tower.requires_grad_(name not in frozen)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    # -- forward -------------------------------------------------------------------------
    def get_image_features(
        self, pixel_values: torch.Tensor, clip_pixel_values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Images -> (batch, num_image_tokens, LM hidden size) embeddings for the placeholders."""
        features = self.vocabulary_projector(self._run_tower("vocabulary", pixel_values))
        if self.clip is None:
            return features
        if clip_pixel_values is None:
            raise ValueError("this Vary model has a CLIP branch: pass clip_pixel_values as well")
        hidden = self._run_tower("clip", clip_pixel_values)
        return torch.cat([self.clip_projector(hidden), features], dim=-1)

    def _run_tower(self, name: str, pixels: torch.Tensor) -> torch.Tensor:
        tower = self.towers()[name]
        frozen = name in self.config.frozen_towers
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            pixels = pixels.to(next(tower.parameters()).dtype)
            if name == "vocabulary":
                return tower(pixels)
            states = tower(pixel_values=pixels, output_hidden_states=True).hidden_states
            return states[self.config.clip_feature_layer][:, 1:]  # drop CLS

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        clip_pixel_values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings, with the images' features in their placeholders when given."""
        inputs_embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is None:
            return inputs_embeds
        image_features = self.get_image_features(pixel_values, clip_pixel_values)
        return self.merge_image_features(input_ids, inputs_embeds, image_features)

    def merge_image_features(
        self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        """Put image features where the `<imgpad>` tokens are, one image per sequence."""
        mask = input_ids == self.config.image_token_id
        expected = image_features.shape[0] * image_features.shape[1]
        if int(mask.sum()) != expected:
            raise ValueError(
                f"{int(mask.sum())} image placeholder tokens for {image_features.shape[0]} image(s) of"
                f" {image_features.shape[1]} tokens each; build inputs with vary.model.templates"
            )
        features = image_features.to(inputs_embeds.dtype).reshape(-1, inputs_embeds.shape[-1])
        return inputs_embeds.masked_scatter(mask.unsqueeze(-1), features)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        clip_pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, pixel_values, clip_pixel_values)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        clip_pixel_values: torch.Tensor | None = None,
        **kwargs,
    ):
        """`GenerationMixin.generate`, the images read once up front: `generate` copies every
        prompt `num_beams` times before its first step, and the towers would read each copy."""
        if pixel_values is not None:
            kwargs["inputs_embeds"] = self.embed_inputs(input_ids, pixel_values, clip_pixel_values)
        return super().generate(input_ids=input_ids, **kwargs)


class VaryTiny(VaryForCausalLM):
    """Vocabulary generation model: vision vocabulary -> projector -> small LM, all trainable."""

    def __init__(self, config: VaryConfig):
        if config.clip_config is not None:
            raise ValueError("VaryTiny has no CLIP branch: use VaryBase for a config with clip_config")
        super().__init__(config)


class VaryBase(VaryForCausalLM):
    """Vocabulary merge model: CLIP + vocabulary (both frozen by default) -> projectors -> LM."""


# Let transformers' Auto classes open Vary folders (AutoConfig, AutoModelForCausalLM, AutoTokenizer).
AutoConfig.register(VaryConfig.model_type, VaryConfig, exist_ok=True)
AutoModelForCausalLM.register(VaryConfig, VaryForCausalLM, exist_ok=True)
