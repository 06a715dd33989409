"""Stop a sequence that has fallen into a loop, the classic failure of greedy OCR decoding.

Dense pages make OCR models repeat a line (or a single token) until `max_new_tokens`, which
costs minutes per page and buries the real text. `RepetitionStop` is a transformers
`StoppingCriteria` that checks, after every step and per sequence, whether the generated tail
is periodic (period p repeated at least `min_repeats` times over at least `min_length`
tokens) and stops only that sequence. The pipeline then keeps the text up to the first copy
of the loop and marks the page `repetition_stopped`.

Repetition that real documents have (dot leaders, table rules) is short; the thresholds are
set so that a loop must cover `min_length` tokens before it counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import StoppingCriteria


@dataclass(frozen=True)
class RepetitionGuard:
    """When a generated tail counts as a loop."""

    max_period: int = 128
    min_repeats: int = 4
    min_length: int = 48

    def __post_init__(self) -> None:
        if self.max_period < 1 or self.min_repeats < 2:
            raise ValueError("repetition guard needs max_period >= 1 and min_repeats >= 2")

    @property
    def window(self) -> int:
        """Tokens at the end of a sequence that decide whether it loops."""
        return max(self.min_repeats * self.max_period, self.min_length)


@dataclass(frozen=True)
class Loop:
    period: int
    start: int  # index where the periodic tail begins


def find_loop(tokens: Sequence[int] | np.ndarray, guard: RepetitionGuard) -> Loop | None:
    """The shortest-period loop that ends `tokens`, extended back to where it began, or None."""
    ids = np.asarray(tokens)
    n = len(ids)
    if n < guard.min_length:
        return None
    # Only periods p where the last token also occurs p steps earlier can be loops.
    lookback = ids[max(n - 1 - guard.max_period, 0) : n - 1][::-1]  # lookback[k] is k + 1 steps back
    periods = 1 + np.flatnonzero(lookback == ids[-1])
    for period in periods.tolist():
        span = max(guard.min_repeats * period, guard.min_length)
        if span > n:
            break
        tail = ids[n - span :]
        if np.array_equal(tail[period:], tail[:-period]):
            start = n - span
            while start > 0 and ids[start - 1] == ids[start - 1 + period]:
                start -= 1
            return Loop(period, start)
    return None


class RepetitionStop(StoppingCriteria):
    """Stops every sequence whose generated tail is a loop.

    It keeps no state between steps, so it also serves beam search, whose rows are re-ranked
    candidates at every step. A row that already ended (padding after its stop token) may be
    flagged again: generate ignores that, and the pipeline cuts each row at its stop token.
    """

    def __init__(self, guard: RepetitionGuard, prompt_length: int):
        self.guard = guard
        self.prompt_length = prompt_length

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs
    ) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        generated = input_ids.shape[1] - self.prompt_length
        if generated >= self.guard.min_length:
            window = input_ids[:, -min(generated, self.guard.window) :].cpu().numpy()
            for row, tokens in enumerate(window):
                done[row] = find_loop(tokens, self.guard) is not None
        return done.to(input_ids.device)
