"""Models built from pretrained parts: SAM (.pth and HF folder), CLIP folders, any causal LM folder.

Each test writes a tiny random checkpoint in the real layout, builds a Vary model whose config
points at it, and requires the part to compute exactly what the reference transformers model
computes on the same weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    CLIPConfig,
    CLIPModel,
    CLIPVisionModel,
    OPTConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SamConfig,
    SamModel,
)
from transformers.models.sam.modeling_sam import SamVisionEncoder

from conftest import CORPUS, tiny_model_config, tiny_vocabulary
from vary.convert.keys import CheckpointError
from vary.model import ClipConfig, build_model, build_tokenizer, load_model_config

ATOL = 1e-5
# transformers' SAM names -> the original `sam_vit_b_01ec64.pth` names (the inverse of
# transformers' convert_sam_to_hf.py table), applied in order.
SAM_TO_ORIGINAL = (
    ("neck.conv1", "neck.0"),
    ("neck.layer_norm1", "neck.1"),
    ("neck.conv2", "neck.2"),
    ("neck.layer_norm2", "neck.3"),
    ("patch_embed.projection", "patch_embed.proj"),
    ("layers.", "blocks."),
    (".layer_norm", ".norm"),
)
TINY_CLIP = {"image_size": 32, "patch_size": 16, "hidden_size": 128, "num_hidden_layers": 2}
TINY_CLIP |= {"num_attention_heads": 2, "intermediate_size": 256}  # OpenAI's 64-wide heads


@torch.no_grad()
def randomize(module: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Random values everywhere (init leaves norms at 1 and rel-pos tables at 0: too forgiving)."""
    for parameter in module.parameters():
        parameter.normal_(0.0, std)
    return module.eval()


def tiny_sam() -> SamVisionEncoder:
    return randomize(SamVisionEncoder(tiny_vocabulary().to_hf()))


def original_sam(encoder: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A transformers SAM encoder's state dict under the original SAM / Vary / GOT key names."""
    state = {}
    for key, tensor in encoder.items():
        for ours, original in SAM_TO_ORIGINAL:
            key = key.replace(ours, original)
        state[prefix + key] = tensor.clone()
    return state


def bpe_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A plain byte-level BPE tokenizer, as a downloaded LM has: no Vary tokens."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="</s>", eos_token="</s>", pad_token="<pad>"
    )


def lm_folder(tmp_path, model_type: str):
    """A causal LM folder (config.json + model.safetensors + tokenizer) and the LM itself."""
    tokenizer = bpe_tokenizer()
    sizes = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    if model_type == "opt":
        config = OPTConfig(**sizes, ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=128)
    else:
        config = Qwen2Config(**sizes, intermediate_size=64, num_key_value_heads=1, tie_word_embeddings=False)
    model = randomize(AutoModelForCausalLM.from_config(config))
    folder = tmp_path / model_type
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model


def test_vary_tiny_from_sam_pth_and_an_opt_folder(tmp_path):
    """The paper's Vary-tiny start: SAM ViT-B weights + OPT-125M, from one YAML config."""
    sam = tiny_sam()
    original = original_sam(sam.state_dict(), "image_encoder.") | {
        "mask_decoder.iou_token.weight": torch.zeros(1, 8)
    }
    torch.save(original, tmp_path / "sam_vit_b.pth")
    folder, opt = lm_folder(tmp_path, "opt")
    vocabulary = dataclasses.asdict(tiny_vocabulary()) | {"pretrained": str(tmp_path / "sam_vit_b.pth")}
    config = {"kind": "tiny", "vocabulary": vocabulary, "language_model": {"pretrained": str(folder)}}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(config))
    spec = load_model_config(tmp_path / "model.yaml")
    assert spec.tokenizer.path == str(folder) and spec.language_model["model_type"] == "opt"
    tokenizer = build_tokenizer(spec.tokenizer)
    assert len(tokenizer) > opt.config.vocab_size  # Vary's tokens were added ...
    model = build_model(spec, tokenizer).eval()
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)  # ... and the LM resized

    pixels = torch.randn(1, 3, 64, 64)
    ids = torch.tensor([tokenizer("Vary reads documents").input_ids])
    with torch.no_grad():
        ours = model.vocabulary.encoder(pixels).last_hidden_state
        assert (ours - sam(pixels).last_hidden_state).abs().max() <= ATOL
        logits = model.language_model(input_ids=ids).logits[..., : opt.config.vocab_size]
        assert (logits - opt(input_ids=ids).logits).abs().max() <= ATOL


def test_qwen2_folder_and_its_tokenizer(tmp_path, tokenizer):
    folder, qwen = lm_folder(tmp_path, "qwen2")
    spec = tiny_model_config("base", language_model={"pretrained": str(folder), "num_hidden_layers": 2})
    assert spec.language_model["num_key_value_heads"] == 1  # the folder's config ...
    model = build_model(spec, build_tokenizer(spec.tokenizer)).eval()  # ... and tokenizer
    ids = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        logits = model.language_model(input_ids=ids).logits[..., : qwen.config.vocab_size]
        assert (logits - qwen(input_ids=ids).logits).abs().max() <= ATOL


def test_sam_from_a_hugging_face_folder(tmp_path, tokenizer):
    sam = SamModel(SamConfig(vision_config=tiny_vocabulary().to_hf().to_dict()))
    randomize(sam.vision_encoder)
    sam.save_pretrained(tmp_path / "sam-vit-base")
    spec = tiny_model_config()
    spec.vocabulary.pretrained = str(tmp_path / "sam-vit-base")
    model = build_model(spec, tokenizer).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = sam.vision_encoder(pixels).last_hidden_state
        assert (model.vocabulary.encoder(pixels).last_hidden_state - expected).abs().max() <= ATOL


@pytest.mark.parametrize("whole", [True, False], ids=["CLIPModel", "CLIPVisionModel"])
def test_clip_from_a_folder(tmp_path, tokenizer, whole):
    if whole:
        text = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
        clip = CLIPModel(CLIPConfig(text_config=text, vision_config=TINY_CLIP, projection_dim=16))
    else:
        clip = CLIPVisionModel(CLIPConfig(vision_config=TINY_CLIP).vision_config)
    randomize(clip)
    clip.save_pretrained(tmp_path / "clip")
    spec = tiny_model_config("base", clip=ClipConfig(**TINY_CLIP, pretrained=str(tmp_path / "clip")))
    model = build_model(spec, tokenizer).eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference = clip.vision_model if whole else clip
        expected = reference(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        ours = model.clip(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    assert (ours - expected).abs().max() <= ATOL


def test_clip_heads_are_checked_against_the_folder(tmp_path, tokenizer):
    CLIPVisionModel(
        CLIPConfig(vision_config=TINY_CLIP | {"num_attention_heads": 4}).vision_config
    ).save_pretrained(tmp_path / "clip")
    spec = tiny_model_config("base", clip=ClipConfig(**TINY_CLIP, pretrained=str(tmp_path / "clip")))
    with pytest.raises(CheckpointError, match=r"num_attention_heads 4 \(ours 2\)"):
        build_model(spec, tokenizer)


def test_partial_or_wrong_checkpoints_are_one_clear_error(tmp_path, tokenizer):
    state = original_sam(tiny_sam().state_dict(), "image_encoder.")
    del state["image_encoder.blocks.1.mlp.lin2.bias"]
    state["image_encoder.blocks.1.mlp.lin3.bias"] = torch.zeros(32)
    state["image_encoder.pos_embed"] = torch.zeros(1, 4, 4, 32)
    torch.save(state, tmp_path / "sam.pth")
    spec = tiny_model_config()
    spec.vocabulary.pretrained = str(tmp_path / "sam.pth")
    with pytest.raises(CheckpointError) as err:
        build_model(spec, tokenizer)
    assert str(err.value) == (
        f"{tmp_path / 'sam.pth'}: checkpoint does not fit the model:"
        " 1 missing key (encoder.layers.1.mlp.lin2.bias);"
        " 1 unexpected key (image_encoder.blocks.1.mlp.lin3.bias);"
        " 1 shape mismatch (encoder.pos_embed (1, 4, 4, 32) vs model (1, 8, 8, 32))"
    )
    clip = randomize(CLIPVisionModel(CLIPConfig(vision_config=TINY_CLIP).vision_config))
    clip.save_pretrained(tmp_path / "clip")
    spec.vocabulary.pretrained = str(tmp_path / "clip")
    with pytest.raises(CheckpointError, match="a clip checkpoint without vocabulary weights"):
        build_model(spec, tokenizer)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pth")
    spec.vocabulary.pretrained = str(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"unknown checkpoint layout \(first keys: weights\)"):
        build_model(spec, tokenizer)
    torch.save({"step": 3}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"does not hold a state dict"):
        build_model(spec, tokenizer)


def test_language_model_folder_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"config\.json: not found"):
        tiny_model_config(language_model={"pretrained": str(tmp_path)})
    folder, _ = lm_folder(tmp_path, "opt")
    spec = tiny_model_config(language_model={"pretrained": str(folder), "num_hidden_layers": 1})
    with pytest.raises(CheckpointError, match=r"unexpected key.*model\.decoder\.layers\.1\."):
        build_model(spec, build_tokenizer(spec.tokenizer))
    state = load_file(folder / "model.safetensors")
    del state["model.decoder.layers.0.fc1.weight"]
    save_file(state, folder / "model.safetensors")
    spec = tiny_model_config(language_model={"pretrained": str(folder)})
    with pytest.raises(CheckpointError, match=r"incomplete checkpoint: missing .*layers\.0\.fc1\.weight"):
        build_model(spec, build_tokenizer(spec.tokenizer))


def test_pretrained_vocabulary_keeps_net_convs_when_present(tmp_path, tokenizer):
    """A trained Vary model's vocabulary (ours) brings net_2/net_3 too: Vary-base's starting point."""
    tiny = build_model(tiny_model_config(), tokenizer)
    randomize(tiny.vocabulary)
    tiny.save_pretrained(tmp_path / "vary-tiny")
    spec = tiny_model_config("base")
    spec.vocabulary.pretrained = str(tmp_path / "vary-tiny")
    base = build_model(spec, tokenizer)
    for key, tensor in tiny.vocabulary.state_dict().items():
        assert torch.equal(base.vocabulary.state_dict()[key], tensor), key
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = F.conv2d(
            F.conv2d(
                tiny.vocabulary.encoder(pixels).last_hidden_state,
                tiny.vocabulary.net_2.weight,
                stride=2,
                padding=1,
            ),
            tiny.vocabulary.net_3.weight,
            stride=2,
            padding=1,
        )
        assert (base.vocabulary(pixels) - reference.flatten(2).transpose(1, 2)).abs().max() <= ATOL
