"""Growing a trained model without changing what it computes (progressive stacking, widening).

A model that has stopped improving may be short of capacity. Training a bigger one from scratch
throws away what it learned; these functions give the trained model more room instead, starting
from exactly its outputs:

- `deepen` follows every transformer layer with copies of itself whose residual branches
  (attention output and MLP output projections) start at zero. A pre-norm residual layer with
  zero output projections is the identity, so the deeper model gives exactly the old model's
  outputs, and training goes on from there with twice (or `factor` x) the layers (as in Gong et
  al. 2019, "Efficient Training of BERT by Progressively Stacking", with ReZero-style zero
  branches so nothing is lost at the switch).
- `widen` gives every MLP `factor` x the hidden units: the new units' input weights are drawn
  like the trained ones', their output weights start at zero, so they add nothing until trained
  (Net2Net's wider MLP, Chen et al. 2016, without its copies: zero outputs need no symmetry
  breaking). It costs less than `deepen`: attention is left as it is.
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
# Each MLP's first linears (hidden units as rows) and its last (hidden units as columns).
MLP_INPUTS = ("mlp.lin1", "fc1", "mlp.gate_proj", "mlp.up_proj")
MLP_OUTPUTS = ("mlp.lin2", "fc2", "mlp.down_proj")
PART_LAYERS = {
    "vocabulary": re.compile(r"^(vocabulary\.encoder\.layers)\.(\d+)\.(.+)$"),
    "language_model": re.compile(r"^(language_model\.(?:.+\.)?layers)\.(\d+)\.(.+)$"),
}


def deepen(
    model: VaryForCausalLM, factor: int, parts: Iterable[str] = ("vocabulary", "language_model")
) -> VaryForCausalLM:
    """A new model with each layer of `parts` repeated `factor` times; the copies are identities."""
    parts = checked_parts(parts, factor, "deepen")
    if "language_model" in parts and getattr(model.config.text_config, "do_layer_norm_before", True) is False:
        raise ValueError("cannot deepen a post-norm language model: its layers normalise after the residual")
    config = deepened_config(model.config, factor, parts)
    return grown_model(model, config, deepened_state(model.state_dict(), factor, parts))


def widen(
    model: VaryForCausalLM, factor: int, parts: Iterable[str] = ("vocabulary", "language_model")
) -> VaryForCausalLM:
    """A new model whose MLPs in `parts` have `factor` x the hidden units; the new ones add nothing yet."""
    parts = checked_parts(parts, factor, "widen")
    config = widened_config(model.config, factor, parts)
    return grown_model(model, config, widened_state(model.state_dict(), factor, parts))


def checked_parts(parts: Iterable[str], factor: int, growth: str) -> tuple[str, ...]:
    parts = tuple(parts)
    unknown = sorted(set(parts) - set(PART_LAYERS))
    if unknown:
        raise ValueError(f"cannot {growth} {unknown[0]!r}: parts are {sorted(PART_LAYERS)}")
    if factor < 1:
        raise ValueError(f"{growth} factor must be >= 1, got {factor}")
    return parts


def grown_model(
    model: VaryForCausalLM, config: VaryConfig, state: dict[str, torch.Tensor]
) -> VaryForCausalLM:
    grown = type(model)(config).to(model.dtype)
    grown.load_state_dict(state)
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


def widened_config(config: VaryConfig, factor: int, parts: tuple[str, ...]) -> VaryConfig:
    """`config` with `factor` x the MLP hidden units of `parts` (SAM's `mlp_dim`, OPT's
    `ffn_dim`, Qwen2 / LLaMA's `intermediate_size`)."""
    config = copy.deepcopy(config)
    if "vocabulary" in parts:
        config.vision_config.mlp_dim *= factor
    if "language_model" in parts:
        text = config.text_config
        name = next(n for n in ("ffn_dim", "intermediate_size") if hasattr(text, n))
        setattr(text, name, getattr(text, name) * factor)
    return config


def widened_state(
    state: dict[str, torch.Tensor], factor: int, parts: tuple[str, ...], seed: int = 0
) -> dict[str, torch.Tensor]:
    """Each MLP's input linears with `factor` x the rows (new weights drawn at the trained ones'
    scale, new biases zero) and its output linear with as many more columns, all zero. An MLP
    whose linears are named otherwise keeps its shapes, which the widened model then refuses."""
    patterns = [PART_LAYERS[part] for part in parts]
    generator = torch.Generator().manual_seed(seed)
    grown = {}
    for key, tensor in state.items():
        match = next((m for m in (p.match(key) for p in patterns) if m), None)
        module, _, kind = match.group(3).rpartition(".") if match else ("", "", "")
        if module in MLP_INPUTS:
            shape = ((factor - 1) * tensor.shape[0], *tensor.shape[1:])
            if kind == "weight":
                new = (torch.randn(shape, generator=generator) * tensor.float().std()).to(tensor.dtype)
            else:
                new = tensor.new_zeros(shape)
            tensor = torch.cat([tensor, new])
        elif module in MLP_OUTPUTS and kind == "weight":
            tensor = torch.cat([tensor, tensor.new_zeros(tensor.shape[0], (factor - 1) * tensor.shape[1])], 1)
        grown[key] = tensor
    return grown
