"""Example -> input_ids + labels. Which tokens are trained is decided in one place, `trained_span_of_tokens`, and
labels are made from that in one place, `_labels`.

The token sequence is the tokenizer's encoding of the whole rendered text (what a front-end would send), after
the tokenizer's BOS when it has one. A token is trained when its first character lies in a trained span. A
token's first character is its first non-whitespace character, so a token like " Hello" belongs to the word it
carries, whichever way the tokenizer reports offsets. First characters never go back from one token to the next,
so each span's trained tokens are consecutive, and finding them takes a bisection per span edge rather than a
look at every token's offsets (reading all offsets out of the Rust tokenizer was a tenth of `prepare`).

Offsets are not even asked of the tokenizer when it is byte-level BPE (Mistral-Nemo's, the bundled one): its
tokens are the text's bytes laid end to end, so each token's offsets are a running sum of how many bytes each
token id stands for, and the Rust encoder runs without tracking offsets (`encode_batch_fast`, which is much
faster than `encode_batch`; benchmarks/prepare_speed.py --ask-offsets shows what it saves). A text holding a
token of unknown size (the unknown token, an added token that takes in the spaces beside it), or whose tokens do
not add up to its bytes, is encoded again with offsets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from tokenizers.pre_tokenizers import ByteLevel

from grouprp.schema import DataError, Example

IGNORE_INDEX = -100
"""Label of a token the loss ignores (the PyTorch cross-entropy default)."""
UNSEEN = -2  # a token id whose size in bytes is not looked up yet
_BYTE_ALPHABET = frozenset(ByteLevel.alphabet())  # the characters of byte-level tokens, each one byte


@dataclass(frozen=True)
class Tokenized:
    """One example's token ids and labels (int32 arrays of the same length)."""

    input_ids: np.ndarray
    labels: np.ndarray
    spans: Optional[np.ndarray] = None  # per token, the index of its trained span (-1 untrained); on request

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained(self) -> int:
        """How many labels are not IGNORE_INDEX."""
        return int(np.count_nonzero(self.labels != IGNORE_INDEX))


class Encoder:
    """Tokenizes rendered examples in batches and builds their labels, for one tokenizer.

    Control tokens come only from the format: a post, sheet, name or script line containing `[INST]`, `</s>` or
    any other special token's text is encoded as that text, never as the token. The fast path encodes the whole
    text (what a front-end sends) and counts the control tokens in it; only when data forged some does the
    example get encoded again, the text between the format's markers with special tokens split as plain text.
    """

    def __init__(self, tokenizer) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise DataError("model.tokenizer: the tokenizer has no fast (Rust) version; labels need its character "
                            "offsets")
        self.tokenizer = tokenizer
        self.backend = tokenizer.backend_tokenizer
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        added = self.backend.get_added_tokens_decoder()
        self.control = {token.content: token_id for token_id, token in added.items() if token.special}  # text -> id
        self.control_ids = np.array(sorted(self.control.values()), dtype=np.int32)
        fast = byte_level(self.backend)
        # per token id, how many bytes of text it stands for (UNSEEN until met; -1 unknown) on a byte-level
        # tokenizer; None: offsets are asked of the tokenizer
        self.token_bytes = (np.full(self.backend.get_vocab_size(with_added_tokens=True), UNSEEN, dtype=np.int64)
                            if fast else None)
        # an added token that takes in the spaces beside it stands for more bytes than its text: unknown
        self.added_bytes = {token_id: -1 if token.lstrip or token.rstrip else len(token.content.encode("utf-8"))
                            for token_id, token in added.items()}
        unknown = self.backend.model.unk_token if fast else None
        self.unknown = self.backend.token_to_id(unknown) if unknown else None  # stands for whatever it replaced

    def encode(self, examples: Sequence[Example], with_spans: bool = False) -> list[Tokenized]:
        """Tokens and labels of each example, in one batched call to the Rust tokenizer (and, `with_spans`, the
        trained span each token belongs to)."""
        if not examples:
            return []
        # the Rust tokenizer directly: the Python wrapper would also build masks and type ids we do not use
        encode = self.backend.encode_batch if self.token_bytes is None else self.backend.encode_batch_fast
        encodings = encode([e.text for e in examples], add_special_tokens=False)
        out = []
        for example, encoding in zip(examples, encodings):
            ids = np.asarray(encoding.ids, dtype=np.int32)
            if np.count_nonzero(np.isin(ids, self.control_ids)) != len(self.control_markers(example)):
                ids, offsets = self.encode_data_as_text(example)
                chars = offsets.__getitem__
            elif self.token_bytes is None:
                chars = encoding.token_to_chars
            else:
                chars = self.offsets(example.text, ids)
                if chars is None:  # ids and offsets of one encoding
                    encoding = self.backend.encode(example.text, add_special_tokens=False)
                    ids, chars = np.asarray(encoding.ids, dtype=np.int32), encoding.token_to_chars
            out.append(self._tokenized(example, ids, chars, with_spans))
        return out

    def offsets(self, text: str, ids: np.ndarray) -> Optional[Callable[[int], tuple[int, int]]]:
        """Token i's (start, end) character offsets in `text`, from the bytes each token stands for: what the
        tokenizer itself reports (a token holding part of a multi-byte character spans all of that character).
        None when a token's size is unknown or the sizes do not add up to the text's bytes."""
        if len(ids) and ids.max() >= len(self.token_bytes):  # ids past the vocabulary's count (gaps in it)
            grown = np.full(int(ids.max()) + 1, UNSEEN, dtype=np.int64)
            grown[:len(self.token_bytes)] = self.token_bytes
            self.token_bytes = grown
        lengths = self.token_bytes[ids]
        if (lengths == UNSEEN).any():  # a token first met: its size, once (a corpus uses a few thousand)
            for token_id in np.unique(ids[lengths == UNSEEN]).tolist():
                self.token_bytes[token_id] = self._bytes_of(token_id)
            lengths = self.token_bytes[ids]
        ends = np.cumsum(lengths)
        raw = text.encode("utf-8")
        if not len(ids) or ends[-1] != len(raw) or lengths.min() <= 0:
            return None
        starts = ends - lengths
        if len(raw) != len(text):  # multi-byte characters: bytes -> the character each one belongs to
            character = np.cumsum((np.frombuffer(raw, np.uint8) & 0xC0) != 0x80) - 1
            starts, ends = character[starts], character[ends - 1] + 1
        return lambda i: (int(starts[i]), int(ends[i]))

    def _bytes_of(self, token_id: int) -> int:
        if token_id == self.unknown:
            return -1
        if token_id in self.added_bytes:
            return self.added_bytes[token_id]
        token = self.backend.id_to_token(token_id)
        return len(token) if token is not None and _BYTE_ALPHABET.issuperset(token) else -1

    def control_markers(self, example: Example) -> list[tuple[int, int]]:
        """The spans of the format's markers that are control tokens of this tokenizer."""
        return [(s, e) for s, e in example.markers if example.text[s:e] in self.control]

    def encode_data_as_text(self, example: Example) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Token ids and offsets with the format's control markers as their tokens and every other piece of text
        encoded with special tokens split as plain text. On byte-level tokenizers (Mistral-Nemo's, the bundled one)
        this equals the whole text's encoding wherever the data holds no special token's text: the tokenizer
        splits at control tokens anyway."""
        pieces: list[tuple[int, int, bool]] = []  # (start, end, is_marker)
        position = 0
        for start, end in self.control_markers(example):
            if start > position:
                pieces.append((position, start, False))
            pieces.append((start, end, True))
            position = end
        if position < len(example.text):
            pieces.append((position, len(example.text), False))
        texts = [example.text[s:e] for s, e, marker in pieces if not marker]
        self.backend.encode_special_tokens = True
        try:
            encoded = iter(self.backend.encode_batch(texts, add_special_tokens=False))
        finally:
            self.backend.encode_special_tokens = False
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for start, end, marker in pieces:
            if marker:
                ids.append(self.control[example.text[start:end]])
                offsets.append((start, end))
            else:
                encoding = next(encoded)
                ids.extend(encoding.ids)
                offsets.extend((start + s, start + e) for s, e in encoding.offsets)
        return np.asarray(ids, dtype=np.int32), offsets

    def _tokenized(self, example: Example, ids: np.ndarray, chars: Callable[[int], tuple[int, int]],
                   with_spans: bool = False) -> Tokenized:
        spans = trained_span_of_tokens(example, len(ids), chars)
        labels = _labels(ids, spans)
        head = [] if self.bos is None else [self.bos]
        tail = []
        if example.append_eos:
            if self.eos is None:
                raise DataError("model.tokenizer: this template trains an EOS token, but the tokenizer has no "
                                "eos_token")
            tail = [self.eos]
        input_ids = np.concatenate([np.asarray(head, np.int32), ids, np.asarray(tail, np.int32)])
        labels = np.concatenate([np.full(len(head), IGNORE_INDEX, np.int32), labels, np.asarray(tail, np.int32)])
        if not with_spans:
            return Tokenized(input_ids, labels)
        last = len(example.trained) - 1  # the trained EOS ends the last trained span
        spans = np.concatenate([np.full(len(head), -1, np.int64), spans, np.full(len(tail), last, np.int64)])
        return Tokenized(input_ids, labels, spans)


def encode_batch(examples: Sequence[Example], tokenizer) -> list[Tokenized]:
    """Tokens and labels of each example (a one-off Encoder; build one Encoder to encode many batches)."""
    return Encoder(tokenizer).encode(examples)


def labels_for(example: Example, ids: np.ndarray, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Each token's id where its first character lies in a trained span, else IGNORE_INDEX (int32)."""
    spans = trained_span_of_tokens(example, len(offsets), offsets.__getitem__)
    return _labels(np.asarray(ids, dtype=np.int32), spans)


def _labels(ids: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """A token's id where it lies in a trained span (span index >= 0), else IGNORE_INDEX."""
    return np.where(spans >= 0, ids, np.int32(IGNORE_INDEX)).astype(np.int32)


def trained_span_of_tokens(example: Example, count: int, chars: Callable[[int], tuple[int, int]]) -> np.ndarray:
    """For each of `count` tokens, the index of the trained span holding its first character, or -1: the one rule
    by which tokens are trained. `chars(i)` is token i's (start, end) in the text; the spans are in text order."""
    out = np.full(count, -1, dtype=np.int64)
    text, low = example.text, 0

    def first_token_from(position: int, begin: int) -> int:
        """The first token at or after `begin` whose first character is at or after `position`."""
        high = count
        while begin < high:
            middle = (begin + high) // 2
            if first_character(text, *chars(middle)) < position:
                begin = middle + 1
            else:
                high = middle
        return begin

    for index, (start, end) in enumerate(example.trained):
        first = first_token_from(start, low)
        low = first_token_from(end, first)
        out[first:low] = index
    return out


def byte_level(backend) -> bool:
    """Whether the tokenizer is byte-level BPE reporting offsets untouched (no normalizer, no prefix space added,
    no word prefix or suffix, offsets not trimmed): then each token stands for the bytes its characters name, one
    byte each."""
    model = backend.model
    if (type(model).__name__ != "BPE" or model.continuing_subword_prefix or model.end_of_word_suffix
            or backend.normalizer is not None or backend.pre_tokenizer is None
            or not hasattr(backend, "encode_batch_fast")):
        return False
    pre = _components(json.loads(backend.pre_tokenizer.__getstate__()))
    post = _components(json.loads(backend.post_processor.__getstate__())) if backend.post_processor else []
    byte_levels = [part for part in pre if part.get("type") == "ByteLevel"]
    return (bool(byte_levels) and not any(part.get("add_prefix_space") for part in byte_levels)
            and not any(part.get("trim_offsets") for part in post))  # ByteLevel's, RobertaProcessing's


def _components(part: dict) -> list[dict]:
    """A tokenizer component's JSON and, for a Sequence, each of its members'."""
    members = part.get("pretokenizers") or part.get("processors") or []
    return [part, *(m for member in members for m in _components(member))]


def first_character(text: str, start: int, end: int) -> int:
    """Position of a token's first non-whitespace character (its start when it is all whitespace)."""
    visible = text[start:end].lstrip(WHITESPACE)
    return end - len(visible) if visible else start


WHITESPACE = " \t\n\r\x0b\x0c\u00a0\u2028\u2029\u3000"
