"""Key layouts of released checkpoints, as rule tables from their names to ours.

Our names (docs/model.md): `vocabulary.encoder.*` (transformers' `SamVisionEncoder`),
`vocabulary.net_2|net_3`, `vocabulary_projector`, `clip.*` (transformers' `CLIPVisionModel`:
`clip.embeddings.*`, `clip.encoder.*`, ...),
`clip_projector`, `language_model.*` (the LM's own `AutoModelForCausalLM` keys).

Full models (`MODEL_LAYOUTS`, what `vary convert` reads):
- Vary-tiny: SAM + `net_2`/`net_3` in `model.vision_tower(_2)`, `model.mm_projector`, OPT
  `model.decoder.*` + `lm_head`; or the LAVIS-style `visual_encoder`, `opt_proj`, `opt_model`.
- Vary-toy / Vary-base: `transformer.vision_tower` (CLIP-L), `transformer.vision_tower_high` (SAM),
  `transformer.mm_projector` (CLIP branch), `transformer.mm_projector_vary` (SAM branch),
  Qwen-1 `transformer.*` + `lm_head`.
- GOT-OCR2: `model.vision_tower_high` (SAM + convs), `model.mm_projector_vary`, Qwen2 `model.*`.
- GOT-OCR-2.0-hf: transformers' `GotOcr2ForConditionalGeneration` (both its key layouts).

Single towers (`PART_LAYOUTS`, for `pretrained:` in a model config): the original SAM `.pth`
(`image_encoder.*`), the Hugging Face SAM folder (`vision_encoder.*`), a CLIP folder (`CLIPModel`:
`vision_model.*`; `CLIPVisionModel`: the same, or unprefixed since transformers 5), and our own
model folders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vary.convert.keys import Rule, drop, rename, split


@dataclass(frozen=True)
class Layout:
    name: str
    signature: str  # a checkpoint is in this layout when one of its keys starts with a match
    rules: tuple[Rule, ...]


def move(src: str, dst: str) -> Rule:
    """Every key under regex prefix `src` to the same name under `dst`."""
    return rename(rf"{src}(?P<rest>.+)", rf"{dst}\g<rest>")


def linear(src: str, dst: str) -> Rule:
    return rename(rf"{src}\.(weight|bias)", rf"{dst}.\1")


def sam_rules(src: str, dst: str = "vocabulary.") -> list[Rule]:
    """The original SAM `ImageEncoderViT` (under regex prefix `src`) -> our vision vocabulary.

    The renames of transformers' SAM and GOT-OCR2 conversion scripts; `net_2` / `net_3` are the
    two stride-2 convs that Vary and GOT put inside the SAM module.
    """
    enc = f"{dst}encoder."
    block = rf"{src}blocks\.(\d+)\."
    return [
        rename(rf"{src}patch_embed\.proj\.(weight|bias)", rf"{enc}patch_embed.projection.\1"),
        rename(rf"{src}pos_embed", f"{enc}pos_embed"),
        rename(rf"{block}norm([12])\.(weight|bias)", rf"{enc}layers.\1.layer_norm\2.\3"),
        rename(
            rf"{block}(attn\.(?:qkv|proj)\.(?:weight|bias)|attn\.rel_pos_[hw]|mlp\.lin[12]\.(?:weight|bias))",
            rf"{enc}layers.\1.\2",
        ),
        rename(rf"{src}neck\.0\.weight", f"{enc}neck.conv1.weight"),
        rename(rf"{src}neck\.1\.(weight|bias)", rf"{enc}neck.layer_norm1.\1"),
        rename(rf"{src}neck\.2\.weight", f"{enc}neck.conv2.weight"),
        rename(rf"{src}neck\.3\.(weight|bias)", rf"{enc}neck.layer_norm2.\1"),
        rename(rf"{src}net_([23])\.weight", rf"{dst}net_\1.weight"),
    ]


def clip_rules(src: str) -> list[Rule]:
    """A transformers CLIP vision transformer (under `src`) -> `clip.*`."""
    # old checkpoints store `position_ids`, a buffer transformers no longer saves
    parts = r"(?=(?:embeddings|pre_layrnorm|encoder|post_layernorm)\.)"
    return [drop(rf"{src}embeddings\.position_ids"), move(src + parts, "clip.")]


def qwen1_rules(src: str, dst: str = "language_model.") -> list[Rule]:
    """Qwen(-1) `QWenModel` under `src` -> transformers Qwen2 (the same maths, other names).

    `c_attn` is q, k, v fused along the output dim (all three with biases, as Qwen2). Qwen-1's
    MLP is `c_proj(w1(x) * silu(w2(x)))`, so `w2` is Qwen2's `gate_proj` and `w1` its `up_proj`.
    """
    layer = rf"{src}h\.(\d+)\."
    out = rf"{dst}model.layers.\1."
    return [
        rename(rf"{src}wte\.weight", f"{dst}model.embed_tokens.weight"),
        rename(rf"{src}ln_f\.weight", f"{dst}model.norm.weight"),
        rename(rf"{layer}ln_1\.weight", rf"{out}input_layernorm.weight"),
        rename(rf"{layer}ln_2\.weight", rf"{out}post_attention_layernorm.weight"),
        split(rf"{layer}attn\.c_attn\.(weight|bias)", *(rf"{out}self_attn.{p}_proj.\2" for p in "qkv")),
        rename(rf"{layer}attn\.c_proj\.weight", rf"{out}self_attn.o_proj.weight"),
        rename(rf"{layer}mlp\.w1\.weight", rf"{out}mlp.up_proj.weight"),
        rename(rf"{layer}mlp\.w2\.weight", rf"{out}mlp.gate_proj.weight"),
        rename(rf"{layer}mlp\.c_proj\.weight", rf"{out}mlp.down_proj.weight"),
        drop(rf"{layer}attn\.rotary_emb\.inv_freq"),
    ]


LM_HEAD = rename(r"lm_head\.weight", "language_model.lm_head.weight")

VARY_TINY = Layout(
    "vary-tiny",
    r"model\.mm_projector\.|opt_proj\.",
    (
        *sam_rules(r"model\.vision_tower(?:_2)?\."),
        linear(r"model\.mm_projector", "vocabulary_projector"),
        move(r"model\.decoder\.", "language_model.model.decoder."),
        LM_HEAD,
        # the LAVIS-style release: opt_model is a whole OPTForCausalLM
        *sam_rules(r"visual_encoder\."),
        linear(r"opt_proj", "vocabulary_projector"),
        move(r"opt_model\.", "language_model."),
    ),
)
VARY_QWEN = Layout(
    "vary-base",  # Vary-base and Vary-toy: the same layout, a Qwen-7B or Qwen-1.8B inside
    r"transformer\.vision_tower_high\.",
    (
        *clip_rules(r"transformer\.vision_tower\.(?:vision_model\.)?"),
        *sam_rules(r"transformer\.vision_tower_high\."),
        linear(r"transformer\.mm_projector", "clip_projector"),
        linear(r"transformer\.mm_projector_vary", "vocabulary_projector"),
        *qwen1_rules(r"transformer\."),
        LM_HEAD,
    ),
)
GOT_OCR2 = Layout(
    "got-ocr2",
    r"model\.vision_tower_high\.",
    (
        *sam_rules(r"model\.vision_tower_high\."),
        linear(r"model\.mm_projector_vary", "vocabulary_projector"),
        move(r"model\.(?=(?:embed_tokens|layers|norm)\.)", "language_model.model."),
        LM_HEAD,
    ),
)
_GOT_HF_PROJECTOR = r"(?:model\.)?multi_modal_projector\."
GOT_OCR2_HF = Layout(
    "got-ocr2-hf",
    _GOT_HF_PROJECTOR,
    (
        move(r"(?:model\.)?vision_tower\.", "vocabulary.encoder."),
        rename(rf"{_GOT_HF_PROJECTOR}conv_upsampler1\.weight", "vocabulary.net_2.weight"),
        rename(rf"{_GOT_HF_PROJECTOR}conv_upsampler2\.weight", "vocabulary.net_3.weight"),
        linear(rf"{_GOT_HF_PROJECTOR}multimodal_projector", "vocabulary_projector"),
        move(r"model\.language_model\.", "language_model.model."),
        move(r"language_model\.", "language_model."),  # transformers < 4.52 saved the LM whole
        LM_HEAD,
    ),
)
MODEL_LAYOUTS = (GOT_OCR2_HF, GOT_OCR2, VARY_QWEN, VARY_TINY)

OURS = Layout("vary", r"vocabulary\.encoder\.|clip\.embeddings\.", (move("", ""),))
SAM = Layout(
    "sam",
    r"image_encoder\.",
    (*sam_rules(r"image_encoder\."), drop(r"(?:prompt_encoder|mask_decoder)\..+")),
)
SAM_HF = Layout(
    "sam-hf",
    r"vision_encoder\.",
    (
        move(r"vision_encoder\.", "vocabulary.encoder."),
        drop(r"(?:prompt_encoder|mask_decoder|shared_image_embedding)\..+"),
    ),
)
CLIP_HF = Layout(
    "clip",
    r"(?:vision_model\.)?embeddings\.patch_embedding\.",
    (
        *clip_rules(r"(?:vision_model\.)?"),
        drop(r"text_model\..+|visual_projection\.weight|text_projection\.weight|logit_scale"),
    ),
)
PART_LAYOUTS = (OURS, *MODEL_LAYOUTS, SAM, SAM_HF, CLIP_HF)


def detect_layout(keys: Iterable[str], layouts: Iterable[Layout]) -> Layout | None:
    """The first layout (in the given order) whose signature starts one of the keys."""
    keys = list(keys)
    for layout in layouts:
        signature = re.compile(layout.signature)
        if any(signature.match(key) for key in keys):
            return layout
    return None
