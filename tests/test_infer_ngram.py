"""The n-gram model a line reader decodes with (`vary.inference.ngram`, `vary ngram`).

Probabilities are checked against Witten-Bell worked out by hand; fusion against the scores it
must add; the pipeline against the model's own likelihood (what picks between zooms must stay
the model's) and against the n-gram's own greedy text under a heavy weight; the command on real
files, a held-out PDF and a corrupt one among them.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pymupdf
import pytest
import torch

from test_infer_layout import draw_page
from test_infer_pipeline import forced_total, noise, piece_looks, saved_model, teacher_forced_score
from vary.cli import main
from vary.data.text import normalise
from vary.inference import GenerationOptions, VaryPipeline
from vary.inference.layout import PageLayout
from vary.inference.ngram import NGRAM_FILE, NgramFusion, TokenNgram, reading_log_prob
from vary.inference.pipeline import conversation
from vary.inference.sources import PageInput

DOC = "usr/share/doc/texlive-doc"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_probabilities_are_witten_bell_by_hand() -> None:
    """Stream 0 1 0 1 0 2 over 4 tokens: unigrams 3/2/1 (6 tokens, 3 kinds) backed off to uniform;
    after 0 the followers 1 (twice) and 2 (once), backed off to the unigrams."""
    ngram = TokenNgram.fit(np.array([0, 1, 0, 1, 0, 2]), order=2, vocab_size=4)
    unigram = (np.array([3, 2, 1, 0]) + 3 * 0.25) / (6 + 3)
    after_0 = (np.array([0, 2, 1, 0]) + 2 * unigram) / (3 + 2)
    p = ngram.probabilities([[0], [3], []])
    np.testing.assert_allclose(p, [after_0, unigram, unigram])  # 3 was never followed: unigrams
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[0, 1] > p[0, 2] > p[0, 0] > 0  # every token keeps some probability


def test_a_sequence_s_log_probability_is_the_sum_of_its_steps() -> None:
    ngram = TokenNgram.fit(np.array([0, 1, 0, 1, 0, 2]), order=2, vocab_size=4)
    p = ngram.probabilities([[], [3], [3, 0]])
    assert ngram.log_prob([3, 0, 1]) == pytest.approx(np.log(p[0, 3] * p[1, 0] * p[2, 1]))
    assert ngram.log_prob([]) == 0.0


def test_rare_ngrams_are_dropped_and_a_file_round_trips(tmp_path: Path) -> None:
    tokens = np.random.default_rng(0).integers(0, 9, 500)
    full = TokenNgram.fit(tokens, order=3, vocab_size=9)
    pruned = TokenNgram.fit(tokens, order=3, vocab_size=9, min_count=3)
    assert len(pruned.keys[0]) == len(full.keys[0]) and len(pruned.keys[2]) < len(full.keys[2])
    assert pruned.counts[2].min() >= 3
    pruned.save(tmp_path / NGRAM_FILE)
    loaded = TokenNgram.load(tmp_path / NGRAM_FILE)
    contexts = [list(tokens[i : i + 2]) for i in range(0, 100, 7)]
    np.testing.assert_array_equal(loaded.probabilities(contexts), pruned.probabilities(contexts))
    shutil.copy(saved_model("tiny") / "model.safetensors", tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=r"other\.safetensors: not an n-gram model"):
        TokenNgram.load(tmp_path / "other.safetensors")


def test_keys_that_would_not_fit_and_unknown_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="order must be 1 to 6"):
        TokenNgram.fit(np.array([1, 2]), order=7, vocab_size=263)  # 9 bits a token, 62 in a key
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 4\)"):
        TokenNgram.fit(np.array([1, 4]), order=2, vocab_size=4)


def test_fusion_adds_the_weighted_log_probabilities_and_ends_where_words_do() -> None:
    """Tokens: 0 space, 1 newline, 2 'a', 3 'b', 4 stop (never in text: it takes a word end's)."""
    ngram = TokenNgram.fit(np.array([0, 2, 3, 0, 2, 3, 1] * 5), order=3, vocab_size=5)
    fusion = NgramFusion(ngram, 0.5, prompt_length=2, start=[0], stop_ids=[4], word_ends=[0, 1])
    prompt_and_text = torch.tensor([[9, 9, 2, 3], [9, 9, 2, 2]])
    scores = torch.zeros(2, 6)  # the model's vocabulary may be larger than the n-gram's
    fused = fusion(prompt_and_text, scores)
    p = ngram.probabilities([[0, 2, 3], [0, 2, 2]])
    expected = np.log(p)
    expected[:, 4] = np.log(p[:, 0] + p[:, 1])
    np.testing.assert_allclose(fused[:, :5].numpy(), 0.5 * expected, rtol=1e-6)
    assert fused[0].argmax() == 4  # after "ab" the word ends
    assert torch.equal(fusion.added[0], fused - scores)


def test_a_crop_that_ends_inside_a_word_is_not_held_back_from_stopping() -> None:
    """An item flagged in `open_ends` (repeated once per beam, as generate repeats it) gives a
    stop token its likeliest token's probability, not a word end's: after "a" the n-gram's text
    always goes on ("b"), and a crop of a word's first part must still be free to end there."""
    ngram = TokenNgram.fit(np.array([0, 2, 3, 0, 2, 3, 1] * 5), order=3, vocab_size=5)
    fusion = NgramFusion(ngram, 1.0, 1, start=[0], stop_ids=[4], word_ends=[0, 1], open_ends=[False, True])
    fused = fusion(torch.tensor([[9, 2]] * 4), torch.zeros(4, 5))  # 2 items x 2 beams, after "a"
    p = ngram.probabilities([[0, 2]])[0]
    expected = np.log([p[0] + p[1]] * 2 + [p.max()] * 2)
    np.testing.assert_allclose(fused[:, 4].numpy(), expected, rtol=1e-6)
    assert p.max() > 10 * (p[0] + p[1])


@pytest.mark.parametrize("open_end", [False, True])
def test_a_readings_ngram_log_probability_is_what_fusion_adds_along_it(open_end: bool) -> None:
    """The n-gram model's share of a reading, as the choice between a piece's looks weighs it:
    the log-probabilities fusion adds at each of its tokens and at its stop, summed."""
    ngram = TokenNgram.fit(np.array([0, 2, 3, 0, 2, 3, 1] * 5), order=3, vocab_size=5)
    fusion = NgramFusion(ngram, 1.0, 1, start=[0], stop_ids=[4], word_ends=[0, 1], open_ends=[open_end])
    reading = [2, 2, 3]
    added = [fusion(torch.tensor([[9, *reading[:t]]]), torch.zeros(1, 5))[0] for t in range(4)]
    along = sum(float(step[token]) for step, token in zip(added, [*reading, 4], strict=True))
    assert reading_log_prob(ngram, reading, [0], [0, 1], open_end) == pytest.approx(along, rel=1e-5)


@pytest.fixture
def reader_with_ngram(tmp_path: Path) -> VaryPipeline:
    """The tiny random Vary-tiny as a line reader, with an n-gram model of its training corpus."""
    folder = tmp_path / "model"
    shutil.copytree(saved_model("tiny"), folder)
    reader = VaryPipeline.from_pretrained(folder)
    tokens = reader.tokenizer.encode("the cat sat on the mat\n" * 20, add_special_tokens=False)
    TokenNgram.fit(np.array(tokens), 3, len(reader.tokenizer)).save(folder / NGRAM_FILE)
    reader = VaryPipeline.from_pretrained(folder)
    reader.model.config.line_height = [15, 22]
    return reader


@pytest.mark.parametrize("beams", [1, 3])
def test_a_fused_reading_is_scored_by_the_model_alone(reader_with_ngram, beams):
    """The n-gram model changes what is read, not how likely the model finds it: the score that
    picks between zooms is the model's mean log-probability of the text (teacher-forced)."""
    reader = reader_with_ngram
    pages = [PageInput(noise(seed), "<image>") for seed in (1, 2)]
    fused = GenerationOptions(max_new_tokens=12, num_beams=beams, ngram_weight=2.0)
    results = reader.generate(pages, [conversation()] * 2, fused, scored=True)
    alone = reader.generate(pages, [conversation()] * 2, GenerationOptions(12, num_beams=beams), scored=True)
    assert [r.token_ids for r in results] != [r.token_ids for r in alone]
    for page, result in zip(pages, results, strict=True):
        assert result.score == pytest.approx(teacher_forced_score(reader, page, result), abs=1e-4)


def test_the_choice_between_looks_weighs_the_ngram_model_as_decoding_does(reader_with_ngram):
    """Summed over a piece's three looks: the model's log-probability of each reading plus the
    n-gram model's at its weight, once per look (as each look's decoding added it)."""
    reader, weight = reader_with_ngram, 0.5
    texts = ["zq xv", "the mat", "alpha"]
    page, layout, crops, looks = piece_looks(reader, texts)
    model = [sum(forced_total(reader, text, image) for image in crops) for text in texts]
    fused = [m + 3 * weight * reader.ngram_log_prob(text) for m, text in zip(model, texts, strict=True)]
    assert np.argmax(model) != np.argmax(fused)
    for w, sums in ((0.0, model), (weight, fused)):
        chosen = reader.likeliest_readings(page, layout, looks, [False], GenerationOptions(ngram_weight=w))
        assert chosen[0].text == texts[int(np.argmax(sums))]


def test_a_joint_that_could_be_a_space_is_the_ngram_models_likelier(reader_with_ngram):
    """Where a line was cut at a gap as narrow as a tight line's space, the n-gram model of the
    training text decides: two words, or one word's two parts."""
    reader = reader_with_ngram
    assert reader.spaced("on the", "mat") and reader.spaced("the cat", "sat on")
    assert not reader.spaced("on the m", "at") and not reader.spaced("the c", "at sat")


def test_a_page_s_open_joints_are_the_ngram_models_unless_it_is_turned_off(reader_with_ngram, monkeypatch):
    judges = []
    join = PageLayout.join

    def spy(layout, texts, spaced=None):
        judges.append(spaced)
        return join(layout, texts, spaced)

    monkeypatch.setattr(PageLayout, "join", spy)
    page = draw_page([["alpha beta", "gamma", "delta"]])
    reader_with_ngram(page, options=GenerationOptions(4, num_beams=1, ngram_weight=0.5))
    reader_with_ngram(page, options=GenerationOptions(4, num_beams=1, ngram_weight=0))
    reader_with_ngram.model.config.ngram_weight = 0.2  # the folder's weight where the options have none
    reader_with_ngram(page, options=GenerationOptions(4, num_beams=1))
    assert judges == [reader_with_ngram.spaced, None, reader_with_ngram.spaced]


def test_an_ngram_model_of_another_tokenizer_is_refused(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved_model("tiny"), folder)
    TokenNgram.fit(np.array([1, 2, 3]), 2, vocab_size=9).save(folder / NGRAM_FILE)
    with pytest.raises(ValueError, match="counts 9 tokens, the tokenizer has 400"):
        VaryPipeline.from_pretrained(folder)


def test_a_heavy_weight_reads_the_ngram_models_own_text_and_zero_turns_it_off(reader_with_ngram):
    reader = reader_with_ngram
    page = [PageInput(noise(3), "<image>")]
    (heavy,) = reader.generate(page, [conversation()], GenerationOptions(12, num_beams=1, ngram_weight=1e3))
    space = reader.tokenizer.encode(" ", add_special_tokens=False)
    for step, token in enumerate(heavy.token_ids):  # each token one of the n-gram model's likeliest
        p = reader.ngram.probabilities([space + heavy.token_ids[:step]])[0]
        assert p[token] == p.max()  # ("the" is followed by "cat" and "mat" as often)
    assert heavy.text and heavy.text in "the cat sat on the mat\nthe cat", heavy.text  # words of its text
    reader.model.config.ngram_weight = 1e3  # the folder's weight, unless the options say 0
    off = reader.generate(page, [conversation()], GenerationOptions(12, num_beams=1, ngram_weight=0))
    reader.ngram = None
    (plain,) = reader.generate(page, [conversation()], GenerationOptions(12, num_beams=1))
    assert off[0].token_ids == plain.token_ids != heavy.token_ids
    with pytest.raises(ValueError, match="ngram_weight must be 0 or more"):
        GenerationOptions(ngram_weight=-1)


def make_text_pdf(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = pymupdf.open()
    document.new_page().insert_text((72, 72), text)
    document.save(path)
    document.close()
    return path


@pytest.mark.parametrize("latin_only", [False, True])
def test_the_command_fits_on_training_text_only_and_reports_bad_files(tmp_path, capsys, latin_only):
    """`vary ngram`: PDFs and .txt files of the training split, a held-out manual skipped, a
    corrupt PDF reported in one line while the rest is counted; config.json gets the weight;
    with --latin-only, a text in another script is left out."""
    folder = tmp_path / "model"
    shutil.copytree(saved_model("tiny"), folder)
    make_text_pdf(tmp_path / "texlive-latex-base-doc" / DOC / "latex/a/a.pdf", "the cat sat-\non the mat")
    make_text_pdf(tmp_path / "texlive-humanities-doc" / DOC / "latex/h/h.pdf", "zebra zebra")
    (tmp_path / "notes.txt").write_text("a dog ran\n", encoding="utf-8")
    (tmp_path / "texlive-latex-base-doc" / "ru.txt").write_text("кот\n", encoding="utf-8")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    sources = [
        tmp_path / "texlive-latex-base-doc",
        tmp_path / "texlive-humanities-doc",
        tmp_path / "notes.txt",
    ]
    code = main(
        [
            "ngram",
            *map(str, sources),
            str(tmp_path / "broken.pdf"),
            "--model",
            str(folder),
            "--order",
            "3",
            "--min-count",
            "1",
            *["--latin-only"] * latin_only,
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "WARNING broken.pdf: FileDataError" in err and "1 source(s) failed" in err
    assert "1 held-out file(s) skipped" in err
    assert json.loads((folder / "config.json").read_text())["ngram_weight"] == 0.2
    ngram = TokenNgram.load(folder / NGRAM_FILE)
    tokenizer = VaryPipeline.from_pretrained(folder).tokenizer

    def pairs(text: str) -> set[int]:
        tokens = tokenizer.encode(text, add_special_tokens=False)
        return {(a << ngram.bits) | b for a, b in itertools.pairwise(tokens)}

    counted = set(ngram.keys[1].tolist())
    assert pairs("the cat sat-\non the mat\n") <= counted  # its line break and hyphen as printed
    assert pairs("a dog ran\n") <= counted
    assert not pairs("zebra zebra\n") <= counted
    assert pairs("кот\n") <= counted if not latin_only else not pairs("кот\n") & counted


def test_the_command_needs_a_model_folder_with_a_tokenizer(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a dog ran\n", encoding="utf-8")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text("{}", encoding="utf-8")
    for folder, problem in (("missing", "not a Vary model folder"), ("bare", "no tokenizer")):
        assert main(["ngram", str(tmp_path / "notes.txt"), "--model", str(tmp_path / folder)]) == 2
        assert f"{tmp_path / folder}: {problem}" in capsys.readouterr().err


def test_text_for_a_line_reader_keeps_its_line_breaks() -> None:
    assert normalise("extrac-\ntion  here") == "extraction here"
    assert normalise("extrac-\ntion  here", join_breaks=False) == "extrac-\ntion here"
