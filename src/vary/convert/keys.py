"""State-dict key mapping as data: a list of `Rule`s and one generic `remap`, plus the one check.

Every checkpoint layout this package reads (SAM, CLIP, Qwen-1, OPT, the official Vary and
GOT-OCR2 releases) is a table of rules from its key names to ours. A rule matches a whole key
with a regular expression and rewrites it with a `re` template; a rule with several targets
splits the tensor into equal parts along dim 0 (Qwen-1's fused `c_attn` -> q, k, v); a rule with
none drops the key (weights the model has no use for, such as SAM's mask decoder). Keys no rule
matches are returned separately so the check can report them as unexpected.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import torch

from vary.cli import UserError

SHOWN_KEYS = 6  # keys listed per kind of problem before "... and N more"


class CheckpointError(UserError):
    """A checkpoint that is not what it should be: unknown layout, missing or unexpected keys."""


@dataclass(frozen=True)
class Rule:
    """Keys that fully match `pattern` become `targets` (re templates: `\\1` is group 1)."""

    pattern: str
    targets: tuple[str, ...]


def rename(pattern: str, target: str) -> Rule:
    return Rule(pattern, (target,))


def split(pattern: str, *targets: str) -> Rule:
    """One fused tensor -> len(targets) equal parts along dim 0."""
    return Rule(pattern, targets)


def drop(pattern: str) -> Rule:
    return Rule(pattern, ())


def remap(
    state_dict: Mapping[str, torch.Tensor], rules: Iterable[Rule]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Apply the first rule that matches each key; returns (new state dict, unmatched keys)."""
    compiled = [(re.compile(rule.pattern), rule.targets) for rule in rules]
    out: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    for key, tensor in state_dict.items():
        for regex, targets in compiled:
            match = regex.fullmatch(key)
            if match:
                names = [match.expand(target) for target in targets]
                out.update(zip(names, _pieces(tensor, len(names)), strict=True))
                break
        else:
            unmatched.append(key)
    return out, unmatched


def _pieces(tensor: torch.Tensor, count: int) -> list[torch.Tensor]:
    """`count` equal parts along dim 0 (none: a dropped key). Parts are copies: views would share
    storage, which safetensors refuses to save."""
    return [tensor] * count if count <= 1 else [part.clone() for part in tensor.chunk(count)]


def check_state_dict(
    found: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    source: str,
    optional: Collection[str] = (),
    unexpected: Iterable[str] = (),
) -> None:
    """Raise one readable `CheckpointError` if `found` does not fill `expected` exactly.

    `optional` keys may be absent (tied output embeddings, convs a bare SAM checkpoint lacks);
    `unexpected` are extra source keys already known to be unusable (no rule matched them).
    """
    missing = sorted(set(expected) - set(found) - set(optional))
    extra = sorted(set(found) - set(expected)) + sorted(unexpected)
    mismatched = [
        f"{key} {tuple(found[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(found) & set(expected))
        if found[key].shape != expected[key].shape
    ]
    problems = [
        _listing(f"missing key{'s' * (len(missing) != 1)}", missing),
        _listing(f"unexpected key{'s' * (len(extra) != 1)}", extra),
        _listing(f"shape mismatch{'es' * (len(mismatched) != 1)}", mismatched),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointError(f"{source}: checkpoint does not fit the model: {'; '.join(problems)}")


def _listing(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:SHOWN_KEYS]) + (
        f", ... and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    )
    return f"{len(keys)} {what} ({shown})"
