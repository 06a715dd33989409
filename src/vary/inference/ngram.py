"""A token n-gram language model, added to a small reader's scores as it decodes (shallow fusion).

The built-in model decodes from a 64 px crop; where the glyphs are blurred (`traceback` ->
`raselasek`) its image says little, and a decoder trained partly on random strings has learned
not to guess words. An n-gram model of the training manuals' text supplies what the image
lacks: at each step the reader's log-probabilities get `weight * log P_ngram(token | previous
tokens)` added (Gulcehre et al. 2015's shallow fusion, as OCR decoders add a dictionary or a
KenLM model). The counts are over the model's own token ids, so any tokenizer works; the
built-in one has one token per byte, which makes this a character model.

Probabilities are interpolated Witten-Bell estimates (each order's counts, backed off to the
order below in proportion to how many different tokens followed the context), so every token
keeps some probability: fusion can prefer a word, never forbid a glyph. A k-gram is stored as
one int64 key (`bits` per token), sorted, so the followers of a context are one contiguous run
found by binary search; contexts seen fewer than `min_count` times are dropped when fitting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from transformers import LogitsProcessor

NGRAM_FILE = "ngram.safetensors"  # beside a model's weights: its folder's n-gram model
MAX_KEY_BITS = 62  # a k-gram's key, and the next context's first key, fit one non-negative int64


@dataclass(frozen=True)
class TokenNgram:
    """Counts of every k-gram, k = 1..order, as sorted keys and their counts (one pair per k)."""

    order: int
    vocab_size: int
    keys: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]

    @property
    def bits(self) -> int:
        return key_bits(self.vocab_size)

    @classmethod
    def fit(cls, tokens: np.ndarray, order: int, vocab_size: int, min_count: int = 1) -> TokenNgram:
        """Count the k-grams of one token stream (texts joined end to end); k-grams above the
        unigrams seen fewer than `min_count` times are dropped (the file's size, not its use)."""
        bits = key_bits(vocab_size)
        if order < 1 or order * bits > MAX_KEY_BITS:
            raise ValueError(f"order must be 1 to {MAX_KEY_BITS // bits} for this vocabulary, not {order}")
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
            raise ValueError(f"token ids must lie in [0, {vocab_size})")
        keys, counts = [], []
        for k in range(1, order + 1):
            n = len(tokens) - k + 1
            key = np.zeros(max(n, 0), dtype=np.int64)
            for j in range(k):
                key = (key << bits) | tokens[j : j + n]
            unique, count = np.unique(key, return_counts=True)
            if k > 1:
                unique, count = unique[count >= min_count], count[count >= min_count]
            keys.append(unique)
            counts.append(np.minimum(count, np.iinfo(np.uint32).max).astype(np.uint32))
        return cls(order, vocab_size, tuple(keys), tuple(counts))

    def probabilities(self, contexts: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(contexts), vocab_size): P(next token | context) for each context."""
        rows = len(contexts)
        p = np.full((rows, self.vocab_size), 1.0 / self.vocab_size)
        mask = (1 << self.bits) - 1
        for k in range(1, self.order + 1):
            live = np.array([len(c) >= k - 1 for c in contexts], dtype=bool)
            if not live.any():
                break
            history = np.array([self._key(c[len(c) - k + 1 :] if k > 1 else ()) for c in contexts])
            lo = np.searchsorted(self.keys[k - 1], history << self.bits)
            hi = np.searchsorted(self.keys[k - 1], (history + 1) << self.bits)
            seen = live & (hi > lo)
            if not seen.any():
                continue
            counts = np.zeros((rows, self.vocab_size))
            row_of, at = _runs(lo[seen], hi[seen])
            rows_seen = np.flatnonzero(seen)[row_of]
            counts[rows_seen, self.keys[k - 1][at] & mask] = self.counts[k - 1][at]
            total = counts.sum(axis=1, keepdims=True)
            distinct = (counts > 0).sum(axis=1, keepdims=True)
            backed_off = (counts + distinct * p) / np.maximum(total + distinct, 1)
            p = np.where(seen[:, None], backed_off, p)
        return p

    def log_prob(self, tokens: Sequence[int], context: Sequence[int] = ()) -> float:
        """log P(tokens | context): each token's log-probability after those before it, summed."""
        if not tokens:
            return 0.0
        history = [*context, *tokens]
        p = self.probabilities([history[: len(context) + i] for i in range(len(tokens))])
        return float(np.log(p[np.arange(len(tokens)), list(tokens)]).sum())

    def _key(self, tokens: Sequence[int]) -> int:
        key = 0
        for token in tokens:
            key = (key << self.bits) | token
        return key

    def save(self, path: str | Path) -> None:
        tensors = {f"keys.{k}": keys for k, keys in enumerate(self.keys, start=1)}
        tensors |= {f"counts.{k}": counts for k, counts in enumerate(self.counts, start=1)}
        save_file(tensors, str(path), metadata={"order": str(self.order), "vocab_size": str(self.vocab_size)})

    @classmethod
    def load(cls, path: str | Path) -> TokenNgram:
        with safe_open(str(path), "np") as handle:
            meta = handle.metadata() or {}
        if "order" not in meta or "vocab_size" not in meta:
            raise ValueError(f"{path}: not an n-gram model (no order / vocab_size in its metadata)")
        tensors = load_file(str(path))
        order = int(meta["order"])
        keys = tuple(tensors[f"keys.{k}"] for k in range(1, order + 1))
        counts = tuple(tensors[f"counts.{k}"] for k in range(1, order + 1))
        return cls(order, int(meta["vocab_size"]), keys, counts)


def key_bits(vocab_size: int) -> int:
    return max(1, (vocab_size - 1).bit_length())


def _runs(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs [lo_i, hi_i): each position's run number and the positions, concatenated."""
    lengths = hi - lo
    row_of = np.repeat(np.arange(len(lo)), lengths)
    starts = np.repeat(lo - np.cumsum(lengths) + lengths, lengths)
    return row_of, starts + np.arange(lengths.sum())


class NgramFusion(LogitsProcessor):
    """Adds `weight * log P_ngram(token | the tokens generated so far)` to a step's scores.

    Decoding starts after `start` (a crop starts where a word does: a space), and a stop token
    is as likely as a word ending there (the summed probability of `word_ends`, a space or a
    line break), except in the batch items flagged in `open_ends`, whose crops end inside a word
    (a word too wide for one crop, cut into parts): there the n-gram model holds no stop back,
    a stop being as likely as its likeliest token. What it added at each step is kept
    (`added`), so a caller can take the model's own log-probabilities back out of the scores
    generate returns.
    """

    def __init__(
        self,
        ngram: TokenNgram,
        weight: float,
        prompt_length: int,
        start: Sequence[int],
        stop_ids: Iterable[int],
        word_ends: Sequence[int],
        open_ends: Sequence[bool] = (),
    ):
        self.ngram, self.weight, self.prompt_length = ngram, weight, prompt_length
        self.start, self.stop_ids, self.word_ends = list(start), list(stop_ids), list(word_ends)
        self.open_ends = np.array(open_ends, dtype=bool)
        self.added: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        contexts = [self.start + row for row in input_ids[:, self.prompt_length :].tolist()]
        p = self.ngram.probabilities(contexts)
        stops = [token for token in self.stop_ids if token < self.ngram.vocab_size]
        open_rows = np.zeros(len(contexts), dtype=bool)
        if self.open_ends.any():  # generate repeats each batch item once per beam
            open_rows = np.repeat(self.open_ends, len(contexts) // len(self.open_ends))
        p[:, stops] = stop_probability(p, self.word_ends, open_rows)[:, None]
        width = scores.shape[1]
        log_p = np.full((len(contexts), width), np.log(1.0 / self.ngram.vocab_size))
        log_p[:, : min(width, self.ngram.vocab_size)] = np.log(p[:, :width])
        added = self.weight * torch.from_numpy(log_p).to(scores.device, scores.dtype)
        self.added.append(added)
        return scores + added


def stop_probability(p: np.ndarray, word_ends: Sequence[int], open_rows: np.ndarray) -> np.ndarray:
    """P(stop) for each row of next-token probabilities `p`: a word's end there (the summed
    probability of `word_ends`), or, in a crop that ends inside a word (`open_rows`), that of
    the likeliest token."""
    return np.where(open_rows, p.max(axis=1), p[:, list(word_ends)].sum(axis=1))


def reading_log_prob(
    ngram: TokenNgram, tokens: Sequence[int], start: Sequence[int], word_ends: Sequence[int], open_end: bool
) -> float:
    """log P of a crop's reading as `NgramFusion` scores it as it decodes: its tokens after
    `start`, then a stop (a word's end, or anything where the crop ends inside a word)."""
    after = ngram.probabilities([[*start, *tokens]])
    stop = stop_probability(after, word_ends, np.array([open_end]))[0]
    return ngram.log_prob(tokens, start) + float(np.log(stop))
