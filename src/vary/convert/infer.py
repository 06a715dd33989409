"""Model sizes read off a checkpoint: towers from their weight shapes, LMs from their config.json.

Released Vary checkpoints do not describe their vision towers in config.json, but the weights
do: the patch conv gives width and patch size, `pos_embed` the grid, and SAM's relative-position
tables give the head size (their width) and which blocks attend globally (their length). CLIP's
head count is the one size no shape shows; OpenAI's CLIP (which Vary uses) has 64-wide heads.

Everything here returns plain option dicts (the fields of `vary.model` section dataclasses),
so this module needs nothing from `vary.model`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from transformers import CONFIG_MAPPING, PreTrainedConfig

from vary.convert.keys import CheckpointError

CLIP_HEAD_DIM = 64
# Fields that describe a config file, not the architecture, or that Vary sets from the tokenizer.
NOT_ARCHITECTURE = {f.name for f in dataclasses.fields(PreTrainedConfig)} | {
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "layer_types",  # derived from the layer count
    "torch_dtype",  # legacy name of `dtype`
    "auto_map",  # remote-code classes of the original release
}


def _get(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"cannot read the model sizes: the checkpoint has no {key}")
    return state[key]


def count_layers(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many `prefix.N.` blocks there are."""
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)\.")
    found = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    if not found:
        raise CheckpointError(f"cannot read the model sizes: the checkpoint has no {prefix}N.* blocks")
    return max(found) + 1


def vocabulary_options(state: Mapping[str, torch.Tensor], prefix: str = "vocabulary.") -> dict[str, Any]:
    """`VocabularyConfig` fields of the SAM encoder + convs in `state` (our key names)."""
    encoder = f"{prefix}encoder."
    patch = _get(state, f"{encoder}patch_embed.projection.weight")  # (width, 3, patch, patch)
    side = _get(state, f"{encoder}pos_embed").shape[1]  # (1, grid, grid, width)
    layers = count_layers(state, f"{encoder}layers.")
    rel_pos = [
        _get(state, f"{encoder}layers.{i}.attn.rel_pos_h") for i in range(layers)
    ]  # (2 * span - 1, head)
    global_layers = [i for i, table in enumerate(rel_pos) if table.shape[0] == 2 * side - 1]
    windowed = [table.shape[0] for table in rel_pos if table.shape[0] != 2 * side - 1]
    return {
        "image_size": side * patch.shape[-1],
        "patch_size": patch.shape[-1],
        "hidden_size": patch.shape[0],
        "num_hidden_layers": layers,
        "num_attention_heads": patch.shape[0] // rel_pos[0].shape[1],
        "mlp_dim": _get(state, f"{encoder}layers.0.mlp.lin1.weight").shape[0],
        "window_size": (windowed[0] + 1) // 2 if windowed else side,
        "global_attn_indexes": global_layers,
        "neck_channels": _get(state, f"{encoder}neck.conv1.weight").shape[0],
        "channels": [_get(state, f"{prefix}net_{i}.weight").shape[0] for i in (2, 3)],
    }


def clip_options(state: Mapping[str, torch.Tensor], prefix: str = "clip.") -> dict[str, Any]:
    """`ClipConfig` fields of the CLIP vision transformer in `state` (our key names)."""
    patch = _get(state, f"{prefix}embeddings.patch_embedding.weight")  # (width, 3, patch, patch)
    positions = _get(state, f"{prefix}embeddings.position_embedding.weight").shape[0]  # grid^2 + CLS
    return {
        "image_size": math.isqrt(positions - 1) * patch.shape[-1],
        "patch_size": patch.shape[-1],
        "hidden_size": patch.shape[0],
        "num_hidden_layers": count_layers(state, f"{prefix}encoder.layers."),
        "num_attention_heads": patch.shape[0] // CLIP_HEAD_DIM,
        "intermediate_size": _get(state, f"{prefix}encoder.layers.0.mlp.fc1.weight").shape[0],
    }


def text_options(model_type: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture fields of a transformers LM config, from a config.json that may carry
    other keys (Vary's and GOT's own, legacy names such as `rope_theta`, which the config
    class itself translates)."""
    if model_type not in CONFIG_MAPPING:
        raise CheckpointError(f"config.json: model type {model_type!r} is not one transformers knows")
    cls = CONFIG_MAPPING[model_type]
    config = cls(**{k: v for k, v in raw.items() if k not in NOT_ARCHITECTURE | {"model_type"}})
    fields = {f.name for f in dataclasses.fields(cls)} - NOT_ARCHITECTURE
    return {"model_type": model_type} | {k: v for k, v in config.to_dict().items() if k in fields}


def qwen1_options(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A Qwen(-1) config.json (`QWenConfig`) as the equivalent transformers Qwen2 options.

    Qwen-1's `intermediate_size` counts both SwiGLU halves. Its dynamic-NTK rotary scaling and
    log-n attention scaling only act beyond `seq_length` (8192) tokens, so Qwen2's plain rotary
    embedding is the same model on every sequence Vary reads.
    """
    try:
        hidden, heads = raw["hidden_size"], raw["num_attention_heads"]
        sizes = {k: raw[k] for k in ("vocab_size", "num_hidden_layers")}
        intermediate = raw["intermediate_size"] // 2
    except KeyError as err:
        raise CheckpointError(f"config.json: Qwen config without {err}") from err
    if raw.get("kv_channels", hidden // heads) * heads != hidden:
        raise CheckpointError(
            f"config.json: kv_channels x heads != hidden_size ({hidden}): not a Qwen2 shape"
        )
    if raw.get("rotary_pct", 1.0) != 1.0:
        raise CheckpointError(
            "config.json: partial rotary embeddings (rotary_pct < 1) have no Qwen2 equivalent"
        )
    return text_options(
        "qwen2",
        sizes
        | {
            "hidden_size": hidden,
            "intermediate_size": intermediate,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
            "max_position_embeddings": raw.get("max_position_embeddings", 8192),
            "rms_norm_eps": raw.get("layer_norm_epsilon", 1e-6),
            "rope_theta": raw.get("rotary_emb_base", 10000),
            "tie_word_embeddings": raw.get("tie_word_embeddings", False),
        },
    )
