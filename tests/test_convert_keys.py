"""Key mapping as data: `remap` renames, splits, drops and reports; the check is one clear line."""

from __future__ import annotations

import pytest
import torch

from vary.convert.keys import CheckpointError, check_state_dict, drop, remap, rename, split
from vary.convert.layouts import MODEL_LAYOUTS, PART_LAYOUTS, detect_layout


def test_remap_renames_splits_drops_and_reports_the_rest():
    fused = torch.arange(12.0).view(6, 2)
    state = {
        "h.0.qkv": fused,
        "h.0.norm": torch.ones(2),
        "mask_decoder.x": torch.zeros(1),
        "odd": torch.ones(1),
    }
    rules = [
        split(r"h\.(\d+)\.qkv", r"layers.\1.q", r"layers.\1.k", r"layers.\1.v"),
        rename(r"h\.(\d+)\.norm", r"layers.\1.norm"),
        drop(r"mask_decoder\..+"),
    ]
    out, unmatched = remap(state, rules)
    assert sorted(out) == ["layers.0.k", "layers.0.norm", "layers.0.q", "layers.0.v"]
    assert torch.equal(torch.cat([out["layers.0.q"], out["layers.0.k"], out["layers.0.v"]]), fused)
    assert out["layers.0.q"].untyped_storage().data_ptr() != fused.untyped_storage().data_ptr()
    assert unmatched == ["odd"]


def test_check_lists_missing_unexpected_and_mismatched_in_one_line():
    expected = {f"w{i}": torch.zeros(2) for i in range(9)} | {"tied": torch.zeros(2)}
    found = {f"w{i}": torch.zeros(2) for i in range(1, 9)} | {"w8": torch.zeros(3), "extra": torch.zeros(1)}
    with pytest.raises(CheckpointError) as err:
        check_state_dict(found, expected, "ckpt", optional=["tied"], unexpected=["never.matched"])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("ckpt: checkpoint does not fit the model: 1 missing key (w0)")
    assert "2 unexpected keys (extra, never.matched)" in message
    assert "1 shape mismatch (w8 (3,) vs model (2,))" in message
    check_state_dict({"a": torch.zeros(1)}, {"a": torch.zeros(1), "tied": torch.zeros(1)}, "ok", ["tied"])


def test_long_key_lists_are_truncated():
    with pytest.raises(
        CheckpointError, match=r"20 missing keys \(k0, k1, k10, k11, k12, k13, \.\.\. and 14 more\)"
    ):
        check_state_dict({}, {f"k{i}": torch.zeros(1) for i in range(20)}, "ckpt")


@pytest.mark.parametrize(
    ("key", "layout"),
    [
        ("model.vision_tower.blocks.0.attn.qkv.weight", None),  # a tower alone is no model
        ("model.mm_projector.weight", "vary-tiny"),
        ("opt_proj.weight", "vary-tiny"),
        ("transformer.vision_tower_high.neck.0.weight", "vary-base"),
        ("model.vision_tower_high.neck.0.weight", "got-ocr2"),
        ("model.multi_modal_projector.conv_upsampler1.weight", "got-ocr2-hf"),
        ("multi_modal_projector.conv_upsampler1.weight", "got-ocr2-hf"),
    ],
)
def test_model_layouts_are_told_apart_by_key_names(key, layout):
    found = detect_layout([key, "lm_head.weight"], MODEL_LAYOUTS)
    assert (found.name if found else None) == layout


@pytest.mark.parametrize(
    ("key", "layout"),
    [
        ("image_encoder.neck.0.weight", "sam"),
        ("vision_encoder.neck.conv1.weight", "sam-hf"),
        ("vision_model.embeddings.patch_embedding.weight", "clip"),
        ("embeddings.patch_embedding.weight", "clip"),
        ("vocabulary.encoder.pos_embed", "vary"),
        ("transformer.vision_tower.vision_model.embeddings.class_embedding", None),  # needs the SAM branch
    ],
)
def test_part_layouts(key, layout):
    found = detect_layout([key], PART_LAYOUTS)
    assert (found.name if found else None) == layout
