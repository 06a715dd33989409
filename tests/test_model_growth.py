"""`deepen` and `widen`: more layers or wider MLPs, the same outputs at the switch, new weights that learn."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model_config
from test_model_vary import make, page, prompts
from vary.model import build_model, deepen, ocr_conversation, widen
from vary.model.growth import deepened_state

PARTS = {"tiny": ("vocabulary", "language_model"), "base": ("language_model",)}


def assert_reads_as_before(grown, model, processor) -> None:
    """The same logits on a training batch, the same ids from greedy generation."""
    batch = processor([page("grow"), page("larger")], [ocr_conversation("one"), ocr_conversation("two")])
    with torch.no_grad():
        assert torch.allclose(grown(**batch).logits, model(**batch).logits, atol=1e-5)
    generated = prompts(processor, ["same", "words"])
    options = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
    assert torch.equal(grown.generate(**generated, **options), model.generate(**generated, **options))


@pytest.mark.parametrize("kind", ["tiny", "base"])  # OPT + SAM; Qwen2 (no output biases) + CLIP
def test_deepened_model_reads_exactly_as_before(tokenizer, kind):
    model, processor = make(kind, tokenizer)
    with torch.no_grad():  # trained norms: with unit scales and zero shifts even post-norm would pass
        for name, weight in model.named_parameters():
            if "norm" in name:
                weight.add_(0.3 * torch.randn_like(weight))
    grown = deepen(model, 3, PARTS[kind]).eval()
    text, vision = grown.config.text_config, grown.config.vision_config
    assert text.num_hidden_layers == 3 * model.config.text_config.num_hidden_layers
    if kind == "tiny":
        assert vision.num_hidden_layers == 6 and vision.global_attn_indexes == [3, 4, 5]  # was [1] of 2
    else:
        assert vision.num_hidden_layers == 2 and text.layer_types == ["full_attention"] * 6
    assert_reads_as_before(grown, model, processor)


def test_the_copies_learn_from_the_first_step(tokenizer):
    model, processor = make("tiny", tokenizer)
    grown = deepen(model, 2).train()
    optimizer = torch.optim.AdamW(grown.parameters(), lr=1e-3)
    batch = processor([page("learn")], [ocr_conversation("learn")])
    grown(**batch).loss.backward()
    optimizer.step()
    copies = [
        "vocabulary.encoder.layers.1.mlp.lin2.weight",  # layer 0's copy
        "language_model.model.decoder.layers.3.fc2.weight",  # layer 1's copy
    ]
    weights = dict(grown.named_parameters())
    assert all(weights[name].abs().sum() > 0 for name in copies)
    assert all(p.requires_grad for p in grown.parameters())  # Vary-tiny trains everything


def test_layers_it_cannot_make_identities_are_refused():
    state = {"language_model.model.layers.0.mixer.weight": torch.ones(2, 2)}
    with pytest.raises(ValueError, match=r"layers\.0: cannot make a copy of this layer an identity"):
        deepened_state(state, 2, ("language_model",))
    with pytest.raises(ValueError, match="cannot deepen 'clip'"):
        deepen(None, 2, ("clip",))


def test_post_norm_language_models_are_refused(tokenizer):
    spec = tiny_model_config("tiny")
    spec.language_model |= {"do_layer_norm_before": False}  # OPT-350m's layout: x + f(x), then norm
    model = build_model(spec, tokenizer)
    with pytest.raises(ValueError, match="post-norm"):
        deepen(model, 2)
    assert deepen(model, 2, ("vocabulary",)).config.vision_config.num_hidden_layers == 4


@pytest.mark.parametrize("kind", ["tiny", "base"])  # SAM + OPT (ReLU); Qwen2's gated MLP
def test_widened_model_reads_exactly_as_before(tokenizer, kind):
    model, processor = make(kind, tokenizer)
    grown = widen(model, 3, PARTS[kind]).eval()
    text = grown.config.text_config
    assert (text.ffn_dim if kind == "tiny" else text.intermediate_size) == 3 * 64
    vision_mlp = model.config.vision_config.mlp_dim
    assert grown.config.vision_config.mlp_dim == vision_mlp * (3 if kind == "tiny" else 1)
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in model.parameters())
    assert_reads_as_before(grown, model, processor)


def test_the_new_units_learn(tokenizer):
    model, processor = make("tiny", tokenizer)
    grown = widen(model, 2).train()
    optimizer = torch.optim.AdamW(grown.parameters(), lr=1e-3)
    batch = processor([page("learn")], [ocr_conversation("learn")])
    weights = dict(grown.named_parameters())
    new_inputs = weights["language_model.model.decoder.layers.0.fc1.weight"][64:]
    before = new_inputs.detach().clone()
    assert before.std() > 0  # drawn, not zero: the units see their input from the start
    for _ in range(2):  # first step: their output weights leave zero; second: their inputs move
        optimizer.zero_grad()
        grown(**batch).loss.backward()
        optimizer.step()
    vision_mlp = model.config.vision_config.mlp_dim
    assert weights["vocabulary.encoder.layers.0.mlp.lin2.weight"][:, vision_mlp:].abs().sum() > 0
    assert weights["language_model.model.decoder.layers.1.fc2.weight"][:, 64:].abs().sum() > 0
    assert not torch.equal(new_inputs.detach(), before)


def test_growth_factors_below_one_are_refused(tokenizer):
    model, _ = make("tiny", tokenizer)
    for grow in (deepen, widen):
        with pytest.raises(ValueError, match=f"{grow.__name__} factor must be >= 1, got 0"):
            grow(model, 0)
    with pytest.raises(ValueError, match="cannot widen 'clip'"):
        widen(model, 2, ("clip",))
