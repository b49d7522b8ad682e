"""Group mode: forum threads -> entries (cleaned, filtered, roles set) -> examples, windowed when too long.

A thread becomes one example when it fits `sequence_len`, else consecutive windows of whole posts, each rendered
with its own system prompt and each passing the entry filters on its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
from typing import Callable, Iterator, Optional, Sequence, Union

from grouprp.config import Config
from grouprp.filters import Accounting, Dropped, Kept, build_entry, filter_reason
from grouprp.formats import get_format
from grouprp.modes.base import ExampleRow, Mode, Outcome
from grouprp.quality.review import Quality
from grouprp.schema import Entry, Malformed, Thread, Turn
from grouprp.sheets import SheetSchema
from grouprp.sources import read_threads, thread_suffixes
from grouprp.tokenize import IGNORE_INDEX, Encoder, Tokenized


class GroupMode(Mode):
    """The model writes every character but the user's, from forum threads (lyra or chatml)."""

    unit = "threads"
    record_type = Thread
    without_tokenizer = ("no tokenizer, so long threads are shown whole, not cut into sequence_len windows "
                         "(pass --tokenizer PATH to see the windows)")

    @property
    def file_suffixes(self) -> tuple[str, ...]:
        return thread_suffixes(self.data)

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.schema = SheetSchema(cfg.data.sheet_schema)
        self.format = get_format(cfg.data.template, bool(cfg.data.train_on_names))
        self.quality = Quality(cfg.data.quality)

    def describe(self) -> str:
        return "group roleplay threads (the model writes every character but the user's)"

    def sample_prompt(self) -> str:
        entry = Entry("sample", "Ilsa", (Turn("Ilsa", "*She knocks twice.* Anyone home?", "user"),
                                         Turn("Corvin", "\"Door's open,\" Corvin called.", "model")),
                      {"Ilsa": "**Character Name**: Ilsa\n**Age**: 24"}, cast=("Ilsa", "Corvin", "Pell"))
        return self.format.prompt(entry).text

    def read(self, accounting: Accounting) -> Iterator[Union[Thread, Malformed]]:
        return read_threads(self.data, accounting.left_out)

    def build(self, threads: Sequence[Thread], encoder: Optional[Encoder]) -> list[Outcome]:
        results = [build_entry(thread, self.data, self.schema, self.quality) for thread in threads]
        kept = [r for r in results if isinstance(r, Kept)]
        examples = [self.format.render(k.entry) for k in kept]
        tokens = encoder.encode(examples) if encoder else [None] * len(kept)
        whole = {id(k): (example, t) for k, example, t in zip(kept, examples, tokens)}
        outcomes = []
        for thread, result in zip(threads, results):
            if isinstance(result, Dropped):
                outcome = Outcome([], result.reason, result.posts_removed, result.posts_changed)
            else:
                example, entry_tokens = whole[id(result)]
                if entry_tokens is None or len(entry_tokens) <= self.data.sequence_len:
                    outcome = Outcome([self._row(result.entry, example, entry_tokens)], None,
                                      result.posts_removed, result.posts_changed)
                else:
                    outcome = self._windowed(result, entry_tokens, encoder)
                outcome.sketch, outcome.genres = result.sketch, result.entry.genres
            outcome.findings, outcome.key = result.findings, thread.id
            outcomes.append(outcome)
        return outcomes

    def _windowed(self, kept: Kept, whole: Tokenized, encoder: Encoder) -> Outcome:
        """The entry cut into windows that fit; an entry none of whose windows survives is dropped as too_long."""
        cutter = _SlicedWindows.of(self.format, kept.entry, whole, encoder) or _EncodedWindows(self.format, encoder)
        plan = split_into_windows(kept.entry, lambda w: cutter.length(w) <= self.data.sequence_len,
                                  lambda w: filter_reason(w, self.data), borrow=self.data.window_context,
                                  reach=lambda start: cutter.reach(start, self.data.sequence_len))
        if not plan.windows:
            return Outcome([], "too_long", kept.posts_removed, kept.posts_changed)
        rows = [self._row(window, self.format.render(window), cutter.tokens(window)) for window in plan.windows]
        return Outcome(rows, None, kept.posts_removed, kept.posts_changed, plan.dropped)

    @staticmethod
    def _row(entry: Entry, example, tokens: Optional[Tokenized]) -> ExampleRow:
        return ExampleRow(entry.id, example, tokens, len(entry.turns), len(entry.characters), entry.user, entry)


class _EncodedWindows:
    """Window tokens by rendering and encoding each candidate window: right for any tokenizer."""

    def __init__(self, fmt, encoder: Encoder) -> None:
        self.format, self.encoder = fmt, encoder
        self.cache: dict[tuple, Tokenized] = {}  # a window's turns and context decide its text

    def tokens(self, window: Entry) -> Tokenized:
        key = (window.turns, window.context)
        if key not in self.cache:
            self.cache[key] = self.encoder.encode([self.format.render(window)])[0]
        return self.cache[key]

    def length(self, window: Entry) -> int:
        return len(self.tokens(window))

    @staticmethod
    def reach(start: int, sequence_len: int) -> None:
        """Unknown without encoding: the search gallops from short windows instead."""
        return None


class _SlicedWindows:
    """Window tokens cut out of the whole entry's one encoding: when the format's block markers are control
    tokens, the tokenizer splits the text at them, so a window's tokens are the BOS, its own system block (encoded
    once per cast of characters) and a slice of the entry's tokens, labels and all. Identical to encoding each
    window (tests compare the two); only the small system blocks are encoded again."""

    def __init__(self, fmt, entry: Entry, whole: Tokenized, encoder: Encoder, starts, tail: int) -> None:
        self.format, self.entry, self.whole, self.encoder = fmt, entry, whole, encoder
        self.starts = starts  # token index where each turn's block begins, then where the tail begins
        self.tail = tail  # tokens of the end marker
        self.head = 1 if encoder.bos is not None else 0  # the BOS
        self.systems: dict[tuple, np.ndarray] = {}

    @classmethod
    def of(cls, fmt, entry: Entry, whole: Tokenized, encoder: Encoder) -> Optional["_SlicedWindows"]:
        opening, closing = encoder.control.get(fmt.open), encoder.control.get(fmt.close)
        if opening is None or closing is None:
            return None
        blocks = np.flatnonzero(whole.input_ids == opening)
        if len(blocks) != len(entry.turns) + 1:
            return None
        tail = len(encoder.backend.encode(fmt.end, add_special_tokens=False).ids) if fmt.end else 0
        starts = np.append(blocks[1:], len(whole.input_ids) - tail)
        return cls(fmt, entry, whole, encoder, starts, tail)

    @staticmethod
    def _turns(window: Entry) -> tuple[int, int]:
        return window.start, window.start + len(window.turns)

    def _system(self, window: Entry) -> np.ndarray:
        """The window's system block (its cast's bios), encoded once per cast: the search for a window's end
        probes windows near the end it finds, so it asks for one or two casts per window."""
        key = tuple(window.characters)
        if key not in self.systems:
            self.systems[key] = self.encoder.encode([self.format.system_block(window)])[0].input_ids[self.head:]
        return self.systems[key]

    def reach(self, start: int, sequence_len: int) -> int:
        """The furthest end a window from turn `start` could have: where its posts alone fill sequence_len."""
        room = sequence_len - self.head - self.tail
        end = int(np.searchsorted(self.starts, self.starts[start] + room, side="right")) - 1
        return max(start, min(end, len(self.entry.turns)))

    def length(self, window: Entry) -> int:
        first, last = self._turns(window)
        return self.head + len(self._system(window)) + int(self.starts[last] - self.starts[first]) + self.tail

    def tokens(self, window: Entry) -> Tokenized:
        first, last = self._turns(window)
        system = self._system(window)
        body = slice(self.starts[first], self.starts[last])
        labels = self.whole.labels[body].copy()
        labels[:self.starts[first + window.context] - self.starts[first]] = IGNORE_INDEX  # context: never trained
        tail = slice(len(self.whole.input_ids) - self.tail, len(self.whole.input_ids))
        head = self.whole.input_ids[:self.head]
        ids = np.concatenate([head, system, self.whole.input_ids[body], self.whole.input_ids[tail]])
        ignored = np.full(len(head) + len(system), IGNORE_INDEX, np.int32)
        return Tokenized(ids, np.concatenate([ignored, labels, self.whole.labels[tail]]).astype(np.int32))


@dataclass(frozen=True)
class WindowPlan:
    windows: list[Entry]
    dropped: Counter  # reason -> windows dropped


def split_into_windows(entry: Entry, fits: Callable[[Entry], bool],
                       failed_filter: Callable[[Entry], Optional[str]], borrow: bool = False,
                       reach: Callable[[int], Optional[int]] = lambda start: None) -> WindowPlan:
    """Cut an entry into consecutive windows of whole posts, each as long as fits, ending on a model post.

    A user post at the end of a window moves to the start of the next one instead of being dropped. A window
    that fails the entry filters on its own may, with `borrow`, start earlier: it takes the fewest posts of the
    window before it, as context that is shown but never trained, that make it pass and still fit. A window that
    fails anyway is dropped and counted under the filter's reason; a single post that cannot fit at all is
    counted as too_long. `reach(start)`, when known, is an end no window from `start` can go past.
    """
    turns = entry.turns
    windows: list[Entry] = []
    dropped: Counter = Counter()
    start, previous = 0, 0
    while start < len(turns):
        end = _longest_fit(entry, start, fits, reach(start))
        if end == start:  # this post alone is longer than sequence_len
            dropped["too_long"] += 1
            start += 1
            continue
        while end - 1 > start and turns[end - 1].role == "user":
            end -= 1
        window = window_of(entry, start, end, len(windows))
        reason = failed_filter(window)
        if reason is not None and borrow:
            window = _with_context(entry, previous, start, end, len(windows), fits, failed_filter) or window
            reason = failed_filter(window)
        if reason is None:
            windows.append(window)
        else:
            dropped[reason] += 1
        previous, start = start, end
    return WindowPlan(windows, dropped)


def _with_context(entry: Entry, floor: int, start: int, end: int, index: int, fits: Callable[[Entry], bool],
                  failed_filter: Callable[[Entry], Optional[str]]) -> Optional[Entry]:
    """Turns [start, end) with the fewest turns before them (back to `floor`) as context that pass the filters."""
    for begin in range(start - 1, floor - 1, -1):
        window = window_of(entry, begin, end, index, context=start - begin)
        if not fits(window):
            return None
        if failed_filter(window) is None:
            return window
    return None


def window_of(entry: Entry, start: int, end: int, index: int, context: int = 0) -> Entry:
    """The turns [start, end) of an entry, with only the bios of the characters present; the first `context`
    turns are shown but not trained."""
    turns = entry.turns[start:end]
    names = {entry.user, *(t.character for t in turns)}
    return replace(entry, id=f"{entry.id}#w{index}", turns=turns, context=context, start=entry.start + start,
                   bios={k: v for k, v in entry.bios.items() if k in names})


def _longest_fit(entry: Entry, start: int, fits: Callable[[Entry], bool], furthest: Optional[int] = None) -> int:
    """The largest end such that turns [start, end) fit, or start when even one post does not: O(log n) probes.

    With `furthest` (no end beyond it fits), `furthest` itself first, then bisection below it: the windows probed
    are near the one found. Without, galloping from one post (1, 2, 4, ... posts) until one does not fit, then
    bisection: no probe is much longer than the window found.
    """
    n = len(entry.turns)

    def fits_to(end: int) -> bool:
        return fits(window_of(entry, start, end, 0))

    if furthest is None:
        good, step = start, 1
        while good < n and fits_to(min(n, good + step)):
            good, step = min(n, good + step), step * 2
        if good == n:
            return n
        bad = min(n, good + step)
    elif furthest > start and fits_to(furthest):
        return furthest
    else:
        good, bad = start, furthest
    while bad - good > 1:
        middle = (good + bad) // 2
        if fits_to(middle):
            good = middle
        else:
            bad = middle
    return good
