"""The repetition guard: loop detection on constructed sequences and inside real generate calls."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteriaList

import test_infer_pipeline as support
from vary.inference import GenerationOptions, RepetitionGuard, VaryPipeline
from vary.inference.pipeline import conversation
from vary.inference.repetition import Loop, RepetitionStop, find_loop

one_thread = support.one_thread
GUARD = RepetitionGuard(max_period=8, min_repeats=4, min_length=12)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ([1, 2] + [7] * 12, Loop(1, 2)),  # one token again and again
        ([9, 1, 2, 3] + [4, 5, 6] * 4, Loop(3, 4)),  # a line again and again
        ([5, 6] + [4, 5, 6] * 4, Loop(3, 0)),  # the loop began before its first full copy
        ([1, 2, 3, 4, 5] * 3 + [1, 2], None),  # three copies and a bit: not yet
        ([1, 2] * 5, None),  # periodic but shorter than min_length
        (list(range(40)), None),
        ([3] * 11, None),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9] * 4, None),  # period 9 > max_period
    ],
)
def test_find_loop(tokens, expected):
    assert find_loop(tokens, GUARD) == expected


def test_find_loop_prefers_the_shortest_period():
    assert find_loop([8, 8, 8, 8] * 6, GUARD) == Loop(1, 0)


class ForceTokens(LogitsProcessor):
    """Row i emits `sequences[i][step]`: a scripted model."""

    def __init__(self, sequences: list[list[int]], prompt_length: int):
        self.sequences = sequences
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        forced = torch.full_like(scores, -float("inf"))
        for row, sequence in enumerate(self.sequences):
            forced[row, sequence[step % len(sequence)]] = 0.0
        return forced


def test_stop_criterion_inside_generate():
    """Row 0 loops with period 3 and is stopped alone; row 1 never repeats and runs to the limit;
    row 2 ends with the stop token and is then padded."""
    pipeline = VaryPipeline.from_pretrained(support.saved_model("tiny"))
    tokenizer = pipeline.tokenizer
    batch = pipeline.processor(
        [support.noise(0)] * 3, [conversation()] * 3, padding_side="left"
    )  # fmt: skip
    batch.pop("labels")
    prompt = batch["input_ids"].shape[1]
    eos = tokenizer.eos_token_id
    rows = [[40, 41, 42, 43, 44] + [50, 51, 52] * 30, list(range(60, 200)), [70, 71, eos] + [72] * 30]
    stop = RepetitionStop(GUARD, prompt)
    output = pipeline.model.generate(
        **batch,
        max_new_tokens=40,
        do_sample=False,
        eos_token_id=[eos],
        pad_token_id=tokenizer.pad_token_id,
        logits_processor=LogitsProcessorList([ForceTokens(rows, prompt)]),
        stopping_criteria=StoppingCriteriaList([stop]),
    )
    generated = output[:, prompt:].tolist()
    assert generated[0][:17] == rows[0][:17]  # 5 + 4 copies of the period = 17 tokens, then padding
    assert set(generated[0][17:]) <= {tokenizer.pad_token_id}
    assert generated[1] == rows[1][:40]


def test_stop_criterion_judges_each_row_alone():
    """No state between calls: beam search hands it re-ranked candidates at every step."""
    stop = RepetitionStop(GUARD, 2)
    looping, fresh, late = [9, 9] + [4, 5] * 8, [9, 9, *range(20, 36)], [9, 9, *range(20, 26), *[6] * 10]
    assert stop(torch.tensor([looping, fresh, late]), None).tolist() == [True, False, False]
    assert stop(torch.tensor([fresh, late, looping]), None).tolist() == [False, False, True]
    two_more = [[*fresh, 36, 37], [*late, 6, 6], [*looping, 4, 5]]  # the late loop now spans 12 tokens
    assert stop(torch.tensor(two_more), None).tolist() == [False, True, True]


def test_pipeline_marks_and_trims_a_looping_page():
    pipeline = VaryPipeline.from_pretrained(support.saved_model("tiny"))
    loop_token = 100
    pipeline.model.generation_config.suppress_tokens = [
        t for t in range(len(pipeline.tokenizer)) if t != loop_token
    ]
    guarded = pipeline(support.noise(1), options=GenerationOptions(max_new_tokens=80))
    assert guarded.repetition_stopped and not guarded.truncated
    assert guarded.token_ids == [loop_token]  # the loop, once
    beams = pipeline(support.noise(1), options=GenerationOptions(max_new_tokens=80, num_beams=3))
    assert beams.repetition_stopped and beams.token_ids == [loop_token]
    unguarded = pipeline(support.noise(1), options=GenerationOptions(max_new_tokens=80, repetition=None))
    assert unguarded.truncated and unguarded.token_ids == [loop_token] * 80
