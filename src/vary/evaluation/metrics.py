"""Evaluation metrics, each a small pure function with the same definition for every engine.

Page OCR (Vary / Fox / GOT-OCR2 tables): normalised edit distance, precision / recall / F1 over
distinct words, BLEU and METEOR. Question answering: ANLS (DocVQA) and relaxed accuracy
(ChartQA). Charts rendered with a Python-dict ground truth: `chart_dict_score`.
Inputs are raw strings; `ocr_scores` normalises and tokenises them (vary.evaluation.text).
docs/evaluation.md gives the definitions and where they differ from the published scripts.
"""

from __future__ import annotations

import ast
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nltk.translate.meteor_score import meteor_score
from rapidfuzz.distance import Levenshtein

from vary.evaluation.text import normalize_text, tokenize


def edit_distance(prediction: str, reference: str) -> float:
    """Character Levenshtein distance divided by the longer length (0 = identical, 1 = nothing shared)."""
    longest = max(len(prediction), len(reference))
    return Levenshtein.distance(prediction, reference) / longest if longest else 0.0


def character_error_rate(prediction: str, reference: str) -> float:
    """Character Levenshtein distance divided by the reference length (CER; above 1 when the
    prediction adds more than the reference has). An empty reference: 0 if nothing is predicted, else 1."""
    if not reference:
        return 0.0 if not prediction else 1.0
    return Levenshtein.distance(prediction, reference) / len(reference)


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


def prf(hits: int, predicted: int, expected: int) -> PRF:
    """Precision, recall and F1 from counts; two empty sides agree perfectly."""
    if predicted == 0 and expected == 0:
        return PRF(1.0, 1.0, 1.0)
    precision = hits / predicted if predicted else 0.0
    recall = hits / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(precision, recall, f1)


def token_prf(prediction: Sequence[str], reference: Sequence[str]) -> PRF:
    """Precision / recall / F1 over distinct tokens, as nltk.metrics (and so GOT-OCR2 / Fox) count.

    Precision is the share of predicted words found in the reference; recall the share of
    reference words found in the prediction. The published scripts pass ground truth where the
    prediction belongs, which swaps the two (docs/evaluation.md).
    """
    predicted, expected = set(prediction), set(reference)
    return prf(len(predicted & expected), len(predicted), len(expected))


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(prediction: Sequence[str], reference: Sequence[str], max_order: int = 4) -> float:
    """Sentence BLEU (Papineni et al.) on tokens: uniform weights up to 4-grams, brevity penalty,
    no smoothing, so any n-gram order without a match gives 0 (as nltk's `bleu` and sacrebleu
    with `smooth_method="none"`, on a 0-1 scale)."""
    if not prediction or not reference:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_order + 1):
        predicted = _ngrams(prediction, n)
        overlap = sum((predicted & _ngrams(reference, n)).values())
        if overlap == 0:
            return 0.0
        log_precision += math.log(overlap / sum(predicted.values())) / max_order
    brevity = min(0.0, 1.0 - len(reference) / len(prediction))
    return math.exp(brevity + log_precision)


class _NoSynonyms:
    """Stands in for WordNet so METEOR runs offline: only exact and Porter-stem matches count."""

    @staticmethod
    def synsets(*_args: Any, **_kwargs: Any) -> list[Any]:
        return []


def meteor(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """METEOR (Banerjee & Lavie) from nltk with the default parameters (alpha 0.9, beta 3, gamma 0.5),
    lower-cased, exact + stem stages only: the WordNet synonym stage needs a download."""
    if not prediction or not reference:
        return 0.0
    return meteor_score([list(reference)], list(prediction), wordnet=_NoSynonyms())


def _qa_normalize(text: str) -> str:
    return normalize_text(text).casefold()


def anls(prediction: str, answers: Sequence[str], tau: float = 0.5) -> float:
    """Average Normalised Levenshtein Similarity for one question (Biten et al., DocVQA).

    The best of `1 - edit_distance` over the accepted answers, after normalisation and case
    folding; a distance of `tau` or more scores 0 (an answer that far off is wrong, not close).
    """
    prediction = _qa_normalize(prediction)
    best = 0.0
    for answer in answers:
        distance = edit_distance(prediction, _qa_normalize(answer))
        if distance < tau:
            best = max(best, 1.0 - distance)
    return best


def _to_number(text: str) -> float | None:
    """A float, with `12%` read as 0.12 as in the ChartQA / Pix2Struct scorer."""
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return None


def relaxed_match(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """ChartQA relaxed correctness: numbers within `tolerance` relative error, other text exact.

    Text is compared after normalisation, case-insensitively. A zero target needs an exact zero
    (Pix2Struct falls back to comparing the strings, so it rejects "0.0" for "0").
    """
    prediction, target = _qa_normalize(prediction), _qa_normalize(target)
    predicted, expected = _to_number(prediction), _to_number(target)
    if predicted is None or expected is None:
        return prediction == target
    if expected == 0:
        return predicted == 0
    return abs(predicted - expected) / abs(expected) <= tolerance


def parse_chart_dict(text: str) -> dict[Any, Any] | None:
    """Read a Python-dict string (Vary's chart ground truth); None if it is not one.

    Only literals are evaluated (`ast.literal_eval`). Text around the outermost braces, which a
    model may add, is ignored.
    """
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        value = ast.literal_eval(text[start : end + 1])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _leaves(value: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """Flatten nested dicts / lists to {key path: leaf}; keys are normalised and case-folded."""
    if isinstance(value, Mapping):
        items = ((_qa_normalize(str(key)), child) for key, child in value.items())
    elif isinstance(value, list | tuple):
        items = ((str(index), child) for index, child in enumerate(value))
    else:
        return {path: str(value)}
    leaves: dict[tuple[str, ...], str] = {}
    for key, child in items:
        leaves.update(_leaves(child, (*path, key)))
    return leaves


def chart_dict_score(prediction: str, reference: str, tolerance: float = 0.05) -> PRF:
    """Precision / recall / F1 over the leaves of a chart's dict: a predicted leaf counts when the
    same key path exists in the reference and its value matches (`relaxed_match`: numbers within
    `tolerance`, text exact). A prediction that does not parse scores 0."""
    expected_dict = parse_chart_dict(reference)
    if expected_dict is None:
        raise ValueError("the reference is not a Python dict literal")
    expected = _leaves(expected_dict)
    predicted = _leaves(parse_chart_dict(prediction) or {})
    hits = sum(
        path in expected and relaxed_match(value, expected[path], tolerance)
        for path, value in predicted.items()
    )
    return prf(hits, len(predicted), len(expected))


@dataclass(frozen=True)
class OcrScores:
    """Every page metric for one prediction; `chart_f1` only where the reference is a chart dict."""

    edit_distance: float
    cer: float
    precision: float
    recall: float
    f1: float
    bleu: float
    meteor: float
    chart_f1: float | None = None


def ocr_scores(prediction: str, reference: str, lang: str) -> OcrScores:
    """Score one page: normalise both sides, then character and word metrics on the same text."""
    chart = reference.strip()
    is_chart = chart.startswith("{") and chart.endswith("}") and parse_chart_dict(chart) is not None
    chart_f1 = chart_dict_score(prediction, chart).f1 if is_chart else None
    prediction, reference = normalize_text(prediction), normalize_text(reference)
    predicted, expected = tokenize(prediction, lang), tokenize(reference, lang)
    words = token_prf(predicted, expected)
    return OcrScores(
        edit_distance=edit_distance(prediction, reference),
        cer=character_error_rate(prediction, reference),
        precision=words.precision,
        recall=words.recall,
        f1=words.f1,
        bleu=bleu(predicted, expected),
        meteor=meteor(predicted, expected),
        chart_f1=chart_f1,
    )
