"""VaryTiny / VaryBase behaviour on tiny random models: masking, generation, batching, I/O, freezing."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedTokenizerFast

from conftest import tiny_model_config
from vary.config import ConfigError
from vary.model import (
    VaryBase,
    VaryConfig,
    VaryProcessor,
    VaryTiny,
    build_model,
    build_vary_config,
    load_model_config,
    load_pretrained,
    ocr_conversation,
    save_pretrained,
)
from vary.model.templates import IGNORE_INDEX, OFFICIAL_SYSTEM_PROMPT
from vary.model.tokenizer import (
    IM_END,
    IM_START,
    IMAGE_END,
    IMAGE_PAD,
    IMAGE_START,
    ImageTokenIds,
    image_token_ids,
)

# Large initial weights make the random LMs' logits peaked, so greedy argmax has no near-ties.
PEAKED = {"tiny": {"init_std": 0.5}, "base": {"initializer_range": 0.5}}


def make(kind: str, tokenizer):
    spec = tiny_model_config(kind)
    spec.language_model |= PEAKED[kind]
    model = build_model(spec, tokenizer).eval()
    return model, VaryProcessor.from_config(model.config, tokenizer)


def page(text: str, size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size * 2, size), "white")
    ImageDraw.Draw(image).text((4, size // 3), text, fill="black")
    return image


@pytest.fixture(params=["tiny", "base"])
def kind(request):
    return request.param


def test_model_classes(tokenizer):
    assert isinstance(make("tiny", tokenizer)[0], VaryTiny)
    base, _ = make("base", tokenizer)
    assert isinstance(base, VaryBase)
    assert base.config.frozen_towers == ["clip", "vocabulary"]
    with pytest.raises(ValueError, match="no CLIP branch"):
        VaryTiny(base.config)


def test_labels_cover_only_the_answer(tokenizer):
    model, processor = make("tiny", tokenizer)
    batch = processor([page("a"), page("b")], [ocr_conversation("hello world"), ocr_conversation("你好")])
    n_image = model.config.num_image_tokens
    for row, text in enumerate(["hello world", "你好"]):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        answer = tokenizer(text + tokenizer.eos_token, add_special_tokens=False).input_ids
        prompt = 1 + n_image + 2  # bos, <img>, pads, </img>
        assert (
            ids[:prompt]
            == torch.tensor(
                [tokenizer.bos_token_id, model.config.image_start_token_id]
                + [model.config.image_token_id] * n_image
                + [model.config.image_end_token_id]
            )
        ).all()
        assert (labels[:prompt] == IGNORE_INDEX).all()
        assert labels[prompt : prompt + len(answer)].tolist() == answer
        assert (labels[prompt + len(answer) :] == IGNORE_INDEX).all()  # padding
        assert mask.sum().item() == prompt + len(answer)
    out = model(**batch)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    expected = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_image_token_ids_are_the_vocabulary_s_and_a_tokenizer_without_them_is_refused(tokenizer):
    vocab = tokenizer.get_vocab()
    assert image_token_ids(tokenizer) == ImageTokenIds(vocab[IMAGE_START], vocab[IMAGE_PAD], vocab[IMAGE_END])
    # a tokenizer that maps unknown tokens to <unk> must not pass <unk> off as an image token
    plain = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")), unk_token="<unk>"
    )
    with pytest.raises(ValueError, match="lacks Vary's image tokens"):
        image_token_ids(plain)


def test_chatml_layout(tokenizer):
    _, processor = make("base", tokenizer)
    conversation = [
        {"from": "human", "value": "<image>\nWhat is the title?"},
        {"from": "gpt", "value": "Vary"},
    ]
    encoded = processor.encode(conversation)
    text = tokenizer.decode(encoded.input_ids)
    pads = "<imgpad>" * processor.num_image_tokens
    assert text == (
        f"{IM_START}system\n{OFFICIAL_SYSTEM_PROMPT}{IM_END}"
        f"{IM_START}user\n<img>{pads}</img>\nWhat is the title?{IM_END}{IM_START}assistant\nVary{IM_END}"
    )
    answer = [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.decode(answer) == f"Vary{IM_END}"


def test_image_changes_the_prediction(tokenizer, kind):
    model, processor = make(kind, tokenizer)
    conversation = ocr_conversation("same text")
    with torch.no_grad():
        a = model(**processor([page("one")], [conversation])).logits
        b = model(**processor([page("two", 64)], [conversation])).logits
    assert (a - b).abs().max().item() > 1e-3


def test_placeholder_count_mismatch_is_reported(tokenizer):
    model, processor = make("tiny", tokenizer)
    batch = processor([page("x")], [ocr_conversation("t")])
    batch["input_ids"][0, 3] = tokenizer.pad_token_id  # drop one <imgpad>
    with pytest.raises(ValueError, match="image placeholder tokens"):
        model(**batch)


def greedy_without_cache(model, batch, steps: int) -> torch.Tensor:
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pixels = {k: v for k, v in batch.items() if "pixel" in k}
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False, **pixels).logits
        next_id = logits[:, -1].argmax(-1, keepdim=True)
        ids, mask = torch.cat([ids, next_id], 1), torch.cat([mask, torch.ones_like(next_id)], 1)
    return ids


def prompts(processor, texts):
    batch = processor([page(t) for t in texts], [ocr_conversation() for _ in texts], padding_side="left")
    batch.pop("labels")
    return batch


def test_generate_with_cache_equals_stepwise_argmax(tokenizer, kind):
    model, processor = make(kind, tokenizer)
    batch = prompts(processor, ["cache", "no cache here"])
    cached = model.generate(**batch, max_new_tokens=8, do_sample=False, min_new_tokens=8)
    assert cached.shape[1] == batch["input_ids"].shape[1] + 8
    assert torch.equal(cached, greedy_without_cache(model, batch, 8))


def test_beam_search_reads_each_image_once(tokenizer, kind):
    """`generate` copies each prompt into its beams: the towers must read the image before."""
    model, processor = make(kind, tokenizer)
    batch = prompts(processor, ["beam", "search me"])
    seen = []
    model.vocabulary.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    options = {"max_new_tokens": 6, "do_sample": False, "num_beams": 3}
    once = model.generate(**batch, **options)
    per_beam = GenerationMixin.generate(model, **batch, **options)  # the images copied per beam
    assert seen == [2, 6]
    assert torch.equal(once, per_beam)


def test_batch_of_two_equals_each_alone(tokenizer, kind):
    model, processor = make(kind, tokenizer)
    texts = ["short", "a longer line"]
    together = model.generate(
        **prompts(processor, texts), max_new_tokens=6, do_sample=False, min_new_tokens=6
    )
    for row, text in enumerate(texts):
        alone = model.generate(
            **prompts(processor, [text]), max_new_tokens=6, do_sample=False, min_new_tokens=6
        )
        assert together[row, -6:].tolist() == alone[0, -6:].tolist()
    # training batches (right padding): the same logits on each sample's real positions
    conversations = [ocr_conversation("x"), ocr_conversation("a much longer answer")]
    images = [page("x"), page("y")]
    with torch.no_grad():
        joint = model(**processor(images, conversations)).logits
        for row in range(2):
            single = model(**processor([images[row]], [conversations[row]])).logits[0]
            assert torch.allclose(joint[row, : single.shape[0]], single, atol=1e-4)  # logits ~5


def test_save_load_round_trip(tokenizer, kind, tmp_path):
    model, processor = make(kind, tokenizer)
    batch = processor([page("round trip")], [ocr_conversation("text")])
    save_pretrained(model, tokenizer, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()
    loaded, loaded_tokenizer, image_processor = load_pretrained(tmp_path)
    assert type(loaded) is type(model)
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert torch.equal(image_processor(page("round trip"))["pixel_values"], batch["pixel_values"])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded.eval()(**batch).logits)
        auto = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # plain transformers can open it
        assert torch.equal(model(**batch).logits, auto(**batch).logits)
    if kind == "base":
        assert not any(p.requires_grad for p in loaded.vocabulary.parameters())


def test_line_reading_settings_round_trip_and_bad_zooms_are_refused(tokenizer, tmp_path):
    model, _ = make("tiny", tokenizer)
    settings = {
        "line_height": [15, 22],
        "line_zooms": [1.0, 1.2],
        "crop_zooms": [1.0, 2.0],
        "line_doubt": -0.05,
    }
    for name, value in settings.items():
        setattr(model.config, name, value)
    save_pretrained(model, tokenizer, tmp_path)
    config = load_pretrained(tmp_path)[0].config
    assert {name: getattr(config, name) for name in settings} == settings
    for zooms, name in itertools.product(([], [1.0, 0.0]), ("line_zooms", "crop_zooms")):
        with pytest.raises(ValueError, match="zooms must be positive factors"):
            VaryConfig(**{name: zooms})


def test_frozen_towers_get_no_gradient(tokenizer):
    model, processor = make("base", tokenizer)
    model.train()
    towers = {
        n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("clip.", "vocabulary."))
    }
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = processor([page("a"), page("b")], [ocr_conversation("one"), ocr_conversation("two")])
    model(**batch).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(grads[n] is None for n in towers)
    assert grads["clip_projector.weight"].abs().sum() > 0
    assert grads["vocabulary_projector.weight"].abs().sum() > 0
    optimizer.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], before) for n, before in towers.items())


def test_bad_config_keys_are_clear_errors(tmp_path, tokenizer):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: tiny\nvocabulary:\n  hiden_size: 32\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key vocabulary\.'hiden_size'"):
        load_model_config(bad)
    bad.write_text("kind: tiny\nlanguage_model:\n  model_type: opt\n  hidden_sise: 8\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key language_model\.hidden_sise"):
        load_model_config(bad)
    bad.write_text("kind: tiny\nvocabulary:\n  image_size: large\n")
    with pytest.raises(ConfigError, match=r"vocabulary\.image_size: expected int, got 'large'"):
        load_model_config(bad)
    bad.write_text("kind: tiny\nclip: {}\n")
    with pytest.raises(ConfigError, match="no clip branch"):
        load_model_config(bad)
    with pytest.raises(ValueError, match="unknown tower"):
        build_vary_config(tiny_model_config(frozen_towers=["sam"]), tokenizer)
