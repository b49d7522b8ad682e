"""Group mode: forum threads -> entries (cleaned, filtered, roles set) -> examples, windowed when too long.

A thread becomes one example when it fits `sequence_len`, else consecutive windows of whole posts, each rendered
with its own system prompt and each passing the entry filters on its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Optional, Sequence, Union

from grouprp.config import Config
from grouprp.filters import Accounting, Dropped, Kept, build_entry, filter_reason
from grouprp.formats import get_format
from grouprp.modes.base import ExampleRow, Mode, Outcome
from grouprp.schema import Entry, Malformed, Thread, Turn
from grouprp.sheets import SheetSchema
from grouprp.sources import DATA_SUFFIXES, read_threads
from grouprp.tokenize import Encoder, Tokenized


class GroupMode(Mode):
    """The model writes every character but the user's, from forum threads (lyra or chatml)."""

    unit = "threads"
    record_type = Thread
    file_suffixes = DATA_SUFFIXES
    without_tokenizer = ("no tokenizer, so long threads are shown whole, not cut into sequence_len windows "
                         "(pass --tokenizer PATH to see the windows)")

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.schema = SheetSchema(cfg.data.sheet_schema)
        self.format = get_format(cfg.data.template, bool(cfg.data.train_on_names))

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
        results = [build_entry(thread, self.data, self.schema) for thread in threads]
        kept = [r for r in results if isinstance(r, Kept)]
        examples = [self.format.render(k.entry) for k in kept]
        tokens = encoder.encode(examples) if encoder else [None] * len(kept)
        whole = {id(k): (example, t) for k, example, t in zip(kept, examples, tokens)}
        outcomes = []
        for result in results:
            if isinstance(result, Dropped):
                outcomes.append(Outcome([], result.reason, result.posts_removed, result.posts_changed))
                continue
            example, entry_tokens = whole[id(result)]
            if entry_tokens is None or len(entry_tokens) <= self.data.sequence_len:
                outcomes.append(Outcome([self._row(result.entry, example, entry_tokens)], None,
                                        result.posts_removed, result.posts_changed))
            else:
                outcomes.append(self._windowed(result, encoder))
        return outcomes

    def _windowed(self, kept: Kept, encoder: Encoder) -> Outcome:
        """The entry cut into windows that fit; an entry none of whose windows survives is dropped as too_long."""
        # a window's turns decide its rendered text: (example, tokens) by turns, filled while searching for cuts
        measured: dict[tuple, tuple] = {}

        def measure(window: Entry) -> int:
            if window.turns not in measured:
                example = self.format.render(window)
                measured[window.turns] = (example, encoder.encode([example])[0])
            return len(measured[window.turns][1])

        plan = split_into_windows(kept.entry, lambda w: measure(w) <= self.data.sequence_len,
                                  lambda w: filter_reason(w, self.data))
        if not plan.windows:
            return Outcome([], "too_long", kept.posts_removed, kept.posts_changed)
        rows = []
        for window in plan.windows:
            measure(window)  # a window moved back off a user post was not measured while searching
            example, tokens = measured[window.turns]
            rows.append(self._row(window, example, tokens))
        return Outcome(rows, None, kept.posts_removed, kept.posts_changed, plan.dropped)

    @staticmethod
    def _row(entry: Entry, example, tokens: Optional[Tokenized]) -> ExampleRow:
        return ExampleRow(entry.id, example, tokens, len(entry.turns), len(entry.characters), entry.user)


@dataclass(frozen=True)
class WindowPlan:
    windows: list[Entry]
    dropped: Counter  # reason -> windows dropped


def split_into_windows(entry: Entry, fits: Callable[[Entry], bool],
                       failed_filter: Callable[[Entry], Optional[str]]) -> WindowPlan:
    """Cut an entry into consecutive windows of whole posts, each as long as fits, ending on a model post.

    A user post at the end of a window moves to the start of the next one instead of being dropped. A window
    that fails the entry filters on its own is dropped and counted under the filter's reason; a single post that
    cannot fit at all is counted as too_long.
    """
    turns = entry.turns
    windows: list[Entry] = []
    dropped: Counter = Counter()
    start = 0
    while start < len(turns):
        end = _longest_fit(entry, start, fits)
        if end == start:  # this post alone is longer than sequence_len
            dropped["too_long"] += 1
            start += 1
            continue
        while end - 1 > start and turns[end - 1].role == "user":
            end -= 1
        window = window_of(entry, start, end, len(windows))
        reason = failed_filter(window)
        if reason is None:
            windows.append(window)
        else:
            dropped[reason] += 1
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
