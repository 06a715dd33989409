"""The unit of data that flows from sources to shards to batches: one image and its target.

Vary-tiny samples carry `text` (what the model must write out, no prompt). Vary-base samples
carry `conversations` in LLaVA form (`[{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": "..."}]`). A sample may have both; the training stage decides which
target it uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

Source = Literal["pdf", "chart", "latex", "natural", "qa", "llava", "synthetic"]
IMAGE_TOKEN = "<image>"  # LLaVA's placeholder in conversation text


@dataclass
class Sample:
    id: str
    image: Image.Image | None
    text: str = ""
    lang: str = "en"  # "en", "zh" or "none" (natural-image negatives)
    source: str = "synthetic"
    conversations: list[dict[str, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON half of a shard record (the image is stored beside it)."""
        record: dict[str, Any] = {"id": self.id, "text": self.text, "lang": self.lang, "source": self.source}
        if self.conversations:
            record["conversations"] = self.conversations
        if self.meta:
            record["meta"] = self.meta
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any], image: Image.Image | None) -> Sample:
        return cls(
            id=str(record["id"]),
            image=image,
            text=record.get("text", ""),
            lang=record.get("lang", "en"),
            source=record.get("source", "synthetic"),
            conversations=list(record.get("conversations", [])),
            meta=dict(record.get("meta", {})),
        )
