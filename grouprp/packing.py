"""Packing: several examples in one row of at most `sequence_len`, so that a step is full of real tokens.

Short examples (single-character replies are a few hundred tokens) leave most of a row empty. Packed, a row holds
several, each with position ids that restart at 0, and no attention mask: transformers then builds a block-
diagonal causal mask from the position ids (sdpa and eager, exact on the CPU) or hands flash-attention the
sequence boundaries (varlen), so no example attends to another. Each example's first label is already ignored
(its BOS), so no token is trained to follow another example's last one. No example is ever cut to fit.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from grouprp.tokenize import IGNORE_INDEX


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Example indices grouped into rows of at most `capacity` tokens: best-fit decreasing (each example, longest
    first, goes to the fullest row it still fits in). Deterministic; each row lists its examples in input order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row), sorted
    for index in order:
        need = lengths[index]
        if need > capacity:
            raise ValueError(f"an example of {need} tokens does not fit a row of {capacity}")
        place = bisect.bisect_left(free, (need, -1))
        if place == len(free):
            rows.append([index])
            bisect.insort(free, (capacity - need, len(rows) - 1))
        else:
            room, row = free.pop(place)
            rows[row].append(index)
            bisect.insort(free, (room - need, row))
    return [sorted(row) for row in rows]


@dataclass(frozen=True)
class Fill:
    """How full the rows of a step are: real tokens over the rows' room at `sequence_len`."""

    examples: int
    rows: int
    tokens: int
    sequence_len: int

    @property
    def efficiency(self) -> float:
        return self.tokens / (self.rows * self.sequence_len) if self.rows else 0.0

    def per_step(self, rows_per_step: int) -> tuple[float, float]:
        """(examples, tokens) one optimizer step of `rows_per_step` rows sees, on average."""
        if not self.rows:
            return 0.0, 0.0
        return rows_per_step * self.examples / self.rows, rows_per_step * self.tokens / self.rows


def fill(lengths: Sequence[int], sequence_len: int, packing: bool) -> Fill:
    """The rows training would make of examples of these lengths, packed or one example per row."""
    rows = len(pack(lengths, sequence_len)) if packing else len(lengths)
    return Fill(len(lengths), rows, int(sum(lengths)), sequence_len)


def packed_dataset(dataset, sequence_len: int, path: Path):
    """The examples (input_ids, labels) packed into rows with restarting position_ids, as a Dataset on disk."""
    from datasets import Dataset, Features, Value
    from datasets import Sequence as Feature
    from datasets.arrow_writer import ArrowWriter

    columns = dataset.with_format("numpy", columns=["input_ids", "labels"])
    ids, labels = list(columns["input_ids"]), list(columns["labels"])
    rows = pack([len(x) for x in ids], sequence_len)
    features = Features({name: Feature(Value("int32")) for name in ("input_ids", "labels", "position_ids")})
    path.parent.mkdir(parents=True, exist_ok=True)
    with ArrowWriter(features=features, path=str(path)) as writer:
        for start in range(0, len(rows), 256):
            chunk = rows[start:start + 256]
            writer.write_batch({
                "input_ids": [np.concatenate([ids[i] for i in row]).astype(np.int32) for row in chunk],
                "labels": [np.concatenate([labels[i] for i in row]).astype(np.int32) for row in chunk],
                "position_ids": [np.concatenate([np.arange(len(ids[i]), dtype=np.int32) for i in row])
                                 for row in chunk]})
        writer.finalize()
    return Dataset.from_file(str(path))


class PackedRows:
    """Right-pads rows of packed examples: ids with the pad token, labels with IGNORE_INDEX, position ids
    restarting at the padding (so it is a block of its own), no attention mask and no cache, so that transformers
    isolates the examples by their position ids. (transformers' DataCollatorWithFlattening restarts positions per row it
    is given; these rows are already packed.) Unpacked examples go through it as rows of one."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), longest), self.pad, dtype=torch.long)
        labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
        positions = torch.arange(longest).repeat(len(rows), 1)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.as_tensor(row["input_ids"])
            labels[i, :n] = torch.as_tensor(row["labels"])
            positions[i, :n] = torch.as_tensor(row["position_ids"]) if "position_ids" in row else torch.arange(n)
            positions[i, n:] = torch.arange(longest - n)
        # no cache: transformers reads the examples' boundaries from position ids only when there is none
        return {"input_ids": ids, "labels": labels, "position_ids": positions, "use_cache": False}
