"""Example -> input_ids + labels. Labels are built in exactly one place, `labels_for`.

The token sequence is the tokenizer's encoding of the whole rendered text (what a front-end would send), after
the tokenizer's BOS when it has one. A token is trained when its first character lies in a trained span. A
token's first character is its first non-whitespace character, so a token like " Hello" belongs to the word it
carries, whichever way the tokenizer reports offsets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from grouprp.schema import DataError, Example

IGNORE_INDEX = -100
"""Label of a token the loss ignores (the PyTorch cross-entropy default)."""


@dataclass(frozen=True)
class Tokenized:
    """One example's token ids and labels (int32 arrays of the same length)."""

    input_ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained(self) -> int:
        """How many labels are not IGNORE_INDEX."""
        return int(np.count_nonzero(self.labels != IGNORE_INDEX))


class Encoder:
    """Tokenizes rendered examples in batches and builds their labels, for one tokenizer."""

    def __init__(self, tokenizer) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise DataError("model.tokenizer: the tokenizer has no fast (Rust) version; labels need its character "
                            "offsets")
        self.tokenizer = tokenizer
        self.backend = tokenizer.backend_tokenizer
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id

    def encode(self, examples: Sequence[Example]) -> list[Tokenized]:
        """Tokens and labels of each example, in one batched call to the Rust tokenizer."""
        if not examples:
            return []
        # the Rust tokenizer directly: the Python wrapper would also build masks and type ids we do not use
        encodings = self.backend.encode_batch([e.text for e in examples], add_special_tokens=False)
        return [self._tokenized(example, encoding.ids, encoding.offsets)
                for example, encoding in zip(examples, encodings)]

    def _tokenized(self, example: Example, ids: Sequence[int], offsets: Sequence[tuple[int, int]]) -> Tokenized:
        ids_array = np.asarray(ids, dtype=np.int32)
        labels = labels_for(example, ids_array, offsets)
        head = [] if self.bos is None else [self.bos]
        tail = []
        if example.append_eos:
            if self.eos is None:
                raise DataError("model.tokenizer: this template trains an EOS token, but the tokenizer has no "
                                "eos_token")
            tail = [self.eos]
        input_ids = np.concatenate([np.asarray(head, np.int32), ids_array, np.asarray(tail, np.int32)])
        labels = np.concatenate([np.full(len(head), IGNORE_INDEX, np.int32), labels, np.asarray(tail, np.int32)])
        return Tokenized(input_ids, labels)


def encode_batch(examples: Sequence[Example], tokenizer) -> list[Tokenized]:
    """Tokens and labels of each example (a one-off Encoder; build one Encoder to encode many batches)."""
    return Encoder(tokenizer).encode(examples)


def labels_for(example: Example, ids: np.ndarray, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Each token's id where its first character lies in a trained span, else IGNORE_INDEX (int32)."""
    ids = np.asarray(ids, dtype=np.int32)
    if not example.trained or not len(ids):
        return np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
    spans = np.asarray(example.trained, dtype=np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(offsets), dtype=np.int64, count=2 * len(ids))
    first = first_characters(example.text, flat.reshape(-1, 2))
    span_index = np.searchsorted(spans[:, 0], first, side="right") - 1
    inside = (span_index >= 0) & (first < spans[np.maximum(span_index, 0), 1])
    return np.where(inside, ids, np.int32(IGNORE_INDEX)).astype(np.int32)


def first_characters(text: str, offsets: np.ndarray) -> np.ndarray:
    """Position of each token's first non-whitespace character (its start when it is all whitespace)."""
    starts, ends = offsets[:, 0], offsets[:, 1]
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    whitespace = np.isin(codes, _WHITESPACE_CODES)
    n = len(codes)
    # next_visible[i]: the first non-whitespace position at or after i (n when none)
    candidates = np.where(whitespace, n, np.arange(n))
    next_visible = np.append(np.minimum.accumulate(candidates[::-1])[::-1], n)
    visible = next_visible[np.clip(starts, 0, n)]
    return np.where(visible < ends, visible, starts)


_WHITESPACE_CODES = np.array([ord(c) for c in " \t\n\r\x0b\x0c\u00a0\u2028\u2029\u3000"], dtype=np.uint32)
