"""Every metric against values worked out by hand, and against nltk / sacrebleu on the same input."""

from __future__ import annotations

import math

import nltk
import pytest
import sacrebleu
from nltk.metrics import f_measure, precision, recall
from nltk.translate.bleu_score import sentence_bleu

from vary.evaluation.metrics import (
    anls,
    bleu,
    character_error_rate,
    chart_dict_score,
    edit_distance,
    meteor,
    ocr_scores,
    parse_chart_dict,
    relaxed_match,
    token_prf,
)


def words(text: str) -> list[str]:
    return text.split()


PAIRS = [
    ("kitten", "sitting"),
    ("视觉词表", "视觉词汇表"),
    ("The quick brown fox", "The quikc brown fox."),
    ("", "abc"),
]


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("kitten", "sitting", 3 / 7),
        ("视觉词表", "视觉词汇表", 1 / 5),  # one insertion, longer string has 5 characters
        ("abc", "abc", 0.0),
        ("abc", "", 1.0),
        ("", "", 0.0),
    ],
)
def test_edit_distance_by_hand(prediction: str, reference: str, expected: float) -> None:
    assert edit_distance(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize(("prediction", "reference"), PAIRS)
def test_edit_distance_matches_nltk(prediction: str, reference: str) -> None:
    longest = max(len(prediction), len(reference))
    assert edit_distance(prediction, reference) == pytest.approx(
        nltk.edit_distance(prediction, reference) / longest
    )


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("kitten", "sitting", 3 / 7),
        ("sitting", "kitten", 3 / 6),  # divided by the reference, not the longer side
        ("abcabc", "abc", 1.0),  # three insertions on a 3-character reference
        ("", "", 0.0),
        ("x", "", 1.0),
    ],
)
def test_character_error_rate_by_hand(prediction: str, reference: str, expected: float) -> None:
    assert character_error_rate(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize(("prediction", "reference"), [pair for pair in PAIRS if pair[1]])
def test_character_error_rate_matches_nltk(prediction: str, reference: str) -> None:
    expected = nltk.edit_distance(prediction, reference) / len(reference)
    assert character_error_rate(prediction, reference) == pytest.approx(expected)


def test_token_prf_by_hand_counts_distinct_words() -> None:
    scores = token_prf(words("the cat sat sat"), words("the cat is here"))
    # distinct predicted {the, cat, sat}: 2 of 3 in the reference;
    # reference {the, cat, is, here}: 2 of 4 found
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((2 / 3, 1 / 2, 4 / 7))


def test_token_prf_matches_nltk_with_arguments_in_their_documented_order() -> None:
    predicted, expected = words("a b c d e"), words("a b x")
    scores = token_prf(predicted, expected)
    # nltk.metrics.precision(reference, test): the share of *test* (predicted) values in the reference.
    assert scores.precision == pytest.approx(precision(set(expected), set(predicted)))
    assert scores.recall == pytest.approx(recall(set(expected), set(predicted)))
    assert scores.f1 == pytest.approx(f_measure(set(expected), set(predicted)))
    # The GOT-OCR2 / Fox scripts pass the ground truth as `pred`, which swaps the two numbers.
    assert scores.precision == pytest.approx(recall(set(predicted), set(expected)))


def test_token_prf_edges() -> None:
    assert token_prf([], []).f1 == 1.0
    assert token_prf([], ["a"]) == token_prf(["a"], []) == token_prf(["a"], ["b"])
    assert token_prf(["a"], ["b"]).f1 == 0.0


def test_bleu_by_hand() -> None:
    prediction, reference = words("the cat sat on the mat"), words("the cat sat on a mat")
    # clipped n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty
    assert bleu(prediction, reference) == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    # every n-gram matches, but 4 words for 6: brevity penalty exp(1 - 6/4)
    assert bleu(words("the cat sat on"), reference) == pytest.approx(math.exp(-0.5))
    assert bleu(words("the cat sat"), reference) == 0.0  # no 4-gram at all
    assert bleu([], reference) == 0.0


BLEU_CASES = [
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("a b c d e f g h", "a b c d x f g h i j"),
    ("我们 提出 了 一种 视觉 词表 扩展 方法", "我们 提出 一种 新 的 视觉 词表 扩展 方法"),
]


@pytest.mark.parametrize(("prediction", "reference"), BLEU_CASES)
def test_bleu_matches_nltk_and_sacrebleu(prediction: str, reference: str) -> None:
    ours = bleu(prediction.split(), reference.split())
    assert ours == pytest.approx(sentence_bleu([reference.split()], prediction.split()))
    theirs = sacrebleu.sentence_bleu(prediction, [reference], tokenize="none", smooth_method="none")
    assert ours == pytest.approx(theirs.score / 100)


def test_meteor_by_hand() -> None:
    reference = ["the", "cat", "sat"]
    # all three match (cats ~ cat by Porter stem) in one chunk: penalty 0.5 * (1/3)^3
    assert meteor(["the", "cats", "sat"], reference) == pytest.approx(1 - 1 / 54)
    # all match but in two chunks: penalty 0.5 * (2/3)^3
    assert meteor(["sat", "the", "cat"], reference) == pytest.approx(1 - 4 / 27)
    # one match: P = 1/2, R = 1/3, Fmean = PR / (0.9 P + 0.1 R), one chunk of one word: penalty 0.5
    fmean = (1 / 6) / (0.9 / 2 + 0.1 / 3)
    assert meteor(["a", "cat"], reference) == pytest.approx(fmean * 0.5)
    assert meteor([], reference) == meteor(reference, []) == 0.0


def test_meteor_has_no_synonym_stage() -> None:
    """WordNet would match 'feline' to 'cat'; offline only exact and stem matches count."""
    assert meteor(["the", "feline", "sat"], ["the", "cat", "sat"]) < meteor(
        ["the", "cat", "sat"], ["the", "cat", "sat"]
    )


def test_anls_by_hand() -> None:
    assert anls("1/2/1996", ["1/2/1996", "January 2, 1996"]) == 1.0
    assert anls(" itc  LIMITED ", ["ITC Limited"]) == 1.0  # case and spacing do not count
    assert anls("ITC Limted", ["ITC Limited"]) == pytest.approx(1 - 1 / 11)
    assert anls("abcx", ["abcd"]) == pytest.approx(0.75)
    assert anls("abxy", ["abcd"]) == 0.0  # distance 0.5 is not below tau
    assert anls("abxy", ["zzzz", "abcy"]) == pytest.approx(0.75)  # best accepted answer
    assert anls("anything", []) == 0.0


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        ("24", "23.5", True),  # 2.1 % off
        ("50", "45", False),  # 11 % off
        ("105", "100", True),  # exactly 5 %
        ("105.1", "100", False),
        ("12%", "0.12", True),
        ("0.0", "0", True),
        ("1", "0", False),
        ("yes", "Yes", True),
        ("Europe", "Asia", False),
        ("２４", "24", True),  # full-width digits after NFKC
    ],
)
def test_relaxed_match(prediction: str, target: str, expected: bool) -> None:
    assert relaxed_match(prediction, target) is expected


CHART = "{'title': 'Sales', 'data': {'2019': 23.5, '2020': 45}}"


def test_chart_dict_score_by_hand() -> None:
    prediction = "{'Title': 'sales', 'data': {'2019': 24, '2020': 50, '2021': 1}}"
    # 4 predicted leaves; title and 2019 (2 % off) match, 2020 (11 % off) does not; 3 reference leaves
    scores = chart_dict_score(prediction, CHART)
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((2 / 4, 2 / 3, 4 / 7))
    assert chart_dict_score(CHART, CHART).f1 == 1.0
    assert chart_dict_score("{'x': ['a', 'b'], 'y': [1, 2.0]}", "{'x': ['a', 'b'], 'y': [1.0, 2]}").f1 == 1.0
    assert chart_dict_score("not a dict", CHART).f1 == 0.0
    with pytest.raises(ValueError, match="not a Python dict"):
        chart_dict_score(CHART, "plain text")


def test_parse_chart_dict() -> None:
    assert parse_chart_dict("Here it is: {'a': 1} done") == {"a": 1}
    assert parse_chart_dict("{'a': os.system('x')}") is None  # literals only
    assert parse_chart_dict("[1, 2]") is None
    assert parse_chart_dict("{1, 2}") is None  # a set, not a dict


def test_ocr_scores_normalise_both_sides_first() -> None:
    scores = ocr_scores("Vary  scales\nup the ﬁle", "Vary scales up the file", "en")
    assert (scores.edit_distance, scores.f1, scores.bleu) == (0.0, 1.0, 1.0)
    assert scores.chart_f1 is None
    chinese = ocr_scores("视 觉 词 表\n扩展", "视觉词表扩展", "zh")  # Tesseract-style spaces, a line break
    assert (chinese.edit_distance, chinese.f1) == (0.0, 1.0)


def test_ocr_scores_chart_pages_get_a_chart_score() -> None:
    assert ocr_scores(CHART, CHART, "en").chart_f1 == 1.0
    assert ocr_scores("nothing", CHART, "en").chart_f1 == 0.0
