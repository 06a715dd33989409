"""Growing a trained model deeper without changing what it computes (progressive stacking).

A model that has stopped improving may be short of capacity. Training a bigger one from scratch
throws away what it learned; `deepen` instead follows every transformer layer with copies of
itself whose residual branches (attention output and MLP output projections) start at zero. A
pre-norm residual layer with zero output projections is the identity, so the deeper model gives
exactly the old model's outputs, and training goes on from there with twice (or `factor` x) the
layers (as in Gong et al. 2019, "Efficient Training of BERT by Progressively Stacking", with
ReZero-style zero branches so nothing is lost at the switch).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable

import torch

from vary.model.configuration import VaryConfig
from vary.model.modeling import VaryForCausalLM

# The last linear of each residual branch, per layer type (SAM ViTDet, OPT, Qwen2 / LLaMA).
RESIDUAL_OUTPUTS = ("attn.proj", "mlp.lin2", "self_attn.out_proj", "fc2", "self_attn.o_proj", "mlp.down_proj")
PART_LAYERS = {
    "vocabulary": re.compile(r"^(vocabulary\.encoder\.layers)\.(\d+)\.(.+)$"),
    "language_model": re.compile(r"^(language_model\.(?:.+\.)?layers)\.(\d+)\.(.+)$"),
}


def deepen(
    model: VaryForCausalLM, factor: int, parts: Iterable[str] = ("vocabulary", "language_model")
) -> VaryForCausalLM:
    """A new model with each layer of `parts` repeated `factor` times; the copies are identities."""
    parts = tuple(parts)
    unknown = sorted(set(parts) - set(PART_LAYERS))
    if unknown:
        raise ValueError(f"cannot deepen {unknown[0]!r}: parts are {sorted(PART_LAYERS)}")
    if factor < 1:
        raise ValueError(f"deepen factor must be >= 1, got {factor}")
    if "language_model" in parts and getattr(model.config.text_config, "do_layer_norm_before", True) is False:
        raise ValueError("cannot deepen a post-norm language model: its layers normalise after the residual")
    config = deepened_config(model.config, factor, parts)
    grown = type(model)(config).to(model.dtype)
    grown.load_state_dict(deepened_state(model.state_dict(), factor, parts))
    grown.generation_config = copy.deepcopy(model.generation_config)
    return grown  # frozen as `model` was: its constructor follows config.frozen_towers


def deepened_config(config: VaryConfig, factor: int, parts: tuple[str, ...]) -> VaryConfig:
    """`config` with `factor` x the layers of `parts`; per-layer lists (SAM's global-attention
    layers, a text config's `layer_types`) follow their layers."""
    config = copy.deepcopy(config)
    if "vocabulary" in parts:
        vision = config.vision_config
        layers = vision.global_attn_indexes
        vision.global_attn_indexes = [i * factor + j for i in layers for j in range(factor)]
        vision.num_hidden_layers *= factor
    if "language_model" in parts:
        text = config.text_config
        if getattr(text, "layer_types", None):
            text.layer_types = [kind for kind in text.layer_types for _ in range(factor)]
        text.num_hidden_layers *= factor
    return config


def deepened_state(
    state: dict[str, torch.Tensor], factor: int, parts: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Layer i's weights at layers i*factor ... i*factor + factor-1, with the copies' residual
    output projections zeroed."""
    patterns = [PART_LAYERS[part] for part in parts]
    grown: dict[str, torch.Tensor] = {}
    outputs: dict[tuple[str, int], set[str]] = {}
    for key, tensor in state.items():
        match = next((m for m in (p.match(key) for p in patterns) if m), None)
        if match is None:
            grown[key] = tensor
            continue
        prefix, index, suffix = match.group(1), int(match.group(2)), match.group(3)
        module = suffix.rsplit(".", 1)[0]
        is_output = module in RESIDUAL_OUTPUTS
        layer_outputs = outputs.setdefault((prefix, index), set())
        if is_output:
            layer_outputs.add(module)
        for copy_index in range(factor):
            new = torch.zeros_like(tensor) if copy_index and is_output else tensor.clone()
            grown[f"{prefix}.{index * factor + copy_index}.{suffix}"] = new
    for (prefix, index), found in outputs.items():
        if len(found) != 2:  # the attention's and the MLP's
            raise ValueError(
                f"{prefix}.{index}: cannot make a copy of this layer an identity: found output projections"
                f" {sorted(found)}, expected two of {', '.join(RESIDUAL_OUTPUTS)}"
            )
    return grown
