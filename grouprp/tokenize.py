"""Example -> input_ids + labels, and the windowing of entries that do not fit `sequence_len`.

The token sequence is exactly the tokenizer's encoding of the whole rendered text (what a front-end would send),
after the tokenizer's BOS when it has one. Labels are built in one place, `labels_for`: a token is trained when
its first character lies in a trained span. A token's first character is its first non-whitespace character, so
a token like " Hello" belongs to the word it carries, whichever way the tokenizer reports offsets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from grouprp.schema import DataError, Entry, Example

IGNORE_INDEX = -100
"""Label of a token the loss ignores (the PyTorch cross-entropy default)."""


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    trained: int  # how many labels are not IGNORE_INDEX


def encode_batch(examples: Sequence[Example], tokenizer) -> list[Tokenized]:
    """Tokenize rendered examples in one batched call and build their labels."""
    if not examples:
        return []
    # the Rust tokenizer directly: the Python wrapper would also build masks and type ids we do not use
    encodings = tokenizer.backend_tokenizer.encode_batch([e.text for e in examples], add_special_tokens=False)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = []
    for example, encoding in zip(examples, encodings):
        ids = encoding.ids
        labels = labels_for(example, ids, encoding.offsets)
        trained = int(np.count_nonzero(labels != IGNORE_INDEX))
        labels = labels.tolist()
        if bos is not None:
            ids, labels = [bos, *ids], [IGNORE_INDEX, *labels]
        if example.append_eos:
            if eos is None:
                raise DataError("model.tokenizer: this template trains an EOS token, "
                                "but the tokenizer has no eos_token")
            ids, labels, trained = [*ids, eos], [*labels, eos], trained + 1
        out.append(Tokenized(list(ids), labels, trained))
    return out


def labels_for(example: Example, ids: Sequence[int], offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Each token's id where its first character lies in a trained span, else IGNORE_INDEX."""
    ids_array = np.asarray(ids, dtype=np.int64)
    if not example.trained or not len(ids):
        return np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    spans = np.asarray(example.trained, dtype=np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(offsets), dtype=np.int64, count=2 * len(ids))
    first = first_characters(example.text, flat.reshape(-1, 2))
    span_index = np.searchsorted(spans[:, 0], first, side="right") - 1
    inside = (span_index >= 0) & (first < spans[np.maximum(span_index, 0), 1])
    return np.where(inside, ids_array, IGNORE_INDEX)


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


@dataclass(frozen=True)
class WindowPlan:
    windows: list[Entry]
    dropped: int


def split_into_windows(entry: Entry, fits: Callable[[Entry], bool],
                       passes_filters: Callable[[Entry], bool]) -> WindowPlan:
    """Cut an entry into consecutive windows of whole posts, each as long as fits, ending on a model post.

    A user post at the end of a window moves to the start of the next one instead of being dropped. A window
    that fails the entry filters on its own, or a single post that cannot fit at all, is dropped and counted.
    """
    turns = entry.turns
    windows, dropped, start, index = [], 0, 0, 0
    while start < len(turns):
        end = _longest_fit(entry, start, fits)
        if end == start:  # this post alone is longer than sequence_len
            dropped += 1
            start += 1
            continue
        while end - 1 > start and turns[end - 1].role == "user":
            end -= 1
        window = window_of(entry, start, end, index)
        if passes_filters(window):
            windows.append(window)
            index += 1
        else:
            dropped += 1
        start = end
    return WindowPlan(windows, dropped)


def window_of(entry: Entry, start: int, end: int, index: int) -> Entry:
    """The turns [start, end) of an entry, with only the bios of the characters present."""
    turns = entry.turns[start:end]
    names = {entry.user, *(t.character for t in turns)}
    return replace(entry, id=f"{entry.id}#w{index}", turns=turns,
                   bios={k: v for k, v in entry.bios.items() if k in names})


def _longest_fit(entry: Entry, start: int, fits: Callable[[Entry], bool]) -> int:
    """The largest end such that turns [start, end) fit, or start when even one post does not.

    Galloping then bisection: O(log n) renders per window instead of one per post.
    """
    n = len(entry.turns)
    if not fits(window_of(entry, start, start + 1, 0)):
        return start
    good, step = start + 1, 1
    while good < n:
        probe = min(n, good + step)
        if not fits(window_of(entry, start, probe, 0)):
            bad = probe
            break
        good, step = probe, step * 2
    else:
        return n
    while bad - good > 1:
        middle = (good + bad) // 2
        if fits(window_of(entry, start, middle, 0)):
            good = middle
        else:
            bad = middle
    return good
