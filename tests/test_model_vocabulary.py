"""The vision vocabulary network: equal to transformers' GOT-OCR2 tower, paper sizes on meta."""

from __future__ import annotations

import pytest
import torch
from transformers.models.got_ocr2.configuration_got_ocr2 import GotOcr2Config
from transformers.models.got_ocr2.modeling_got_ocr2 import GotOcr2Model

from conftest import tiny_vocabulary
from vary.model import VisionVocabulary, build_model, build_vary_config, load_model_config

CONFIGS = "configs/models"


def test_vocabulary_equals_got_ocr2_vision_tower():
    """GOT-OCR2's SAM tower + conv_upsampler1/2 is the same network as ours (same weights)."""
    spec = tiny_vocabulary()
    ours = VisionVocabulary(spec.to_hf(), spec.channels).eval()
    sam = spec.to_hf().to_dict()
    vision_keys = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
        "patch_size",
        "window_size",
        "global_attn_indexes",
        "output_channels",
        "mlp_dim",
    )
    got = GotOcr2Model(
        GotOcr2Config(
            vision_config={k: sam[k] for k in vision_keys},
            text_config={
                "model_type": "qwen2",
                "hidden_size": spec.channels[1],
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "intermediate_size": 32,
                "vocab_size": 64,
            },
        )
    ).eval()
    with torch.no_grad():  # random (non-trivial) weights everywhere, then copy ours into GOT
        for p in ours.parameters():
            p.normal_(0, 0.05)
    got.vision_tower.load_state_dict(ours.encoder.state_dict())
    got.multi_modal_projector.conv_upsampler1.load_state_dict(ours.net_2.state_dict())
    got.multi_modal_projector.conv_upsampler2.load_state_dict(ours.net_3.state_dict())

    pixels = torch.randn(2, 3, spec.image_size, spec.image_size)
    with torch.no_grad():
        expected = (
            got.multi_modal_projector.conv_upsampler2(
                got.multi_modal_projector.conv_upsampler1(got.vision_tower(pixels).last_hidden_state)
            )
            .flatten(2)
            .transpose(1, 2)
        )
        actual = ours(pixels)
    side = spec.image_size // spec.patch_size // 4
    assert actual.shape == (2, side * side, spec.channels[1])
    assert (actual - expected).abs().max().item() <= 1e-5


def test_paper_vocabulary_size_on_meta():
    spec = load_model_config(f"{CONFIGS}/vary-tiny.yaml").vocabulary
    with torch.device("meta"):
        network = VisionVocabulary(spec.to_hf(), spec.channels)
    millions = sum(p.numel() for p in network.parameters()) / 1e6
    assert millions == pytest.approx(95.6, abs=0.1)
    assert spec.to_hf().image_size // spec.patch_size == 64  # 64x64x256 neck map


@pytest.mark.parametrize(
    ("name", "total_millions", "image_tokens"),
    [
        ("vary-tiny", 95.6 + 125.2 + 0.8, 256),
        ("vary-toy", 1836 + 95.6 + 304 + 2.1, 256),
        ("vary-base", 7721 + 95.6 + 304 + 4.2, 256),
    ],
)
def test_paper_models_build_on_meta(tokenizer, name, total_millions, image_tokens):
    spec = load_model_config(f"{CONFIGS}/{name}.yaml")
    with torch.device("meta"):
        model = build_model(spec, tokenizer)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert millions == pytest.approx(total_millions, rel=0.01)
    assert model.config.num_image_tokens == image_tokens
    if spec.clip is not None:
        assert model.config.clip_num_tokens == image_tokens
        assert model.clip_projector.out_features * 2 == spec.language_model["hidden_size"]


def test_cpu_configs_build(tokenizer):
    for name in ("tiny-cpu", "base-cpu"):
        config = build_vary_config(load_model_config(f"{CONFIGS}/{name}.yaml"), tokenizer)
        assert config.num_image_tokens == 16
