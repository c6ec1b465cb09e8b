"""Tokenised examples and dynamic padding for training (no wasted pad tokens).

Each batch is padded only to its own longest example (and ``group_by_length`` sampling keeps
lengths in a batch close), which is where the speed-up over static ``max_length`` padding
comes from. The collator also counts the real (non-pad) tokens of training batches, so
tokens/second means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.models.prompting import EncodedExample

__all__ = ["DynamicPadCollator", "ExampleDataset", "count_tokens"]


class ExampleDataset:
    """A list of encoded examples as a map-style dataset of dicts (what the HF Trainer wants)."""

    def __init__(self, examples: list[EncodedExample], architecture: str, train: bool = True) -> None:
        self._examples = examples
        self._seq2seq = architecture == "seq2seq"
        self._train = train

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ex = self._examples[index]
        return {"input_ids": ex.input_ids, "labels": ex.labels, "_train": self._train}

    def lengths(self) -> list[int]:
        return [len(ex.input_ids) for ex in self._examples]


def count_tokens(ex: EncodedExample, architecture: str) -> int:
    """Real tokens one example puts through the model (seq2seq: encoder + decoder)."""
    return len(ex.input_ids) + (len(ex.labels) if architecture == "seq2seq" else 0)


@dataclass
class DynamicPadCollator:
    """Pad ``input_ids`` with ``pad_token_id`` and ``labels`` with -100 to the batch's longest."""

    pad_token_id: int
    architecture: str
    train_tokens: int = 0  # non-pad tokens of the training batches collated so far

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        seq2seq = self.architecture == "seq2seq"
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        label_width = max(len(f["labels"]) for f in features) if seq2seq else width
        labels = torch.full((len(features), label_width), -100, dtype=torch.long)
        tokens = 0
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.tensor(feature["input_ids"], dtype=torch.long)
            mask[row, :n] = 1
            m = len(feature["labels"])
            labels[row, :m] = torch.tensor(feature["labels"], dtype=torch.long)
            tokens += n + (m if seq2seq else 0)
        if features[0].get("_train", True):
            self.train_tokens += tokens
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
