"""Released checkpoints (Vary-tiny, Vary-toy, Vary-base, GOT-OCR2, GOT-OCR-2.0-hf) -> our folders.

Conversion is pure state-dict work: read the release, rename its keys (`vary.convert.layouts`),
read the sizes off the weights and the LM config (`vary.convert.infer`), check the result
against a model built on the meta device (no memory, no init), and save it with the release's
own tokenizer. The output is a `vary.model.save_pretrained` folder: `load_pretrained(out)`.

Token ids are the release's own (Qwen's `<img>` = 151857 ...); nothing is renumbered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoTokenizer, GotOcr2Config, PreTrainedTokenizerBase

from vary.convert.checkpoint import load_state_dict, read_config
from vary.convert.infer import clip_options, qwen1_options, text_options, vocabulary_options
from vary.convert.keys import CheckpointError, check_state_dict, remap
from vary.convert.layouts import (
    GOT_OCR2,
    GOT_OCR2_HF,
    MODEL_LAYOUTS,
    VARY_QWEN,
    VARY_TINY,
    Layout,
    detect_layout,
)
from vary.convert.qwen_tokenizer import VOCAB_FILE, qwen_tokenizer
from vary.model.builder import (
    ClipConfig,
    ModelConfig,
    TokenizerConfig,
    VocabularyConfig,
    build_vary_config,
    model_class,
)
from vary.model.tokenizer import IM_END, add_vary_tokens
from vary.reporting import get_logger

log = get_logger("convert")
VARY_TOY_MAX_WIDTH = 2048  # Vary-toy's Qwen-1.8B; Vary-base's Qwen-7B is 4096 wide


def _got_hf_text(raw: dict[str, Any]) -> dict[str, Any]:
    config = GotOcr2Config.from_dict(raw)  # fills in what the file leaves to defaults
    # GotOcr2ForConditionalGeneration ties lm_head by its own flag, not its text config's
    return text_options(config.text_config.model_type, config.text_config.to_dict()) | {
        "tie_word_embeddings": config.tie_word_embeddings
    }


@dataclass(frozen=True)
class Format:
    """A released checkpoint family: its key layout and how the official code ran it."""

    name: str
    layout: Layout
    kind: Literal["tiny", "base"]
    template: Literal["plain", "chatml"]
    image_normalization: Literal["clip", "imagenet"]  # of the vocabulary branch (official eval transform)
    language_model: Callable[[dict[str, Any]], dict[str, Any]]  # config.json -> language_model options


FORMATS = {
    f.name: f
    for f in (
        Format("vary-tiny", VARY_TINY, "tiny", "plain", "imagenet", lambda raw: text_options("opt", raw)),
        Format("vary-toy", VARY_QWEN, "base", "chatml", "clip", qwen1_options),
        Format("vary-base", VARY_QWEN, "base", "chatml", "imagenet", qwen1_options),
        Format("got-ocr2", GOT_OCR2, "base", "chatml", "clip", lambda raw: text_options("qwen2", raw)),
        Format("got-ocr2-hf", GOT_OCR2_HF, "base", "chatml", "clip", _got_hf_text),
    )
}


def detect_format(state: Mapping[str, torch.Tensor]) -> Format:
    """The format of a release from its key names (Vary-toy vs Vary-base: from the LM width)."""
    layout = detect_layout(state, MODEL_LAYOUTS)
    if layout is None:
        raise CheckpointError(
            f"not a Vary / GOT-OCR2 checkpoint (first keys: {', '.join(list(state)[:4])});"
            f" known formats: {', '.join(FORMATS)}"
        )
    if layout is VARY_QWEN:
        wide = state["transformer.wte.weight"].shape[1] > VARY_TOY_MAX_WIDTH
        return FORMATS["vary-base" if wide else "vary-toy"]
    return next(f for f in FORMATS.values() if f.layout is layout)


def load_tokenizer(folder: Path, template: str) -> PreTrainedTokenizerBase:
    """The release's tokenizer, ids unchanged; chat models end turns (and generation) at <|im_end|>."""
    try:
        tokenizer = (
            qwen_tokenizer(folder / VOCAB_FILE)
            if (folder / VOCAB_FILE).is_file()
            else AutoTokenizer.from_pretrained(folder)
        )
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"{folder}: no usable tokenizer (tokenizer.json, vocab.json + merges.txt, {VOCAB_FILE}): "
            + " ".join(str(err).split())
        ) from err
    add_vary_tokens(tokenizer)
    if template == "chatml":
        tokenizer.eos_token = IM_END
    return tokenizer


def dominant_dtype(state: Mapping[str, torch.Tensor]) -> torch.dtype:
    return Counter(t.dtype for t in state.values() if t.is_floating_point()).most_common(1)[0][0]


def convert_checkpoint(
    source: str | Path, out: str | Path, format_name: str = "auto", dtype: torch.dtype | None = None
) -> Format:
    """Convert the release in folder `source` into a Vary model folder `out`; returns its format.

    `format_name`: "auto" (from the key names) or a `FORMATS` name; `dtype`: default the
    release's own (the dtype most of its tensors have).
    """
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: not a checkpoint folder")
    raw = load_state_dict(source)
    fmt = detect_format(raw) if format_name == "auto" else FORMATS[format_name]
    if detect_layout(raw, [fmt.layout]) is None:
        raise CheckpointError(f"{source}: not a {fmt.name} checkpoint (no key like {fmt.layout.signature})")
    state, unmatched = remap(raw, fmt.layout.rules)
    del raw
    tokenizer = load_tokenizer(source, fmt.template)
    has_clip = any(key.startswith("clip.") for key in state)
    spec = ModelConfig(
        kind=fmt.kind,
        vocabulary=VocabularyConfig(**vocabulary_options(state)),
        clip=ClipConfig(**clip_options(state)) if has_clip else None,
        language_model=fmt.language_model(read_config(source)),
        tokenizer=TokenizerConfig(path=str(source)),
        image_normalization=fmt.image_normalization,
        template=fmt.template,
    )
    config = build_vary_config(spec, tokenizer)
    dtype = dtype or dominant_dtype(state)
    with torch.device("meta"):
        model = model_class(config)(config).to(dtype)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    check_state_dict(
        state, model.state_dict(), str(source), optional=tied_aliases(model), unexpected=unmatched
    )
    model.save_pretrained(out, state_dict=state)
    tokenizer.save_pretrained(out)
    millions = sum(t.numel() for t in state.values()) / 1e6
    log.info(
        "%s (%s) -> %s: %s, %.1fM parameters, %s",
        source,
        fmt.name,
        out,
        type(model).__name__,
        millions,
        dtype,
    )
    return fmt


def tied_aliases(model: torch.nn.Module) -> set[str]:
    """State-dict names of tied weights (e.g. OPT's lm_head): releases may leave them out."""
    return (
        set(model.state_dict())
        - {name for name, _ in model.named_parameters()}
        - {name for name, _ in model.named_buffers()}
    )
