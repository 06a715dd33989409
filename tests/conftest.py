"""Shared fixtures: tiny tokenizers and model configs built here, never downloaded."""

from __future__ import annotations

import pytest
import torch

from vary.model import ClipConfig, ModelConfig, TokenizerConfig, VocabularyConfig, build_tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog. Vary reads documents and charts.",
    "视觉词表 让 模型 读 文档 和 图表。你好，世界！",
    "def f(x): return x ** 2  # code, numbers 3.14159 and symbols {[()]}",
] * 30


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models: threads only add overhead


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(TokenizerConfig(vocab_size=400), texts=CORPUS)


def tiny_vocabulary() -> VocabularyConfig:
    return VocabularyConfig(
        image_size=64,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        window_size=4,
        global_attn_indexes=[1],
        neck_channels=16,
        channels=[32, 48],  # GOT-OCR2 fixes net_2 at twice the neck width, as the paper
    )


def tiny_model_config(kind: str = "tiny", **overrides) -> ModelConfig:
    """A Vary model of a few hundred thousand parameters: 64 px images -> 4 image tokens."""
    if kind == "tiny":
        language_model = {
            "model_type": "opt",
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "ffn_dim": 64,
            "word_embed_proj_dim": 32,
            "max_position_embeddings": 128,
        }
        clip = None
    else:
        language_model = {
            "model_type": "qwen2",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128,
            "tie_word_embeddings": False,
        }
        clip = ClipConfig(
            image_size=32,
            patch_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    options = {"kind": kind, "vocabulary": tiny_vocabulary(), "clip": clip, "language_model": language_model}
    return ModelConfig(**(options | overrides))
