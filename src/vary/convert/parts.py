"""Pretrained parts into a freshly built model: the `pretrained:` entries of a model config.

- vocabulary: the original SAM `.pth`, a Hugging Face SAM folder, or any model whose vocabulary
  network we can read (a Vary model folder of ours, Vary-tiny, Vary-toy, GOT-OCR2, ...). The
  paper's Vary-base starts from the vocabulary network Vary-tiny trained; a bare SAM has no
  `net_2`/`net_3`, which then keep their random initialisation.
- clip: a CLIP folder (`CLIPModel` or `CLIPVisionModel`), or any model with our CLIP branch.
- language model: any causal LM folder transformers reads (config.json + weights), loaded with
  transformers itself, then `resize_token_embeddings` to the Vary vocabulary.

Every load checks the checkpoint against the module and fails with one message listing the
missing, unexpected and mis-shaped keys; nothing is silently left random.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from vary.convert.checkpoint import load_state_dict, read_config
from vary.convert.infer import text_options
from vary.convert.keys import CheckpointError, check_state_dict, remap
from vary.convert.layouts import PART_LAYOUTS, detect_layout
from vary.reporting import get_logger

log = get_logger("convert")


def tower_state(path: str | Path, prefix: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The weights under our `prefix` (e.g. "vocabulary.") in any checkpoint layout we read, and
    the checkpoint's keys no rule of its layout knows (a layout covers every key it should have)."""
    state = load_state_dict(path)
    layout = detect_layout(state, PART_LAYOUTS)
    if layout is None:
        raise CheckpointError(f"{path}: unknown checkpoint layout (first keys: {', '.join(list(state)[:4])})")
    mapped, unmatched = remap(state, layout.rules)
    tower = {k[len(prefix) :]: v for k, v in mapped.items() if k.startswith(prefix)}
    if not tower:
        raise CheckpointError(f"{path}: a {layout.name} checkpoint without {prefix.rstrip('.')} weights")
    log.info("%s: %d %s tensors (%s layout)", path, len(tower), prefix.rstrip("."), layout.name)
    return tower, unmatched


def load_checked(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    optional: Collection[str] = (),
    unexpected: Collection[str] = (),
) -> None:
    check_state_dict(state, module.state_dict(), source, optional, unexpected)
    module.load_state_dict(state, strict=False)  # checked: only `optional` keys can be absent


def load_vocabulary(vocabulary: nn.Module, path: str | Path) -> None:
    """SAM (+ `net_2`/`net_3` when the checkpoint has them) into a `VisionVocabulary`."""
    state, unmatched = tower_state(path, "vocabulary.")
    convs = [k for k in vocabulary.state_dict() if k.startswith(("net_2.", "net_3."))]
    if not any(k in state for k in convs):
        log.info("%s: no net_2/net_3 convolutions (a bare SAM): they stay randomly initialised", path)
    load_checked(vocabulary, state, str(path), optional=convs, unexpected=unmatched)


def load_clip(clip: PreTrainedModel, path: str | Path) -> None:
    """A CLIP vision transformer into our `CLIPVisionModel`, after checking what shapes cannot
    show (head count, activation) against the folder's config.json when it is CLIP's."""
    raw = read_config(path) if (Path(path) / "config.json").is_file() else {}
    if str(raw.get("model_type")).startswith("clip"):  # clip (CLIPModel) or clip_vision_model
        folder = raw.get("vision_config", raw)
        ours = clip.config.to_dict()
        differ = [
            f"{key} {folder[key]!r} (ours {ours[key]!r})"
            for key in ("num_attention_heads", "hidden_act", "layer_norm_eps")
            if key in folder and folder[key] != ours[key]
        ]
        if differ:
            raise CheckpointError(f"{path}: CLIP config differs from the model's: {', '.join(differ)}")
    state, unmatched = tower_state(path, "clip.")
    load_checked(clip, state, str(path), unexpected=unmatched)


def language_model_options(path: str | Path) -> dict[str, Any]:
    """The `language_model` options of a causal LM folder (its config.json)."""
    raw = read_config(path)
    if "model_type" not in raw:
        raise CheckpointError(f"{path}/config.json: no model_type")
    return text_options(raw["model_type"], raw)


def load_language_model(language_model: PreTrainedModel, path: str | Path) -> None:
    """A causal LM folder into `language_model`; the embeddings grow to our vocabulary
    (Vary's added tokens) with transformers' `resize_token_embeddings`."""
    try:
        pretrained, info = AutoModelForCausalLM.from_pretrained(
            path, dtype=language_model.dtype, output_loading_info=True
        )
    except OSError as err:
        raise CheckpointError(f"{path}: not a causal LM folder ({' '.join(str(err).split())})") from err
    problems = sorted(info["missing_keys"]) + sorted(str(k) for k in info["mismatched_keys"])
    if problems:
        unexpected = ", ".join(sorted(info["unexpected_keys"])[:6]) or "none"
        raise CheckpointError(
            f"{path}: incomplete checkpoint: missing or mis-shaped {', '.join(problems[:6])}"
            f" ({len(problems)} in all; unexpected: {unexpected})"
        )
    rows = language_model.get_input_embeddings().weight.shape[0]
    if pretrained.get_input_embeddings().weight.shape[0] < rows:
        pretrained.resize_token_embeddings(rows)
    load_checked(language_model, pretrained.state_dict(), str(path))
