"""`vary convert` on tiny random checkpoints in each released layout.

Each fixture writes a release folder (same key names and files as the real one, tiny shapes)
and returns the reference forward of the original model on those weights: transformers'
GotOcr2ForConditionalGeneration for GOT-OCR2, and for Vary the original composition (SAM +
net_2/net_3, CLIP layer -2, projectors, features spliced over `<imgpad>`) around transformers'
OPT or a Qwen-1 written out below. The converted model must compute the same logits.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import regex
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    GotOcr2Config,
    GotOcr2ForConditionalGeneration,
    OPTConfig,
    OPTForCausalLM,
)

from conftest import CORPUS, tiny_model_config, tiny_vocabulary
from test_convert_parts import ATOL, TINY_CLIP, original_sam, randomize, tiny_sam
from vary.cli import main
from vary.convert.keys import CheckpointError
from vary.convert.official import convert_checkpoint
from vary.convert.qwen_tokenizer import PATTERN, qwen_tokenizer
from vary.model import ClipConfig, VaryBase, VaryTiny, build_model, load_pretrained
from vary.model.tokenizer import image_token_ids, train_bpe_tokenizer

# A tiny qwen.tiktoken: every byte, then merges (each the concatenation of two earlier tokens).
MERGES = [b"he", b"ll", b"llo", b"hello", b" w", b"or", b" wor", b"ld", b" world", b"\xe4\xbd", b"OC", b"OCR"]
QWEN = {  # a Qwen-1 config.json (QWenConfig), tiny
    "vocab_size": 512,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "kv_channels": 16,
    "num_hidden_layers": 2,
    "intermediate_size": 128,  # both SwiGLU halves
    "layer_norm_epsilon": 1e-6,
    "rotary_emb_base": 10000,
}
SAM_CONVS = {"net_2": (32, 16), "net_3": (48, 32)}  # tiny_vocabulary's channels

Reference = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # ids, pixels, CLIP pixels


def write_tiktoken(folder: Path) -> dict[bytes, int]:
    ranks = {bytes([i]): i for i in range(256)} | {token: 256 + i for i, token in enumerate(MERGES)}
    lines = (f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks.items())
    (folder / "qwen.tiktoken").write_text("".join(lines))
    return ranks


def qwen_image_ids(ranks: dict[bytes, int]) -> tuple[int, int, int]:
    """`<img>`, `</img>`, `<imgpad>`: after 3 + 205 + 6 specials, as 151857.. in the real vocabulary."""
    return len(ranks) + 214, len(ranks) + 215, len(ranks) + 216


def tiktoken_encode(ranks: dict[bytes, int], text: str) -> list[int]:
    """tiktoken's algorithm: split by the pattern, then merge the lowest-ranked pair until none."""
    ids = []
    for piece in regex.findall(PATTERN, text):
        parts = [bytes([b]) for b in piece.encode()]
        while pairs := [
            (ranks[a + b], i) for i, (a, b) in enumerate(itertools.pairwise(parts)) if a + b in ranks
        ]:
            _, i = min(pairs)
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        ids += [ranks[part] for part in parts]
    return ids


def save_release(folder: Path, state: dict[str, torch.Tensor], config: dict) -> None:
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config))


def splice(embeds: torch.Tensor, ids: torch.Tensor, pad: int, features: torch.Tensor) -> torch.Tensor:
    """The original code's `torch.cat((embeds[:start + 1], features, embeds[start + n + 1:]))`."""
    embeds = embeds.clone()
    embeds[ids == pad] = features.reshape(-1, embeds.shape[-1]).to(embeds.dtype)
    return embeds


def random_convs() -> dict[str, torch.Tensor]:
    return {f"{name}.weight": torch.randn(out, inp, 3, 3) * 0.1 for name, (out, inp) in SAM_CONVS.items()}


def sam_branch(sam: nn.Module, convs: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    features = sam(pixels).last_hidden_state
    for name in SAM_CONVS:
        features = F.conv2d(features, convs[f"{name}.weight"], stride=2, padding=1)
    return features.flatten(2).transpose(1, 2)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def qwen1_forward(state: dict[str, torch.Tensor], config: dict, hidden: torch.Tensor) -> torch.Tensor:
    """Qwen-1's `QWenLMHeadModel` on input embeddings (modeling_qwen.py, eval, short sequences)."""
    batch, length, width = hidden.shape
    heads, eps = config["num_attention_heads"], config["layer_norm_epsilon"]
    head = width // heads
    inv_freq = 1.0 / (config["rotary_emb_base"] ** (torch.arange(0, head, 2).float() / head))
    angles = torch.outer(torch.arange(length).float(), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)[None, :, None, :]
    mask = torch.full((length, length), float("-inf")).triu(1)
    for i in range(config["num_hidden_layers"]):
        p = f"transformer.h.{i}."
        x = rms_norm(hidden, state[f"{p}ln_1.weight"], eps)
        qkv = F.linear(x, state[f"{p}attn.c_attn.weight"], state[f"{p}attn.c_attn.bias"])
        q, k, v = (t.view(batch, length, heads, head) for t in qkv.split(width, dim=2))
        q, k = (t * angles.cos() + rotate_half(t) * angles.sin() for t in (q, k))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / head**0.5 + mask
        attended = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(batch, length, width)
        hidden = hidden + F.linear(attended, state[f"{p}attn.c_proj.weight"])
        x = rms_norm(hidden, state[f"{p}ln_2.weight"], eps)
        gated = F.linear(x, state[f"{p}mlp.w1.weight"]) * F.silu(F.linear(x, state[f"{p}mlp.w2.weight"]))
        hidden = hidden + F.linear(gated, state[f"{p}mlp.c_proj.weight"])
    return F.linear(rms_norm(hidden, state["transformer.ln_f.weight"], eps), state["lm_head.weight"])


def qwen1_weights() -> dict[str, torch.Tensor]:
    width, ffn = QWEN["hidden_size"], QWEN["intermediate_size"] // 2
    shapes = {"transformer.wte.weight": (QWEN["vocab_size"], width), "transformer.ln_f.weight": (width,)}
    shapes["lm_head.weight"] = (QWEN["vocab_size"], width)
    for i in range(QWEN["num_hidden_layers"]):
        p = f"transformer.h.{i}."
        shapes |= {f"{p}ln_1.weight": (width,), f"{p}ln_2.weight": (width,)}
        shapes |= {f"{p}attn.c_attn.weight": (3 * width, width), f"{p}attn.c_attn.bias": (3 * width,)}
        shapes |= {f"{p}attn.c_proj.weight": (width, width), f"{p}mlp.c_proj.weight": (width, ffn)}
        shapes |= {f"{p}mlp.w1.weight": (ffn, width), f"{p}mlp.w2.weight": (ffn, width)}
    norms = ("ln_1.weight", "ln_2.weight", "ln_f.weight")  # RMSNorm gains: around 1
    return {key: torch.randn(shape) * 0.1 + float(key.endswith(norms)) for key, shape in shapes.items()}


def vary_tiny(folder: Path, lavis: bool = False) -> Reference:
    tokenizer = train_bpe_tokenizer(CORPUS, 300)  # an OPT-style BPE that already has Vary's tokens
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "ffn_dim": 64}
    sizes |= {"vocab_size": len(tokenizer) + 4, "word_embed_proj_dim": 32, "max_position_embeddings": 128}
    opt = randomize(OPTForCausalLM(OPTConfig(**sizes)))
    sam, convs, projector = tiny_sam(), random_convs(), randomize(nn.Linear(48, 32))
    tower, proj = (
        ("visual_encoder.", "opt_proj.") if lavis else ("model.vision_tower.", "model.mm_projector.")
    )
    state = original_sam(sam.state_dict(), tower) | {tower + k: v for k, v in convs.items()}
    state |= {proj + k: v for k, v in projector.state_dict().items()}
    if lavis:  # a LAVIS training checkpoint: {"model": weights, ...}, the tied lm_head left out
        state |= {f"opt_model.{k}": v for k, v in opt.state_dict().items() if k != "lm_head.weight"}
        torch.save({"model": {k: v.clone() for k, v in state.items()}}, folder / "checkpoint_best.pth")
        (folder / "config.json").write_text(json.dumps(opt.config.to_dict()))
    else:
        config = opt.config.to_dict() | {
            "model_type": "vary",
            "im_patch_token": image_token_ids(tokenizer).pad,
        }
        save_release(folder, state | opt.state_dict(), config)
    tokenizer.save_pretrained(folder)
    pad = image_token_ids(tokenizer).pad

    def reference(ids, pixels, clip_pixels):
        features = projector(sam_branch(sam, convs, pixels))
        return opt(inputs_embeds=splice(opt.get_input_embeddings()(ids), ids, pad, features)).logits

    return reference


def vary_qwen(folder: Path) -> Reference:
    """Vary-toy / Vary-base: CLIP-L + SAM -> two projectors -> Qwen-1, Qwen's tiktoken vocabulary."""
    *_, pad = qwen_image_ids(write_tiktoken(folder))
    clip = randomize(CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP)))
    sam, convs, qwen = tiny_sam(), random_convs(), qwen1_weights()
    clip_projector, sam_projector = randomize(nn.Linear(128, 16)), randomize(nn.Linear(48, 16))
    vision = "transformer.vision_tower.vision_model."  # as the release saved CLIP (older transformers)
    state = {vision + k: v for k, v in clip.state_dict().items()}
    state[vision + "embeddings.position_ids"] = torch.arange(5)[None]  # a buffer old releases stored
    state |= original_sam(sam.state_dict(), "transformer.vision_tower_high.")
    state |= {f"transformer.vision_tower_high.{k}": v for k, v in convs.items()}
    state |= {f"transformer.mm_projector.{k}": v for k, v in clip_projector.state_dict().items()}
    state |= {f"transformer.mm_projector_vary.{k}": v for k, v in sam_projector.state_dict().items()}
    config = QWEN | {"model_type": "vary", "rotary_pct": 1.0, "seq_length": 8192, "im_patch_token": pad}
    save_release(
        folder, state | qwen, config | {"auto_map": {"AutoModelForCausalLM": "vary.varyQwenForCausalLM"}}
    )

    def reference(ids, pixels, clip_pixels):
        hidden = clip(pixel_values=clip_pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        features = torch.cat([clip_projector(hidden), sam_projector(sam_branch(sam, convs, pixels))], dim=-1)
        embeds = splice(F.embedding(ids, qwen["transformer.wte.weight"]), ids, pad, features)
        return qwen1_forward(qwen, QWEN, embeds)

    return reference


def got_model(folder: Path) -> GotOcr2ForConditionalGeneration:
    """transformers' GOT-OCR2 at tiny sizes, with the tiny Qwen vocabulary's `<imgpad>`."""
    *_, pad = qwen_image_ids(write_tiktoken(folder))
    sam = tiny_vocabulary().to_hf().to_dict()
    vision = ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size")
    vision += ("window_size", "global_attn_indexes", "output_channels", "mlp_dim")
    text = {"model_type": "qwen2", "vocab_size": 512, "hidden_size": 48, "intermediate_size": 64}
    text |= {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "rope_theta": 1e6}
    config = GotOcr2Config(vision_config={k: sam[k] for k in vision}, text_config=text, image_token_index=pad)
    return randomize(GotOcr2ForConditionalGeneration(config))


def got_reference(got: GotOcr2ForConditionalGeneration) -> Reference:
    return lambda ids, pixels, clip_pixels: got(input_ids=ids, pixel_values=pixels).logits


def got_ocr2(folder: Path) -> Reference:
    """The stepfun-ai/GOT-OCR2_0 layout (the inverse of transformers' conversion table)."""
    got = got_model(folder)
    hf = got.state_dict()
    state = original_sam(
        {
            k.removeprefix("model.vision_tower."): v
            for k, v in hf.items()
            if k.startswith("model.vision_tower.")
        },
        "model.vision_tower_high.",
    )
    projector = "model.multi_modal_projector."
    state["model.vision_tower_high.net_2.weight"] = hf[f"{projector}conv_upsampler1.weight"]
    state["model.vision_tower_high.net_3.weight"] = hf[f"{projector}conv_upsampler2.weight"]
    state |= {
        f"model.mm_projector_vary.{p}": hf[f"{projector}multimodal_projector.{p}"] for p in ("weight", "bias")
    }
    state |= {
        f"model.{k.removeprefix('model.language_model.')}": v for k, v in hf.items() if "language_model" in k
    }
    state["lm_head.weight"] = hf["lm_head.weight"]
    config = got.config.text_config.to_dict()
    config |= {
        "model_type": "GOT",
        "rope_theta": config.pop("rope_parameters")["rope_theta"],
    }  # as 2024 saved it
    save_release(folder, state, config | {"im_patch_token": 151859, "use_im_start_end": True})
    return got_reference(got)


def got_ocr2_hf(folder: Path, legacy: bool = False) -> Reference:
    """GOT-OCR-2.0-hf: transformers' own folder (or its layout before transformers 4.52)."""
    got = got_model(folder)
    got.save_pretrained(folder)
    qwen_tokenizer(folder / "qwen.tiktoken").save_pretrained(folder)  # tokenizer.json, as the hub
    (folder / "qwen.tiktoken").unlink()
    if legacy:
        renames = [
            ("model.language_model.", "language_model.model."),
            ("model.", ""),
            ("lm_head", "language_model.lm_head"),
        ]
        state = {}
        for key, tensor in got.state_dict().items():
            for old, new in renames:
                if key.startswith(old):
                    key = new + key.removeprefix(old)
                    break
            state[key] = tensor
        save_file({k: v.detach().clone() for k, v in state.items()}, folder / "model.safetensors")
    return got_reference(got)


# name: (fixture, --format, model class, template, vocabulary normalisation)
RELEASES = {
    "vary-tiny": (vary_tiny, "auto", VaryTiny, "plain", "imagenet"),
    "vary-tiny-lavis": (lambda folder: vary_tiny(folder, lavis=True), "auto", VaryTiny, "plain", "imagenet"),
    "vary-toy": (vary_qwen, "auto", VaryBase, "chatml", "clip"),
    "vary-base": (vary_qwen, "vary-base", VaryBase, "chatml", "imagenet"),
    "got-ocr2": (got_ocr2, "auto", VaryBase, "chatml", "clip"),
    "got-ocr2-hf": (got_ocr2_hf, "auto", VaryBase, "chatml", "clip"),
    "got-ocr2-hf-legacy": (
        lambda folder: got_ocr2_hf(folder, legacy=True),
        "auto",
        VaryBase,
        "chatml",
        "clip",
    ),
}


@pytest.mark.parametrize("name", list(RELEASES))
def test_converted_release_computes_what_the_original_does(tmp_path, name):
    make, format_name, cls, template, normalization = RELEASES[name]
    release = tmp_path / "release"
    release.mkdir()
    reference = make(release)
    assert main(["convert", str(release), "--out", str(tmp_path / "out"), "--format", format_name]) == 0

    model, tokenizer, image_processor = load_pretrained(tmp_path / "out")
    assert type(model) is cls and model.config.template == template
    assert image_processor.vocabulary.normalization == normalization
    image = image_token_ids(tokenizer)
    assert (model.config.image_start_token_id, model.config.image_token_id) == (image.start, image.pad)
    text = tokenizer("hello world", add_special_tokens=False).input_ids
    pads = [image.pad] * model.config.num_image_tokens
    ids = torch.tensor([[*text, image.start, *pads, image.end, *text]])
    pixels = torch.randn(1, 3, 64, 64)
    clip_pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = reference(ids, pixels, clip_pixels)
        inputs = {"clip_pixel_values": clip_pixels} if model.clip is not None else {}
        logits = model.eval()(input_ids=ids, pixel_values=pixels, **inputs).logits
    assert logits.shape == expected.shape
    assert (logits - expected).abs().max() <= ATOL


def test_qwen_vocabulary_keeps_its_ids(tmp_path):
    ranks = write_tiktoken(tmp_path)
    tokenizer = qwen_tokenizer(tmp_path / "qwen.tiktoken")
    for text in ["hello world", "hello  world 2024\nOCR: 你好", "Ｈｅllo"]:  # last: NFC keeps fullwidth
        assert tokenizer(text, add_special_tokens=False).input_ids == tiktoken_encode(ranks, text)
    start, end, pad = qwen_image_ids(ranks)
    assert tokenizer.convert_tokens_to_ids(["<img>", "</img>", "<imgpad>"]) == [start, end, pad]
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == len(ranks)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    ids = tokenizer("<|im_start|>user\n<img><imgpad></img>hello<|im_end|>").input_ids
    assert ids[:2] == [len(ranks) + 1, *tiktoken_encode(ranks, "user")][:2] and pad in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nhello"


def test_partial_release_is_one_clear_error(tmp_path, capsys):
    vary_qwen(tmp_path)
    state = dict(load_file(tmp_path / "model.safetensors"))
    del state["transformer.h.1.mlp.w2.weight"]
    state["transformer.h.1.mlp.w3.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "model.safetensors")
    assert main(["convert", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"ERROR {tmp_path}: checkpoint does not fit the model:"
        " 1 missing key (language_model.model.layers.1.mlp.gate_proj.weight);"
        " 1 unexpected key (transformer.h.1.mlp.w3.weight)"
    )
    assert not (tmp_path / "out").exists()
    (tmp_path / "model.safetensors").unlink()
    save_file({"vision.weight": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a Vary / GOT-OCR2 checkpoint"):
        convert_checkpoint(tmp_path, tmp_path / "out")
    with pytest.raises(CheckpointError, match=r"not a got-ocr2 checkpoint \(no key like model"):
        convert_checkpoint(tmp_path, tmp_path / "out", "got-ocr2")


def test_dtype_is_the_release_s_unless_asked(tmp_path):
    vary_qwen(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, tmp_path / "model.safetensors")
    convert_checkpoint(tmp_path, tmp_path / "bf16")
    assert load_pretrained(tmp_path / "bf16")[0].dtype == torch.bfloat16
    convert_checkpoint(tmp_path, tmp_path / "fp32", dtype=torch.float32)
    assert load_pretrained(tmp_path / "fp32")[0].dtype == torch.float32


def test_towers_of_a_release_as_pretrained_parts(tmp_path, tokenizer):
    """`pretrained:` reads the towers of a release too (here Vary-toy's CLIP and SAM)."""
    release = tmp_path / "release"
    release.mkdir()
    vary_qwen(release)
    convert_checkpoint(release, tmp_path / "out")
    converted = load_pretrained(tmp_path / "out")[0]
    spec = tiny_model_config("base", clip=ClipConfig(**TINY_CLIP, pretrained=str(release)))
    spec.vocabulary.pretrained = str(release)
    model = build_model(spec, tokenizer)
    for tower in ("vocabulary", "clip"):
        ours, theirs = getattr(model, tower).state_dict(), getattr(converted, tower).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), tower
